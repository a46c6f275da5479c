"""Write a QDQ graph's quantization as plain float ops, so no runtime swaps in integer kernels.

A QDQ model (QuantizeLinear -> DequantizeLinear around float ops) defines fake-quantized float
numerics. onnxruntime's default optimisation level fuses DQ -> Conv -> Q into integer kernels,
and on x86 CPUs without AVX-512 VNNI those multiply u8 by s8 with 16-bit saturation: there
shufflenet-v2-12-qdq's fused graph ranks "bonnet" above "diaper" on a baby photo. zoo runs
such models at the "basic" level; an exported file cannot choose its reader's level, so its
Q/DQ pairs are rewritten with the same arithmetic as onnxruntime's kernels:

    QuantizeLinear(x, s, z)   -> Clip(Round(x / s) + z, lo, hi)   (float holding integers)
    DequantizeLinear(q, s, z) -> (Cast(q) - z) * s

Round is half-to-even and clipping integers after rounding equals clamping before it, so each
value matches the kernels bit for bit (weights are folded by the runtime's constant folding).
All or nothing: a graph whose quantized tensors feed anything but DequantizeLinear (QLinearConv
models, int8 graph inputs), or with per-block, float8 or non-constant parameters, is left as is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

__all__ = ["is_qdq", "rewrite"]

RANGES: dict[int, tuple[int, int]] = {
    onnx.TensorProto.INT8: (-128, 127), onnx.TensorProto.UINT8: (0, 255),
    onnx.TensorProto.INT16: (-32768, 32767), onnx.TensorProto.UINT16: (0, 65535)}
INTEGER_INPUTS = set(RANGES) | {onnx.TensorProto.INT32}
MIN_OPSET = 11  # Round, and Clip with min/max inputs


@dataclass(frozen=True, slots=True)
class Params:
    """One Q or DQ node's constants, shaped to broadcast against its input."""

    scale: np.ndarray
    zero: np.ndarray
    dtype: int  # the quantized element type


def is_qdq(model: onnx.ModelProto) -> bool:
    """True when the graph quantizes only through Q -> DQ pairs and every pair can be rewritten."""
    return _plan(model) is not None


