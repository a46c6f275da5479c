"""Export verified cached files as a static mirror that ZOO_MIRROR reads (`zoo mirror export`).

A mirror is laid out like the zoo repo, DIR/<file.path>, so any static file server can serve it:

    zoo mirror export /srv/zoo && python -m http.server -d /srv/zoo 8000
    ZOO_MIRROR=http://host:8000 zoo pull mnist-8        # on another machine

Files are hard links to the cache's blobs when DIR is on the cache's filesystem (no second copy on
disk), else copies checked against their sha256 while copying; never symlinks, which a server
may refuse to follow out of its folder. Each file is written under a temp name and moved into
place, so a client never sees half a file. DIR/zoo-mirror.json lists what the mirror holds.

select() picks the cached files (pure, from a scan), read_state() looks at DIR (stat and the old
index, nothing hashed), plan_export() decides what to write (pure), ExportPlan.execute() does it.
A file already in DIR is kept when it is the blob itself (same inode) or when the old index
records it with the same sha256 and size and it still has that size: a re-export writes nothing.

Manifest paths are not trusted (ZOO_MANIFESTS). The whole export is planned before one byte is
written, and refused when a path would replace zoo-mirror.json, two paths collide (one file
and a folder at the same place, or names that differ only in case), or something in DIR is in
the way: a symbolic link among the folders (it would make zoo write outside DIR), a file where
a folder must be, a folder where a file must be. execute() checks each file's folders again
right before writing it, and never lets the index list a file whose bytes it is replacing.
"""

from __future__ import annotations

import json
import os
import stat
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from zoo import safejson
from zoo.errors import DownloadError, ZooError
from zoo.store.hashing import copy_hashing
from zoo.store.mirror_paths import INDEX_NAME, Obstacle, collisions, obstacle, path_problem

__all__ = ["INDEX_NAME", "DiskFile", "ExportPlan", "ExportResult", "MirrorFile", "MirrorState", "Obstacle", "Selection",
           "Step", "plan", "plan_export", "read_state", "select"]

if TYPE_CHECKING:
    from zoo.index.manifest import FileEntry, ModelEntry
    from zoo.store.cache_scan import CacheInfo, Kind

INDEX_FORMAT = 1
Action = Literal["write", "keep"]
How = Literal["hardlink", "copy", "kept"]
@dataclass(frozen=True, slots=True)
class MirrorFile:
    """One file the mirror serves at DIR/<path>; a record of zoo-mirror.json."""

    model_id: str
    kind: Kind
    path: str  # the zoo repo path, relative to DIR
    sha256: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.model_id, "kind": self.kind, "path": self.path, "sha256": self.sha256, "bytes": self.size}

    @classmethod
    def from_dict(cls, data: Any) -> MirrorFile:
        """Read one index record; raises KeyError, TypeError or ValueError for a malformed one."""
        record = cls(str(data["id"]), data.get("kind", "model"), str(data["path"]), str(data["sha256"]),
                     int(data["bytes"]))
        problem = path_problem(record.path)
        if problem is not None:
            raise ValueError(f"path {record.path!r} {problem}")
        return record


