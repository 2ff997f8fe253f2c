"""Default locations. Only entry points and cache helpers use these; library functions take paths as arguments."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# the bundled models every entry point defaults to (demo, evaluate/run_eval.sh, synthcontact_report, bench.fit, tests)
DEFAULT_MODEL = REPO_ROOT / "trained_models" / "interactvlm-tiny-synthcontact-opening-parts"
DEFAULT_2D_MODEL = REPO_ROOT / "trained_models" / "interactvlm-tiny-2d-synthcontact"  # h2dcontact's default


def default_cache_dir() -> Path:
    """``$INTERACTVLM_CACHE``, else ``$XDG_CACHE_HOME/interactvlm``, else ``~/.cache/interactvlm``: large derived
    arrays live outside the repository."""
    if os.environ.get("INTERACTVLM_CACHE"):
        return Path(os.environ["INTERACTVLM_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "interactvlm"


def default_data_dir() -> Path:
    return REPO_ROOT / "data"


def require_file(path: str | Path, what: str) -> Path:
    """The path of a required file, or a ``FileNotFoundError`` that names it and what it should hold.

    Lives here (no torch import) so the dataset readers and the datagen worker processes share it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: expected {what}")
    return path
