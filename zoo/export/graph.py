"""A small ONNX graph builder: nodes and constants with unique names, standard ops only.

The pre- and postprocessing graphs are written with it so each step reads as a
few lines of arithmetic instead of hand-made NodeProtos.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# Resize's `antialias` (Pillow-like reducing filters) arrived in opset 18; every part is aligned to it.
OPSET = 18
IR_VERSION = 8  # the lowest IR that carries opset 18; onnxruntime-web/node of 2023+ load it

DTYPES: dict[str, int] = {"float32": TensorProto.FLOAT, "uint8": TensorProto.UINT8, "int64": TensorProto.INT64,
                          "int32": TensorProto.INT32, "float64": TensorProto.DOUBLE, "string": TensorProto.STRING}


@dataclass
class Builder:
    """Accumulates nodes, initializers, inputs and outputs of one graph."""

    prefix: str
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[onnx.TensorProto] = field(default_factory=list)
    inputs: list[onnx.ValueInfoProto] = field(default_factory=list)
    outputs: list[onnx.ValueInfoProto] = field(default_factory=list)
    _count: int = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{self.prefix}/{hint}_{self._count}"

    def op(self, op_type: str, inputs: list[str], *, out: str | None = None,
           **attrs: int | float | str | list[int] | list[float]) -> str:
        """Add one node with a single output; returns the output's name."""
        result = out or self.name(op_type.lower())
        node = helper.make_node(op_type, inputs, [result], name=self.name(op_type))
        node.attribute.extend(helper.make_attribute(k, v) for k, v in attrs.items())
        self.nodes.append(node)
        return result

    def ops(self, op_type: str, inputs: list[str], n: int, **attrs: int | float | str) -> list[str]:
        """Add one node with `n` outputs (TopK)."""
        results = [self.name(f"{op_type.lower()}_out") for _ in range(n)]
        node = helper.make_node(op_type, inputs, results, name=self.name(op_type))
        node.attribute.extend(helper.make_attribute(k, v) for k, v in attrs.items())
        self.nodes.append(node)
        return results

    def const(self, value: np.ndarray | list[float] | list[int] | float | int, dtype: str = "float32") -> str:
        """A constant tensor (an initializer), in `dtype`."""
        result = self.name("const")
        if dtype == "string":
            array = np.asarray(value, dtype=object)
        else:
            array = np.asarray(value, dtype=np.dtype(dtype))
        self.initializers.append(numpy_helper.from_array(array, result))
        return result

    def f64(self, value: float) -> str:
        """A float64 [1] constant (size arithmetic runs in float64, as Python's does)."""
        return self.const([value], "float64")

    def i64(self, *values: int) -> str:
        return self.const(list(values), "int64")

    def add_input(self, name: str, dtype: str, shape: list[int | str | None]) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, DTYPES[dtype], shape))
        return name

    def add_output(self, source: str, name: str, dtype: str, shape: Sequence[int | str | None] | None) -> None:
        """Expose `source` as graph output `name` (through Identity when the names differ)."""
        if source != name:
            self.op("Identity", [source], out=name)
        self.outputs.append(helper.make_tensor_value_info(name, DTYPES[dtype], shape))

    def model(self, graph_name: str) -> onnx.ModelProto:
        used = {name for node in self.nodes for name in node.input}
        used |= {name for node in self.nodes for a in node.attribute if a.g.node for n in a.g.node for name in n.input}
        kept = [t for t in self.initializers if t.name in used]  # shorthands may leave a constant unused
        graph = helper.make_graph(self.nodes, graph_name, self.inputs, self.outputs, kept)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="zoo")
        model.ir_version = IR_VERSION
        return model

    def if_else(self, cond: str, then: Builder, other: Builder) -> str:
        """An If node; each branch builder ends with one output (its last `outputs` entry)."""
        branches = [helper.make_graph(part.nodes, part.prefix, [], part.outputs, part.initializers)
                    for part in (then, other)]
        result = self.name("if")
        self.nodes.append(helper.make_node("If", [cond], [result], name=self.name("If"),
                                           then_branch=branches[0], else_branch=branches[1]))
        self._count += then._count + other._count
        return result

    def branch(self, hint: str) -> Builder:
        """A builder for an If branch; names stay unique because the prefix is."""
        return Builder(self.name(hint))

    # -- arithmetic shorthands ------------------------------------------------------------

    def cast(self, x: str, dtype: str) -> str:
        return self.op("Cast", [x], to=DTYPES[dtype])

    def round_clip(self, x: str) -> str:
        """Pillow's 8-bit rounding: floor(x + 0.5) clamped to 0..255 (its fixed point adds half, then shifts)."""
        half = self.op("Add", [x, self.const(0.5)])
        return self.op("Clip", [self.op("Floor", [half]), self.const(0.0), self.const(255.0)])
