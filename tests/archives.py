"""Real zip and tar.gz archives built in memory, with symlink and hard-link members, for the tests of
``fetch_data.sh`` (its extraction rules are judged on the bytes an attacker could ship, not on a mock)."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile


def zip_bytes(entries: dict[str, bytes], symlinks: dict[str, str] | None = None) -> bytes:
    """A zip with regular files ``entries`` and Unix symlinks ``symlinks`` (name -> link text)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(zipfile.ZipInfo(name), data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return buf.getvalue()


def targz_bytes(entries: dict[str, bytes], symlinks: dict[str, str] | None = None,
                hardlinks: dict[str, str] | None = None) -> bytes:
    """A tar.gz with regular files, symlinks and hard links (name -> link target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for kind, links in ((tarfile.SYMTYPE, symlinks or {}), (tarfile.LNKTYPE, hardlinks or {})):
            for name, target in links.items():
                info = tarfile.TarInfo(name)
                info.type = kind
                info.linkname = target
                tf.addfile(info)
    return buf.getvalue()
