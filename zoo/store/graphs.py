"""Optimised-graph files in ZOO_HOME/optimized: named by the model's sha256, each with a record.

    optimized/<sha256>.cpu.<level>.ort<version>.onnx        the graph onnxruntime wrote
    optimized/<sha256>.cpu.<level>.ort<version>.onnx.json   {"source_sha256": ..., "graph": [size, mtime_ns, inode]}

A graph is reused only when its record names the model's sha256 and the graph file is still the
file zoo wrote (same size, mtime and inode: a file put there later is not it). onnxruntime writes
to a unique temp name that nobody can have planted a link at; the graph and then its record are
moved into place with os.replace, so neither is ever half there. zoo.runtime decides when to cache.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from zoo import safejson


def is_sha256(key: str) -> bool:
    """Whether `key` is a sha256 in hex, as zoo writes it (64 lowercase hex digits)."""
    return len(key) == 64 and all(c in "0123456789abcdef" for c in key)


def record_of(graph: Path) -> Path:
    return graph.with_name(graph.name + ".json")


def temp_name(final: Path) -> Path:
    """Where onnxruntime writes a new graph; ORT picks the format by extension, so it ends in .onnx."""
    import uuid  # here, not at the top: a load that reuses a cached graph writes nothing

    return final.with_name(f"tmp-{uuid.uuid4().hex}-{final.name}")


def locate(folder: Path, sha256: str, variant: str) -> tuple[Path | None, Path | None, str | None]:
    """(graph to reuse, temp name to write a new one to, why none can be kept) for the model with `sha256`.

    Only content keys are accepted: a key made of a path, size and date let a different model of the same
    size and date reuse another's graph (and answer wrongly).
    """
    if not is_sha256(sha256):
        return None, None, None
    final = folder / f"{sha256}.{variant}.onnx"
    if matches(final, sha256):
        return final, None, None
    why = unusable(folder)
    return None, (None if why else temp_name(final)), why


def _stamp(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def matches(graph: Path, sha256: str) -> bool:
    """Whether `graph` is a regular file (not a link) that zoo wrote from the model with this sha256."""
    try:
        st = os.lstat(graph)
        record = safejson.loads(record_of(graph).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(record, dict) or not os.path.isfile(graph) or os.path.islink(graph):
        return False
    return record.get("source_sha256") == sha256 and record.get("graph") == _stamp(st)


def unusable(folder: Path) -> str | None:
    """Why graphs cannot be written in `folder`, or None: it must be a real folder where a write succeeds.

    os.access alone is not enough (root passes it whatever the mode bits say), so a real file is
    written and removed; a read-only mount fails that for root too.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if folder.is_symlink() or not folder.is_dir():
            return "it is not a real folder (a symlink or a file)"
        if not os.access(folder, os.W_OK):
            raise PermissionError("permission denied")
        import tempfile  # only when a graph is to be written (see temp_name)

        fd, probe = tempfile.mkstemp(prefix="tmp-probe-", suffix=".onnx", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return f"it is read-only ({exc.strerror or exc})"
    return None


def publish(tmp: Path, sha256: str) -> None:
    """Move a freshly written graph into place, then write its record; a failure only leaves it uncached."""
    final = tmp.with_name(tmp.name.split("-", 2)[2])
    record_tmp = tmp.with_name(tmp.name + ".json")
    try:
        os.replace(tmp, final)  # replaces whatever was at `final` (a link too), never what it points to
        record_tmp.write_text(json.dumps({"source_sha256": sha256, "graph": _stamp(os.lstat(final))}),
                              encoding="utf-8")
        os.replace(record_tmp, record_of(final))
    except OSError:
        pass  # the session is fine; the graph is only not kept
    finally:
        unlink(tmp)
        unlink(record_tmp)


def drop(graph: Path) -> None:
    unlink(graph)
    unlink(record_of(graph))


def unlink(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
