"""Fetch one FileEntry into the cache: lock, stream, hash, verify, publish.

`decide()` looks at the disk and says what to do; `fetch()` does it. Bytes
arrive in partial/<sha256>.part, are hashed and counted as they stream, and
reach blobs/sha256/<sha256> only through os.replace once they verify: a blob is
complete and verified, or absent. A partial survives failures, Ctrl-C and later
runs, and is resumed with an HTTP Range request.

requests, huggingface_hub, tqdm and filelock are imported inside the functions
that use them: `zoo --help` and `zoo list` must not pay for them.
"""

from __future__ import annotations

import hashlib
import os
import sys
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from zoo.errors import CacheError, DownloadError, HashMismatchError, NotCachedError
from zoo.index.manifest import FileEntry, ModelEntry
from zoo.printable import printable, redact, shown
from zoo.store import cache, hf_cache, interrupt, progress, ranges
from zoo.store.fetched import FetchResult
from zoo.store.hashing import CHUNK_SIZE, HashWriter, copy_hashing
from zoo.store.netpolicy import MAX_WAIT, Settings
from zoo.store.sources import Source, plan, request_headers, request_url
from zoo.store.transport import (
    MAX_REDIRECTS,
    BodyReader,
    SourceFailedError,
    TransientError,
    Watch,
    new_session,
    run_watched,
)

if TYPE_CHECKING:
    import requests

__all__ = ["MAX_REDIRECTS", "FetchResult", "decide", "fetch", "import_file", "offline_from_env"]

Action = Literal["hit", "resume", "download"]
Log = Callable[[str], None]
_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True, slots=True)
class _Job:
    """One file being fetched; everything the steps below share."""

    entry: ModelEntry
    file: FileEntry
    root: Path
    settings: Settings
    progress: progress.Progress
    log: Log
    connections: int  # 1: one stream; more: parallel Range requests when the server serves them
    adaptive: bool  # connections chosen automatically: start with one stream, go parallel if it is slow

    @property
    def partial(self) -> Path:
        return cache.partial_path(self.file.sha256, self.root)

    @property
    def blob(self) -> Path:
        return cache.blob_path(self.file.sha256, self.root)


def offline_from_env() -> bool:
    """Whether ZOO_OFFLINE or HF_HUB_OFFLINE asks for no network, read now."""
    return any(os.environ.get(name, "").strip().lower() in _TRUE for name in ("ZOO_OFFLINE", "HF_HUB_OFFLINE"))


def decide(file: FileEntry, root: Path, *, force: bool) -> Action:
    """What fetch() must do for `file`: reuse the blob, resume a partial, or download."""
    if not force and cache.blob_path(file.sha256, root).is_file():
        return "hit"
    try:
        partial_size = cache.partial_path(file.sha256, root).stat().st_size
    except FileNotFoundError:
        return "download"
    return "resume" if not force and partial_size <= file.size else "download"


def fetch(
    entry: ModelEntry,
    file: FileEntry,
    *,
    root: Path | None = None,
    sources: Sequence[Source] | None = None,
    offline: bool | None = None,
    force: bool = False,
    progress: bool | None = None,
    log: Log | None = None,
    connections: int | None = None,
) -> FetchResult:
    """Make `file` of `entry` a verified local file, downloading it when needed.

    progress: True a bar, False nothing, None a bar on a terminal and a start and
    an end line otherwise. connections: parallel Range requests for this file (None:
    automatic, see zoo.store.ranges: files of ranges.AUTO_SIZE or more start as one
    stream and go to ranges.AUTO_CONNECTIONS when that stream is slow). Raises
    NotCachedError when offline and not cached,
    HashMismatchError when the last source tried served wrong bytes, DownloadError
    when no source delivered, ZooError for unusable ZOO_TIMEOUT-style settings, and
    KeyboardInterrupt (partial kept) when interrupt.request_stop() is called.
    """
    root = root or cache.home()
    log = log or _log_to_stderr
    with cache.disk_errors(root):
        if decide(file, root, force=force) == "hit":
            return _result(entry, file, root, "cache", downloaded=False)
        adopted = None if force else hf_cache.adopt(entry, file, root, log=log)  # huggingface_hub's copy, verified
        if adopted is not None:
            return adopted
        if offline_from_env() if offline is None else offline:
            if cache.blob_path(file.sha256, root).is_file():  # cached, but force asked for the network
                raise DownloadError(f"cannot download {entry.id} again: zoo is offline",
                                    hint="unset ZOO_OFFLINE / HF_HUB_OFFLINE, or drop --force to use the cached file")
            raise NotCachedError(entry.id, str(cache.view_path(entry, file, root)))
        settings = Settings.from_env()  # before any lock or request: a bad setting is exit 2 at once
        shows = _progress(progress, entry, file, log)
        job = _Job(entry, file, cache.ensure_root(root), settings, shows, log,
                   ranges.connections_for(file.size, connections), adaptive=connections is None)
        with cache.blob_lock(file.sha256, root, on_wait=log):
            # Another process may have published the blob while this one waited.
            action = decide(file, root, force=force)
            if action == "hit":
                return _result(entry, file, root, "cache", downloaded=False)
            if action == "download":
                _discard_partial(job)
            url = _download_any(job, plan(entry, file) if sources is None else sources)
        return _result(entry, file, root, redact(url), downloaded=True)


