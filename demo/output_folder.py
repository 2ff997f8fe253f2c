"""The demo's output folder: what it may write, what it must never touch, and one run at a time.

Rules (the demo's only way to write results):

* **Inputs are protected by real path.** The output folder may neither lie inside an input location (input folder,
  manifest's folder, image folders, meshes, model directory) nor contain one; symlinks are resolved first.
* **Only files the demo wrote are ever replaced.** Every file a run writes is listed in ``.interactvlm_demo.json``
  inside the output folder. A path the run needs that exists but is not listed there (a user's ``README.md`` or
  ``run_summary.json``, a sample folder holding other files, any symlink) stops the run before anything is written.
* **Earlier results** (files listed by an earlier run) are removed before a new run writes, so no stale sample of an
  earlier run sits beside the new ones. For a folder given with ``--output-dir`` this needs ``--overwrite``; the
  default folder ``outputs/demo/<mode>`` belongs to the demo and is replaced by every run, so the README's commands
  can be repeated.
* **One run per folder at a time**: ``.interactvlm_demo.lock`` is held with an exclusive ``flock`` for the run's
  duration (released by the OS even if the process dies) and removed at the end; a second run into the folder stops
  with a clear message. A refused run leaves the folder as it found it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: fall back to an exclusive-create lock file
    fcntl = None

MANIFEST_NAME = ".interactvlm_demo.json"
LOCK_NAME = ".interactvlm_demo.lock"
MANIFEST_VERSION = 1


class OutputFolderError(RuntimeError):
    """The output folder cannot be used as it is; the message says why and what to do."""


def overlaps(a: Path, b: Path) -> bool:
    """Whether two locations coincide or one lies inside the other, compared by real path."""
    a, b = Path(a).resolve(), Path(b).resolve()
    return a == b or a in b.parents or b in a.parents


class OutputFolder:
    """An output folder opened for one demo run (see the module docstring)."""

    def __init__(self, path: Path, replace_earlier: bool, adopt_legacy: bool = False) -> None:
        self.path = Path(path).expanduser()
        self.replace_earlier = replace_earlier
        self.adopt_legacy = adopt_legacy
        self.files: set[str] = set()  # relative POSIX paths written by this run
        self.dirs: set[str] = set()  # folders created by this run
        self._lock_fd: int | None = None
        self._lock_path: Path | None = None
        self._created: list[Path] = []

    # -------------------------------------------------------------- opening
    def check_inputs(self, protected: list[Path]) -> None:
        """Refuse an output folder that coincides with, lies inside, or contains an input location."""
        out = self.path.resolve()
        for location in protected:
            real = Path(location).resolve()
            if real == out or real in out.parents:
                raise OutputFolderError(
                    f"the output folder {self.path} lies inside the input folder {location}; the demo never "
                    "writes into its input (choose another --output-dir)")
            if out in real.parents:
                raise OutputFolderError(
                    f"the output folder {self.path} contains the input {location}; the demo never writes beside its "
                    "inputs (choose another --output-dir)")

    def open(self, planned: list[str]) -> None:
        """Create the folder, take the lock, check every path the run will write, remove earlier results.

        ``planned`` lists the top-level names the run will write (files and sample folders)."""
        missing = [p for p in [self.path, *self.path.parents] if not p.exists() and not p.is_symlink()]
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._created = missing  # removed again (when still empty) if the run is refused
        except OSError as err:
            raise OutputFolderError(f"cannot write to the output folder {self.path}: {err.strerror or err} "
                                    "(choose another with --output-dir)") from err
        if self.path.is_symlink() or not self.path.is_dir():
            raise OutputFolderError(f"the output folder {self.path} is not a folder")
        self._lock()
        try:
            self._prepare(planned)
        except BaseException:
            self.close()
            for folder in self._created:  # leave no trace of a refused run
                try:
                    folder.rmdir()
                except OSError:
                    break
            raise

    def _prepare(self, planned: list[str]) -> None:
        earlier = self._read_manifest()
        if not earlier and self.adopt_legacy:
            earlier = self._legacy_results()
        owned = set(earlier.get("files", []))
        owned_dirs = set(earlier.get("dirs", []))
        present = [name for name in owned if (self.path / name).is_file() and not (self.path / name).is_symlink()]
        if present and not self.replace_earlier:
            raise OutputFolderError(
                f"the output folder {self.path} holds the results of an earlier demo run ({len(present)} files, "
                f"started {earlier.get('started', '?')}); pass --overwrite to replace them (only files the demo wrote "
                "are removed), or choose another --output-dir")
        for name in planned:
            self._check_planned(name, owned)
        for name in sorted(present):  # earlier results: only regular files the demo listed, inside the folder
            path = self.path / name
            if self._inside(path):
                path.unlink()
        for name in sorted(owned_dirs, key=lambda n: -n.count("/")):
            path = self.path / name
            if path.is_dir() and not path.is_symlink() and self._inside(path) and not any(path.iterdir()):
                path.rmdir()
        self.started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self._write_manifest()

    def _legacy_results(self) -> dict:
        """Results written before the demo kept a file list (no manifest), recognised by the demo's own README and
        its file layout: the top-level README.md / run_summary.json / *_video.npz, and inside each sample folder
        ``<sample>/<sample>_*`` files and ``object_template/``. Used for the default folder only, which belongs to
        the demo."""
        readme = self.path / "README.md"
        try:
            if readme.is_symlink() or not readme.read_text(encoding="utf-8").startswith("# InteractVLM demo outputs"):
                return {}
        except (OSError, UnicodeDecodeError):
            return {}
        files, dirs = [], []
        for entry in self.path.iterdir():
            if entry.is_symlink():
                continue
            top_level = entry.name in ("README.md", "run_summary.json") or entry.name.endswith("_video.npz")
            if entry.is_file() and top_level:
                files.append(entry.name)
            elif entry.is_dir():
                for sub in entry.rglob("*"):
                    rel = sub.relative_to(entry)
                    if sub.is_symlink():
                        continue
                    mine = rel.parts[0] == "object_template" or (
                        len(rel.parts) == 1 and sub.name.startswith(f"{entry.name}_"))
                    if sub.is_file() and mine:
                        files.append(sub.relative_to(self.path).as_posix())
                    elif sub.is_dir() and rel.parts[0] == "object_template":
                        dirs.append(sub.relative_to(self.path).as_posix())
                dirs.append(entry.name)
        return {"files": files, "dirs": dirs, "started": "before file lists were kept"}

    def _check_planned(self, name: str, owned: set[str]) -> None:
        path = self.path / name
        if path.is_symlink():
            raise OutputFolderError(f"{path} is a symlink; the demo never writes through links (remove it or choose "
                                    "another --output-dir)")
        if not path.exists():
            return
        if path.is_dir():
            foreign = []
            for sub in path.rglob("*"):
                rel = sub.relative_to(self.path).as_posix()
                if sub.is_symlink() or (not sub.is_dir() and rel not in owned):
                    foreign.append(rel)
            if foreign:
                raise OutputFolderError(
                    f"{path} already holds files the demo did not write (e.g. {foreign[0]}); the demo never "
                    "overwrites or deletes them: move them away or choose another --output-dir")
        elif name not in owned:
            raise OutputFolderError(f"{path} exists and was not written by the demo; the demo never overwrites it "
                                    "(move it away or choose another --output-dir)")

    def _inside(self, path: Path) -> bool:
        root = self.path.resolve()
        return root in path.resolve().parents

    # -------------------------------------------------------------- writing
    def sample_dir(self, name: str) -> Path:
        """``<output>/<name>/``, created by this run; never a symlink."""
        path = self.path / name
        if path.is_symlink():
            raise OutputFolderError(f"{path} is a symlink; the demo never writes through links")
        if not path.exists():
            path.mkdir()
            self.dirs.add(name)
        elif not path.is_dir():
            raise OutputFolderError(f"{path} exists and is not a folder")
        return path

    def file_path(self, name: str) -> Path:
        """A top-level file of the run (README.md, run_summary.json, the video npz): never one the demo did not
        write, never through a symlink."""
        path = self.path / name
        if path.is_symlink() or path.is_dir() or (path.exists() and name not in self.files):
            raise OutputFolderError(f"{path} exists and was not written by this run; not overwritten")
        return path

    def record(self, path: Path) -> None:
        """Record a written file, or every file under a written folder (which this run created or emptied)."""
        path = Path(path)
        paths = [p for p in path.rglob("*") if p.is_file() and not p.is_symlink()] if path.is_dir() else [path]
        if path.is_dir():
            for sub in [path, *(p for p in path.rglob("*") if p.is_dir() and not p.is_symlink())]:
                self.dirs.add(sub.relative_to(self.path).as_posix())
        for p in paths:
            self.files.add(p.relative_to(self.path).as_posix())
        self._write_manifest()

    # -------------------------------------------------------------- manifest and lock
    def _read_manifest(self) -> dict:
        path = self.path / MANIFEST_NAME
        if path.is_symlink():
            raise OutputFolderError(f"{path} is a symlink; remove it")
        if not path.exists():
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.get("files", [])) \
                    or not all(isinstance(v, str) for v in data.get("dirs", [])):
                raise ValueError("unexpected content")
        except (OSError, UnicodeDecodeError, ValueError) as err:
            raise OutputFolderError(f"{path} (the list of files an earlier demo run wrote) is damaged ({err}); delete "
                                    "it if the folder holds nothing of yours, or choose another --output-dir") from err
        clean = {}
        for key in ("files", "dirs"):  # never trust a listed path that climbs out of the folder
            clean[key] = [v for v in data.get(key, []) if v and not v.startswith("/") and ".." not in v.split("/")]
        clean["started"] = data.get("started")
        return clean

    def _write_manifest(self) -> None:
        data = {"version": MANIFEST_VERSION, "started": getattr(self, "started", None), "pid": os.getpid(),
                "files": sorted(self.files), "dirs": sorted(self.dirs)}
        path = self.path / MANIFEST_NAME
        tmp = self.path / f".{MANIFEST_NAME}.tmp{os.getpid()}"
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        tmp.replace(path)

    def _lock(self) -> None:
        path = self.path / LOCK_NAME
        if path.is_symlink():
            raise OutputFolderError(f"{path} is a symlink; remove it")
        busy = (f"another demo run is writing into {self.path} (lock {path}); wait for it to finish or choose "
                "another --output-dir")
        if fcntl is not None:
            while True:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as err:
                    os.close(fd)
                    raise OutputFolderError(busy) from err
                try:  # the holder before us may have removed the file between our open and flock: try again
                    same = os.stat(path).st_ino == os.fstat(fd).st_ino
                except FileNotFoundError:
                    same = False
                if same:
                    break
                os.close(fd)
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        else:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError as err:
                raise OutputFolderError(busy + f" (if no run is active, delete {path})") from err
        self._lock_path = path
        self._lock_fd = fd

    def close(self) -> None:
        """Release the lock and remove its file (still holding it, so no other run's lock file is removed)."""
        if self._lock_fd is not None:
            try:
                if self._lock_path is not None and os.stat(self._lock_path).st_ino == os.fstat(self._lock_fd).st_ino:
                    self._lock_path.unlink()
            except OSError:
                pass
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None
            self._lock_path = None

    def __enter__(self) -> "OutputFolder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
