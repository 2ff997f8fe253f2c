"""Reading a JSON or CSV manifest: which images to run and which objects to ask about in each."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

from demo.errors import InputError

MANIFEST_EXTENSIONS = (".json", ".csv")


def _split_objects(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v for v in re.split(r"[;|,]", value) if v.strip()]
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value if str(v).strip()]
    raise InputError(f"objects must be a string or a list, got {type(value).__name__}")


def _json_rows(path: Path, text: str) -> list[dict]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: not valid JSON ({err})") from err
    if isinstance(data, dict) and "samples" in data:
        data = data["samples"]
    if isinstance(data, dict):
        data = [{"image": k, "objects": v} for k, v in data.items()]
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a list of {{'image': ..., 'objects': [...]}} entries")
    rows = []
    for i, entry in enumerate(data):
        if isinstance(entry, str):
            entry = {"image": entry}
        if not isinstance(entry, dict) or not entry.get("image"):
            raise InputError(f"{path}: entry {i} has no 'image' ({entry!r})")
        objects = _split_objects(entry.get("objects", entry.get("object")))
        rows.append({"image": str(entry["image"]), "objects": objects, "mesh": entry.get("mesh")})
    return rows


def _csv_rows(path: Path, text: str) -> list[dict]:
    reader = csv.DictReader(io.StringIO(text))
    fields = [f.strip().lower() for f in (reader.fieldnames or [])]
    if "image" not in fields:
        raise InputError(f"{path}: a CSV manifest needs a header with 'image' and 'objects' columns, got {fields}")
    rows = []
    for raw in reader:
        entry = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()}
        if not entry.get("image"):
            continue
        objects = _split_objects(entry.get("objects") or entry.get("object"))
        rows.append({"image": entry["image"], "objects": objects, "mesh": entry.get("mesh") or None})
    return rows


def read_manifest(path: Path) -> list[dict]:
    """Rows ``{"image": str, "objects": [str], "mesh": str | None}`` from a JSON or CSV manifest.

    JSON: a list of entries (or ``{"samples": [...]}``), each ``{"image": ..., "objects": [...]}`` (``object`` and a
    ``;``-separated string are accepted too), or a mapping ``{image: [objects]}``.
    CSV: a header with ``image`` and ``objects`` (or ``object``; several separated by ``;`` or ``|``), optional ``mesh``;
    several rows for one image are merged.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read manifest {path}: {err}") from err
    rows = _json_rows(path, text) if path.suffix.lower() == ".json" else _csv_rows(path, text)
    merged: dict[str, dict] = {}
    for row in rows:
        known = merged.setdefault(row["image"], {"image": row["image"], "objects": [], "mesh": row["mesh"]})
        known["objects"] += [o for o in row["objects"] if o not in known["objects"]]
        known["mesh"] = known["mesh"] or row["mesh"]
    return list(merged.values())
