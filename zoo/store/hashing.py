"""sha256 of files, streamed: the one place zoo reads whole files to hash them, and the download sink."""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from pathlib import Path
from typing import Any

CHUNK_SIZE = 1024 * 1024  # 1 MiB: large reads keep hashing at disk speed
QUEUE_DEPTH = 16  # chunks waiting per stage: bounds memory (~2 x 16 MiB) while absorbing jitter


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


_Item = tuple[bytes, bool] | None  # (chunk, write it too); None ends a stage


class HashWriter:
    """Hash chunks in one worker thread and write them at `offset` of `fd` in another, in order.

    The reader only hands chunks over, so reading the socket, sha256 and the file
    write run at the same time (hashlib and os.pwrite release the GIL); a stage
    is as fast as the slowest of the three instead of their sum. Errors surface
    in the reader at its next put() or at finish(); abort() stops hashing but
    still writes what was queued (at most QUEUE_DEPTH MiB, milliseconds), so the
    partial keeps every byte received: a prefix to resume from.
    """

    def __init__(self, hasher: Any, fd: int, offset: int) -> None:
        self.hasher, self.fd, self.pos = hasher, fd, offset
        self.error: BaseException | None = None
        self._aborted = False
        self._to_hash: queue.Queue[_Item] = queue.Queue(maxsize=QUEUE_DEPTH)
        self._to_write: queue.Queue[_Item] = queue.Queue(maxsize=QUEUE_DEPTH)
        self._threads = [threading.Thread(target=self._hash, name="zoo-hash", daemon=True),
                         threading.Thread(target=self._write, name="zoo-write", daemon=True)]

    def __enter__(self) -> HashWriter:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.finish()

    def _hash(self) -> None:
        while (item := self._to_hash.get()) is not None:
            if self.error is None and not self._aborted:
                try:
                    self.hasher.update(item[0])
                except BaseException as err:  # re-raised in the reading thread
                    self.error = err
            self._to_write.put(item)
        self._to_write.put(None)

    def _write(self) -> None:
        while (item := self._to_write.get()) is not None:
            if item[1] and self.error is None:
                try:
                    self._pwrite(memoryview(item[0]))
                except BaseException as err:  # ENOSPC, EIO: re-raised in the reading thread
                    self.error = err

    def _pwrite(self, view: memoryview) -> None:
        while view:
            done = os.pwrite(self.fd, view, self.pos)
            self.pos += done
            view = view[done:]

    def put(self, chunk: bytes) -> None:
        if self.error is not None:
            raise self.error
        self._to_hash.put((chunk, True))

    def hash_only(self, chunk: bytes) -> None:
        self._to_hash.put((chunk, False))

    def finish(self) -> None:
        """Wait until every chunk is hashed and written; raise a worker's error, if any."""
        self._stop()
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def abort(self) -> None:
        """Stop soon: queued chunks are written (they are good bytes to resume from) but not hashed."""
        self._aborted = True
        self._stop()

    def _stop(self) -> None:
        if self._threads[0].is_alive():
            self._to_hash.put(None)
        for thread in self._threads:
            thread.join()
