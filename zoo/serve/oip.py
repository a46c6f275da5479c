"""Open Inference Protocol (KServe v2) tensors: JSON `data` and the binary tensor data extension.

Pure functions over bytes and arrays. A request body is a JSON header, optionally followed
by raw tensor bytes; the header's length then comes in `Inference-Header-Content-Length`
and each binary input says its size in `parameters.binary_data_size`, in input order.
Responses mirror that: outputs asked for as binary (`binary_data`, or the request-wide
`binary_data_output`) follow the JSON header as raw little-endian bytes. The routes run
these in worker threads: a 224x224 image as JSON is 150,528 numbers to parse.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from zoo import safejson
from zoo.printable import clipped
from zoo.serve.errors import RequestError

# The protocol's tensor datatypes and the numpy dtypes they are (little-endian, as the extension says).
DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_), "UINT8": np.dtype("<u1"), "UINT16": np.dtype("<u2"), "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"), "INT8": np.dtype("<i1"), "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"), "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
}
# onnxruntime's NodeArg.type for each; tensor(string) is BYTES, which no zoo model takes as input.
ONNX_TYPES = {"tensor(bool)": "BOOL", "tensor(uint8)": "UINT8", "tensor(uint16)": "UINT16",
              "tensor(uint32)": "UINT32", "tensor(uint64)": "UINT64", "tensor(int8)": "INT8",
              "tensor(int16)": "INT16", "tensor(int32)": "INT32", "tensor(int64)": "INT64",
              "tensor(float16)": "FP16", "tensor(float)": "FP32", "tensor(double)": "FP64",
              "tensor(string)": "BYTES"}
_DATATYPES = {dtype: datatype for datatype, dtype in DTYPES.items()}  # an output's dtype to its datatype
HEADER = "Inference-Header-Content-Length"


@dataclass(frozen=True, slots=True)
class Tensor:
    """One input of a request, decoded."""

    name: str
    datatype: str
    array: np.ndarray
    binary: bool = False  # its values came after the JSON header, not in it


@dataclass(frozen=True, slots=True)
class OutputRequest:
    name: str
    binary: bool | None  # None: as the request's binary_data_output says
    classes: int = 0  # the classification extension's count: the top classes as "score:index:label" (0: the tensor)


@dataclass(frozen=True, slots=True)
class InferRequest:
    """A parsed infer request; `outputs` empty means every output, in the binary form `binary_default` says."""

    id: str | None
    inputs: tuple[Tensor, ...]
    outputs: tuple[OutputRequest, ...]
    binary_default: bool


@dataclass(frozen=True, slots=True)
class BinaryInput:
    """Where one binary input lies in the bytes after the JSON header, and what it is."""

    name: str
    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    offset: int
    count: int


@dataclass(frozen=True, slots=True)
class Plan:
    """What a request's JSON header says, once checked against the model: enough to answer the next same header.

    Clients send the same header, byte for byte, with every request of a shape (tritonclient
    does); its parse and checks cost the event loop as much as the rest of the request did.
    Only a plan whose inputs all came as binary is of use again (`inputs` not None): the header
    is then all there is to check.
    """

    inputs: tuple[BinaryInput, ...] | None  # None: some input came as JSON data
    binary_size: int  # the bytes the inputs take after the header: the body must have exactly these
    outputs: tuple[tuple[str, bool, int], ...]  # chosen_outputs
    request_id: str | None
    batch_key: object | None  # None: the request runs alone (a fresh key each time)
    rows: int

    def feeds(self, body: bytes | memoryview, header_length: int) -> dict[str, np.ndarray] | None:
        """The inputs of a body with this plan's header; None when its length is not the plan's."""
        if self.inputs is None or len(body) - header_length != self.binary_size:
            return None  # the full parse says what is wrong
        return {i.name: np.frombuffer(body, dtype=i.dtype, count=i.count, offset=header_length + i.offset
                                      ).reshape(i.shape) for i in self.inputs}


def plan_of(request: InferRequest, outputs: Sequence[tuple[str, bool, int]], batch_key: object | None,
            rows: int) -> Plan:
    """The plan of a request checked against its model (feeds_for, chosen_outputs, the batch key and rows)."""
    if not all(t.binary for t in request.inputs):
        return Plan(None, 0, tuple(outputs), request.id, batch_key, rows)
    inputs, offset = [], 0
    for tensor in request.inputs:
        inputs.append(BinaryInput(tensor.name, tensor.array.dtype, tensor.array.shape, offset, tensor.array.size))
        offset += tensor.array.nbytes
    return Plan(tuple(inputs), offset, tuple(outputs), request.id, batch_key, rows)


def datatype_of(onnx_type: str) -> str:
    """The protocol datatype of an ONNX type; non-tensor types (sequences, maps) keep their ONNX name."""
    return ONNX_TYPES.get(onnx_type, onnx_type)


def shape_of(declared: Sequence[Any] | None) -> list[int]:
    """A graph shape as the protocol writes it: symbolic or unknown dimensions are -1."""
    return [d if isinstance(d, int) and d > 0 else -1 for d in (declared or [])]


def parse_request(body: bytes | memoryview, header_length: int | None) -> InferRequest:
    """Decode an infer request body; RequestError (400) names what is wrong."""
    if header_length is not None and not 0 < header_length <= len(body):
        raise RequestError(f"{HEADER} is {header_length}, but the body has {len(body)} bytes",
                           hint="the header counts the JSON part only, which must be inside the body")
    split = len(body) if header_length is None else header_length
    header = parse_json(body[:split])
    binary = memoryview(body)[split:]
    raw_inputs = header.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise RequestError("the request has no \"inputs\" list", hint='send {"inputs": [{"name", "shape", '
                           '"datatype", "data"}]}')
    offset, inputs = 0, []
    for i, raw in enumerate(raw_inputs):
        tensor, used = _input(raw, i, binary[offset:])
        inputs.append(tensor)
        offset += used
    if offset != len(binary):
        raise RequestError(f"the body has {len(binary) - offset} bytes of binary data that no input claims",
                           hint="each binary input's parameters.binary_data_size must count its bytes exactly")
    names = [t.name for t in inputs]
    if len(set(names)) != len(names):
        raise RequestError(f"input names repeat: {names}")
    params = _params(header.get("parameters"), "request")
    return InferRequest(id=_optional_str(header.get("id"), "id"), inputs=tuple(inputs),
                        outputs=_outputs(header.get("outputs")),
                        binary_default=_flag(params, "binary_data_output", "the request's parameters"))


def parse_json(data: bytes | memoryview,
               hint: str = f"send a JSON object; with binary tensors, set {HEADER} to the JSON part's length"
               ) -> dict[str, Any]:
    try:
        value = safejson.loads(bytes(data))
    except (UnicodeDecodeError, ValueError) as exc:
        raise RequestError(f"the request is not valid JSON: {exc}", hint=hint) from None
    if not isinstance(value, dict):
        raise RequestError(f"the request must be a JSON object, not {type(value).__name__}")
    return value


def _params(value: object, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RequestError(f"{where} parameters must be a JSON object")
    return value


def _flag(params: dict[str, Any], name: str, where: str) -> bool:
    """A true/false parameter (absent: false); "no" or 0 was taken as its truth value."""
    value = params.get(name, False)
    if not isinstance(value, bool):
        raise RequestError(f"{where}: {name} must be true or false, got {clipped(json.dumps(value))}")
    return value


def _no_shared_memory(params: dict[str, Any], where: str) -> None:
    """Triton's shared-memory extension names a region for a tensor instead of sending it; zoo serve has none, and
    an input that names one has nothing else to read (an output's answer would go where its client never looks)."""
    if any(key.startswith("shared_memory_") for key in params):
        raise RequestError(f"{where} names a shared-memory region, but zoo serve has no shared-memory extension "
                           "(GET /v2 lists its extensions)",
                           hint="send the tensor in the body: binary (parameters.binary_data_size) or JSON \"data\"")


def _optional_str(value: object, field: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise RequestError(f"\"{field}\" must be a string")


def _input(raw: object, index: int, binary: memoryview) -> tuple[Tensor, int]:
    """One input from its JSON object and the binary bytes that follow; returns it and the bytes it used."""
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise RequestError(f"inputs[{index}] must be an object with a \"name\"")
    name, datatype, shape = raw["name"], raw.get("datatype"), raw.get("shape")
    if datatype == "BYTES":
        raise RequestError(f"input {name!r}: datatype BYTES is not supported", hint="zoo models take numeric tensors")
    if not isinstance(datatype, str) or datatype not in DTYPES:
        raise RequestError(f"input {name!r}: unknown datatype {clipped(str(datatype))}",
                           hint=f"one of {', '.join(DTYPES)}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):
        raise RequestError(f"input {name!r}: \"shape\" must be a list of non-negative integers, got {shape!r}")
    dtype, count = DTYPES[datatype], math.prod(shape)
    params = _params(raw.get("parameters"), f"input {name!r}")
    _no_shared_memory(params, f"input {name!r}")
    size = params.get("binary_data_size")
    if size is not None:
        if "data" in raw:
            raise RequestError(f"input {name!r} has both \"data\" and binary_data_size", hint="send one of them")
        if not isinstance(size, int) or size != count * dtype.itemsize or size > len(binary):
            have = f"binary_data_size {size!r}" if size is None or size != count * dtype.itemsize \
                else f"{len(binary)} bytes left in the body"
            raise RequestError(f"input {name!r}: {have}, but shape {shape} of {datatype} needs "
                               f"{count * dtype.itemsize} bytes", hint="the byte count is the product of the shape "
                               f"times {dtype.itemsize} (the size of one {datatype})")
        array = np.frombuffer(binary[:size], dtype=dtype).reshape(shape)
        return Tensor(name, datatype, array, binary=True), size
    if "data" not in raw:
        raise RequestError(f"input {name!r} has neither \"data\" nor parameters.binary_data_size")
    return Tensor(name, datatype, _json_data(raw["data"], name, datatype, shape)), 0


def _json_data(data: object, name: str, datatype: str, shape: list[int]) -> np.ndarray:
    """JSON values as the datatype's array, refusing what a cast would change.

    A cast to the datatype alone took true as 1.0, 2.5 as the INT64 2, 300 as the UINT8 44 and
    1e40 as an FP32 inf: answers to values the client never sent. As Triton does, BOOL takes
    true/false only, integer datatypes whole numbers (no fraction or exponent) within their
    range, and floating-point ones numbers within theirs.
    """
    dtype = DTYPES[datatype]
    try:
        given = np.asarray(data)
    except (ValueError, TypeError, OverflowError) as exc:
        raise RequestError(f"input {name!r}: \"data\" is not a list of {datatype} values ({exc})") from None
    if given.size:
        _check_values(given, dtype, name, datatype)
    array = given.astype(dtype, copy=False)  # checked: in its kind and range (floats round to its precision)
    if array.size != math.prod(shape):
        raise RequestError(f"input {name!r}: \"data\" has {array.size} values, shape {shape} needs "
                           f"{math.prod(shape)}", hint="send the values flattened in row-major order")
    return array.reshape(shape)


_TAKES = {"b": ("b", "true or false"), "i": ("iu", "whole numbers"), "u": ("iu", "whole numbers"),
          "f": ("iuf", "numbers")}
_GIVEN = {"b": "true/false values", "i": "whole numbers", "u": "whole numbers",
          "f": "numbers with a fraction or exponent", "U": "text", "S": "text",
          "O": "values other than numbers and true/false (null, objects, or integers past 64 bits)"}


def _check_values(given: np.ndarray, dtype: np.dtype[Any], name: str, datatype: str) -> None:
    kinds, takes = _TAKES[dtype.kind]
    if given.dtype.kind not in kinds:
        what = _GIVEN.get(given.dtype.kind, _GIVEN["O"])
        raise RequestError(f"input {name!r}: \"data\" holds {what}; {datatype} takes {takes}",
                           hint="send the values as JSON numbers (true/false for BOOL), flattened in row-major order")
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        low, high = given.min(), given.max()
        if low < info.min or high > info.max:
            raise RequestError(f"input {name!r}: \"data\" holds values from {low} to {high}; {datatype} takes "
                               f"{info.min} to {info.max}")
    elif dtype.kind == "f" and dtype.itemsize < 8:
        magnitudes = np.abs(given, dtype=np.float64)
        top = float(magnitudes[np.isfinite(magnitudes)].max(initial=0.0))
        if top > float(np.finfo(dtype).max):
            raise RequestError(f"input {name!r}: \"data\" holds {top:g}, beyond {datatype}'s largest value "
                               f"{float(np.finfo(dtype).max):g}")


def _outputs(raw: object) -> tuple[OutputRequest, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in raw):
        raise RequestError("\"outputs\" must be a list of objects with a \"name\"")
    out = []
    for o in raw:
        where = f"output {o['name']!r}"
        params = _params(o.get("parameters"), where)
        _no_shared_memory(params, where)
        binary = _flag(params, "binary_data", where) if "binary_data" in params else None
        classes = params.get("classification", 0)
        if not isinstance(classes, int) or isinstance(classes, bool) or classes < 0:
            raise RequestError(f"{where}: classification must be a count of classes, got "
                               f"{clipped(json.dumps(classes))}", hint="e.g. 5 for the top five (0: the tensor)")
        out.append(OutputRequest(o["name"], binary, classes))
    return tuple(out)


def classified(array: np.ndarray, count: int, labels: Sequence[str] | None, name: str) -> np.ndarray:
    """The classification extension's answer for an output: along its last axis, the `count` highest values as
    "score:index" strings, or "score:index:label" where `labels` name every class of that axis.

    Highest first; the score as C's %f writes it (Triton's form). Shape: the output's, with the
    last axis cut to min(count, its length).
    """
    if array.dtype.kind not in "biuf" or array.ndim == 0:
        raise RequestError(f"output {name!r} ({_datatype_of(name, array.dtype)}, shape {list(array.shape)}) has "
                           "no classes to rank", hint="ask for classification on a numeric output with a class axis")
    k = min(count, array.shape[-1])
    order = np.argsort(-array.astype(np.float64), axis=-1, kind="stable")[..., :k]
    scores = np.take_along_axis(array, order, axis=-1)
    named = labels is not None and len(labels) == array.shape[-1]
    text = [f"{float(v):f}:{i}:{labels[i]}" if named and labels is not None else f"{float(v):f}:{i}"
            for v, i in zip(scores.ravel().tolist(), order.ravel().tolist())]
    out = np.empty(len(text), dtype=object)
    out[:] = text
    return out.reshape(order.shape)


def encode_response(*, model: str, version: str, request_id: str | None,
                    outputs: Sequence[tuple[str, np.ndarray, bool]]) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when binary outputs follow it (else None)."""
    arrays = [(name, np.asarray(value), binary) for name, value, binary in outputs]
    if arrays and all(binary and a.dtype.kind not in "OUS" for _, a, binary in arrays):  # the header: by shapes
        specs = tuple((name, a.dtype, a.shape) for name, a, _ in arrays)
        header, datatypes = _binary_header(model, version, request_id, specs)
        blobs = [np.ascontiguousarray(a, dtype=DTYPES[d]).tobytes() for (_, a, _), d in zip(arrays, datatypes)]
        return b"".join([header, *blobs]), len(header)
    entries, blobs = [], []
    for name, array, binary in arrays:
        datatype = _datatype_of(name, array.dtype)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if binary:
            blob = _bytes_of(array, datatype)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = array.astype(str).ravel().tolist() if datatype == "BYTES" else array.ravel().tolist()
        entries.append(entry)
    header = _header(model, version, request_id, entries)
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)


@functools.lru_cache(maxsize=256)
def _binary_header(model: str, version: str, request_id: str | None,
                   specs: tuple[tuple[str, np.dtype[Any], tuple[int, ...]], ...]) -> tuple[bytes, tuple[str, ...]]:
    """The JSON header of a response whose outputs are all numeric and binary, and their datatypes.

    It depends on the outputs' names, dtypes and shapes only, which repeat request after request.
    """
    datatypes = tuple(_datatype_of(name, dtype) for name, dtype, _ in specs)
    entries = [{"name": name, "datatype": datatype, "shape": list(shape),
                "parameters": {"binary_data_size": math.prod(shape) * dtype.itemsize}}
               for (name, dtype, shape), datatype in zip(specs, datatypes)]
    return _header(model, version, request_id, entries), datatypes


def _header(model: str, version: str, request_id: str | None, entries: list[dict[str, Any]]) -> bytes:
    head: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": entries}
    if request_id is not None:
        head["id"] = request_id
    return json.dumps(head, separators=(",", ":")).encode()


def _datatype_of(name: str, dtype: np.dtype[Any]) -> str:
    if dtype.kind in "OUS":
        return "BYTES"
    datatype = _DATATYPES.get(dtype.newbyteorder("<"))
    if datatype is None or dtype.byteorder == ">":
        raise RequestError(f"output {name!r} has dtype {dtype}, which the protocol cannot carry", status=500)
    return datatype


def _bytes_of(array: np.ndarray, datatype: str) -> bytes:
    if datatype != "BYTES":
        return np.ascontiguousarray(array, dtype=DTYPES[datatype]).tobytes()
    # BYTES elements: a 4-byte little-endian length, then the bytes (the extension's layout).
    parts = []
    for item in array.ravel():
        raw = item if isinstance(item, bytes) else str(item).encode()
        parts += [len(raw).to_bytes(4, "little"), raw]
    return b"".join(parts)


def feeds_for(request: InferRequest, metas: Sequence[Any], model: str) -> dict[str, np.ndarray]:
    """The session feeds of a request, checked against the graph's inputs (RequestError names the input)."""
    expected = {m.name: m for m in metas}
    given = {t.name: t for t in request.inputs}
    missing, unknown = sorted(set(expected) - set(given)), sorted(set(given) - set(expected))
    if missing or unknown:
        what = "; ".join(part for part in (missing and f"missing input(s) {missing}",
                                           unknown and f"model {model} has no input(s) {unknown}") if part)
        wanted = ", ".join(f"{m.name} {datatype_of(m.type)} {shape_of(m.shape)}" for m in metas)
        raise RequestError(what, hint=f"{model} takes: {wanted}")
    for tensor in request.inputs:
        meta = expected[tensor.name]
        want, declared = datatype_of(meta.type), shape_of(meta.shape)
        if tensor.datatype != want:
            raise RequestError(f"input {tensor.name!r} has datatype {tensor.datatype}, model {model} expects {want}",
                               hint=f"send {tensor.name} as {want} with shape {declared}")
        shape = list(tensor.array.shape)
        if len(shape) != len(declared) or any(d != -1 and d != s for s, d in zip(shape, declared)):
            raise RequestError(f"input {tensor.name!r} has shape {shape}, model {model} expects {declared} "
                               "(-1: any size)", hint=f"send {tensor.name} as {want} with shape {declared}")
        if 0 in shape:  # onnxruntime fails on most graphs (a reshape of nothing): say so before it runs
            raise RequestError(f"input {tensor.name!r} has shape {shape}: no values to run on",
                               hint=f"send at least one row: {tensor.name} as {want} with shape {declared}")
    return {t.name: t.array for t in request.inputs}


def chosen_outputs(request: InferRequest, names: Sequence[str], model: str) -> list[tuple[str, bool, int]]:
    """(output name, as binary?, classification count or 0) for the response: the requested ones, or all of them."""
    if not request.outputs:
        return [(name, request.binary_default, 0) for name in names]
    unknown = [o.name for o in request.outputs if o.name not in names]
    if unknown:
        raise RequestError(f"model {model} has no output(s) {unknown}", hint=f"its outputs: {', '.join(names)}")
    return [(o.name, request.binary_default if o.binary is None else o.binary, o.classes) for o in request.outputs]
