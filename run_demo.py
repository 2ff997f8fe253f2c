"""InteractVLM demo: contact from photos with a trained model directory.

    python run_demo.py                                        # hcontact on data/demo_samples with the bundled model
    python run_demo.py --mode hcontact --input data/demo_samples --input-mode folder
    python run_demo.py --mode hcontact --input photos/ --input-mode file         # photos/<object>__<id>.jpg
    python run_demo.py --mode hcontact --input list.json                         # manifest: image + objects
    python run_demo.py --mode hcontact-wScene --input photos/ --input-mode file  # scene / ground contact
    python run_demo.py --mode ocontact --input data/demo_samples                 # needs <name>/object_mesh.obj
    python run_demo.py --mode hcontact --input frames/ --video-frames --object chair --smooth 5
    python run_demo.py --mode h2dcontact --input photos/ --input-mode file      # 2D contact masks on the photos

Modes: hcontact, hcontact-wScene, h2dcontact (2D model only), oafford, ocontact, hcontact-ocontact.
Outputs go to ``--output-dir`` (default ``outputs/demo/<mode>``), one folder per sample, never into or around an
input, and never over a file the demo did not write (``demo.output_folder``). A folder holding an earlier run's
results needs ``--overwrite`` (its earlier results are then removed first); the default folder is replaced by every
run. New view embeddings are cached in ``--cache-dir`` (default ``$INTERACTVLM_CACHE``, ``$XDG_CACHE_HOME/interactvlm``
or ``~/.cache/interactvlm``), never in the model directory.
Exit status: 0 when every input succeeded, 1 when some failed (they are listed at the end), 2 when nothing could run.

The bundled default models ``trained_models/interactvlm-tiny-synthcontact-opening-parts`` (3D) and ``interactvlm-tiny-2d-synthcontact``
(2D, mode h2dcontact) are trained on synthetic data only; on real photos they exercise the pipeline, they do not
give meaningful contact.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from demo.inputs import DEFAULT_2D_MODEL, DEFAULT_INPUT, DEFAULT_MODEL, DEFAULT_OBJECT_INPUT
from demo.modes import MODES
from demo.photos import DEFAULT_MAX_SIDE


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", default="hcontact", help=f"one of: {', '.join(MODES)} (default hcontact)")
    parser.add_argument("--input", type=Path, default=None,
                        help="sample folder, image folder, a single image, a JSON/CSV manifest, or a frames folder "
                             f"(default {DEFAULT_INPUT}; object modes: {DEFAULT_OBJECT_INPUT})")
    parser.add_argument("--input-mode", choices=["auto", "folder", "file", "manifest"], default="auto",
                        help="folder: <input>/<name>/<name>.jpg; file: <input>/<object>__<id>.jpg; manifest: JSON/CSV "
                             "(auto: manifest for .json/.csv, folder when there are sub-folders, else file)")
    parser.add_argument("--object", default=None, help="object to ask about for every image (overrides file names)")
    parser.add_argument("--object-mesh", type=Path, default=None,
                        help="object mesh for every sample (object modes; default <sample>/object_mesh.obj)")
    parser.add_argument("--video-frames", action="store_true", help="--input is a folder of frames of one video")
    parser.add_argument("--smooth", type=int, default=0, help="video: temporal smoothing over K frames (0/1: off)")
    parser.add_argument("--smooth-method", choices=["window", "ema"], default="window",
                        help="window: centred moving average over K frames; ema: alpha = 2/(K+1)")
    parser.add_argument("--model", type=Path, default=None,
                        help=f"model directory (default {DEFAULT_MODEL}; h2dcontact: {DEFAULT_2D_MODEL})")
    parser.add_argument("--output-dir", type=Path, default=None,
                        help="default <repo>/outputs/demo/<mode> (replaced by every run); a folder given here that holds "
                             "an earlier run's results needs --overwrite")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier demo run's results in --output-dir (only files the demo wrote, as "
                             "listed in its .interactvlm_demo.json)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="folder for cached view embeddings (default $INTERACTVLM_CACHE, $XDG_CACHE_HOME/interactvlm "
                             "or ~/.cache/interactvlm, + /view_embeddings); 'none': memory only")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default: cuda when available)")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    parser.add_argument("--load-in-8bit", action="store_true", help="8-bit language model (CUDA + bitsandbytes)")
    parser.add_argument("--load-in-4bit", action="store_true", help="4-bit language model (CUDA + bitsandbytes)")
    parser.add_argument("--threshold", type=float, default=0.5, help="contact probability threshold (vertices and masks)")
    parser.add_argument("--batch-size", type=int, default=1, help="images per generate call (all objects of an image "
                                                                   "are always asked together)")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--max-side", type=int, default=DEFAULT_MAX_SIDE, help="photos are downscaled to this longest side")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (images, renders, loading)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and run the demo (:func:`demo.main.main`); the exit status."""
    args = parse_args(argv)
    # imported once the arguments parse: the model stack (torch, transformers) takes seconds to import, and --help
    # or a mistyped option should answer at once
    from demo.main import main as run_demo

    return run_demo(args)


if __name__ == "__main__":
    sys.exit(main())
