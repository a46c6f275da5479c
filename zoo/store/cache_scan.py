"""What is in the cache: scan() -> CacheInfo, from names and stat alone.

scan() never hashes, deletes or raises for a bad entry: it maps each blob to
the index entries (model file or test data) with its sha256, finds partials,
orphan blobs, stale views, optimised copies and leftover temp files, and
collects what it cannot read or did not expect as warnings, as
huggingface_hub's scan_cache_dir does. zoo.store.cache_plan decides what to delete.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from zoo.index.manifest import FileEntry, ModelEntry
from zoo.store import cache

Kind = Literal["model", "test-data", "orphan"]
_HEX64 = re.compile(r"[0-9a-f]{64}")
_TOP = cache.TOP_NAMES
_FINGERPRINT = re.compile(r"[0-9a-f]{32}\.json")
_JSON_NAMES = {"size": "bytes", "expected_size": "expected_bytes", "extracted_size": "extracted_bytes",
               "model_id": "id", "model_ids": "ids"}


def _plain(obj: Any) -> dict[str, Any]:
    """to_dict() for the scan records: sizes as "bytes", ids as "id", paths as text, times as ISO 8601 UTC."""
    out: dict[str, Any] = {}
    for name in obj.__slots__:
        value = getattr(obj, name)
        if name.startswith("last_"):
            value = datetime.fromtimestamp(value, UTC).isoformat(timespec="seconds")
        elif isinstance(value, Path):
            value = str(value)
        elif isinstance(value, tuple):
            value = [str(v) if isinstance(v, Path) else v for v in value]
        out[_JSON_NAMES.get(name, name)] = value
    return out


@dataclass(frozen=True, slots=True)
class CachedFile:
    """One verified blob as one index entry uses it; an orphan blob (no entry has its sha256) has no model_id."""

    model_id: str | None
    kind: Kind
    sha256: str
    size: int  # bytes of the blob on disk
    expected_size: int | None  # what the manifest promises; None for an orphan
    blob: Path
    views: tuple[Path, ...]  # names under models/ that show this blob
    last_access: float
    last_modified: float
    extracted: Path | None = None  # models/<id>/test_data, unpacked from this test-data archive
    extracted_size: int = 0
    copies: tuple[Path, ...] = ()  # views that are separate files of the blob's size: trusted only once hashed

    @property
    def path(self) -> Path:
        """The readable view, or the blob when no view exists."""
        return self.views[0] if self.views else self.blob

    @property
    def last_used(self) -> float:
        return max(self.last_access, self.last_modified)

    def to_dict(self) -> dict[str, Any]:
        return {**_plain(self), "path": str(self.path)}


@dataclass(frozen=True, slots=True)
class PartialFile:
    """Unverified bytes of an interrupted download."""

    sha256: str
    path: Path
    size: int  # bytes so far
    expected_size: int | None
    model_ids: tuple[str, ...]
    last_modified: float

    def to_dict(self) -> dict[str, Any]:
        return _plain(self)


@dataclass(frozen=True, slots=True)
class LooseFile:
    """A file no blob backs: a stale view, a leftover temp file."""

    path: Path
    size: int
    model_id: str | None
    reason: str
    last_modified: float

    def to_dict(self) -> dict[str, Any]:
        return _plain(self)


@dataclass(frozen=True, slots=True)
class OptimizedFile:
    """An onnxruntime-optimised copy in optimized/ (or its .json record), keyed by the model's sha256
    (or, from older zoo versions, a local-file key)."""

    path: Path
    size: int
    key: str
    orphan: bool  # keyed by a sha256 whose blob is gone
    last_access: float
    last_modified: float

    @property
    def sha256(self) -> str | None:
        return self.key if _HEX64.fullmatch(self.key) else None

    @property
    def last_used(self) -> float:
        return max(self.last_access, self.last_modified)

    def to_dict(self) -> dict[str, Any]:
        return _plain(self)


@dataclass(frozen=True, slots=True)
class CacheInfo:
    """Everything under the cache root, as scan() found it; problems are in `warnings`, not raised."""

    root: Path
    entries: tuple[CachedFile, ...]
    partials: tuple[PartialFile, ...] = ()
    stale_views: tuple[LooseFile, ...] = ()
    optimized: tuple[OptimizedFile, ...] = ()
    temp_files: tuple[LooseFile, ...] = ()
    locks: tuple[Path, ...] = ()
    model_dirs: tuple[str, ...] = ()  # folder names under models/
    warnings: tuple[str, ...] = ()
    unknown: tuple[Path, ...] = ()  # entries zoo did not make: never deleted
    fingerprints: tuple[LooseFile, ...] = ()  # remembered sha256 of local model files
    zoo_cache: bool = True  # CACHEDIR.TAG names zoo, or the layout is a zoo cache's

    @property
    def orphans(self) -> tuple[CachedFile, ...]:
        return tuple(e for e in self.entries if e.kind == "orphan")

    @property
    def size(self) -> int:
        """Bytes on disk: each blob once, extracted test data, partials, stale, optimised and temp files."""
        blobs = {e.sha256: e.size for e in self.entries}
        extracted = sum(e.extracted_size for e in self.entries)
        loose = sum(f.size for group in (self.partials, self.stale_views, self.optimized, self.temp_files,
                                         self.fingerprints) for f in group)
        return sum(blobs.values()) + extracted + loose

    def for_model(self, model_id: str) -> tuple[CachedFile, ...]:
        return tuple(e for e in self.entries if e.model_id == model_id)

    def to_dict(self) -> dict[str, Any]:
        return {"root": str(self.root), "bytes": self.size, "entries": [e.to_dict() for e in self.entries],
                "partials": [p.to_dict() for p in self.partials],
                "stale_views": [s.to_dict() for s in self.stale_views],
                "optimized": [o.to_dict() for o in self.optimized],
                "temp_files": [t.to_dict() for t in self.temp_files], "warnings": list(self.warnings),
                "unknown": [str(p) for p in self.unknown], "zoo_cache": self.zoo_cache}


def scan(root: Path | None = None, *, index_entries: Iterable[ModelEntry] | None = None) -> CacheInfo:
    """Describe the cache under `root` (default: home()) from names and stat alone: no hashing, no changes.

    Each blob is matched to the index entries (model file or test data) with its sha256; unreadable or
    unexpected entries become warnings instead of errors.
    """
    root = Path(os.path.realpath(root or cache.home()))
    if not root.is_dir():
        return CacheInfo(root, ())
    if index_entries is None:
        from zoo.index.catalog import load_index

        index_entries = load_index().entries
    found = _Scan(root, index_entries)
    for walk in (found.top, found.blobs, found.models, found.partials, found.optimized, found.locks, found.trash,
                 found.fingerprints):
        walk()
    return found.result()


def _own_size(st: os.stat_result) -> int:
    """Bytes freed by deleting this name: a symlink or a second hard link frees nothing."""
    return st.st_size if stat.S_ISREG(st.st_mode) and st.st_nlink == 1 else 0


class _Scan:
    """One scan's findings; each walk lists one folder and turns every problem into a warning."""

    def __init__(self, root: Path, index_entries: Iterable[ModelEntry]) -> None:
        self.root = root
        self.users: dict[str, list[tuple[str, Kind, FileEntry]]] = {}  # sha256 -> (model_id, kind, file)
        self.expected: dict[tuple[str, str], str] = {}  # (model_id, view name) -> sha256
        for e in index_entries:
            for kind, f in (("model", e.file), ("test-data", e.test_data)):
                if f is not None:
                    self.users.setdefault(f.sha256, []).append((e.id, kind, f))  # type: ignore[arg-type]
                    self.expected[(e.id, f.name)] = f.sha256
        self.stats: dict[str, os.stat_result] = {}
        self.inodes: dict[tuple[int, int], str] = {}
        self.views: dict[str, list[tuple[str, Path]]] = {}  # sha256 -> (models/ folder, view)
        self.extracted: dict[str, LooseFile] = {}
        self.stale: list[LooseFile] = []
        self.stale_links: dict[tuple[int, int], list[Path]] = {}
        self.temps: list[LooseFile] = []
        self.copies: set[Path] = set()
        self.found_partials: list[PartialFile] = []
        self.found_optimized: list[OptimizedFile] = []
        self.found_locks: list[Path] = []
        self.found_fingerprints: list[LooseFile] = []
        self.dirs: list[str] = []
        self.warnings: list[str] = []
        self.unknown: list[Path] = []
        self.linked: set[str] = set()  # top-level folders that are symlinks: never walked

    def _list(self, folder: Path) -> list[tuple[Path, os.stat_result]]:
        if folder.relative_to(self.root).parts[:1] and folder.relative_to(self.root).parts[0] in self.linked:
            return []
        try:
            with os.scandir(folder) as it:
                names = sorted(d.name for d in it)
        except FileNotFoundError:
            return []
        except OSError as exc:
            self.warnings.append(f"cannot read {folder}: {exc.strerror or exc}")
            return []
        out = []
        for name in names:
            try:
                out.append((folder / name, os.lstat(folder / name)))
            except OSError as exc:
                self.warnings.append(f"cannot stat {folder / name}: {exc.strerror or exc}")
        return out

    def _unexpected(self, path: Path) -> None:
        self.warnings.append(f"unexpected entry {path}: not made by zoo; prune and clear leave it alone")
        self.unknown.append(path)

    def _planted(self, path: Path, st: os.stat_result, model_id: str | None = None) -> None:
        """A symlink where zoo only ever makes files: writing through it could land anywhere; prune unlinks it."""
        self.warnings.append(f"{path} is a symlink zoo did not make; zoo refuses to write through it "
                             "(`zoo cache prune` removes the link)")
        self.temps.append(LooseFile(path, 0, model_id, "a planted symlink", st.st_mtime))

    def _temp(self, path: Path, st: os.stat_result, model_id: str | None, reason: str) -> None:
        size = self._tree_size(path) if stat.S_ISDIR(st.st_mode) else _own_size(st)
        self.temps.append(LooseFile(path, size, model_id, reason, st.st_mtime))

    def _tree_size(self, folder: Path) -> int:
        total = 0
        for top, _, files in os.walk(folder, onerror=lambda e: self.warnings.append(f"cannot read {e.filename}")):
            for name in files:
                with suppress(OSError):
                    total += _own_size(os.lstat(os.path.join(top, name)))
        return total

    def blobs(self) -> None:
        for path, st in self._list(self.root / "blobs" / "sha256"):
            if _HEX64.fullmatch(path.name) and stat.S_ISREG(st.st_mode):
                self.stats[path.name] = st
                self.inodes[(st.st_dev, st.st_ino)] = path.name
            else:
                self._unexpected(path)

    def models(self) -> None:
        for folder, st in self._list(self.root / "models"):
            if stat.S_ISLNK(st.st_mode):
                self._planted(folder, st, folder.name)
                continue
            if not stat.S_ISDIR(st.st_mode):
                self._unexpected(folder)
                continue
            self.dirs.append(folder.name)
            for path, st in self._list(folder):
                if path.name.startswith(".") and path.name.endswith((".tmp", ".old")):
                    self._temp(path, st, folder.name, "unfinished view or extraction")
                elif path.name == "test_data" and stat.S_ISDIR(st.st_mode):
                    self.extracted[folder.name] = LooseFile(path, self._tree_size(path), folder.name,
                                                            "test data unpacked from an archive that is not cached",
                                                            st.st_mtime)
                elif stat.S_ISDIR(st.st_mode):
                    self._unexpected(path)
                else:
                    self._view(folder.name, path, st)

    def _view(self, model_dir: str, path: Path, st: os.stat_result) -> None:
        sha256, reason = self._shows(model_dir, path, st)
        if sha256:
            self.views.setdefault(sha256, []).append((model_dir, path))
            return
        if stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and (model_dir, path.name) not in self.expected:
            self._unexpected(path)  # no view name, no other link: a file someone put here, never deleted
            return
        size = _own_size(st)
        if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:  # hard links of a deleted blob: the last one frees it
            links = self.stale_links.setdefault((st.st_dev, st.st_ino), [])
            links.append(path)
            size = st.st_size if len(links) == st.st_nlink else 0
        self.stale.append(LooseFile(path, size, model_dir, reason, st.st_mtime))

    def _shows(self, model_dir: str, path: Path, st: os.stat_result) -> tuple[str | None, str]:
        """The sha256 of the blob a view shows, or None and why it is stale."""
        if stat.S_ISLNK(st.st_mode):
            try:
                target = os.path.normpath(os.path.join(path.parent, os.readlink(path)))
            except OSError as exc:
                return None, f"unreadable link: {exc.strerror or exc}"
            name = os.path.basename(target)
            if os.path.dirname(target) != str(self.root / "blobs" / "sha256"):
                return None, f"links to {target}, outside the cache's blobs"
            return (name, "") if name in self.stats else (None, "links to a blob that is not cached")
        if not stat.S_ISREG(st.st_mode):
            return None, "not a regular file"
        if (st.st_dev, st.st_ino) in self.inodes:
            return self.inodes[(st.st_dev, st.st_ino)], ""
        expected = self.expected.get((model_dir, path.name))
        if expected is None:
            return None, "shows no cached blob"
        if expected not in self.stats:
            return None, "its blob is not cached"
        if self.stats[expected].st_size != st.st_size:
            return None, "differs from its blob"
        # A separate file of the right size: a copy (a filesystem without links), or one planted there.
        # Only hashing tells them apart (`zoo cache verify` does); zoo runs the blob meanwhile.
        self.copies.add(path)
        return expected, ""

    def partials(self) -> None:
        for path, st in self._list(self.root / "partial"):
            sha256 = path.name.removesuffix(".part")
            if _HEX64.fullmatch(sha256) and path.suffix == ".part" and stat.S_ISREG(st.st_mode):
                users = self.users.get(sha256, [])
                self.found_partials.append(PartialFile(sha256, path, st.st_size, users[0][2].size if users else None,
                                                       tuple(u[0] for u in users), st.st_mtime))
            elif path.suffix == ".import":
                self._temp(path, st, None, "unfinished import")
            elif path.name.endswith((".ranges", ".ranges.tmp")) and stat.S_ISREG(st.st_mode):
                self._temp(path, st, None, "progress record of a parallel download")  # zoo.store.ranges
            elif stat.S_ISLNK(st.st_mode):
                self._planted(path, st)
            else:
                self._unexpected(path)

    def optimized(self) -> None:
        for path, st in self._list(self.root / "optimized"):
            key = path.name.split(".", 1)[0]
            if path.name.startswith("tmp-"):
                self._temp(path, st, None, "unfinished optimised model")
            elif ".cpu." in path.name and path.suffix in (".onnx", ".json") and stat.S_ISREG(st.st_mode):
                orphan = bool(_HEX64.fullmatch(key)) and key not in self.stats
                self.found_optimized.append(OptimizedFile(path, st.st_size, key, orphan, st.st_atime, st.st_mtime))
            else:
                self._unexpected(path)

    def locks(self) -> None:
        for path, st in self._list(self.root / "locks"):
            if path.suffix == ".lock" and stat.S_ISREG(st.st_mode):
                self.found_locks.append(path)
            elif stat.S_ISLNK(st.st_mode):
                self._planted(path, st)
            else:
                self._unexpected(path)

    def trash(self) -> None:
        for path, st in self._list(self.root / "trash"):
            self._temp(path, st, None, "left by an interrupted deletion")

    def fingerprints(self) -> None:
        for path, st in self._list(self.root / "fingerprints"):
            if _FINGERPRINT.fullmatch(path.name) and stat.S_ISREG(st.st_mode):
                self.found_fingerprints.append(LooseFile(path, st.st_size, None, "remembered sha256", st.st_mtime))
            elif path.name.startswith(".") and path.name.endswith(".tmp") and stat.S_ISREG(st.st_mode):
                self._temp(path, st, None, "unfinished fingerprint")
            else:
                self._unexpected(path)

    def top(self) -> None:
        for path, st in self._list(self.root):
            if path.name.startswith(".CACHEDIR.TAG."):
                self._temp(path, st, None, "unfinished CACHEDIR.TAG")
            elif path.name not in _TOP:
                self._unexpected(path)
            elif path.name != "CACHEDIR.TAG" and not stat.S_ISDIR(st.st_mode):
                # A link (or file) where zoo keeps a folder: never walked, written or deleted through.
                self.linked.add(path.name)
                self.unknown.append(path)
                what = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a folder"
                self.warnings.append(f"{path} is {what}: zoo refuses to write through it; remove it "
                                     f"(`rm {path}`) and zoo makes a real folder")

    def result(self) -> CacheInfo:
        entries = [e for sha256, st in sorted(self.stats.items()) for e in self._entries(sha256, st)]
        entries.sort(key=lambda e: (e.model_id is None, e.model_id or "", e.kind, e.sha256))
        stale = self.stale + list(self.extracted.values())  # what _entries did not claim has no archive
        return CacheInfo(self.root, tuple(entries), tuple(self.found_partials), tuple(stale),
                         tuple(self.found_optimized), tuple(self.temps), tuple(self.found_locks), tuple(self.dirs),
                         tuple(self.warnings), tuple(self.unknown), tuple(self.found_fingerprints),
                         cache.is_zoo_cache(self.root))

    def _entries(self, sha256: str, st: os.stat_result) -> list[CachedFile]:
        blob, views = self.root / "blobs" / "sha256" / sha256, self.views.get(sha256, [])
        users = self.users.get(sha256)
        if not users:
            return [CachedFile(None, "orphan", sha256, st.st_size, None, blob, tuple(p for _, p in views),
                               st.st_atime, st.st_mtime)]
        ids = {model_id for model_id, _, _ in users}
        strays = tuple(p for d, p in views if d not in ids)  # in another model's folder: goes with the first user
        out = []
        for i, (model_id, kind, file) in enumerate(users):
            own = tuple(p for d, p in views if d == model_id) + (strays if i == 0 else ())
            unpacked = self.extracted.pop(model_id, None) if kind == "test-data" else None
            if st.st_size != file.size:
                self.warnings.append(f"blob {blob} is {st.st_size} bytes but {model_id} expects {file.size}; "
                                     "run `zoo cache verify`")
            out.append(CachedFile(model_id, kind, sha256, st.st_size, file.size, blob, own, st.st_atime,
                                  st.st_mtime, None if unpacked is None else unpacked.path,
                                  0 if unpacked is None else unpacked.size,
                                  tuple(v for v in own if v in self.copies)))
        return out
