"""Cache housekeeping: deletion plans (re-verification is zoo.store.cache_verify).

Deciding is kept apart from doing. plan_rm, plan_prune and plan_clear read a
CacheInfo (from cache.scan) and return a frozen DeletePlan without touching
the disk; `--dry-run` prints that plan and stops. DeletePlan.execute() deletes:

- each blob's files are deleted while holding its lock, taken without waiting,
  so a blob that a concurrent `zoo pull` is writing is skipped and reported,
  never pulled out from under it;
- nothing outside the cache root is deleted, and no symlink is followed: a
  link is removed as a link, and a folder is removed only when it is a real
  folder whose real parent is inside the root;
- a folder (test data, a model's folder) goes all at once: renamed into trash/,
  then removed, so a kill -9 never leaves it half there; the next deletion
  finishes what a killed one left in trash/;
- nothing is deleted in a folder that is not a zoo cache (cache.is_zoo_cache),
  and clear deletes only what zoo writes: anything else is listed and kept.
"""

from __future__ import annotations

import errno
import itertools
import os
import stat
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from zoo.errors import CacheError
from zoo.store import cache
from zoo.store.cache_scan import CacheInfo

TEMP_GRACE = 3600.0  # seconds: a younger temp file may belong to a zoo process still writing it

What = Literal["blob", "view", "test-data-dir", "optimized", "partial", "stale-view", "temp", "model-dir",
               "tree", "empty-dir", "locks"]


@dataclass(frozen=True, slots=True)
class PlanItem:
    """One path to delete; `sha256` names the blob lock to hold while deleting it."""

    path: Path
    size: int  # bytes this frees (0 for a link, or a folder deleted only when empty)
    what: What
    sha256: str | None = None
    model_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "bytes": self.size, "what": self.what, "sha256": self.sha256,
                "id": self.model_id}


@dataclass(frozen=True, slots=True)
class DeleteResult:
    """What execute() deleted, and what it skipped and why."""

    description: str
    deleted: tuple[PlanItem, ...]
    skipped: tuple[tuple[PlanItem, str], ...]

    @property
    def freed(self) -> int:
        return sum(item.size for item in self.deleted)

    def to_dict(self) -> dict[str, Any]:
        return {"description": self.description, "bytes_freed": self.freed,
                "deleted": [item.to_dict() for item in self.deleted],
                "skipped": [{**item.to_dict(), "reason": why} for item, why in self.skipped]}


@dataclass(frozen=True, slots=True)
class DeletePlan:
    """Paths to delete under `root`, decided up front; execute() performs it."""

    root: Path
    items: tuple[PlanItem, ...]
    description: str
    notes: tuple[str, ...] = ()  # what was kept on purpose, and why

    @property
    def paths(self) -> tuple[Path, ...]:
        return tuple(item.path for item in self.items)

    @property
    def size(self) -> int:
        """Bytes the plan frees."""
        return sum(item.size for item in self.items)

    def to_dict(self) -> dict[str, Any]:
        return {"root": str(self.root), "description": self.description, "bytes": self.size,
                "items": [item.to_dict() for item in self.items], "notes": list(self.notes)}

    def execute(self) -> DeleteResult:
        """Delete the planned paths, in order, each blob's files under its lock.

        Raises CacheError, deleting nothing, when the root is not a zoo cache.
        """
        root = Path(os.path.realpath(self.root))
        if self.items and not cache.is_zoo_cache(root):
            raise not_a_cache(root, ())
        cache.empty_trash(root)  # finish what a killed deletion left behind
        deleted: list[PlanItem] = []
        skipped: list[tuple[PlanItem, str]] = []
        with cache.disk_errors(root):  # a read-only cache cannot even take a lock: a CacheError, not a crash
            for sha256, run in itertools.groupby(self.items, key=lambda item: item.sha256):
                with _try_lock(sha256, root) as held:
                    for item in run:
                        why = _delete(root, item) if held else "in use by another zoo process; try again later"
                        if why:
                            skipped.append((item, why))
                        else:
                            deleted.append(item)
        return DeleteResult(self.description, tuple(deleted), tuple(skipped))