def _progress(asked: bool | None, entry: ModelEntry, file: FileEntry, log: Log) -> progress.Progress:
    return progress.Progress(progress.choose(asked), entry.id, file.name, file.size, log)


def import_file(entry: ModelEntry, file: FileEntry, local_path: Path, root: Path | None = None) -> FetchResult:
    """Verify a local copy of `file` and publish it into the cache (`zoo cache import`).

    Raises HashMismatchError, with the cache and `local_path` left as they were, when the bytes differ.
    """
    local_path = Path(local_path)
    if not local_path.is_file():
        raise CacheError(f"cannot import {local_path}: no such file", hint="pass the path of the downloaded model file")
    root = root or cache.home()
    with cache.disk_errors(root), cache.blob_lock(file.sha256, cache.ensure_root(root), on_wait=_log_to_stderr):
        tmp = cache.partial_path(file.sha256, root).with_suffix(f".{uuid.uuid4().hex}.import")
        try:
            sha256, size = copy_hashing(local_path, tmp)
            if (sha256, size) != (file.sha256, file.size):
                kept = f"nothing: the cache is unchanged and {local_path} was left as it is"
                raise HashMismatchError(entry.id, str(local_path), expected_sha256=file.sha256, got_sha256=sha256,
                                        expected_size=file.size, got_size=size, kept=kept)
            os.replace(tmp, cache.blob_path(file.sha256, root))
        finally:
            tmp.unlink(missing_ok=True)
        return _result(entry, file, root, str(local_path), downloaded=False, relink=True)


def _result(
    entry: ModelEntry, file: FileEntry, root: Path, source: str, *, downloaded: bool, relink: bool = False
) -> FetchResult:
    """Make sure the readable view shows the blob (stat only, no hashing) and describe it."""
    blob, view = cache.blob_path(file.sha256, root), cache.view_path(entry, file, root)
    if downloaded or relink or not cache.view_ok(blob, view):
        cache.link_view(blob, view)
    return FetchResult(entry.id, view, file.sha256, file.size, source, downloaded)


def _download_any(job: _Job, sources: Sequence[Source]) -> str:
    """Try each source in order; return the URL that delivered verified bytes."""
    failures: list[tuple[str, str]] = []
    last: Exception | None = None
    job.progress.start(_resumable_size(job))
    try:
        for n, source in enumerate(sources, 1):
            url = source.url
            try:
                url = request_url(source)
                _download_from(job, source, url)
                job.progress.done(url)
                return url
            except HashMismatchError as exc:
                last, why = exc, (f"wrong bytes: expected sha256 {exc.expected_sha256} ({exc.expected_size} bytes), "
                                  f"got sha256 {exc.got_sha256} ({exc.got_size} bytes); bad bytes deleted")
            except SourceFailedError as exc:
                last, why = exc, str(exc)
            failures.append((shown(url), why))
            then = "trying the next source" if n < len(sources) else "no sources left"
            job.log(f"{job.entry.id}: {shown(url)} failed: {why}; {then}")
    finally:
        job.progress.close()
    summary = _all_failed(job, failures)
    if isinstance(last, HashMismatchError):
        raise last from summary
    raise summary


