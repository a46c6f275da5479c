"""Unpack test-data archives without trusting them.

A tar member can name any path, link anywhere and claim any size. safe_extract
checks every member before writing a byte, extracts into a temp directory
beside `dest` and moves it into place only when all went well, so `dest` is
complete or absent. The extracted folder carries a record of what was extracted
(RECORD: every name and size), so a folder that lost files later (a crash of an
older zoo, a hand-made `rm`) is told apart from a complete one by stat alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import shutil
import stat
import tempfile
import uuid
from pathlib import Path, PureWindowsPath
from typing import TYPE_CHECKING

from zoo import safejson
from zoo.errors import DownloadError
from zoo.store import cache

if TYPE_CHECKING:
    import tarfile

MAX_SIZE = 4 * 1024**3  # total uncompressed bytes; the largest zoo test-data archive is far below
RECORD = ".zoo-extracted.json"  # inside the extracted folder: {"files": {name: size, or -1 for a link}}


def safe_extract(archive: Path, dest: Path, *, max_size: int = MAX_SIZE) -> Path:
    """Extract a .tar or .tar.gz into `dest` (replacing it), refusing anything that could escape it.

    Raises DownloadError naming the archive and the offending member.
    """
    import tarfile  # not needed by most commands

    archive, dest = Path(archive), Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # One extraction into `dest` at a time: two processes pulling the same test data would
    # otherwise race in _replace_dir. The lock lives in ZOO_HOME/locks (never a shared temp
    # folder another user could hold) and is deleted on release.
    try:
        with cache.transient_lock(_lock_for(dest)), tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            _check_members(archive, members, max_size)
            tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
            try:
                # The "data" filter (Python >= 3.11.4) re-checks each member as it is written.
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(tmp, members=members, filter="data")
                else:
                    tar.extractall(tmp, members=members)
                _write_record(tmp)  # inside tmp: published by the same rename as the files
                _replace_dir(tmp, dest)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    except tarfile.TarError as exc:
        raise _refuse(archive, f"it cannot be read safely: {exc}") from exc
    except OSError as exc:
        raise DownloadError(f"cannot extract {archive} into {dest}: {exc.strerror or exc}",
                            hint="check free space and permissions of the cache folder (`zoo cache dir`)") from exc
    return dest


def _lock_for(dest: Path) -> Path:
    """A lock file per destination, in the cache's locks/ folder (not in the destination's)."""
    key = hashlib.sha256(os.fsencode(dest.resolve())).hexdigest()[:32]
    return cache.real_dir(cache.ensure_root(), "locks") / f"extract-{key}.lock"


def _write_record(folder: Path) -> None:
    files: dict[str, int] = {}
    for top, dirs, names in os.walk(folder):
        for name in [*names, *(d for d in dirs if os.path.islink(os.path.join(top, d)))]:
            path = os.path.join(top, name)
            st = os.lstat(path)
            files[os.path.relpath(path, folder).replace(os.sep, "/")] = (
                st.st_size if stat.S_ISREG(st.st_mode) else -1)
    (folder / RECORD).write_text(json.dumps({"files": files}, sort_keys=True), encoding="utf-8")


def missing_members(folder: Path) -> list[str] | None:
    """Names the extraction record lists that `folder` lacks (or holds at another size), by stat only.

    None when there is no readable record (a folder from an older zoo, or not zoo's); [] when complete.
    """
    try:
        files = safejson.loads((folder / RECORD).read_text(encoding="utf-8"))["files"]
        if not isinstance(files, dict):
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    missing = []
    for name, size in sorted(files.items()):
        try:
            st = os.lstat(folder / name)
        except OSError:
            missing.append(name)
            continue
        if isinstance(size, int) and size >= 0 and (not stat.S_ISREG(st.st_mode) or st.st_size != size):
            missing.append(name)
    return missing


def _check_members(archive: Path, members: list[tarfile.TarInfo], max_size: int) -> None:
    total = 0
    links: set[str] = set()
    for member in members:
        problem = _member_problem(member) or _through_link(member, links)
        if problem:
            raise _refuse(archive, f"member {member.name!r} {problem}")
        if member.issym():
            links.add(posixpath.normpath(member.name))
        total += member.size if member.isfile() else 0
    if total > max_size:
        raise _refuse(archive, f"its members declare {total} bytes uncompressed, above the limit of {max_size} bytes")


def _member_problem(member: tarfile.TarInfo) -> str | None:
    """Why `member` must not be extracted, or None when it is safe."""
    if _absolute(member.name):
        return "is an absolute path"
    if ".." in member.name.replace("\\", "/").split("/"):
        return "has a '..' component"
    if member.ischr() or member.isblk() or member.isfifo():
        return "is a device or fifo"
    if member.issym() or member.islnk():
        kind = "symlink" if member.issym() else "hard link"
        # A symlink target is relative to the link's folder; a hard link's to the archive root.
        base = posixpath.dirname(member.name) if member.issym() else ""
        target = posixpath.normpath(posixpath.join(base, member.linkname))
        if _absolute(member.linkname) or target == ".." or target.startswith("../"):
            return f"is a {kind} to {member.linkname!r}, outside the destination"
        return None
    if not (member.isfile() or member.isdir()):
        return "has an unsupported type"
    return None


def _through_link(member: tarfile.TarInfo, links: set[str]) -> str | None:
    """Refuse paths (or link targets) that pass through an earlier symlink member.

    Each link alone may point inside, yet a chain (a -> ., a/up -> .., up/x) climbs out;
    tarfile's "data" filter catches that only on Python >= 3.11.4 / 3.10.12.
    """
    paths = [posixpath.normpath(member.name)]
    if member.issym() or member.islnk():
        base = posixpath.dirname(member.name) if member.issym() else ""
        paths.append(posixpath.normpath(posixpath.join(base, member.linkname)))
    for path in paths:
        parts = path.split("/")
        for i in range(1, len(parts) + (0 if path == paths[0] else 1)):
            prefix = "/".join(parts[:i])
            if prefix in links:
                return (f"goes through the symlink {prefix!r} of the same archive, "
                        "which could lead outside the destination")
    return None


def _absolute(name: str) -> bool:
    return name.startswith(("/", "\\")) or bool(PureWindowsPath(name).drive)


def _replace_dir(tmp: Path, dest: Path) -> None:
    """Move `tmp` to `dest`; an existing `dest` is moved aside first and removed after."""
    if not dest.exists():
        os.replace(tmp, dest)
        return
    old = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.old")
    os.replace(dest, old)
    os.replace(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)


def _refuse(archive: Path, why: str) -> DownloadError:
    return DownloadError(
        f"refusing to extract {archive}: {why}",
        hint=f"nothing was extracted; the archive may be corrupt or malicious: delete {archive} and report its source",
    )
