"""`zoo cache verify`: re-hash every blob (and every view that is a separate file) against its sha256.

A blob with other bytes is deleted with its views, so nothing bad stays cached; a file at a view's
name that is not the blob's bytes (planted or changed: zoo never runs it, cache.cached_path gives the
blob instead) is removed alone. Only reading happens otherwise, so a read-only cache verifies too.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from zoo.store import cache
from zoo.store.cache_plan import DeletePlan, blob_items
from zoo.store.cache_scan import CachedFile, scan
from zoo.store.hashing import sha256_file


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """One blob re-hashed against the sha256 and size the manifest promises."""

    sha256: str  # expected: the manifest's, which is also the blob's name
    model_ids: tuple[str, ...]
    path: Path
    expected_size: int | None  # None for an orphan blob: only its sha256 is known
    got_sha256: str | None  # None when the blob could not be read
    got_size: int | None
    removed: tuple[Path, ...] = ()
    problem: str | None = None  # why it could not be read, or not (fully) removed
    bad_views: tuple[Path, ...] = ()  # files at a view's name that are not the blob's bytes (planted, changed)

    @property
    def ok(self) -> bool:
        return (self.got_sha256 == self.sha256 and self.expected_size in (None, self.got_size)
                and not self.bad_views)

    def to_dict(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "ids": list(self.model_ids), "path": str(self.path), "ok": self.ok,
                "expected": {"sha256": self.sha256, "bytes": self.expected_size},
                "got": {"sha256": self.got_sha256, "bytes": self.got_size},
                "removed": [str(p) for p in self.removed], "problem": self.problem,
                "bad_views": [str(p) for p in self.bad_views]}


def verify(root: Path | None, entries: Iterable[CachedFile],
           log: Callable[[str], None] | None = None) -> list[VerifyResult]:
    """Re-hash each blob once; a bad blob is deleted with its views, so nothing bad stays cached."""
    root = Path(os.path.realpath(root or cache.home()))
    by_sha: dict[str, list[CachedFile]] = {}
    for e in entries:
        by_sha.setdefault(e.sha256, []).append(e)
    results = []
    for records in by_sha.values():
        if log:
            log(f"verifying {records[0].blob} ({records[0].size} bytes)")
        result, before = _rehash(records)
        if not result.ok and result.got_sha256 is not None:
            result = _remove_bad(root, result, before)
        elif result.ok:
            result = _check_copies(result, [c for e in records for c in e.copies], log)
        results.append(result)
    return results


def _check_copies(result: VerifyResult, copies: list[Path], log: Callable[[str], None] | None) -> VerifyResult:
    """Hash each view that is a separate file (not the blob's inode); one with other bytes is removed.

    zoo never runs such a file (cache.cached_path gives the blob instead), but `zoo pull` prints the view's
    path, so what sits there must be the verified bytes.
    """
    bad, removed, problems = [], [], []
    for path in dict.fromkeys(copies):
        if log:
            log(f"verifying {path} (a separate file at a view's name)")
        try:
            got = sha256_file(path)
        except OSError as exc:
            problems.append(f"cannot read {path}: {exc.strerror or exc}")
            continue
        if got != (result.sha256, result.got_size):
            bad.append(path)
            try:
                os.unlink(path)  # only the planted name: the blob and other views stay
                removed.append(path)
            except OSError as exc:
                problems.append(f"{path} not removed: {exc.strerror or exc}")
    if not bad and not problems:
        return result
    problem = "; ".join([f"{p} is not the blob's bytes (planted or changed)" for p in bad] + problems)
    return replace(result, bad_views=tuple(bad), removed=tuple(removed), problem=problem)


def _rehash(records: list[CachedFile]) -> tuple[VerifyResult, os.stat_result | None]:
    first = records[0]
    ids = tuple(e.model_id for e in records if e.model_id is not None)
    base = VerifyResult(first.sha256, ids, first.blob, first.expected_size, None, None)
    try:
        before = os.stat(first.blob)
        sha256, size = sha256_file(first.blob)
    except OSError as exc:
        return replace(base, problem=f"cannot read {first.blob}: {exc.strerror or exc}"), None
    return replace(base, got_sha256=sha256, got_size=size), before


def _remove_bad(root: Path, result: VerifyResult, before: os.stat_result | None) -> VerifyResult:
    try:
        now = os.stat(result.path)
    except FileNotFoundError:
        return replace(result, problem="already removed by another process")
    if before is None or (now.st_ino, now.st_mtime_ns) != (before.st_ino, before.st_mtime_ns):
        return replace(result, problem="replaced by another process while being verified; not removed")
    info = scan(root)  # fresh: views may have changed since the caller's scan
    done = DeletePlan(root, tuple(blob_items(info, result.sha256)), f"remove corrupt blob {result.sha256}").execute()
    problem = "; ".join(f"{item.path} not removed: {why}" for item, why in done.skipped) or None
    return replace(result, removed=tuple(item.path for item in done.deleted), problem=problem)


