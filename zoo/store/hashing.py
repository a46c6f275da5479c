"""sha256 of files, streamed: the one place zoo reads whole files to hash them, and the download sink."""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from pathlib import Path
from typing import Any

CHUNK_SIZE = 1024 * 1024  # 1 MiB: large reads keep hashing at disk speed
QUEUE_DEPTH = 16  # buffers in the pool: bounds memory (16 MiB) while absorbing jitter
SYNC_EVERY = 64 * 1024 * 1024  # bytes written between background fdatasync calls


def sha256_file(path: Path) -> tuple[str, int]:
    """The sha256 and size of a file."""
    hasher, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            hasher.update(chunk)
            size += len(chunk)
    return hasher.hexdigest(), size


def copy_hashing(src: Path, dst: Path) -> tuple[str, int]:
    """Copy `src` to `dst` (fsynced); return the sha256 and size of what was copied."""
    hasher, size = hashlib.sha256(), 0
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while chunk := fin.read(CHUNK_SIZE):
            hasher.update(chunk)
            size += len(chunk)
            fout.write(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    return hasher.hexdigest(), size


class EarlySync:
    """fdatasync `fd` in the background every SYNC_EVERY bytes written, so the fsync before publishing is short.

    The kernel would write the dirty pages back only after the download; the
    final fsync then waits for all of them (0.17 s per 300 MiB here). Syncing as
    the bytes come overlaps that wait with the download. It changes nothing in
    what is durable when: the caller still fsyncs once before publishing.
    """

    def __init__(self, fd: int) -> None:
        self.fd, self.written = fd, 0
        self._synced = 0
        self._wake = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._run, name="zoo-sync", daemon=True)
        self._thread.start()

    def add(self, count: int) -> None:
        """`count` more bytes were written (from any one thread at a time)."""
        self.written += count
        if self.written - self._synced >= SYNC_EVERY:
            self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._done:
                return
            self._synced = self.written
            try:
                os.fdatasync(self.fd)
            except OSError:
                return  # the final fsync reports it; this one only saves time

    def close(self) -> None:
        self._done = True
        self._wake.set()
        self._thread.join()


_Item = tuple[bytearray, int, bool] | None  # (buffer, bytes used, write them too); None ends a stage


class HashWriter:
    """Hash buffers in one worker thread and write them at `offset` of `fd` in another, in order.

    The reader fills reusable buffers (take() one, hand it over with put()), so
    reading the socket, sha256 and the file write run at the same time (hashlib
    and os.pwrite release the GIL) and no chunk is allocated or copied in
    Python: a stage is as fast as the slowest of the three, not their sum. The
    pool of `depth` buffers is the bound on memory and on how far the reader may
    run ahead. Errors surface in the reader at its next take() or at finish();
    abort() stops hashing but still writes what was queued (milliseconds), so
    the partial keeps every byte received: a prefix to resume from.
    """

    def __init__(self, hasher: Any, fd: int, offset: int, *, depth: int = QUEUE_DEPTH,
                 buffer_size: int = CHUNK_SIZE) -> None:
        self.hasher, self.fd, self.pos = hasher, fd, offset
        self.error: BaseException | None = None
        self._aborted = False
        self._free: queue.Queue[bytearray] = queue.Queue()
        for _ in range(depth):
            self._free.put(bytearray(buffer_size))
        self._to_hash: queue.Queue[_Item] = queue.Queue()  # bounded by the pool: at most `depth` items
        self._to_write: queue.Queue[_Item] = queue.Queue()
        self._threads = [threading.Thread(target=self._hash, name="zoo-hash", daemon=True),
                         threading.Thread(target=self._write, name="zoo-write", daemon=True)]
        self._sync: EarlySync | None = None

    def __enter__(self) -> HashWriter:
        self._sync = EarlySync(self.fd)
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.finish()

    def take(self) -> bytearray:
        """A free buffer to fill (waits while all are queued); raises a worker's error."""
        if self.error is not None:
            raise self.error
        return self._free.get()

    def put(self, buffer: bytearray, length: int, *, write: bool = True) -> None:
        """Hash the first `length` bytes of `buffer` and, with `write`, write them; the buffer returns to the pool."""
        self._to_hash.put((buffer, length, write))

    def _hash(self) -> None:
        while (item := self._to_hash.get()) is not None:
            if self.error is None and not self._aborted:
                try:
                    self.hasher.update(memoryview(item[0])[: item[1]])
                except BaseException as err:  # re-raised in the reading thread
                    self.error = err
            self._to_write.put(item)
        self._to_write.put(None)

    def _write(self) -> None:
        while (item := self._to_write.get()) is not None:
            buffer, length, write = item
            if write and self.error is None:
                try:
                    self.pos = pwrite_all(self.fd, memoryview(buffer)[:length], self.pos)
                    if self._sync is not None:
                        self._sync.add(length)
                except BaseException as err:  # ENOSPC, EIO: re-raised in the reading thread
                    self.error = err
            self._free.put(buffer)

    def finish(self) -> None:
        """Wait until every buffer is hashed and written; raise a worker's error, if any."""
        self._stop()
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def abort(self) -> None:
        """Stop soon: queued buffers are written (they are good bytes to resume from) but not hashed."""
        self._aborted = True
        self._stop()

    def _stop(self) -> None:
        if self._threads[0].is_alive():
            self._to_hash.put(None)
        for thread in self._threads:
            thread.join()
        if self._sync is not None:
            self._sync.close()


def pwrite_all(fd: int, view: memoryview, pos: int) -> int:
    """Write all of `view` at `pos` of `fd` (pwrite may write less than asked); return the end position."""
    while view:
        done = os.pwrite(fd, view, pos)
        pos += done
        view = view[done:]
    return pos