def rewrite(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` with every QuantizeLinear/DequantizeLinear as float ops; `model` itself if not QDQ."""
    plan = _plan(model)
    if plan is None:
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    inits = {t.name: t for t in graph.initializer}
    nodes: list[onnx.NodeProto] = []
    added: list[onnx.TensorProto] = []
    for i, node in enumerate(graph.node):
        params = plan.get(i)
        if params is None:
            nodes.append(node)
            continue
        prefix = f"zoo_fq/{i}"
        scale, zero = f"{prefix}/scale", f"{prefix}/zero"
        added += [numpy_helper.from_array(params.scale, scale), numpy_helper.from_array(params.zero, zero)]
        x, y = node.input[0], node.output[0]
        if node.op_type == "QuantizeLinear":
            lo, hi = (np.array(v, np.float32) for v in RANGES[params.dtype])
            added += [numpy_helper.from_array(lo, f"{prefix}/lo"), numpy_helper.from_array(hi, f"{prefix}/hi")]
            nodes += [helper.make_node("Div", [x, scale], [f"{prefix}/div"], name=f"{prefix}/Div"),
                      helper.make_node("Round", [f"{prefix}/div"], [f"{prefix}/round"], name=f"{prefix}/Round"),
                      helper.make_node("Add", [f"{prefix}/round", zero], [f"{prefix}/add"], name=f"{prefix}/Add"),
                      helper.make_node("Clip", [f"{prefix}/add", f"{prefix}/lo", f"{prefix}/hi"], [y],
                                       name=f"{prefix}/Clip")]
        else:
            source = x
            if x in inits:  # a constant integer tensor; a Q output is already float
                source = f"{prefix}/cast"
                nodes.append(helper.make_node("Cast", [x], [source], to=onnx.TensorProto.FLOAT, name=f"{prefix}/Cast"))
            nodes += [helper.make_node("Sub", [source, zero], [f"{prefix}/sub"], name=f"{prefix}/Sub"),
                      helper.make_node("Mul", [f"{prefix}/sub", scale], [y], name=f"{prefix}/Mul")]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(added)
    quantized = {n.output[0] for i, n in enumerate(model.graph.node) if i in plan}
    kept = [v for v in graph.value_info if v.name not in quantized]  # their int8 types no longer hold
    del graph.value_info[:]
    graph.value_info.extend(kept)
    return _drop_unused(out)


def _plan(model: onnx.ModelProto) -> dict[int, Params] | None:
    """Node index -> its parameters for every Q and DQ node, or None if the graph is not pure QDQ."""
    graph = model.graph
    if not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in graph.node):
        return None
    if _opset(model) < MIN_OPSET:
        return None
    inits = {t.name: t for t in graph.initializer}
    ranks = _ranks(model)
    q_outputs = {n.output[0] for n in graph.node if n.op_type == "QuantizeLinear"}
    plan: dict[int, Params] = {}
    for i, node in enumerate(graph.node):
        if node.op_type == "QuantizeLinear":
            if node.output[0] in {o.name for o in graph.output}:
                return None
            params = _params(node, inits, ranks.get(node.input[0]))
        elif node.op_type == "DequantizeLinear":
            x = node.input[0]
            if x not in q_outputs and not (x in inits and inits[x].data_type in INTEGER_INPUTS):
                return None  # an int8 graph input, or a tensor from an integer op
            params = _params(node, inits, ranks.get(x))
        else:
            if q_outputs & _reads(node):
                return None  # QLinearConv and friends (or an If branch) read the quantized tensor itself
            continue
        if params is None:
            return None
        plan[i] = params
    return plan


def _params(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto], rank: int | None) -> Params | None:
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if attrs.get("block_size", 0) or "output_dtype" in attrs or len(node.input) < 2:
        return None
    names = list(node.input[1:3])
    if any(n not in inits for n in names if n):
        return None
    scale_t = inits[names[0]]
    if scale_t.data_type != onnx.TensorProto.FLOAT:
        return None
    scale = numpy_helper.to_array(scale_t)
    if len(names) > 1 and names[1]:
        zero_t = inits[names[1]]
        dtype, zero = zero_t.data_type, numpy_helper.to_array(zero_t)
    elif node.op_type == "QuantizeLinear":
        dtype, zero = onnx.TensorProto.UINT8, np.zeros_like(scale)
    else:
        dtype = inits[node.input[0]].data_type if node.input[0] in inits else onnx.TensorProto.UINT8
        zero = np.zeros_like(scale)
    if dtype not in RANGES and not (dtype == onnx.TensorProto.INT32 and node.op_type == "DequantizeLinear"):
        return None
    if scale.shape != zero.shape or scale.ndim > 1:
        return None
    if scale.ndim == 1 and scale.size > 1:  # per-axis: broadcast along `axis` of the input
        if rank is None:
            return None
        axis = attrs.get("axis", 1)
        axis = axis + rank if axis < 0 else axis
        if not 0 <= axis < rank:
            return None
        shape = [1] * rank
        shape[axis] = scale.size
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    else:
        scale, zero = scale.reshape(()), zero.reshape(())
    return Params(scale.astype(np.float32), zero.astype(np.float32), dtype)


def _ranks(model: onnx.ModelProto) -> dict[str, int]:
    """Known tensor ranks: initializers, inputs, and what shape inference finds."""
    ranks = {t.name: len(t.dims) for t in model.graph.initializer}
    try:
        inferred = onnx.shape_inference.infer_shapes(model).graph
    except Exception:
        inferred = model.graph
    for v in [*inferred.input, *inferred.value_info, *inferred.output]:
        t = v.type.tensor_type
        if t.HasField("shape"):
            ranks.setdefault(v.name, len(t.shape.dim))
    return ranks


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _reads(node: onnx.NodeProto) -> set[str]:
    """The tensor names `node` reads, inside its If/Loop bodies too (they may read outer-scope names)."""
    names = set(node.input)
    for a in node.attribute:
        for sub in [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs):
            names |= _names_read(sub)
    return names


def _names_read(graph: onnx.GraphProto) -> set[str]:
    names = {o.name for o in graph.output}
    for n in graph.node:
        names |= _reads(n)
    return names


def _drop_unused(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drop the initializers only the replaced nodes read (their scales and zero points)."""
    used = _names_read(model.graph)
    kept = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    return model
