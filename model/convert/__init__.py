"""Released InteractVLM / LISA checkpoints → our model directories, one step per module:

* ``keys``: the official ↔ our key names (one rename table, both directions) and the camera-encoder layouts;
* ``checkpoint_files``: reading the folder (weight shards, ``config.json``, tokenizer, a separate CLIP folder);
* ``config_inference``: our configuration from the shapes, ``config.json`` and the user's flags;
* ``templates``: the original's human template folders rewritten as ours;
* ``load``: one conversion start to end (``load_official``, ``convert_official``);
* ``options``: the user's choices (the command-line flags).

The command line is ``python -m model.convert_official``.
"""
