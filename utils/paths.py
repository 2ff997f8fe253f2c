"""Default locations. Only entry points and cache helpers use these; library functions take paths as arguments."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def default_cache_dir() -> Path:
    """``$INTERACTVLM_CACHE`` or ``~/.cache/interactvlm``: large derived arrays live outside the repository."""
    return Path(os.environ.get("INTERACTVLM_CACHE", Path.home() / ".cache" / "interactvlm"))


def default_data_dir() -> Path:
    return REPO_ROOT / "data"


def default_models_dir() -> Path:
    return REPO_ROOT / "trained_models"
