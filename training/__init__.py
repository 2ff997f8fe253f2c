"""The layer above ``model/`` and ``datasets/``: what turns a model and data into a trained, validated, exported
model directory, and the tools around it.

* ``build``: a model and tokenizer for a recipe (random tiny preset, an ``init`` directory, a warm start);
* ``templates``: the SAM input of each sample (body renders, an object's renders, or the photo for a 2D model);
* ``batches``: a collated batch → model inputs, and the model's outputs → per-sample losses;
* ``predict``: generate-mode predictions over a dataset (what validation and evaluation score);
* ``validation``: the per-set scores that choose the best model;
* ``export``: complete model directories written during training;
* ``prepare_weights``: a finished run's ZeRO checkpoint → a release model directory;
* ``baselines``: the prior and direct-classifier baselines trained on the same data;
* ``synthcontact_report``: the README's SynthContact tables in one command.

Nothing in ``model/``, ``datasets/`` or ``utils/`` imports from here.
"""