def _all_failed(job: _Job, failures: list[tuple[str, str]]) -> DownloadError:
    lines = "".join(f"\n  {url}: {why}" for url, why in failures) or (
        "\n  (no sources: a model you added is looked for on your mirrors only, and none is set)")
    hint = "check the network, add a source with --mirror URL or ZOO_MIRROR, or copy the file here and run "
    hint += f"`zoo cache import FILE --id {job.entry.id}`"
    if job.partial.is_file():
        kept = job.partial.stat().st_size
        hint = f"run the same command again to resume ({kept} of {job.file.size} bytes kept in {job.partial}); {hint}"
    return DownloadError(
        f"could not download {job.entry.id} ({job.file.name}, {job.file.size} bytes) "
        f"from any of {len(failures)} sources:{lines}",
        hint=hint,
    )


def _download_from(job: _Job, source: Source, url: str) -> None:
    """Download from one source, retrying transient failures; the partial is kept between tries."""
    headers, retries = request_headers(source), job.settings.retries
    adaptive = job.adaptive and job.connections > 1  # one stream first, parallel only if it is slow
    parallel = job.connections > 1 and not job.adaptive
    with new_session(url) as session:
        for attempt in range(1, retries + 1):
            resumed = job.partial.is_file() and job.partial.stat().st_size > 0
            try:
                if not parallel:
                    try:
                        return _watched_attempt(job, session, url, headers, pace=adaptive)
                    except ranges.GoParallelError as exc:
                        parallel = True
                        job.log(f"{job.entry.id}: {shown(url)}: {exc}; going on over {job.connections} connections")
                try:
                    return _parallel_attempt(job, url, headers)
                except ranges.NoRangesError as exc:
                    parallel = adaptive = False  # for the rest of this source: it answers 200 to Range requests
                    job.log(f"{job.entry.id}: {shown(url)} {exc}; downloading over one connection")
                return _watched_attempt(job, session, url, headers, pace=False)
            except TransientError as exc:
                if attempt == retries:
                    raise SourceFailedError(f"{exc} (gave up after {attempt} attempts)") from exc
                delay = exc.delay if exc.delay is not None else job.settings.backoff * 2 ** (attempt - 1)
                delay = min(delay, MAX_WAIT)
                job.log(f"{job.entry.id}: {shown(url)}: {exc}; retry {attempt}/{retries - 1} in {delay:.2f}s")
                interrupt.sleep(delay)
            except HashMismatchError:
                if not resumed or attempt == retries:
                    raise
                # The kept prefix may be what was wrong (it can come from another source or run).
                job.log(f"{job.entry.id}: resumed bytes did not verify; downloading {shown(url)} from the start")


def _watched_attempt(job: _Job, session: requests.Session, url: str, headers: dict[str, str], *, pace: bool) -> None:
    """One attempt under a Watch: too slow, or a stop request, ends it whatever it was waiting for.

    pace: judge the stream's speed once (ranges.Pace) and raise ranges.GoParallelError if it is slow.
    """
    run_watched(job.settings, lambda watch: _stream_once(job, session, url, headers, watch, pace))
    interrupt.check()


def _parallel_attempt(job: _Job, url: str, headers: dict[str, str]) -> None:
    """One attempt over job.connections connections, each under its own Watch; then verify and publish."""
    if _resumable_size(job) == job.file.size and not ranges.has_record(job.partial):
        return _verify_and_publish(job, url, _sha256_prefix(job.partial, job.file.size), job.file.size)
    want = ranges.Want(url, headers, job.partial, job.file.size, job.settings, job.progress, job.connections)
    hasher, got = ranges.download(want, hashlib.sha256())
    interrupt.check()
    return _verify_and_publish(job, url, hasher, got)


def _stream_once(job: _Job, session: requests.Session, url: str, headers: dict[str, str], watch: Watch,
                 pace: bool) -> None:
    """One GET: resume or restart the partial, stream it to disk, verify and publish."""
    # A partial written by parallel connections has holes: cut it back to the prefix its record says is done.
    ranges.to_prefix(job.partial, job.file.size)
    offset = _resumable_size(job)
    if offset == job.file.size:
        return _verify_and_publish(job, url, _sha256_prefix(job.partial, offset), offset)
    if offset:
        headers = {**headers, "Range": f"bytes={offset}-"}
    with session.get(url, headers=headers, stream=True, timeout=job.settings.timeout, allow_redirects=True) as resp:
        offset = _accept(job, resp, offset)
        hasher = _sha256_prefix(job.partial, offset)  # read the kept prefix once, before appending
        watch.body_started = True
        got = _write_body(job, resp, hasher, offset, watch, pace)
    if got < job.file.size and watch.reason is not None:
        raise SourceFailedError(watch.reason)
    return _verify_and_publish(job, url, hasher, got)


