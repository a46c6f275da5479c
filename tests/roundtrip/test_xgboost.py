"""XGBoost -> onnxmltools -> `zoo add` -> `zoo predict` equals the booster on held-back rows.

Run by `tox -e roundtrip-xgboost`.

Tolerance: class probabilities within 1e-5 absolute (both sum float32 leaf values); labels exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from roundtrip_helpers import add, max_prob_diff, predict, write_csv

xgboost = pytest.importorskip("xgboost", reason="xgboost is not installed: run `tox -e roundtrip-xgboost`")
onnxmltools = pytest.importorskip("onnxmltools", reason="onnxmltools is not installed: run `tox -e roundtrip-xgboost`")
pytest.importorskip("sklearn", reason="scikit-learn (test extra) provides the data set")

from onnxmltools.convert.common.data_types import FloatTensorType  # noqa: E402
from sklearn.datasets import load_wine  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

PROB_ATOL = 1e-5


def test_xgboost_classifier(tmp_path: Path) -> None:
    x, y = load_wine(return_X_y=True)
    x = x.astype(np.float32)
    x_train, x_test, y_train, _ = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    clf = xgboost.XGBClassifier(n_estimators=30, max_depth=3, learning_rate=0.3, n_jobs=1).fit(x_train, y_train)
    onx = onnxmltools.convert_xgboost(clf, initial_types=[("features", FloatTensorType([None, x.shape[1]]))],
                                      target_opset=15)
    path = tmp_path / "wine-xgb.onnx"
    path.write_bytes(onx.SerializeToString())
    add(path, "wine-xgb", "--task", "tabular-classification", "--labels", "class_0,class_1,class_2")
    csv = write_csv(tmp_path / "held.csv", [f"f{i}" for i in range(x.shape[1])], [x_test[:, i] for i in range(13)])
    rows = [r[0] for r in predict("wine-xgb", csv)]
    assert [r["index"] for r in rows] == clf.predict(x_test).tolist()
    diff = max_prob_diff(rows, clf.predict_proba(x_test), ["class_0", "class_1", "class_2"])
    assert diff < PROB_ATOL, f"probabilities differ by {diff}"
    print(f"wine-xgb: labels equal on {len(rows)} rows, max |dp| {diff:.2e}")