@dataclass(frozen=True, slots=True)
class Selection:
    """The cached files to export, each with the blob it comes from."""

    files: tuple[tuple[MirrorFile, Path], ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DiskFile:
    """stat facts of one regular file (lstat: a symlink is not one)."""

    key: str  # the mirror path, or the blob path
    size: int
    dev: int
    ino: int


@dataclass(frozen=True, slots=True)
class MirrorState:
    """What DIR holds now, from its index and stat alone."""

    has_index: bool
    zoo_version: str | None
    recorded: tuple[MirrorFile, ...]
    on_disk: tuple[DiskFile, ...]  # the mirror paths that matter, as found under DIR
    blobs: tuple[DiskFile, ...]  # the selected blobs, to recognise a file that already is one
    notes: tuple[str, ...] = ()
    in_the_way: tuple[Obstacle, ...] = ()


@dataclass(frozen=True, slots=True)
class Step:
    """What to do with one file: write it (link or copy) or keep what is there."""

    file: MirrorFile
    blob: Path
    action: Action
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {**self.file.to_dict(), "action": self.action, "reason": self.reason, "blob": str(self.blob)}


@dataclass(frozen=True, slots=True)
class ExportResult:
    """What execute() did: each file and how it got there, and whether the index was rewritten."""

    dest: Path
    files: tuple[tuple[MirrorFile, How], ...]
    carried: tuple[MirrorFile, ...]  # from earlier exports, still listed
    index_written: bool

    @property
    def index(self) -> Path:
        return self.dest / INDEX_NAME

    @property
    def written_size(self) -> int:
        return sum(f.size for f, how in self.files if how == "copy")

    def to_dict(self) -> dict[str, Any]:
        return {"dir": str(self.dest), "index": str(self.index), "index_written": self.index_written,
                "files": [{**f.to_dict(), "action": how} for f, how in self.files],
                "carried": [f.to_dict() for f in self.carried], "bytes_copied": self.written_size}


@dataclass(frozen=True, slots=True)
class ExportPlan:
    """The files to put in DIR and the index to write; execute() carries it out."""

    dest: Path
    steps: tuple[Step, ...]
    carried: tuple[MirrorFile, ...]  # earlier exports still in DIR: listed again, left untouched
    index_changed: bool
    notes: tuple[str, ...] = ()
    replaced: tuple[str, ...] = ()  # paths the old index lists that are written again

    @property
    def files(self) -> tuple[MirrorFile, ...]:
        """Everything the index will list, by path."""
        return tuple(sorted([s.file for s in self.steps] + list(self.carried), key=lambda f: f.path))

    @property
    def index(self) -> Path:
        return self.dest / INDEX_NAME

    @property
    def writes(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.action == "write")

    def to_dict(self) -> dict[str, Any]:
        return {"dir": str(self.dest), "index": str(self.index), "index_changed": self.index_changed,
                "steps": [s.to_dict() for s in self.steps], "carried": [f.to_dict() for f in self.carried],
                "notes": list(self.notes)}

    def execute(self, log: Callable[[str], None] | None = None) -> ExportResult:
        """Write the files (link, else verified copy; each atomically) and then the index if it changed."""
        done: list[tuple[MirrorFile, How]] = []
        with _dest_errors(self.dest):
            if self.replaced:  # first unlist what is about to change: the index never names other bytes
                _write_index(self.dest, sorted([*self.carried, *(s.file for s in self.steps if s.action == "keep")],
                                               key=lambda f: f.path))
            for step in self.steps:
                how: How = "kept" if step.action == "keep" else _place(step.blob, self.dest, step.file)
                if log and how != "kept":
                    log(f"{how} {step.file.path}")
                done.append((step.file, how))
            if self.index_changed:
                _write_index(self.dest, self.files)
        return ExportResult(self.dest, tuple(done), self.carried, self.index_changed)


def select(info: CacheInfo, entries: Iterable[ModelEntry], ids: Sequence[str] | None = None, *,
           with_test_data: bool = False) -> Selection:
    """The verified cached files of `ids` (default: every cached model), from a scan alone.

    Raises ZooError (exit 2) naming every id in `ids` whose model file, or test data when asked
    for, is not cached, with the `zoo pull` that fixes it.
    """
    blobs = {c.sha256: c for c in info.entries}
    wanted = None if ids is None else set(ids)
    files: dict[str, tuple[MirrorFile, Path]] = {}  # by mirror path
    missing: list[str] = []  # named ids that are not (fully) cached: an error
    no_test_data: list[str] = []  # cached models without their test data, when exporting everything: a note
    notes: list[str] = []
    for e in entries:
        if wanted is not None and e.id not in wanted:
            continue
        for kind, f in _files(e, with_test_data=with_test_data):
            cached = blobs.get(f.sha256)
            if cached is not None and cached.size != f.size:
                notes.append(f"{e.id}: cached blob {cached.blob} is {cached.size} bytes, not {f.size}; "
                             f"not exported (run `zoo cache verify {e.id}`)")
                cached = None
            if cached is None:
                if wanted is not None:
                    missing.append(e.id)
                elif kind == "test-data":
                    no_test_data.append(e.id)
                break  # a model without its file is skipped whole: its test data alone is no use
            problem = path_problem(f.path)
            if problem is not None:
                raise ZooError(f"cannot export {e.id}: its {kind} path {f.path!r} {problem}",
                               hint=f"fix file.path of {e.id} in {e.manifest or 'its manifest'}")
            if f.path in files:
                other = files[f.path][0]
                if other.sha256 != f.sha256:
                    raise ZooError(f"cannot export both {other.model_id} and {e.id}: they have other bytes at the "
                                   f"same path {f.path}", hint="export them into separate folders, one at a time")
                notes.append(f"{e.id}: {f.path} is already exported for {other.model_id}; skipped")
                continue
            files[f.path] = (MirrorFile(e.id, kind, f.path, f.sha256, f.size), cached.blob)
    if missing:
        _raise_not_cached(missing, with_test_data=with_test_data)
    if no_test_data:
        notes.append(f"test data not cached for {', '.join(no_test_data)}; "
                     "`zoo pull NAME --with-test-data` fetches it")
    return Selection(tuple(files.values()), tuple(notes))


def _files(entry: ModelEntry, *, with_test_data: bool) -> Iterator[tuple[Kind, FileEntry]]:
    yield "model", entry.file
    if with_test_data and entry.test_data is not None:
        yield "test-data", entry.test_data


def _raise_not_cached(ids: list[str], *, with_test_data: bool) -> None:
    ids = list(dict.fromkeys(ids))
    flag = " --with-test-data" if with_test_data else ""
    what = " (model file and test data)" if with_test_data else ""
    raise ZooError(f"not cached{what}, so not exported: {', '.join(ids)}",
                   hint=f"run `zoo pull {' '.join(ids)}{flag}` first, then export again")


def read_state(dest: Path, selection: Selection) -> MirrorState:
    """Look at DIR: the old index, and lstat of the paths to export or recorded (nothing is read or hashed)."""
    header, recorded, notes = _read_index(dest / INDEX_NAME)
    version = header.get("zoo_version") if header is not None else None
    paths = sorted({f.path for f, _ in selection.files} | {r.path for r in recorded})
    on_disk = tuple(d for p in paths if (d := _stat(dest / p, p)) is not None)
    blob_paths = sorted({str(blob) for _, blob in selection.files})
    blobs = tuple(d for b in blob_paths if (d := _stat(Path(b), b)) is not None)
    in_the_way = tuple(o for p in [*paths, INDEX_NAME] if (o := obstacle(dest, p)) is not None)
    return MirrorState(header is not None, version if isinstance(version, str) else None, recorded, on_disk, blobs,
                       notes, in_the_way)


def plan_export(dest: Path, selection: Selection, state: MirrorState, *, zoo_version: str | None = None) -> ExportPlan:
    """Decide, from facts alone, which files to write and whether the index changes (pure)."""
    zoo_version = zoo_version or _version()
    recorded = {r.path: r for r in state.recorded}
    disk = {d.key: d for d in state.on_disk}
    blobs = {d.key: d for d in state.blobs}
    steps = tuple(Step(f, blob, *_action(f, disk.get(f.path), blobs.get(str(blob)), recorded.get(f.path)))
                  for f, blob in selection.files)
    wanted = {f.path for f, _ in selection.files}
    carried: list[MirrorFile] = []
    notes = [*selection.notes, *state.notes]
    for r in state.recorded:
        if r.path in wanted:
            continue
        found = disk.get(r.path)
        if found is not None and found.size == r.size:
            carried.append(r)
        else:
            notes.append(f"{r.path} ({r.model_id}) is listed in {INDEX_NAME} but no longer in {dest}; unlisted")
    files = tuple(sorted([f for f, _ in selection.files] + carried, key=lambda f: f.path))
    listed = {f.path for f in files} | {INDEX_NAME}
    refused = collisions([(f.path, f.model_id) for f in files])
    refused += [o.describe(dest) for o in state.in_the_way if o.path in listed]
    if refused:
        raise ZooError(f"cannot export to {dest}, nothing was written: " + "; ".join(refused),
                       hint="move what is in the way out of the folder (or fix the manifest paths), "
                            "or export to another folder")
    old = tuple(sorted(state.recorded, key=lambda f: f.path))
    changed = not state.has_index or state.zoo_version != zoo_version or files != old
    replaced = tuple(s.file.path for s in steps if s.action == "write" and s.file.path in recorded)
    return ExportPlan(dest, steps, tuple(carried), changed, tuple(notes), replaced)


def _action(f: MirrorFile, found: DiskFile | None, blob: DiskFile | None, record: MirrorFile | None,
            ) -> tuple[Action, str]:
    if found is None:
        return "write", "not in the mirror yet"
    if blob is not None and (found.dev, found.ino) == (blob.dev, blob.ino):
        return "keep", "already a hard link to the cached blob"
    if record is not None and (record.sha256, record.size) == (f.sha256, f.size) and found.size == f.size:
        return "keep", f"recorded in {INDEX_NAME} with this sha256 and size"
    return "write", f"replaces a file that {INDEX_NAME} does not record with this sha256 and size"


def plan(dest: Path, ids: Sequence[str] | None = None, *, with_test_data: bool = False,
         root: Path | None = None) -> ExportPlan:
    """Scan the cache and DIR and plan an export of `ids` (default: every cached model)."""
    from zoo.index.catalog import load_index
    from zoo.store.cache_scan import scan

    entries = load_index().entries
    info = scan(root, index_entries=entries)
    dest = Path(os.path.abspath(dest))
    real = Path(os.path.realpath(dest))
    if real == info.root or info.root in real.parents:
        raise ZooError(f"cannot export a mirror into the cache itself ({dest} is inside {info.root})",
                       hint="choose a folder outside the cache, e.g. `zoo mirror export /srv/zoo`")
    selection = select(info, entries, ids, with_test_data=with_test_data)
    selection = Selection(selection.files, (*(f"warning: {w}" for w in info.warnings), *selection.notes))
    return plan_export(dest, selection, read_state(dest, selection))


def _read_index(path: Path) -> tuple[dict[str, Any] | None, tuple[MirrorFile, ...], tuple[str, ...]]:
    """The old index (None when absent or unreadable), its records, and what was wrong with it."""
    try:
        data = safejson.loads(path.read_text(encoding="utf-8"))
        return data, tuple(MirrorFile.from_dict(r) for r in data["files"]), ()
    except FileNotFoundError:
        return None, (), ()
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        note = (f"ignored {path}: unreadable ({type(exc).__name__}: {exc}); "
                "files already there that are not links to the cache are written again")
        return None, (), (note,)


def _stat(path: Path, key: str) -> DiskFile | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return DiskFile(key, st.st_size, st.st_dev, st.st_ino) if stat.S_ISREG(st.st_mode) else None


def _place(blob: Path, dest: Path, f: MirrorFile) -> How:
    """Put `blob` at DIR/<path> through a temp name: a hard link, else a copy verified while copying."""
    # Checked again now: a folder swapped for a link since planning must not redirect the write.
    # (What remains is a race with someone changing DIR during this very call.)
    found = obstacle(dest, f.path)
    if found is not None:
        raise ZooError(f"stopped exporting to {dest}: {found.describe(dest)} (it changed after the export was "
                       "planned)", hint="make sure nothing else writes into the folder, then export again")
    target = dest / f.path
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        try:
            os.link(blob, tmp)
            how: How = "hardlink"
        except OSError:  # another filesystem, or links not allowed: copy
            _copy_verified(blob, tmp, f)
            how = "copy"
        os.replace(tmp, target)
        return how
    finally:
        tmp.unlink(missing_ok=True)


def _copy_verified(blob: Path, tmp: Path, f: MirrorFile) -> None:
    sha256, size = copy_hashing(blob, tmp)
    if (sha256, size) != (f.sha256, f.size):
        raise DownloadError(f"cached file {blob} of {f.model_id} is damaged: expected sha256 {f.sha256} ({f.size} "
                            f"bytes), got sha256 {sha256} ({size} bytes); it was not exported",
                            hint=f"run `zoo cache verify {f.model_id}` (it deletes the bad file), then "
                                 f"`zoo pull {f.model_id}` and export again")


def _write_index(dest: Path, files: Sequence[MirrorFile]) -> None:
    data = {"format": INDEX_FORMAT, "zoo_version": _version(),
            "updated": datetime.now(UTC).isoformat(timespec="seconds"),
            "files": [f.to_dict() for f in files]}
    dest.mkdir(parents=True, exist_ok=True)
    tmp = dest / f".{INDEX_NAME}.{uuid.uuid4().hex}.tmp"
    try:
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, dest / INDEX_NAME)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def _dest_errors(dest: Path) -> Iterator[None]:
    """Report disk failures in DIR (full, read-only, a folder in the way) as a ZooError naming DIR."""
    try:
        yield
    except OSError as exc:
        if isinstance(exc, ZooError):
            raise
        raise ZooError(f"cannot write the mirror at {dest}: {exc}",
                       hint="free some space or fix permissions, or export to another folder") from exc


def _version() -> str:
    from zoo.version import __version__

    return __version__
