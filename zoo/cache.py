"""On-disk cache layout under ZOO_HOME; what is cached and where.

    ZOO_HOME/
      CACHEDIR.TAG
      blobs/sha256/<sha256>      verified bytes, named by content
      models/<model_id>/<file>   readable view (hard link or symlink to a blob)
      partial/<sha256>.part      unverified bytes of an interrupted download
      locks/<sha256>.lock        per-blob lock

Only verified bytes ever reach blobs/ (they are published with os.replace), so
a blob's presence means it was verified.
"""

from __future__ import annotations

import os
from pathlib import Path

from zoo.manifest import FileEntry, ModelEntry

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
