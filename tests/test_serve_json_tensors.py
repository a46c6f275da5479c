"""JSON tensor data in an infer request becomes the datatype's array only where no value changes on the way.

A plain cast took true as 1.0, 2.5 as the INT64 2, 300 as the UINT8 44 and 1e40 as an FP32 inf:
answers to values the client never sent. These hold zoo.serve.oip to Triton's rules, in process.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

pytest.importorskip("starlette", reason="zoo serve needs its extra (pip install 'zoo-client[serve]')")


def _parse(datatype: str, data: Any, shape: list[int] | None = None) -> Any:
    from zoo.serve import oip

    shape = [len(data)] if shape is None else shape
    body = json.dumps({"inputs": [{"name": "x", "datatype": datatype, "shape": shape, "data": data}]}).encode()
    return oip.parse_request(body, None).inputs[0].array


@pytest.mark.parametrize(("datatype", "data", "message"), [
    ("FP32", [True, False], "holds true/false values; FP32 takes numbers"),
    ("FP32", ["1.5"], "holds text; FP32 takes numbers"),
    ("FP32", [1.0, None], "holds values other than numbers and true/false"),
    ("FP32", [1e40], "holds 1e+40, beyond FP32's largest value 3.40282e+38"),
    ("FP16", [70000], "holds 70000, beyond FP16's largest value 65504"),
    ("INT64", [1, 2.5], "holds numbers with a fraction or exponent; INT64 takes whole numbers"),
    ("INT32", [2**31], "holds values from 2147483648 to 2147483648; INT32 takes -2147483648 to 2147483647"),
    ("UINT8", [0, 300], "holds values from 0 to 300; UINT8 takes 0 to 255"),
    ("UINT8", [-1], "holds values from -1 to -1; UINT8 takes 0 to 255"),
    ("INT64", [2**64 - 1], "holds values from 18446744073709551615 to 18446744073709551615; INT64 takes "
                           "-9223372036854775808 to"),
    ("BOOL", [0, 1], "holds whole numbers; BOOL takes true or false"),
])
def test_values_a_cast_would_change_are_refused(datatype: str, data: list[Any], message: str) -> None:
    from zoo.serve.errors import RequestError

    with pytest.raises(RequestError, match="^input 'x': \"data\" " + message.replace("+", r"\+").replace("(", r"\(")):
        _parse(datatype, data)


@pytest.mark.parametrize(("datatype", "data", "shape", "wanted"), [
    ("FP32", [1, 2.5, -3e38], [3], np.array([1, 2.5, -3e38], np.float32)),  # whole numbers are numbers too
    ("FP32", [[1, 2], [3, 4]], [2, 2], np.array([[1, 2], [3, 4]], np.float32)),  # nested, as Triton takes them
    ("FP16", [65504, -0.5], [2], np.array([65504, -0.5], np.float16)),
    ("FP64", [1e300], [1], np.array([1e300])),
    ("INT8", [-128, 127], [2], np.array([-128, 127], np.int8)),
    ("UINT64", [2**64 - 1], [1], np.array([2**64 - 1], np.uint64)),
    ("BOOL", [True, False], [2], np.array([True, False])),
    ("INT64", [], [0], np.zeros(0, np.int64)),  # no values: nothing to check, the shape decides
])
def test_values_that_fit_arrive_exactly(datatype: str, data: list[Any], shape: list[int], wanted: np.ndarray) -> None:
    array = _parse(datatype, data, shape)
    assert array.dtype == wanted.dtype and array.shape == tuple(shape)
    assert np.array_equal(array, wanted)


def test_not_a_number_and_infinities_pass_as_sent() -> None:
    """JSON has no NaN or Infinity, but Python's json (and so tritonclient's) writes them: they are values, not
    overflow."""
    array = _parse("FP32", [float("nan"), float("inf"), -float("inf"), 1.0])
    assert np.isnan(array[0]) and list(array[1:]) == [np.inf, -np.inf, 1.0]
