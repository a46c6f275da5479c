"""The user manifest: models added with `zoo add`, in one manifest file the index always reads.

Default location: `ZOO_HOME/manifests/user.json` (ZOO_HOME as the cache reads it: the
variable, else the platform's user cache dir for "zoo"). `load_index()` reads it after
the paths of ZOO_MANIFESTS, with the same rules: an id, alias or hub name of a built-in
model is refused, never an override. `zoo cache clear` keeps it (zoo deletes only the
files it caches).

The file is changed only through `update()`: under an exclusive lock (a `.lock` file
beside it), read, change, validate, write a unique temp file in the same folder, fsync,
`os.replace`. A reader sees the old file or the new one, never half of one, whatever
kills the writer. `read_graph()` and `build_entry()` turn an ONNX file into an entry.
"""

from __future__ import annotations

import errno
import json
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo import safejson
from zoo.errors import InputError, ManifestError, ZooError
from zoo.filecheck import not_a_file

if TYPE_CHECKING:
    from onnx import TypeProto

FAMILY = "user"
SCHEMA_VERSION = 1  # the catalog's schema version
FILE_NAME = "user.json"
MAX_SIZE = 16 * 1024 * 1024  # the catalog's limit for one manifest file
Document = dict[str, Any]


def zoo_home() -> Path:
    """ZOO_HOME as zoo.store.cache.home() reads it (the index sits below the store, so it cannot ask it)."""
    env = os.environ.get("ZOO_HOME")
    if env:
        return Path(env).expanduser().resolve()
    import platformdirs  # small, but only needed when ZOO_HOME is unset

    return Path(platformdirs.user_cache_dir("zoo", appauthor=False))


def default_path() -> Path:
    """Where `zoo add` writes by default, and which the index always reads."""
    return zoo_home() / "manifests" / FILE_NAME


def stamp(path: Path) -> tuple[int, int, int] | None:
    """What changes whenever the file is rewritten (os.replace gives a new inode); None when absent."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def with_default(zoo_manifests: str) -> tuple[str, tuple[int, int, int] | None]:
    """The manifest paths the index reads (ZOO_MANIFESTS, then the default user manifest when it exists
    and ZOO_MANIFESTS does not already list it or a folder above it), and the user manifest's stamp."""
    mine = default_path()
    found = stamp(mine)
    if found is None:
        return zoo_manifests, None
    listed = [Path(p).expanduser().resolve() for p in zoo_manifests.split(os.pathsep) if p]
    real = mine.resolve()
    if any(p == real or p in real.parents for p in listed):
        return zoo_manifests, found
    return os.pathsep.join(filter(None, (zoo_manifests, str(mine)))), found


def is_read(path: Path) -> bool:
    """Whether the index reads the manifest at `path` (the default user manifest, or listed in ZOO_MANIFESTS)."""
    real = Path(path).expanduser().resolve()
    if real == default_path().resolve():
        return True
    listed = [Path(p).expanduser().resolve() for p in os.environ.get("ZOO_MANIFESTS", "").split(os.pathsep) if p]
    return any(p == real or p in real.parents for p in listed)


def empty_document() -> Document:
    return {"schema_version": SCHEMA_VERSION, "family": FAMILY, "models": []}


def read(path: Path) -> Document:
    """The manifest document at `path` (an empty one when the file does not exist)."""
    if os.path.lexists(path) and not os.path.isfile(path):  # never read a device or FIFO (nor advise deleting it)
        raise ManifestError(str(path), None, "", not_a_file(path))
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_SIZE + 1)
    except FileNotFoundError:
        return empty_document()
    except OSError as exc:
        raise ManifestError(str(path), None, "", f"cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_SIZE:
        raise ManifestError(str(path), None, "", f"larger than {MAX_SIZE} bytes")
    try:
        data = safejson.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestError(str(path), None, "", f"not valid JSON ({exc}); fix or delete the file") from None
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise ManifestError(str(path), None, "models", "must be an object with a list of models")
    return data


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the manifest's exclusive lock (other `zoo add`/`zoo remove` wait); released when the process dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _lock_fd(fd)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _lock_fd(fd: int) -> None:
    try:
        import fcntl
    except ImportError:  # Windows: a blocking byte-range lock on the lock file
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_LOCK, 1)  # type: ignore[attr-defined]  # msvcrt's stubs are Windows-only
        return
    fcntl.flock(fd, fcntl.LOCK_EX)


def check_target(path: Path) -> None:
    """Refuse a manifest path zoo could never replace (a device, FIFO or folder), before any work."""
    if os.path.lexists(path) and not os.path.isfile(path):
        raise InputError(f"cannot write the manifest {path}: {not_a_file(path)}",
                         expected=["a .json file path (it is created if missing)"])


def update(path: Path, change: Callable[[Document], Document], validate: Callable[[Path], None]) -> Document:
    """Read, change and atomically rewrite the manifest under its lock; `validate(temp)` may refuse it.

    The new file is fully written and fsynced under a unique temp name first, then moved
    over the old one: a crash, kill or full disk at any point leaves the old file whole.
    """
    check_target(path)
    try:
        return _update(path, change, validate)
    except OSError as exc:  # a full disk, a folder zoo may not write (or /proc): the old file is as it was
        full = exc.errno == errno.ENOSPC
        raise ZooError(f"cannot write the manifest {path}: {(exc.strerror or str(exc)).lower()}; it is unchanged",
                       hint="free some space and run it again" if full else
                       "choose a --manifest in a folder you can write to") from None


