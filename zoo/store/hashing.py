"""sha256 of files, streamed: the one place zoo reads whole files to hash them."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

CHUNK_SIZE = 1024 * 1024  # 1 MiB: large reads keep hashing at disk speed


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


class HashWriter:
    """A worker thread that hashes and writes chunks in order; errors surface in the caller."""

    def __init__(self, hasher: Any, out: Any) -> None:
        import queue
        import threading

        self.hasher, self.out = hasher, out
        self.queue: queue.Queue[tuple[bytes, bool] | None] = queue.Queue(maxsize=8)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._work, name="zoo-hash-write", daemon=True)

    def __enter__(self) -> HashWriter:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.drain()

    def _work(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.error is None:
                try:
                    self.hasher.update(item[0])
                    if item[1]:
                        self.out.write(item[0])
                except BaseException as err:  # re-raised in the reading thread by drain()
                    self.error = err

    def put(self, chunk: bytes) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put((chunk, True))

    def hash_only(self, chunk: bytes) -> None:
        self.queue.put((chunk, False))

    def drain(self) -> None:
        """Wait until every chunk is hashed and written; raise the worker's error, if any."""
        if self.thread.is_alive():
            self.queue.put(None)
            self.thread.join()
        if self.error is not None:
            error, self.error = self.error, None
            raise error
