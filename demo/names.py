"""Names the demo reads and writes: image extensions, the object a file name asks about, object names that can go
into a prompt, and file-name-safe sample names."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
# readable too when named explicitly (manifest, single file, video frames), but file mode keeps the original's list
EXTRA_IMAGE_EXTENSIONS = (".bmp", ".tif", ".tiff")
OBJECT_MESH_NAME = "object_mesh.obj"
MAX_NAME_CHARS = 80  # output names (sample folders, files): longer names are cut and given a hash suffix
MAX_OBJECT_CHARS = 64  # object names asked about: a longer "name" is a mistake, and it would crowd the prompt
RESERVED_TOKENS = ("<image>", "<im_start>", "<im_end>", "[SEG]", "[HSEG]", "[OSEG]", "<s>", "</s>", "<unk>",
                   "USER:", "ASSISTANT:")
_OBJECT_CHARS = re.compile(r"^[^\W_]+(?:[ _'\-.][^\W_]+)*$")  # words (any script) joined by space _ ' - .
NO_OBJECT = ("no object to ask about: name it '<object>__<id>' (e.g. chair__0001.jpg), pass --object NAME, "
             "or list objects in a manifest")


def safe_name(text: str) -> str:
    """A file-name-safe version of a sample or object name (keeps letters, digits, ``-_.``), at most
    ``MAX_NAME_CHARS`` characters (a longer one keeps its start plus 8 hex digits of its hash, so it stays unique)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", text.strip()).strip("._-") or "sample"  # no '-' first: not an option
    if len(cleaned) > MAX_NAME_CHARS:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        cleaned = f"{cleaned[:MAX_NAME_CHARS - 9].rstrip('._-')}-{digest}"
    return cleaned


def unique_name(name: str, used: set[str]) -> str:
    """``name``, or ``name_2``, ``name_3`` … when taken; the result is added to ``used``."""
    candidate, k = name, 2
    while candidate in used:
        candidate, k = f"{name}_{k}", k + 1
    used.add(candidate)
    return candidate


def _shorten(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


def validate_object_name(name: str) -> str:
    """The object name as asked in the prompt (stripped, lower case), or a ``ValueError`` saying what is wrong.

    The name goes verbatim into the question, so it must not carry the model's reserved tokens (an ``<image>`` would
    break the image-token count, a ``[SEG]`` would fake an answer) nor be so long that the prompt is cut."""
    name = name.strip()
    lowered = name.lower()
    for token in RESERVED_TOKENS:
        if token.lower() in lowered:
            raise ValueError(f"object name {_shorten(name)} contains the reserved token {token!r}; name the object "
                             "with plain words (e.g. chair, baseball bat)")
    if len(name) > MAX_OBJECT_CHARS:
        raise ValueError(f"object name {_shorten(name)} is {len(name)} characters long (at most {MAX_OBJECT_CHARS}); "
                         "name the object with a word or two (e.g. chair, dining table)")
    if not _OBJECT_CHARS.match(name):
        raise ValueError(f"object name {_shorten(name)} must be words of letters and digits, separated by single "
                         "spaces, '_', '-', \"'\" or '.' (e.g. chair, baseball_bat, tv-stand)")
    return lowered


def object_from_name(name: str) -> str | None:
    """The original's rule: ``basename.split('__')[0].lower()``; ``None`` when the name has no ``__``."""
    stem = Path(name).stem if Path(name).suffix.lower() in IMAGE_EXTENSIONS + EXTRA_IMAGE_EXTENSIONS else name
    if "__" not in stem:
        return None
    obj = stem.split("__")[0].strip().lower()
    return obj or None


def resolve_objects(names: list[str], fixed_object: str | None, forced: str | None) -> list[str]:
    """``forced`` (the mode's object, e.g. ``scene``) wins, then ``--object``, then what the input names.

    Raises ``ValueError`` for a name that cannot be asked about (see :func:`validate_object_name`)."""
    if forced:
        return [forced]
    if fixed_object:
        return [validate_object_name(fixed_object)]
    seen: list[str] = []
    for n in names:
        n = n.strip().lower()
        if n and n not in seen:
            seen.append(validate_object_name(n))
    return seen


def natural_key(name: str) -> list:
    """Sort key that puts ``frame_2`` before ``frame_10`` (case-insensitive)."""
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", name)]


def is_image_name(path: Path, extra: bool = False) -> bool:
    """Whether ``path`` has an image extension (``extra``: also the ones read only when named explicitly)."""
    exts = IMAGE_EXTENSIONS + (EXTRA_IMAGE_EXTENSIONS if extra else ())
    return path.suffix.lower() in exts