def _resumable_size(job: _Job) -> int:
    """The size of the partial, when it can be kept (0: none, or it is longer than the file)."""
    try:
        size = job.partial.stat().st_size
    except FileNotFoundError:
        return 0
    if size > job.file.size:
        _discard_partial(job)
        return 0
    return size


def _discard_partial(job: _Job) -> None:
    job.partial.unlink(missing_ok=True)
    ranges.forget(job.partial)


def _accept(job: _Job, resp: requests.Response, offset: int) -> int:
    """Check the response status; return the offset its body starts at (0: restart)."""
    status = resp.status_code
    if status == 416:
        _discard_partial(job)
        raise TransientError(f"HTTP 416: cannot resume at byte {offset}; restarting from 0", delay=0.0)
    ranges.check_status(resp)
    if status == 206:
        content_range = resp.headers.get("Content-Range", "")
        if ranges.range_start(content_range) != offset:
            _discard_partial(job)
            raise TransientError(f"asked for bytes={offset}-, got Content-Range {shown(content_range)!r}; "
                                 "restarting", delay=0.0)
        return offset
    if offset:
        job.log(f"{job.entry.id}: {shown(resp.url)} ignored the Range request; downloading from byte 0")
    return 0


def _write_body(job: _Job, resp: requests.Response, hasher: Any, offset: int, watch: Watch, pace: bool) -> int:
    """Write the body at `offset` of the partial, hashing as it goes; return the bytes seen.

    This thread only reads the socket, straight into HashWriter's reusable
    buffers; HashWriter hashes and writes in two more threads. Each read returns
    whatever has arrived, so the Watch sees a trickle as it happens. Stops after
    the first buffer that passes the expected size.
    """
    job.progress.attempt(offset)
    reader = BodyReader(resp)
    judge = ranges.Pace(resp, job.file.size, offset) if pace else None
    fd = os.open(job.partial, os.O_WRONLY | os.O_CREAT | (0 if offset else os.O_TRUNC), 0o644)
    try:
        with HashWriter(hasher, fd, offset) as sink:
            got = _pump(job, reader, sink, offset, watch, judge)
        if got == job.file.size:
            os.fsync(fd)  # once, before publishing: the blob must survive a power cut
    finally:
        os.close(fd)
    return got


def _pump(job: _Job, reader: BodyReader, sink: HashWriter, got: int, watch: Watch, pace: ranges.Pace | None) -> int:
    """Fill buffers from the body and hand each over when full (or at the end); return the bytes seen.

    Raises ranges.GoParallelError (everything received is written) when `pace` finds the stream slow.
    """
    size = job.file.size
    while got <= size:
        buffer, filled = sink.take(), 0
        view = memoryview(buffer)
        try:
            while filled < len(view) and (count := reader.readinto(view[filled:])):
                filled += count
                watch.add(count)
                job.progress.update(count)
        finally:  # also when the read failed: what arrived is written, a prefix to resume from
            view.release()
            sink.put(buffer, filled, write=got + filled <= size)
        got += filled
        if filled < len(buffer):
            break  # the end of the body
        if pace is not None:
            pace.check(got)
    return got


def _verify_and_publish(job: _Job, url: str, hasher: Any, got: int) -> None:
    """Move the partial to its blob path if it verifies; otherwise delete it and raise."""
    if got < job.file.size:
        raise TransientError(f"connection closed after {got} of {job.file.size} bytes")
    sha256 = hasher.hexdigest()
    if got != job.file.size or sha256 != job.file.sha256:
        _discard_partial(job)
        raise HashMismatchError(job.entry.id, shown(url), expected_sha256=job.file.sha256, got_sha256=sha256,
                                expected_size=job.file.size, got_size=got)
    os.replace(job.partial, job.blob)
    ranges.forget(job.partial)


def _sha256_prefix(path: Path, size: int) -> Any:
    """A sha256 object fed with the first `size` bytes of `path`."""
    hasher = hashlib.sha256()
    if size:
        with open(path, "rb") as f:
            while chunk := f.read(min(CHUNK_SIZE, size)):
                hasher.update(chunk)
                size -= len(chunk)
    return hasher


def _log_to_stderr(message: str) -> None:
    sys.stderr.write(f"zoo: {printable(message)}\n")
