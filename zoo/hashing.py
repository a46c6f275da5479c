"""sha256 of files, streamed: the one place zoo reads whole files to hash them."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

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
