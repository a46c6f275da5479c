"""One file over several connections: parallel Range requests into one partial, hashed in order.

Real links often cap each connection (a CDN's per-flow limit, a congested
path), so a large file comes faster over several. The file is cut into pieces
(PIECES_PER_CONNECTION per connection, between MIN_PIECE and MAX_PIECE bytes);
each connection takes the lowest piece nobody has, asks for it with
`Range: bytes=A-B` and pwrites what arrives at its place in partial/<sha256>.part.
Because the pieces are taken in order, the bytes done from the start of the file
grow almost as fast as the download, and one thread hashes them as they do: at
the end only the last few pieces are left to hash.

Resume is per piece. partial/<sha256>.ranges records, for each piece, how many of
its bytes are on disk; it is rewritten atomically every SAVE_EVERY seconds and at
the end of each attempt, and only ever claims bytes already written, so a kill -9
loses at most the last SAVE_EVERY seconds. A partial without a record is a plain
prefix (what one connection writes). The first request is the probe: a server
that answers it with 200 instead of 206 ignores ranges, and the caller falls back
to one connection.

Automatic choice (no -c): a file of AUTO_SIZE bytes or more starts as one
stream; if after PACE_SECONDS that stream brings less than SLOW_STREAM bytes/s,
the server announced `Accept-Ranges: bytes` and at least AUTO_SIZE / 2 bytes are
left, the stream stops (what it got is a prefix) and AUTO_CONNECTIONS connections
fetch the rest. One fast connection is left alone: on loopback or a fast LAN it
is the cheapest way, and parallel connections there only add CPU work (an extra
read of the file for hashing). `zoo pull -c N` / fetch(connections=N) asks for N
from the start (1: never parallel).
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo import safejson
from zoo.counts import count_of
from zoo.printable import shown
from zoo.store.hashing import CHUNK_SIZE, EarlySync, pwrite_all
from zoo.store.netpolicy import MAX_WAIT, Settings, retry_after
from zoo.store.transport import BodyReader, SourceFailedError, TransientError, Watch, new_session, run_watched

if TYPE_CHECKING:
    import requests

    from zoo.store.progress import Progress

MIB = 1024 * 1024
AUTO_SIZE = 64 * MIB  # below this, a connection's start-up costs more than a second connection saves
PACE_SECONDS = 1.0  # how long one automatic stream runs before its speed is judged
SLOW_STREAM = 100e6  # bytes/s: a stream slower than this is likely capped per connection
AUTO_CONNECTIONS = 4
MAX_CONNECTIONS = 16
PIECES_PER_CONNECTION = 4  # enough pieces that the in-order prefix keeps up and slow connections even out
MIN_PIECE = 1 * MIB
MAX_PIECE = 64 * MIB
SAVE_EVERY = 0.5  # seconds between rewrites of the ranges record
RECORD_VERSION = 1


class NoRangesError(Exception):
    """The server answered a Range request with the whole file: use one connection."""


class GoParallelError(Exception):
    """An automatic stream is slow and the server serves ranges: continue over several connections."""


class Pace:
    """Judges an automatic stream once, PACE_SECONDS after its body started."""

    def __init__(self, resp: requests.Response, size: int, offset: int) -> None:
        self.armed = resp.headers.get("Accept-Ranges", "").strip().lower() == "bytes"
        self.size, self.offset, self.started = size, offset, time.monotonic()

    def check(self, got: int) -> None:
        """Raise GoParallelError when, the first time this is called after PACE_SECONDS, the stream is slow."""
        seconds = time.monotonic() - self.started
        if not self.armed or seconds < PACE_SECONDS:
            return
        self.armed = False
        rate = (got - self.offset) / seconds
        if rate < SLOW_STREAM and self.size - got >= AUTO_SIZE // 2:
            raise GoParallelError(f"one connection brings {rate / 1e6:.0f} MB/s")


@dataclass(frozen=True, slots=True)
class Want:
    """What every connection of one parallel attempt needs to know."""

    url: str
    headers: dict[str, str]
    partial: Path
    size: int
    settings: Settings
    progress: Progress
    connections: int


def connections_for(size: int, asked: int | None) -> int:
    """How many connections to use for a file of `size` bytes (`asked`: None for automatic)."""
    if asked is not None:
        return max(1, min(int(asked), MAX_CONNECTIONS))
    return AUTO_CONNECTIONS if size >= AUTO_SIZE else 1


def plan_pieces(size: int, connections: int) -> list[tuple[int, int]]:
    """[start, end) of each piece: PIECES_PER_CONNECTION per connection, within MIN_PIECE..MAX_PIECE."""
    piece = -(-size // max(1, connections * PIECES_PER_CONNECTION))
    piece = max(MIN_PIECE, min(MAX_PIECE, piece))
    return [(start, min(start + piece, size)) for start in range(0, size, piece)]


def record_path(partial: Path) -> Path:
    return partial.with_suffix(".ranges")


def has_record(partial: Path) -> bool:
    return record_path(partial).is_file()


def forget(partial: Path) -> None:
    """Delete the ranges record of `partial` (the partial was published, discarded or made a prefix)."""
    for path in (record_path(partial), record_path(partial).with_suffix(".ranges.tmp")):
        path.unlink(missing_ok=True)


def to_prefix(partial: Path, size: int) -> None:
    """Turn a parallel partial into a plain prefix: cut it where its record says the done bytes end."""
    pieces = _load(partial, size)
    if pieces is None:
        forget(partial)  # no record, or an unusable one: the partial stays what it is
        return
    prefix = _frontier(pieces)
    if partial.is_file():
        os.truncate(partial, min(prefix, partial.stat().st_size))
    forget(partial)


def range_start(content_range: str) -> int | None:
    """The first byte of a `Content-Range: bytes START-END/TOTAL` header."""
    unit, _, spec = content_range.strip().partition(" ")
    start = count_of(spec.partition("-")[0])
    return start if unit == "bytes" else None


def _range_total(content_range: str) -> int | None:
    return count_of(content_range.rpartition("/")[2].strip())


def check_status(resp: requests.Response) -> None:
    """Raise TransientError for 429 and 5xx (honouring Retry-After), SourceFailedError for other non-2xx."""
    status, reason = resp.status_code, shown(resp.reason or "")
    if status == 429 or status >= 500:
        delay = retry_after(resp.headers.get("Retry-After"), time.time())
        if delay is not None and delay >= MAX_WAIT:  # "come back in an hour": better try the next source now
            raise SourceFailedError(f"HTTP {status} {reason}, Retry-After {shown(resp.headers['Retry-After'])!r}: "
                                    f"not waiting {MAX_WAIT:g} s or more")
        raise TransientError(f"HTTP {status} {reason}", delay=delay)
    if status not in (200, 206):
        code = resp.headers.get("X-Error-Code")
        raise SourceFailedError(f"HTTP {status} {reason}" + (f" ({shown(code)})" if code else ""))


def download(want: Want, hasher: Any) -> tuple[Any, int]:
    """Fetch the missing pieces of want.partial over want.connections connections; return (hasher, bytes hashed).

    The hasher has seen the file's first `bytes hashed` bytes, in order (the whole file
    on success). Raises NoRangesError when the server ignores ranges (the partial is then
    a plain prefix), and the first connection's error, after saving the record, otherwise.
    """
    pieces = _load(want.partial, want.size) or _from_prefix(want.partial, want.size, want.connections)
    try:
        fd = os.open(want.partial, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            hashed = _Run(want, pieces, fd).go(hasher)
        finally:
            os.close(fd)
    except NoRangesError:
        to_prefix(want.partial, want.size)
        raise
    return hasher, hashed


class _Run:
    """One parallel attempt: the shared piece table, the connection threads and the in-order hasher."""

    def __init__(self, want: Want, pieces: list[list[int]], fd: int) -> None:
        self.want, self.pieces, self.fd = want, pieces, fd  # pieces: [start, end, done] each
        self.error: BaseException | None = None
        self.ranges_ok = threading.Event()  # the probe got a 206: the other connections may start
        self.over = threading.Event()
        self._lock = threading.Condition()
        self._next = 0
        self._watches: list[Watch] = []
        self._sync: EarlySync | None = None

    def go(self, hasher: Any) -> int:
        todo = sum(1 for start, end, done in self.pieces if done < end - start)
        count = max(1, min(self.want.connections, todo))
        workers = [threading.Thread(target=self._connection, args=(n == 0,), name=f"zoo-range-{n}", daemon=True)
                   for n in range(count)]
        hashed: list[int] = [0]
        hashing = threading.Thread(target=self._hash_in_order, args=(hasher, hashed), name="zoo-range-hash",
                                   daemon=True)
        self.want.progress.attempt(sum(p[2] for p in self.pieces))
        self._sync = EarlySync(self.fd)
        for thread in (*workers, hashing):
            thread.start()
        try:
            for thread in workers:
                while thread.is_alive():
                    thread.join(SAVE_EVERY)
                    _save(self.want.partial, self.want.size, self._snapshot())
        except BaseException as exc:  # KeyboardInterrupt in this thread: stop the connections too
            self._end(exc)
            raise
        finally:
            self._end(None)
            for thread in (*workers, hashing):  # none may touch the fd once this returns
                thread.join()
            self._sync.close()
            _save(self.want.partial, self.want.size, self._snapshot())
        if self.error is not None:
            raise self.error
        if _frontier(self.pieces) == self.want.size:
            os.fsync(self.fd)  # once, before publishing: the blob must survive a power cut
        return hashed[0]

    def _snapshot(self) -> list[list[int]]:
        with self._lock:
            return [list(p) for p in self.pieces]

    def _end(self, error: BaseException | None) -> None:
        """Stop every connection (the first error is the one raised) and let the hasher finish."""
        with self._lock:
            if error is not None and self.error is None:
                self.error = error
            watches = list(self._watches) if error is not None else []
            self.over.set()
            self._lock.notify_all()
        for watch in watches:
            watch.abort("stopped: another connection of this download failed")

    def _claim(self) -> int | None:
        with self._lock:
            while self._next < len(self.pieces) and not self.over.is_set():
                index, self._next = self._next, self._next + 1
                start, end, done = self.pieces[index]
                if done < end - start:
                    return index
            return None

    def _connection(self, probe: bool) -> None:
        if not probe:  # wait for the probe's 206 before any Watch starts counting this connection's bytes
            while not self.ranges_ok.wait(0.05):
                if self.over.is_set():
                    return
        session = new_session(self.want.url)
        try:
            run_watched(self.want.settings, lambda watch: self._serve(session, watch, probe))
        except BaseException as exc:  # handed to the coordinating thread, which raises it
            self._end(exc)
        finally:
            session.close()

    def _serve(self, session: requests.Session, watch: Watch, probe: bool) -> None:
        with self._lock:
            self._watches.append(watch)
            if self.error is not None:
                return
        while (index := self._claim()) is not None:
            self._fetch(session, watch, index)
        if probe:
            self.ranges_ok.set()  # nothing was left to probe with

    def _fetch(self, session: requests.Session, watch: Watch, index: int) -> None:
        """Get piece `index` (from where it stopped), however many responses it takes."""
        buffer = bytearray(CHUNK_SIZE)
        while True:
            start, end, done = self.pieces[index]
            at = start + done
            if at == end:
                return
            headers = {**self.want.headers, "Range": f"bytes={at}-{end - 1}"}
            with session.get(self.want.url, headers=headers, stream=True, timeout=self.want.settings.timeout,
                             allow_redirects=True) as resp:
                self._accept(resp, at)
                watch.body_started = True
                got = self._copy(BodyReader(resp), buffer, index, at, end, watch)
            if got == 0:
                raise TransientError(f"connection closed before any byte of bytes={at}-{end - 1}")

    def _accept(self, resp: requests.Response, at: int) -> None:
        check_status(resp)
        if resp.status_code == 200:
            raise NoRangesError("ignored a Range request (answered 200, not 206)")
        content_range = resp.headers.get("Content-Range", "")
        total = _range_total(content_range)
        if range_start(content_range) != at or (total is not None and total != self.want.size):
            raise TransientError(f"asked for bytes={at}-, got Content-Range {shown(content_range)!r}")
        self.ranges_ok.set()

    def _copy(self, reader: BodyReader, buffer: bytearray, index: int, at: int, end: int, watch: Watch) -> int:
        """Read one response body into the partial at `at`, up to `end`; return the bytes written."""
        view, first = memoryview(buffer), at
        try:
            while at < end:
                filled = 0
                try:
                    room = min(len(view), end - at)
                    while filled < room and (count := reader.readinto(view[filled:room])):
                        filled += count
                        watch.add(count)
                        self.want.progress.update(count)
                finally:  # what arrived is written even when the read failed: resume starts after it
                    at = pwrite_all(self.fd, view[:filled], at)
                    self._advance(index, filled)
                if filled < room:
                    break  # the response ended before the piece: the caller asks again
        finally:
            view.release()
        return at - first

    def _advance(self, index: int, count: int) -> None:
        if count:
            with self._lock:
                self.pieces[index][2] += count
                if self._sync is not None:
                    self._sync.add(count)  # under the lock: EarlySync counts from one thread at a time
                self._lock.notify_all()

    def _hash_in_order(self, hasher: Any, hashed: list[int]) -> None:
        """Hash the file from byte 0 as far as the done pieces reach, until the run is over."""
        buffer = bytearray(CHUNK_SIZE)
        view, pos = memoryview(buffer), 0
        while pos < self.want.size:
            with self._lock:
                while (upto := _frontier(self.pieces)) <= pos and not self.over.is_set():
                    self._lock.wait()
            if upto <= pos or self.error is not None:  # after a failure nothing is published: stop at once
                break
            while pos < upto and self.error is None:
                count = os.preadv(self.fd, [view[: min(len(view), upto - pos)]], pos)
                if count <= 0:
                    break
                hasher.update(view[:count])
                pos += count
            hashed[0] = pos
        view.release()


def _frontier(pieces: list[list[int]]) -> int:
    """Bytes done from the start of the file without a gap."""
    reach = 0
    for start, end, done in pieces:
        if start != reach:
            break
        reach = start + done
        if done < end - start:
            break
    return reach


def _from_prefix(partial: Path, size: int, connections: int) -> list[list[int]]:
    """A fresh piece table, counting a partial without a record as a done prefix."""
    try:
        prefix = min(partial.stat().st_size, size)
    except FileNotFoundError:
        prefix = 0
    return [[start, end, max(0, min(end, prefix) - start)] for start, end in plan_pieces(size, connections)]


def _load(partial: Path, size: int) -> list[list[int]] | None:
    """The piece table recorded for `partial`, or None when there is none or it does not fit this file."""
    try:
        data = safejson.loads(record_path(partial).read_text())
        pieces = [[int(a), int(b), int(c)] for a, b, c in data["pieces"]]
        ok = data.get("version") == RECORD_VERSION and data.get("size") == size and partial.is_file()
    except (OSError, ValueError, TypeError, KeyError):
        return None
    reach = 0
    for start, end, done in pieces:
        ok = ok and start == reach and end > start and 0 <= done <= end - start
        reach = end
    return pieces if ok and reach == size else None


def _save(partial: Path, size: int, pieces: list[list[int]]) -> None:
    """Write the record atomically: a kill -9 leaves the old one or the new one, never half of one."""
    path = record_path(partial)
    tmp = path.with_suffix(".ranges.tmp")
    text = json.dumps({"version": RECORD_VERSION, "size": size, "pieces": pieces}, separators=(",", ":"))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)
