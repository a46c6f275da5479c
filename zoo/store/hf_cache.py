"""Reuse zoo files already in the user's Hugging Face hub cache instead of downloading them again.

huggingface_hub keeps a file fetched from a repo as

    <hub cache>/models--onnxmodelzoo--legacy_models/
      refs/main                            the commit `main` pointed at
      snapshots/<commit>/<path in repo>    a symlink to ../../blobs/<etag> (a real file where links fail)
      blobs/<etag>                         the bytes; an LFS file's etag is its sha256

zoo's sources are onnxmodelzoo/legacy_models with the zoo path and onnxmodelzoo/<id> with <id>.onnx
(zoo.store.sources.plan), so those are the places looked at. find() only looks (stat, no reading);
adopt() reads a candidate once, hashing it, and publishes it into zoo's blob store by hard link
(else a copy made while hashing): no second download and, with a link, no second copy on disk.
A candidate with the wrong bytes is never published; the log says which file and why.

Nothing here imports huggingface_hub: its constants fix the cache location at import time, and
the location must follow the environment at call time.
"""

from __future__ import annotations

import os
import stat
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from zoo.index.manifest import FileEntry, ModelEntry
from zoo.store import cache, sources
from zoo.store.fetched import FetchResult
from zoo.store.hashing import copy_hashing, sha256_file

Log = Callable[[str], None]

_OFF = ("0", "false", "no", "off")


@dataclass(frozen=True, slots=True)
class Candidate:
    """A file in the Hugging Face cache that should hold a zoo file's bytes (not yet verified)."""

    repo_id: str
    path: Path  # the real file: a blob, or a snapshot file where huggingface_hub could not symlink


