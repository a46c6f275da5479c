"""scikit-learn -> skl2onnx -> `zoo add` -> `zoo predict` equals the estimator on held-back rows.

Tolerances (float32 ONNX kernels against scikit-learn's float64): class probabilities within 1e-4
absolute, regression values within 1e-4 relative; labels exactly. Runs in the default suite
(scikit-learn and skl2onnx are in the test extra) and in `tox -e roundtrip-sklearn`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import json_lines, zoo_cli
from roundtrip_helpers import add, max_prob_diff, predict, write_csv

sklearn = pytest.importorskip("sklearn", reason="scikit-learn is not installed (it is in the test extra)")
skl2onnx = pytest.importorskip("skl2onnx", reason="skl2onnx is not installed (it is in the test extra)")

from skl2onnx.common.data_types import FloatTensorType, StringTensorType  # noqa: E402
from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.datasets import load_diabetes, load_wine  # noqa: E402
from sklearn.ensemble import RandomForestRegressor  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import OneHotEncoder, StandardScaler  # noqa: E402

PROB_ATOL = 1e-4
VALUE_RTOL = 1e-4


def test_scaler_classifier_pipeline_from_csv_and_numpy(tmp_path: Path) -> None:
    x, y = load_wine(return_X_y=True)
    x = x.astype(np.float32)
    x_train, x_test, y_train, _ = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    pipe = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=500))]).fit(x_train, y_train)
    path = tmp_path / "wine.onnx"
    path.write_bytes(skl2onnx.to_onnx(pipe, x_train[:1], target_opset=17).SerializeToString())
    add(path, "wine-lr", "--task", "tabular-classification", "--labels", "class_0,class_1,class_2")
    header = [f"f{i}" for i in range(x.shape[1])]
    csv = write_csv(tmp_path / "held.csv", header, [x_test[:, i] for i in range(x.shape[1])])
    np.save(tmp_path / "held.npy", x_test)
    for source in (csv, tmp_path / "held.npy"):
        rows = [r[0] for r in predict("wine-lr", source)]
        assert [r["index"] for r in rows] == pipe.predict(x_test).tolist()
        diff = max_prob_diff(rows, pipe.predict_proba(x_test), ["class_0", "class_1", "class_2"])
        assert diff < PROB_ATOL, f"probabilities differ by {diff}"
        print(f"wine-lr ({source.suffix}): labels equal on {len(rows)} rows, max |dp| {diff:.2e}")


def test_regressor_values(tmp_path: Path) -> None:
    x, y = load_diabetes(return_X_y=True)
    x = x.astype(np.float32)
    x_train, x_test, y_train, _ = train_test_split(x, y, test_size=0.25, random_state=0)
    reg = RandomForestRegressor(n_estimators=20, max_depth=6, random_state=0).fit(x_train, y_train)
    path = tmp_path / "diabetes.onnx"
    path.write_bytes(skl2onnx.to_onnx(reg, x_train[:1], target_opset=17).SerializeToString())
    add(path, "diabetes-rf", "--task", "tabular-regression")
    np.save(tmp_path / "held.npy", x_test)
    got = np.array([r[0]["value"] for r in predict("diabetes-rf", tmp_path / "held.npy")])
    expected = reg.predict(x_test)
    rel = float(np.max(np.abs(got - expected) / np.abs(expected)))
    assert rel < VALUE_RTOL, f"values differ by {rel} (relative)"
    print(f"diabetes-rf: {len(got)} values, max relative difference {rel:.2e}")


def test_named_columns_with_a_string_category(tmp_path: Path) -> None:
    """One graph input per column (a string one-hot encoded): CSV columns are matched by name, in any order."""
    rng = np.random.default_rng(0)
    n = 300
    colour = rng.choice(np.array(["red", "green", "blue"]), n)
    size = rng.normal(0, 1, n).astype(np.float32)
    weight = rng.normal(0, 1, n).astype(np.float32)
    y = ((colour == "red") & (size > 0) | (weight > 1.0)).astype(np.int64)
    frame = np.empty((n, 3), dtype=object)
    frame[:, 0], frame[:, 1], frame[:, 2] = colour, size, weight
    pre = ColumnTransformer([("cat", OneHotEncoder(), [0]), ("num", StandardScaler(), [1, 2])])
    pipe = Pipeline([("pre", pre), ("clf", LogisticRegression())]).fit(frame[:200], y[:200])
    types = [("colour", StringTensorType([None, 1])), ("size", FloatTensorType([None, 1])),
             ("weight", FloatTensorType([None, 1]))]
    path = tmp_path / "mixed.onnx"
    path.write_bytes(skl2onnx.to_onnx(pipe, initial_types=types, target_opset=17).SerializeToString())
    add(path, "mixed-lr", "--task", "tabular-classification", "--labels", "no,yes")
    held = frame[200:]
    csv = write_csv(tmp_path / "held.csv", ["weight", "colour", "size"], [held[:, 2], held[:, 0], held[:, 1]])
    rows = [r[0] for r in predict("mixed-lr", csv)]
    assert [r["index"] for r in rows] == pipe.predict(held).tolist()
    diff = max_prob_diff(rows, pipe.predict_proba(held), ["no", "yes"])
    assert diff < PROB_ATOL
    print(f"mixed-lr: labels equal on {len(rows)} rows, max |dp| {diff:.2e}")
    missing = write_csv(tmp_path / "missing.csv", ["colour", "size"], [held[:, 0], held[:, 1]])
    extra = write_csv(tmp_path / "extra.csv", ["colour", "size", "weight", "age"],
                      [held[:, 0], held[:, 1], held[:, 2], held[:, 1]])
    for bad, words in ((missing, "missing weight"), (extra, "extra age")):
        row = json_lines(zoo_cli("predict", "mixed-lr", str(bad), "--json", code=2).stdout)[0]
        assert words in row["error"] and "exactly the columns colour, size, weight" in row["hint"]
