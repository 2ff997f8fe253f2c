"""The InteractVLM demo as a library, one module per step (``run_demo.py`` is the command line):

* inputs: ``inputs`` (options checked, samples of a folder / file list / manifest / video found), ``manifest``,
  ``names`` (object and sample names), ``photos`` (reading any photo robustly);
* jobs: ``jobs`` (the inputs, the (image, object) jobs, their results, the run's report), ``modes`` (what each mode
  asks);
* model: ``predict`` (model loading, batched prediction), ``meshes`` (body mesh and segmentation, object templates),
  ``smoothing`` (a video's frames);
* outputs: ``outputs`` (the files of a sample), ``summaries`` (what the JSON summaries say), ``output_folder`` (what
  the demo may write and what it must never touch);
* ``main``: one run, in that order. The pictures themselves are drawn by :mod:`utils.pictures`.
"""
