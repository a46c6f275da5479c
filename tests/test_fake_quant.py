"""QDQ graphs rewritten as float ops (zoo/export/fake_quant.py) compute what the Q/DQ kernels compute.

Synthetic graphs, so these run anywhere: a Conv between Q/DQ pairs with per-channel int8 weights,
an int32 bias, a uint8 activation with a zero point, one without, values that round half-to-even
and values that saturate.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from zoo.export import fake_quant

QUANT_OPS = {"QuantizeLinear", "DequantizeLinear"}


def qdq_conv(*, output_zero: bool = True) -> onnx.ModelProto:
    """x -> Q(u8, zp 128) -> DQ -> Conv(DQ(int8 per-channel W), DQ(int32 bias)) -> Q -> DQ -> y."""
    rng = np.random.default_rng(7)
    w = rng.integers(-127, 128, size=(3, 2, 3, 3), dtype=np.int8)
    w_scale = np.array([0.02, 0.05, 0.011], np.float32)
    x_scale = np.float32(0.25)
    bias = rng.integers(-500, 500, size=3, dtype=np.int32)
    inits = [numpy_helper.from_array(a, n) for a, n in [
        (x_scale, "xs"), (np.uint8(128), "xz"), (w, "w"), (w_scale, "ws"), (np.zeros(3, np.int8), "wz"),
        (bias, "b"), (x_scale * w_scale, "bs"), (np.float32(0.1), "ys"), (np.int8(-3), "yz")]]
    y_zero = ["yz"] if output_zero else []
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xf"]),
             helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wf"], axis=0),
             helper.make_node("DequantizeLinear", ["b", "bs"], ["bf"], axis=0),
             helper.make_node("Conv", ["xf", "wf", "bf"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("QuantizeLinear", ["c", "ys", *y_zero], ["cq"]),
             helper.make_node("DequantizeLinear", ["cq", "ys", *y_zero], ["y"])]
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 5, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 5, 5])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def run(model: onnx.ModelProto, x: np.ndarray, level: ort.GraphOptimizationLevel) -> np.ndarray:
    so = ort.SessionOptions()
    so.graph_optimization_level = level
    so.log_severity_level = 3
    s = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return s.run(None, {"x": x})[0]


def inputs() -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    ties = (np.arange(50, dtype=np.float32) - 25) * 0.25 + 0.125  # x / 0.25 = k + 0.5: half-to-even decides
    return [rng.normal(0, 8, (1, 2, 5, 5)).astype(np.float32),
            ties.reshape(1, 2, 5, 5),
            np.full((1, 2, 5, 5), 1000.0, np.float32),  # saturates the u8 activation at 255
            np.linspace(-1000, 1000, 50, dtype=np.float32).reshape(1, 2, 5, 5)]


@pytest.mark.parametrize("output_zero", [True, False], ids=["int8-output", "uint8-output-no-zero-point"])
def test_rewrite_is_bit_equal_to_the_qdq_kernels(output_zero) -> None:
    model = qdq_conv(output_zero=output_zero)
    rewritten = fake_quant.rewrite(model)
    onnx.checker.check_model(rewritten, full_check=True)
    assert not {n.op_type for n in rewritten.graph.node} & QUANT_OPS
    disable = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    for x in inputs():
        want = run(model, x, disable)
        assert np.array_equal(run(rewritten, x, disable), want)
        # Every optimisation on: nothing left to fuse into integer kernels, the answer stays.
        assert np.array_equal(run(rewritten, x, ort.GraphOptimizationLevel.ORT_ENABLE_ALL), want)


def test_rewrite_rounds_half_to_even_and_saturates() -> None:
    x = np.array([0.125, 0.375, -0.125, -0.375, 1e6, -1e6], np.float32)  # / 0.25: 0.5, 1.5, -0.5, -1.5
    inits = [numpy_helper.from_array(np.float32(0.25), "s"), numpy_helper.from_array(np.int8(0), "z")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])]
    graph = helper.make_graph(nodes, "pair", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [6])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    got = run(fake_quant.rewrite(model), x, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    assert got.tolist() == [0.0, 0.5, 0.0, -0.5, 127 * 0.25, -128 * 0.25]


def test_rewrite_leaves_graphs_that_read_quantized_tensors_alone() -> None:
    model = qdq_conv()
    as_output = onnx.ModelProto()
    as_output.CopyFrom(model)
    as_output.graph.output.append(helper.make_tensor_value_info("xq", TensorProto.UINT8, [1, 2, 5, 5]))
    assert fake_quant.rewrite(as_output) is as_output  # a graph output holds the u8 tensor itself

    qlinear = onnx.ModelProto()
    qlinear.CopyFrom(model)
    # A QOperator-style consumer (here MaxPool on the u8 tensor) reads the quantized values.
    qlinear.graph.node.insert(1, helper.make_node("MaxPool", ["xq"], ["xq_pool"], kernel_shape=[1, 1]))
    qlinear.graph.node[2].input[0] = "xq_pool"
    assert fake_quant.rewrite(qlinear) is qlinear
    assert not fake_quant.is_qdq(qlinear)

    float_only = helper.make_model(helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "f", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])]), opset_imports=[helper.make_opsetid("", 17)])
    assert fake_quant.rewrite(float_only) is float_only


def test_rewrite_refuses_per_block_and_non_constant_parameters() -> None:
    per_block = qdq_conv()
    node = per_block.graph.node[2]  # the weights' DQ
    node.attribute.append(helper.make_attribute("block_size", 2))
    assert fake_quant.rewrite(per_block) is per_block

    live_scale = qdq_conv()
    live_scale.graph.input.append(helper.make_tensor_value_info("s_in", TensorProto.FLOAT, []))
    live_scale.graph.node[5].input[1] = "s_in"  # the output Q's scale comes from the caller
    live_scale.graph.node[6].input[1] = "s_in"
    assert fake_quant.rewrite(live_scale) is live_scale


def test_rewrite_does_not_touch_its_input() -> None:
    model = qdq_conv()
    before = model.SerializeToString()
    fake_quant.rewrite(model)
    assert model.SerializeToString() == before


def test_rewrite_leaves_a_graph_whose_branch_reads_a_quantized_tensor_alone() -> None:
    model = qdq_conv()
    branch = helper.make_graph([helper.make_node("Identity", ["xq"], ["out"])], "branch", [],
                               [helper.make_tensor_value_info("out", TensorProto.UINT8, None)])
    model.graph.initializer.append(numpy_helper.from_array(np.array(True), "flag"))
    model.graph.node.append(helper.make_node("If", ["flag"], ["picked"], then_branch=branch, else_branch=branch))
    model.graph.output.append(helper.make_tensor_value_info("picked", TensorProto.UINT8, None))
    assert fake_quant.rewrite(model) is model