@contextmanager
def _try_lock(sha256: str | None, root: Path) -> Iterator[bool]:
    """Hold locks/<sha256>.lock if it is free (True), else hold nothing (False); no sha256: True."""
    if sha256 is None:
        yield True
        return
    from filelock import FileLock, Timeout  # only needed to delete

    path = cache.lock_path(sha256, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


def _delete(root: Path, item: PlanItem) -> str | None:
    """Delete one planned path; return why it was not deleted, or None."""
    path = Path(item.path)
    real_parent = Path(os.path.realpath(path.parent))
    if path.name in ("", ".", "..") or not real_parent.is_relative_to(root) or real_parent / path.name in (
            root, root / "CACHEDIR.TAG"):
        return f"outside the cache root {root}: never deleted"
    try:
        st = os.lstat(path)
        if item.what == "locks":
            return _delete_locks(root, path)
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(path)  # a symlink goes as a link: its target is never touched
        elif item.what == "empty-dir":
            os.rmdir(path)
        else:
            cache.discard(root, path)  # lstat says a real folder; one rename takes it whole
    except FileNotFoundError:
        return "already gone"
    except OSError as exc:
        if exc.errno == errno.ENOTEMPTY:
            return "kept: it holds entries zoo did not make"
        return f"cannot delete: {exc.strerror or exc}"
    return None


def _delete_locks(root: Path, folder: Path) -> str | None:
    """Delete the lock files that no process holds right now."""
    busy = []
    for path in sorted(folder.glob("*.lock")):
        with _try_lock(path.stem, root) as held:
            if held:
                path.unlink(missing_ok=True)
            else:
                busy.append(path.name)
    return f"held by another zoo process: {', '.join(busy)}" if busy else None


# -- deciding: plans ------------------------------------------------------------------------------------


def blob_items(info: CacheInfo, sha256: str) -> list[PlanItem]:
    """Everything that goes with one blob: views, unpacked test data, optimised copies, the blob, a partial.

    Views go first: if deletion stops half way, what is left is a blob without a view, which still counts as cached.
    """
    records = [e for e in info.entries if e.sha256 == sha256]
    if not records:
        return []
    items = [PlanItem(v, 0, "view", sha256, e.model_id) for e in records for v in e.views]
    items += [PlanItem(e.extracted, e.extracted_size, "test-data-dir", sha256, e.model_id)
              for e in records if e.extracted is not None]
    items += [PlanItem(o.path, o.size, "optimized", sha256) for o in info.optimized if o.sha256 == sha256]
    items.append(PlanItem(records[0].blob, records[0].size, "blob", sha256, records[0].model_id))
    items += [PlanItem(p.path, p.size, "partial", sha256) for p in info.partials if p.sha256 == sha256]
    return items


def _unique(items: Iterable[PlanItem]) -> tuple[PlanItem, ...]:
    """The items in order, each path once (the first wins)."""
    first: dict[Path, PlanItem] = {}
    for item in items:
        first.setdefault(item.path, item)
    return tuple(first.values())


def plan_rm(info: CacheInfo, ids: Sequence[str]) -> DeletePlan:
    """Delete the cached files of these model ids; a blob another model still uses (has a view of) is kept,
    with a note saying so.
    """
    require_zoo_cache(info)
    removing, items, notes = set(ids), [], []
    for model_id in ids:
        records = info.for_model(model_id)
        for rec in records:
            # Every model with this sha256 can use the blob; one with its own view is using it.
            users = {e.model_id for e in info.entries if e.sha256 == rec.sha256 and e.views}
            others = sorted(u for u in users - removing if u is not None)
            if others:
                notes.append(f"kept blob {rec.sha256} ({rec.kind} of {model_id}): also used by {', '.join(others)}")
            else:
                items += blob_items(info, rec.sha256)
        items += [PlanItem(p.path, p.size, "partial", p.sha256, model_id) for p in info.partials
                  if model_id in p.model_ids and set(p.model_ids) <= removing]
        if model_id in info.model_dirs:
            planned = {i.path for i in items}
            loose = [f for f in (*info.stale_views, *info.temp_files) if f.model_id == model_id]
            size = sum(f.size for f in loose if f.path not in planned)
            size += sum(e.extracted_size for e in records if e.extracted is not None and e.extracted not in planned)
            items.append(PlanItem(info.root / "models" / model_id, size, "model-dir", None, model_id))
    return DeletePlan(info.root, _unique(items), f"remove {', '.join(ids)} from the cache", tuple(notes))


def plan_prune(info: CacheInfo, *, older_than: timedelta | None = None, now: float | None = None) -> DeletePlan:
    """Delete what no model needs: partials, orphan blobs, stale views, optimised copies of gone models,
    temp files older than TEMP_GRACE; with `older_than`, also models not used (read or written) for that long.
    """
    require_zoo_cache(info)
    now = time.time() if now is None else now
    items = [PlanItem(p.path, p.size, "partial", p.sha256) for p in info.partials]
    for orphan in info.orphans:
        items += blob_items(info, orphan.sha256)
    items += [PlanItem(s.path, s.size, "stale-view", None, s.model_id) for s in info.stale_views]
    items += [PlanItem(o.path, o.size, "optimized") for o in info.optimized if o.orphan]
    # Trash and planted links belong to no running zoo process: no grace for them.
    items += [PlanItem(t.path, t.size, "temp", None, t.model_id) for t in info.temp_files
              if now - t.last_modified > TEMP_GRACE or t.path.parent == info.root / "trash"
              or t.reason == "a planted symlink"]
    what = "partial downloads, orphan blobs, stale views, optimised copies of removed models and old temp files"
    if older_than is not None:
        cutoff = now - older_than.total_seconds()
        for sha256, last in _last_used(info).items():
            if last < cutoff:
                items += blob_items(info, sha256)
        items += [PlanItem(o.path, o.size, "optimized") for o in info.optimized
                  if o.sha256 is None and o.last_used < cutoff]
        what += f", and models unused for {_describe(older_than)}"
    return DeletePlan(info.root, _unique(items), f"prune {what}")


def _last_used(info: CacheInfo) -> dict[str, float]:
    """When each indexed blob was last read or written, counting its optimised copies (sessions load those)."""
    last: dict[str, float] = {}
    for e in info.entries:
        if e.kind != "orphan":
            last[e.sha256] = max(last.get(e.sha256, 0.0), e.last_used)
    for o in info.optimized:
        if o.sha256 in last:
            last[o.sha256] = max(last[o.sha256], o.last_used)
    return last


def _describe(delta: timedelta) -> str:
    days, seconds = delta.days, delta.seconds
    return f"{days} days" if days and not seconds else f"{delta.total_seconds() / 3600:g} hours"


def plan_clear(info: CacheInfo) -> DeletePlan:
    """Delete every file zoo wrote under the root (blobs, views, test data, partials, locks, optimised
    graphs, fingerprints, temp files); keep CACHEDIR.TAG and everything zoo did not make (listed in notes).
    """
    require_zoo_cache(info)
    root = info.root
    items = [PlanItem(e.blob, e.size, "blob", e.sha256) for e in {e.sha256: e for e in info.entries}.values()]
    items += [PlanItem(v, 0, "view", e.sha256, e.model_id) for e in info.entries for v in e.views]
    items += [PlanItem(e.extracted, e.extracted_size, "test-data-dir", e.sha256, e.model_id)
              for e in info.entries if e.extracted is not None]
    items += [PlanItem(s.path, s.size, "stale-view", None, s.model_id) for s in info.stale_views]
    items += [PlanItem(p.path, p.size, "partial", p.sha256) for p in info.partials]
    items += [PlanItem(f.path, f.size, "optimized") for f in info.optimized]
    items += [PlanItem(f.path, f.size, "temp", None, f.model_id) for f in (*info.temp_files, *info.fingerprints)]
    # Folders last, each only when empty: whatever zoo did not make keeps its folder.
    items += [PlanItem(root / "models" / d, 0, "empty-dir", None, d) for d in info.model_dirs]
    for name in ("models", "optimized", "fingerprints", "partial", "blobs/sha256", "blobs", "trash"):
        items.append(PlanItem(root / name, 0, "empty-dir"))
    if (root / "index").is_dir() and not (root / "index").is_symlink():
        items.append(PlanItem(root / "index", 0, "tree"))  # the compiled index: rebuilt on the next use
    items.append(PlanItem(root / "locks", 0, "locks"))
    notes = _kept_notes(info)
    return DeletePlan(root, _unique(items), f"clear the cache at {root}", notes)


def _kept_notes(info: CacheInfo) -> tuple[str, ...]:
    if not info.unknown:
        return ()
    shown = [str(p) for p in info.unknown[:20]]
    more = f" and {len(info.unknown) - 20} more" if len(info.unknown) > 20 else ""
    return (f"keeping {len(info.unknown)} entries zoo did not make: {', '.join(shown)}{more}",)


def require_zoo_cache(info: CacheInfo) -> None:
    """Raise CacheError unless info.root is a zoo cache (or absent or empty: nothing to delete)."""
    if info.zoo_cache or not info.root.is_dir() or not any(info.root.iterdir()):
        return
    raise not_a_cache(info.root, info.unknown)


def not_a_cache(root: Path, unknown: Sequence[Path]) -> CacheError:
    names = ", ".join(p.name for p in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
    holds = f"; it holds entries zoo does not make ({names})" if unknown else ""
    return CacheError(f"refusing to delete anything in {root}: it is not a zoo cache (no CACHEDIR.TAG written "
                      f"by zoo{holds})",
                      hint="check ZOO_HOME (`zoo cache dir` prints it): point it at zoo's cache folder, or unset it")
