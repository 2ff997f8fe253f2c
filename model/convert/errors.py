"""The converter's error type and the key listings its messages show."""

from __future__ import annotations

import re
from collections.abc import Iterable


class ConversionError(ValueError):
    """The checkpoint cannot be converted (unknown / missing keys, inconsistent config, no CLIP weights, ...)."""


def natural_key(name: str) -> list:
    """Sort key that orders ``layers.2`` before ``layers.10`` (shard names and state-dict keys)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def list_keys(keys: Iterable[str], limit: int = 25) -> str:
    """An indented, naturally sorted listing of at most ``limit`` keys, for an error message."""
    keys = sorted(keys, key=natural_key)
    shown = "\n  ".join(keys[:limit])
    more = f"\n  ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return f"\n  {shown}{more}"
