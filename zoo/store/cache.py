"""On-disk cache layout under ZOO_HOME; what is cached and where.

    ZOO_HOME/
      CACHEDIR.TAG               written when zoo creates the cache: marks the folder as zoo's
      blobs/sha256/<sha256>      verified bytes, named by content
      models/<model_id>/<file>   readable view (hard link or symlink to a blob)
      partial/<sha256>.part      unverified bytes of an interrupted download
      locks/<sha256>.lock        per-blob lock
      optimized/<sha256>.cpu.<level>.ort<version>.onnx   onnxruntime's optimised copies (+ .json record)
      trash/                     folders being deleted: renamed here first, so a crash never leaves half

Only verified bytes ever reach blobs/ (they are published with os.replace), so
a blob's presence means it was verified. A view is trusted only while it is the
blob itself (the same inode); anything else at a view's name is not run.
zoo creates every folder itself and refuses a symlink or file where one should
be, so no write is redirected out of ZOO_HOME.

zoo.store.cache_scan describes what is there (scan() -> CacheInfo) without hashing
or deleting anything; zoo.store.cache_plan decides and performs deletions,
re-verification and imports.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from zoo.errors import CacheError, ZooError
from zoo.index.manifest import FileEntry, ModelEntry

CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by zoo (ONNX model zoo client).\n"
    "# For information about cache directory tags see https://bford.info/cachedir/\n"
)
_ZOO_TAG_LINE = "created by zoo (ONNX model zoo client)"
# Every top-level name zoo writes: fingerprints/ (remembered sha256 of local model files) and index/ (the
# compiled index) are rebuilt when missing; manifests/ holds what `zoo add` wrote for the user: never cleared.
TOP_NAMES = frozenset({"CACHEDIR.TAG", "blobs", "models", "partial", "locks", "optimized", "trash", "fingerprints",
                       "index", "manifests"})
_SUBDIRS = (("blobs",), ("blobs", "sha256"), ("models",), ("partial",), ("locks",))


def home() -> Path:
    """The cache root: ZOO_HOME, else the platform's user cache dir for "zoo".

    Raises CacheError when that path exists and is not a folder.
    """
    env = os.environ.get("ZOO_HOME")
    if env:
        root = Path(env).expanduser().resolve()
    else:
        import platformdirs  # small, but only needed when ZOO_HOME is unset

        root = Path(platformdirs.user_cache_dir("zoo", appauthor=False))
    name = "ZOO_HOME" if env else "the cache folder"
    hint = "point ZOO_HOME at a folder (zoo creates it when missing), or unset it for the default"
    try:
        is_file = root.exists() and not root.is_dir()
    except OSError as exc:  # a name over the file system's limit (ENAMETOOLONG), a folder zoo may not search
        from zoo.printable import clipped

        raise CacheError(f"{name} {clipped(str(root))} cannot be used: {exc.strerror or exc}", hint=hint) from None
    if is_file:
        raise CacheError(f"{name} {root} is a file, not a folder", hint=hint)
    return root


def blob_path(sha256: str, root: Path | None = None) -> Path:
    return (root or home()) / "blobs" / "sha256" / sha256


def view_path(entry: ModelEntry, file: FileEntry, root: Path | None = None) -> Path:
    return (root or home()) / "models" / entry.id / file.name


def cached_path(entry: ModelEntry, root: Path | None = None) -> Path | None:
    """The verified local model file, or None when it is not cached.

    The readable view is returned only while it is the blob (same inode, stat only); a file
    planted or replaced at the view's name is never run: the blob itself is returned instead.
    """
    root = root or home()
    blob = blob_path(entry.sha256, root)
    try:
        if not stat.S_ISREG(os.lstat(blob).st_mode):  # a link planted in blobs/ is not a verified blob
            return None
    except OSError:
        return None
    view = view_path(entry, entry.file, root)
    return view if view_ok(blob, view) else blob


def partial_path(sha256: str, root: Path | None = None) -> Path:
    return (root or home()) / "partial" / f"{sha256}.part"


def lock_path(sha256: str, root: Path | None = None) -> Path:
    return (root or home()) / "locks" / f"{sha256}.lock"


def real_dir(root: Path, *parts: str) -> Path:
    """root/parts..., each created as a real folder when missing.

    Raises CacheError when a symlink or a file stands at one of those names: writing through it could
    land outside the cache.
    """
    path = root
    for part in parts:
        path = path / part
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            with suppress(FileExistsError):  # another process made it first
                os.mkdir(path)
            st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
            raise _not_a_folder(path, st)
    return path


def _not_a_folder(path: Path, st: os.stat_result) -> CacheError:
    if stat.S_ISLNK(st.st_mode):
        what = f"is a symlink to {os.readlink(path)}"
    else:
        what = "is a file, not a folder"
    return CacheError(f"refusing to write in the cache: {path} {what}; zoo never writes through links or "
                      "into names it did not create",
                      hint=f"remove it (`rm {path}`) and run the command again; `zoo cache verify` reports "
                           "what else is wrong")


def ensure_root(root: Path | None = None) -> Path:
    """Create the cache directories and CACHEDIR.TAG (zoo's marker); return the root."""
    root = root or home()
    root.mkdir(parents=True, exist_ok=True)
    for parts in _SUBDIRS:
        real_dir(root, *parts)
    tag = root / "CACHEDIR.TAG"
    if not tag.is_file():
        import uuid  # here, not at the top: zoo.load of a cached model reads the cache and writes nothing

        # Written to a unique temp name first so a concurrent reader never sees half a tag.
        tmp = root / f".CACHEDIR.TAG.{os.getpid()}.{uuid.uuid4().hex}"
        tmp.write_text(CACHEDIR_TAG)
        os.replace(tmp, tag)
    return root


def is_zoo_cache(root: Path) -> bool:
    """Whether `root` is a cache zoo made: its CACHEDIR.TAG names zoo, or (a cache from before the tag)
    it holds blobs/sha256/ and nothing at the top that zoo does not write."""
    try:
        if _ZOO_TAG_LINE in (root / "CACHEDIR.TAG").read_text(errors="replace")[:1000]:
            return True
    except OSError:
        pass  # no tag: look at the layout
    try:
        names = os.listdir(root)
    except OSError:
        return False
    strays = [n for n in names if n not in TOP_NAMES and not n.startswith(".CACHEDIR.TAG.")]
    return (root / "blobs" / "sha256").is_dir() and not strays


def link_view(blob: Path, view: Path) -> str:
    """Make `view` a readable name for `blob`: hard link, else symlink, else copy.

    Returns how it was made ("hardlink", "symlink" or "copy"). The view is built
    under a temp name and moved into place, so it is never half there. The view's
    folder must be a real folder under the cache's models/ (CacheError otherwise).
    """
    import uuid  # only writers need it (see ensure_root)

    root = blob.parent.parent.parent  # blobs/sha256/<sha256>
    real_dir(root, "models", view.parent.name)
    tmp = view.with_name(f".{view.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        how = _make_link(blob, tmp)
        os.replace(tmp, view)  # replaces a link at `view` itself, never what it points to
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
    import shutil  # only writers need it (see ensure_root)

    shutil.copyfile(blob, tmp)
    return "copy"


def view_ok(blob: Path, view: Path) -> bool:
    """Whether `view` is `blob` itself: a hard link, or a symlink to it (stat only, never by reading).

    A file of the right size is not enough: anyone can plant one. On a filesystem without links the
    view is a copy, and this says False: callers then use the blob, or make the copy again.
    """
    try:
        return os.path.samefile(blob, view)
    except OSError:
        return False


@contextmanager
def blob_lock(sha256: str, root: Path | None = None, *, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold locks/<sha256>.lock; an OS (flock) lock, so it dies with a killed holder and never goes stale.

    Raises CacheError when the lock or the partial download of this blob is a symlink (zoo never makes
    one there: opening it would write wherever it points).
    """
    from filelock import FileLock, Timeout  # ships with huggingface_hub; only needed to write

    from zoo.store import interrupt

    root = root or home()
    for path in (lock_path(sha256, root), partial_path(sha256, root)):
        if path.is_symlink():
            raise _not_a_folder(path, os.lstat(path))
    lock = FileLock(lock_path(sha256, root))
    try:
        lock.acquire(blocking=False)
    except Timeout:
        if on_wait:
            on_wait(f"waiting for another zoo process to finish {sha256[:12]} (lock {lock.lock_file})")
        while True:  # in short waits: a worker thread sees no KeyboardInterrupt, only the stop flag
            try:
                lock.acquire(timeout=0.1)
                break
            except Timeout:
                interrupt.check()
    try:
        yield
    finally:
        lock.release()


@contextmanager
def transient_lock(path: Path) -> Iterator[None]:
    """Hold an flock on `path` and delete the file on release, so no lock file is left behind.

    Deleting a lock file is only safe when every taker checks, once it holds the lock, that the name
    still is the file it locked (a waiter may have opened the old file); this does.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: a plain FileLock, whose file stays
        from filelock import FileLock

        with FileLock(path):
            yield
        return
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            held = os.fstat(fd)
            now = os.lstat(path)
        except FileNotFoundError:  # the holder before us deleted it: lock the new one
            os.close(fd)
            continue
        except BaseException:
            os.close(fd)
            raise
        if (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino):
            break
        os.close(fd)
    try:
        yield
    finally:
        with suppress(OSError):
            os.unlink(path)  # while still held: a waiter then sees another inode and starts again
        os.close(fd)


def discard(root: Path, path: Path) -> None:
    """Delete the folder tree `path` all at once: moved into trash/ first (one rename), then removed.

    A crash can leave a half-deleted tree only in trash/, which empty_trash() (run by every deletion)
    finishes; the tree's own name shows it whole or not at all.
    """
    import shutil  # only deletions need these (see ensure_root)
    import uuid

    for _ in range(3):
        target = real_dir(root, "trash") / uuid.uuid4().hex
        try:
            os.rename(path, target)
        except FileNotFoundError:
            if not os.path.lexists(path):
                raise
            continue  # trash/ was removed by another process's empty_trash() in between: make it again
        shutil.rmtree(target, ignore_errors=True)
        with suppress(OSError):
            target.parent.rmdir()  # only when empty: another process may be using it
        return
    raise CacheError(f"cannot move {path} into {root / 'trash'}", hint="run the command again")


def empty_trash(root: Path) -> None:
    """Finish deletions a killed zoo process left in trash/; remove trash/ when it is empty."""
    trash = root / "trash"
    try:
        if trash.is_symlink() or not trash.is_dir():
            return
        names = os.listdir(trash)
    except OSError:
        return
    import shutil  # only deletions need it (see ensure_root)

    for name in names:
        item = trash / name
        if item.is_dir() and not item.is_symlink():
            shutil.rmtree(item, ignore_errors=True)
        else:
            with suppress(OSError):
                item.unlink()
    with suppress(OSError):
        trash.rmdir()


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

