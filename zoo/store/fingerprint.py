"""The sha256 of a local file, hashed once and remembered by (path, size, mtime, inode).

`zoo predict ./mnist-8.onnx` must find the manifest of a zoo file downloaded by hand, and
the optimised-graph cache must be keyed by content, not by name and date. Both need the
file's sha256; hashing a 500 MB model on every run would cost seconds, so the result is
kept in ZOO_HOME/fingerprints/, one small file per path. A changed size, mtime or inode
means a changed file and a fresh hash. A read-only cache only skips the remembering.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

from zoo import safejson
from zoo.store import cache
from zoo.store.hashing import sha256_file


def _record_path(resolved: Path, root: Path) -> Path:
    key = hashlib.sha256(os.fsencode(resolved)).hexdigest()[:32]
    return root / "fingerprints" / f"{key}.json"


def _stamp(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev]


def sha256_of(path: str | Path) -> str:
    """The file's sha256, from the remembered record when the file is unchanged."""
    resolved = Path(path).expanduser().resolve()
    st = resolved.stat()
    root = cache.home()
    record = _record_path(resolved, root)
    try:
        data = safejson.loads(record.read_text(encoding="utf-8"))
        if data.get("path") == os.fsdecode(resolved) and data.get("stamp") == _stamp(st):
            sha = data.get("sha256")
            if isinstance(sha, str) and len(sha) == 64:
                return sha
    except (OSError, ValueError):
        pass  # no record yet, or a torn one: hash again
    sha, _ = sha256_file(resolved)
    after = resolved.stat()
    if _stamp(after) == _stamp(st):  # not remembered when the file changed while it was read
        _remember(record, {"path": os.fsdecode(resolved), "stamp": _stamp(st), "sha256": sha})
    return sha


def _remember(record: Path, data: dict[str, object]) -> None:
    tmp = record.with_name(f".{record.name}.{os.getpid()}.tmp")
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(tmp, record)
    except OSError:
        # A read-only or full cache: the hash is still right, only not remembered.
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