def enabled() -> bool:
    """Whether reuse is on: ZOO_HF_CACHE=0 (or off/false/no) turns it off; read now."""
    return os.environ.get("ZOO_HF_CACHE", "").strip().lower() not in _OFF


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache, resolved from the environment now, as huggingface_hub resolves it at import.

    HF_HUB_CACHE, then the legacy HUGGINGFACE_HUB_CACHE, then HF_HOME/hub, then
    $XDG_CACHE_HOME/huggingface/hub, then ~/.cache/huggingface/hub.
    """
    env = os.environ
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(name):
            return _expand(env[name])
    if env.get("HF_HOME"):
        return _expand(env["HF_HOME"]) / "hub"
    return _expand(env.get("XDG_CACHE_HOME") or "~/.cache") / "huggingface" / "hub"


def _expand(value: str) -> Path:
    return Path(os.path.expandvars(os.path.expanduser(value)))


def candidates(entry: ModelEntry, file: FileEntry, hub: Path | None = None) -> list[Candidate]:
    """Files in the hub cache that may be `file`, best first, each real file once (stat only).

    In each zoo repo (legacy_models, then onnxmodelzoo/<id>): the blob named by the sha256 (an LFS
    blob's name is its sha256, so this is the cheap hit), then the file in the snapshot `main`
    points at, then in the other snapshots.
    """
    hub = hub_cache_dir() if hub is None else hub
    out: list[Candidate] = []
    seen: set[str] = set()
    for repo_id, filename in _repo_files(entry, file):
        repo = hub / ("models--" + repo_id.replace("/", "--"))
        for path in (repo / "blobs" / file.sha256, *_snapshot_files(repo, filename)):
            real = _regular_file(path)
            if real is not None and real not in seen:
                seen.add(real)
                out.append(Candidate(repo_id, Path(real)))
    return out


def find(entry: ModelEntry, file: FileEntry) -> Path | None:
    """The best Hugging Face cache file that may hold `file` (unverified), or None."""
    found = candidates(entry, file)
    return found[0].path if found else None


def _repo_files(entry: ModelEntry, file: FileEntry) -> Iterator[tuple[str, str]]:
    # The Hugging Face sources zoo itself would download from, so both stay in step.
    for source in sources.plan(entry, file):
        if source.kind == "huggingface" and source.repo_id and source.filename:
            yield source.repo_id, source.filename


def _snapshot_files(repo: Path, filename: str) -> list[Path]:
    try:
        commits = sorted(os.listdir(repo / "snapshots"))
    except OSError:
        return []
    try:
        ref = (repo / "refs" / sources.HF_REVISION).read_text().strip()
    except OSError:
        ref = ""
    if ref in commits:
        commits.remove(ref)
        commits.insert(0, ref)
    return [repo / "snapshots" / commit / filename for commit in commits]


def _regular_file(path: Path) -> str | None:
    """The real path of `path` when it is (or links to) a regular file."""
    real = os.path.realpath(path)
    try:
        return real if stat.S_ISREG(os.stat(real).st_mode) else None
    except OSError:
        return None


def adopt(entry: ModelEntry, file: FileEntry, root: Path | None = None, *, log: Log | None = None,
          ) -> FetchResult | None:
    """Publish `file` into zoo's cache from the Hugging Face cache, when a copy there verifies.

    Makes no network request. Returns None when the hub cache has no copy with the right bytes
    (each rejected candidate is reported through `log`), or when ZOO_HF_CACHE turns reuse off.
    """
    if not enabled():
        return None
    found = candidates(entry, file)
    if not found:
        return None

    root = root or cache.home()
    log = log or _log_to_stderr
    blob, view = cache.blob_path(file.sha256, root), cache.view_path(entry, file, root)
    with cache.disk_errors(root), cache.blob_lock(file.sha256, cache.ensure_root(root), on_wait=log):
        # Another process may have published the blob while this one waited for the lock.
        source = "cache" if blob.is_file() else _publish_first(entry, file, found, root, log)
        if source is None:
            return None
        if not cache.view_ok(blob, view):
            cache.link_view(blob, view)
    return FetchResult(entry.id, view, file.sha256, file.size, source, downloaded=False)


def _publish_first(entry: ModelEntry, file: FileEntry, found: list[Candidate], root: Path, log: Log) -> str | None:
    """Publish the first candidate that verifies; return its path, or None when none does."""
    for candidate in found:
        how = _publish(entry, file, candidate, root, log)
        if how is not None:
            log(f"{entry.id}: reused {candidate.path} from the Hugging Face cache ({how}); nothing downloaded")
            return str(candidate.path)
    return None


def _publish(entry: ModelEntry, file: FileEntry, candidate: Candidate, root: Path, log: Log) -> str | None:
    """Link (else copy) one candidate to a temp name, hash it once, and move it into blobs/ if it verifies.

    Returns "hard link" or "copy", or None (and logs why) when the bytes are wrong. The temp name is a
    partial/*.import, which `zoo cache prune` recognises if a crash leaves it behind.
    """
    try:
        size = candidate.path.stat().st_size
    except OSError as exc:
        log(f"{entry.id}: cannot read {candidate.path} in the Hugging Face cache: {exc.strerror or exc}")
        return None
    if size != file.size:  # cheap: no need to read a file of the wrong size
        _reject(entry, file, candidate, log, f"{size} bytes")
        return None
    if not os.access(candidate.path, os.R_OK):  # checked here: later OSErrors are about zoo's own cache
        log(f"{entry.id}: cannot read {candidate.path} in the Hugging Face cache: permission denied")
        return None
    tmp = cache.partial_path(file.sha256, root).with_suffix(f".{uuid.uuid4().hex}.import")
    try:
        how, sha256, size = _link_or_copy(candidate.path, tmp)
        if (sha256, size) != (file.sha256, file.size):
            _reject(entry, file, candidate, log, f"sha256 {sha256} ({size} bytes)")
            return None
        os.replace(tmp, cache.blob_path(file.sha256, root))
        return how
    finally:
        tmp.unlink(missing_ok=True)


def _link_or_copy(src: Path, tmp: Path) -> tuple[str, str, int]:
    """Hard-link `src` to `tmp` and hash what was linked, else copy it while hashing; the bytes are read once.

    Hashing the link (the very inode that will be published), not `src`, means nothing can change
    between the check and the publication.
    """
    try:
        os.link(src, tmp)
    except OSError:
        pass  # another filesystem, or links not allowed: copy
    else:
        return ("hard link", *sha256_file(tmp))
    return ("copy", *copy_hashing(src, tmp))


def _reject(entry: ModelEntry, file: FileEntry, candidate: Candidate, log: Log, got: str) -> None:
    log(f"{entry.id}: ignored {candidate.path} in the Hugging Face cache: expected sha256 {file.sha256} "
        f"({file.size} bytes), got {got}; it was not used (remove it with `hf cache rm model/{candidate.repo_id}`)")


def _log_to_stderr(message: str) -> None:
    sys.stderr.write(f"zoo: {message}\n")