def _update(path: Path, change: Callable[[Document], Document], validate: Callable[[Path], None]) -> Document:
    with locked(path):
        for stale in path.parent.glob(f".{path.name}.*.tmp"):  # a killed writer's: no writer holds the lock now
            stale.unlink(missing_ok=True)
        new = change(read(path))
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "x", encoding="utf-8") as handle:
                handle.write(json.dumps(new, indent=2) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            validate(tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(path.parent)
    return new


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def upsert(doc: Document, model: dict[str, Any]) -> Document:
    """The document with `model` added, or replacing the entry of the same id (case-insensitive)."""
    key = str(model["id"]).lower()
    models = [m for m in doc["models"] if str(m.get("id", "")).lower() != key]
    return {**doc, "models": [*models, model]}


def without(doc: Document, model_id: str) -> Document:
    """The document without the entry `model_id` (case-insensitive)."""
    key = model_id.lower()
    return {**doc, "models": [m for m in doc["models"] if str(m.get("id", "")).lower() != key]}


# -- entries from ONNX graphs ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GraphIO:
    """One graph input or output: the manifest's IO fields."""

    name: str
    shape: tuple[int | str | None, ...]
    type: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "type": self.type}


@dataclass(frozen=True, slots=True)
class GraphFacts:
    """What the manifest records about a graph: opsets, IO and who made it."""

    opset: int
    ml_opset: int | None
    inputs: tuple[GraphIO, ...]
    outputs: tuple[GraphIO, ...]
    producer: str


def read_graph(path: Path) -> GraphFacts:
    """Opset and IO of the ONNX file at `path`; InputError when it is not a valid ONNX model."""
    import onnx  # heavy: only `zoo add` reads graphs

    hint = "pass an .onnx file written by a converter (skl2onnx, tf2onnx, torch.onnx.export, onnxmltools)"
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError, OSError: not a model at all
        raise InputError(f"{path} is not a valid ONNX model: {_first_line(exc)}", expected=[hint]) from None
    # The cache holds one verified file per model: weights beside it in .data files would not travel.
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        raise InputError(f"{path} keeps its weights in external data files; zoo add takes one self-contained file",
                         expected=["re-save it whole: onnx.save(onnx.load(PATH), OUT) (models under 2 GB), or "
                                   "export with external_data=False"])
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx's ValidationError and friends: all mean "not a usable model"
        raise InputError(f"{path} is not a valid ONNX model: {_first_line(exc)}", expected=[hint]) from None
    opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    if not model.graph.node or not opsets:
        raise InputError(f"{path} is not a valid ONNX model: the graph has no nodes or no opset", expected=[hint])
    initializers = {i.name for i in model.graph.initializer}
    return GraphFacts(
        opset=opsets.get("ai.onnx", max(opsets.values())),
        ml_opset=opsets.get("ai.onnx.ml"),
        inputs=tuple(_io(v.name, v.type) for v in model.graph.input if v.name not in initializers),
        outputs=tuple(_io(v.name, v.type) for v in model.graph.output),
        producer=" ".join(p for p in (model.producer_name, model.producer_version) if p),
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _io(name: str, tp: TypeProto) -> GraphIO:
    shape: tuple[int | str | None, ...] = ()
    if tp.HasField("tensor_type") and tp.tensor_type.HasField("shape"):
        shape = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                      for d in tp.tensor_type.shape.dim)
    return GraphIO(name, shape, type_name(tp))


def type_name(tp: TypeProto) -> str:
    """The type as onnxruntime spells it: tensor(float), seq(map(int64,tensor(float)))."""
    from onnx import TensorProto

    which = tp.WhichOneof("value")
    if which == "tensor_type":
        return f"tensor({TensorProto.DataType.Name(tp.tensor_type.elem_type).lower()})"
    if which == "sequence_type":
        return f"seq({type_name(tp.sequence_type.elem_type)})"
    if which == "map_type":
        key = TensorProto.DataType.Name(tp.map_type.key_type).lower()
        return f"map({key},{type_name(tp.map_type.value_type)})"
    return which or "unknown"


def build_entry(model_id: str, facts: GraphFacts, *, sha256: str, size: int, task: str,
                recipe: dict[str, Any] | None = None, labels: str | None = None,
                postprocess: dict[str, Any] | None = None) -> dict[str, Any]:
    """The manifest entry (schema of manifests/README.md) for a user model file."""
    entry: dict[str, Any] = {
        "id": model_id,
        "task": task,
        "opset": facts.opset,
        "tags": ["user"],
        "file": {"path": f"user/{model_id}/{model_id}.onnx", "sha256": sha256, "size": size},
        "inputs": [io.to_dict() for io in facts.inputs],
        "outputs": [io.to_dict() for io in facts.outputs],
        "confidence": {"level": "high", "reason": "added with `zoo add`: sha256, opset and IO read from the file"},
    }
    if facts.producer:
        entry["source_framework"] = facts.producer
    for key, value in (("preprocess", recipe), ("postprocess", postprocess), ("labels", labels)):
        if value is not None:
            entry[key] = value
    return entry
