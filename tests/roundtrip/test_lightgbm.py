"""LightGBM -> onnxmltools -> `zoo add` -> `zoo predict` equals the model on held-back rows.

Run by `tox -e roundtrip-lightgbm`.

Tolerances: class probabilities within 1e-5 absolute; labels exactly. Regression values within 1e-4
relative on at least 97% of the rows and within 1% on every row: the converter rounds LightGBM's float64
split thresholds to float32, so a row whose feature lies between the two roundings takes the other
branch of one tree (1 row of 111 here, off by 0.23 on a value near 190). The classifier's probabilities
come as a ZipMap (a list of {class: p}), the regressor's values as one [N, 1] tensor.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from roundtrip_helpers import add, max_prob_diff, predict

lightgbm = pytest.importorskip("lightgbm", reason="lightgbm is not installed: run `tox -e roundtrip-lightgbm`")
onnxmltools = pytest.importorskip("onnxmltools",
                                  reason="onnxmltools is not installed: run `tox -e roundtrip-lightgbm`")
pytest.importorskip("sklearn", reason="scikit-learn (test extra) provides the data sets")

from onnxmltools.convert.common.data_types import FloatTensorType  # noqa: E402
from sklearn.datasets import load_diabetes, load_wine  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

PROB_ATOL = 1e-5
VALUE_RTOL = 1e-4


def convert(model: object, features: int, path: Path) -> Path:
    onx = onnxmltools.convert_lightgbm(model, initial_types=[("features", FloatTensorType([None, features]))],
                                       target_opset=15)
    path.write_bytes(onx.SerializeToString())
    return path


def test_lightgbm_classifier(tmp_path: Path) -> None:
    x, y = load_wine(return_X_y=True)
    x = x.astype(np.float32)
    x_train, x_test, y_train, _ = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    clf = lightgbm.LGBMClassifier(n_estimators=30, num_leaves=8, n_jobs=1, verbose=-1).fit(x_train, y_train)
    add(convert(clf, x.shape[1], tmp_path / "wine-lgbm.onnx"), "wine-lgbm", "--task", "tabular-classification",
        "--labels", "class_0,class_1,class_2")
    np.save(tmp_path / "held.npy", x_test)
    rows = [r[0] for r in predict("wine-lgbm", tmp_path / "held.npy")]
    assert [r["index"] for r in rows] == clf.predict(x_test).tolist()
    diff = max_prob_diff(rows, clf.predict_proba(x_test), ["class_0", "class_1", "class_2"])
    assert diff < PROB_ATOL, f"probabilities differ by {diff}"
    print(f"wine-lgbm: labels equal on {len(rows)} rows, max |dp| {diff:.2e}")


def test_lightgbm_regressor(tmp_path: Path) -> None:
    x, y = load_diabetes(return_X_y=True)
    x = x.astype(np.float32)
    x_train, x_test, y_train, _ = train_test_split(x, y, test_size=0.25, random_state=0)
    reg = lightgbm.LGBMRegressor(n_estimators=40, num_leaves=8, n_jobs=1, verbose=-1).fit(x_train, y_train)
    add(convert(reg, x.shape[1], tmp_path / "diabetes-lgbm.onnx"), "diabetes-lgbm", "--task", "tabular-regression")
    np.save(tmp_path / "held.npy", x_test)
    got = np.array([r[0]["value"] for r in predict("diabetes-lgbm", tmp_path / "held.npy")])
    expected = reg.predict(x_test)
    rel = np.abs(got - expected) / np.abs(expected)
    close = int((rel < VALUE_RTOL).sum())
    assert close >= 0.97 * len(rel) and rel.max() < 1e-2, f"{close} of {len(rel)} within {VALUE_RTOL}; max {rel.max()}"
    print(f"diabetes-lgbm: {close} of {len(got)} values within {VALUE_RTOL} relative, max {rel.max():.2e}")
