"""Joint human–object reconstruction: place an object mesh next to a fixed human mesh from their contacts.

Given one photo, the human mesh in camera coordinates with the camera intrinsics, per-vertex human contact, the object
mesh with its per-vertex contact and the object's mask, :mod:`optim.fit` estimates the object's rotation, translation
(and optionally scale) in the human's camera frame. Everything runs on CPU: the differentiable silhouette is our own
(:mod:`optim.silhouette`), hard renders use Embree ray casting (:mod:`optim.render`).

    python -m optim.fit --input-dir data/fit_samples/chair__test_000015 --output-dir output/fit
"""
