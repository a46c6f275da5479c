"""The classification extension's answer (zoo.serve.oip.classified), in process: Triton's "score:index:label"."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("starlette", reason="zoo serve needs its extra (pip install 'zoo-client[serve]')")


def test_rows_rank_their_classes_highest_first_with_labels() -> None:
    from zoo.serve.oip import classified

    scores = np.array([[0.1, 2.5, -1.0, 2.5], [3.0, 0.0, 1.0, 2.0]], np.float32)
    out = classified(scores, 3, ["cat", "dog", "eel", "fox"], "out")
    assert out.shape == (2, 3) and out.dtype == object
    assert out.tolist() == [["2.500000:1:dog", "2.500000:3:fox", "0.100000:0:cat"],  # a tie: the lower index first
                            ["3.000000:0:cat", "2.000000:3:fox", "1.000000:2:eel"]]


def test_labels_that_do_not_number_the_classes_are_left_out_and_counts_are_capped() -> None:
    from zoo.serve.oip import classified

    logits = np.array([5, 7, 6], np.int64)  # a 1-D output: its one axis is the class axis
    assert classified(logits, 10, ["a", "b"], "out").tolist() == ["7.000000:1", "6.000000:2", "5.000000:0"]
    assert classified(logits, 1, None, "out").tolist() == ["7.000000:1"]


def test_outputs_without_a_class_axis_are_refused() -> None:
    from zoo.serve.errors import RequestError
    from zoo.serve.oip import classified

    with pytest.raises(RequestError, match=r"output 'scalar' \(FP32, shape \[\]\) has no classes to rank"):
        classified(np.float32(1.0).reshape(()), 3, None, "scalar")
    with pytest.raises(RequestError, match=r"output 'names' \(BYTES, shape \[2\]\) has no classes to rank"):
        classified(np.array(["a", "b"], dtype=object), 1, None, "names")
