"""On-disk cache layout under ZOO_HOME; what is cached and where.

    ZOO_HOME/
      CACHEDIR.TAG
      blobs/sha256/<sha256>      verified bytes, named by content
      models/<model_id>/<file>   readable view (hard link or symlink to a blob)
      partial/<sha256>.part      unverified bytes of an interrupted download
      locks/<sha256>.lock        per-blob lock
      optimized/<key>.cpu.<level>.ort<version>.onnx   onnxruntime's optimised copies

Only verified bytes ever reach blobs/ (they are published with os.replace), so
a blob's presence means it was verified.

zoo.store.cache_scan describes what is there (scan() -> CacheInfo) without hashing
or deleting anything; zoo.store.cache_plan decides and performs deletions,
re-verification and imports.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from zoo.errors import CacheError, ZooError
from zoo.index.manifest import FileEntry, ModelEntry

CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by zoo (ONNX model zoo client).\n"
    "# For information about cache directory tags see https://bford.info/cachedir/\n"
)


def home() -> Path:
    """The cache root: ZOO_HOME, else the platform's user cache dir for "zoo"."""
    env = os.environ.get("ZOO_HOME")
    if env:
        return Path(env).expanduser().resolve()
    import platformdirs  # small, but only needed when ZOO_HOME is unset

    return Path(platformdirs.user_cache_dir("zoo", appauthor=False))


def blob_path(sha256: str, root: Path | None = None) -> Path:
    return (root or home()) / "blobs" / "sha256" / sha256


def view_path(entry: ModelEntry, file: FileEntry, root: Path | None = None) -> Path:
    return (root or home()) / "models" / entry.id / file.name


def cached_path(entry: ModelEntry, root: Path | None = None) -> Path | None:
    """The verified local model file, or None when it is not cached."""
    root = root or home()
    if not blob_path(entry.sha256, root).is_file():
        return None
    view = view_path(entry, entry.file, root)
    return view if view.is_file() else blob_path(entry.sha256, root)


def partial_path(sha256: str, root: Path | None = None) -> Path:
    return (root or home()) / "partial" / f"{sha256}.part"


def lock_path(sha256: str, root: Path | None = None) -> Path:
    return (root or home()) / "locks" / f"{sha256}.lock"


def ensure_root(root: Path | None = None) -> Path:
    """Create the cache directories and CACHEDIR.TAG; return the root."""
    root = root or home()
    for sub in ("blobs/sha256", "models", "partial", "locks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    tag = root / "CACHEDIR.TAG"
    if not tag.is_file():
        # Written to a unique temp name first so a concurrent reader never sees half a tag.
        tmp = root / f".CACHEDIR.TAG.{os.getpid()}.{uuid.uuid4().hex}"
        tmp.write_text(CACHEDIR_TAG)
        os.replace(tmp, tag)
    return root


def link_view(blob: Path, view: Path) -> str:
    """Make `view` a readable name for `blob`: hard link, else symlink, else copy.

    Returns how it was made ("hardlink", "symlink" or "copy"). The view is built
    under a temp name and moved into place, so it is never half there.
    """
    view.parent.mkdir(parents=True, exist_ok=True)
    tmp = view.with_name(f".{view.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        how = _make_link(blob, tmp)
        os.replace(tmp, view)
        return how
    finally:
        tmp.unlink(missing_ok=True)


def _make_link(blob: Path, tmp: Path) -> str:
    try:
        os.link(blob, tmp)
        return "hardlink"
    except OSError:
        pass  # another filesystem, or links not allowed: try the next way
    try:
        # Relative, so the cache still works after ZOO_HOME is moved.
        os.symlink(os.path.relpath(blob, tmp.parent), tmp)
        return "symlink"
    except OSError:
        pass
    shutil.copyfile(blob, tmp)
    return "copy"


def view_ok(blob: Path, view: Path) -> bool:
    """Whether `view` already shows `blob` (checked with stat only, never by reading)."""
    try:
        return os.path.samefile(blob, view) or view.stat().st_size == blob.stat().st_size
    except OSError:
        return False


@contextmanager
def blob_lock(sha256: str, root: Path | None = None, *, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold locks/<sha256>.lock; an OS (flock) lock, so it dies with a killed holder and never goes stale."""
    from filelock import FileLock, Timeout  # ships with huggingface_hub; only needed to write

    lock = FileLock(lock_path(sha256, root))
    try:
        lock.acquire(blocking=False)
    except Timeout:
        if on_wait:
            on_wait(f"waiting for another zoo process to finish {sha256[:12]} (lock {lock.lock_file})")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


@contextmanager
def disk_errors(root: Path) -> Iterator[None]:
    """Report disk failures (full, read-only, permissions) as CacheError naming the cache."""
    try:
        yield
    except OSError as exc:
        if isinstance(exc, ZooError):  # NotCachedError is a FileNotFoundError: let it through
            raise
        raise CacheError(
            f"cannot use the cache at {root}: {exc}",
            hint="free some space or fix permissions, or set ZOO_HOME to a writable directory",
        ) from exc


_SCAN_NAMES = frozenset({"scan", "CacheInfo", "CachedFile", "PartialFile", "LooseFile", "OptimizedFile", "Kind"})


def __getattr__(name: str) -> Any:
    # scan() and its records live in zoo.store.cache_scan (which imports this module), to keep both modules small;
    # cache.scan(...) and `from zoo.store.cache import CacheInfo` still work, loaded on first use.
    if name in _SCAN_NAMES:
        from zoo.store import cache_scan

        return getattr(cache_scan, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
