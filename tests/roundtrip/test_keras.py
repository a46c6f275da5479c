"""Keras (tensorflow-cpu) -> tf2onnx -> `zoo add` with its recipe -> `zoo predict` on image files.

Run by `tox -e roundtrip-keras`.

A small CNN is trained on noisy red/green/blue squares with its own preprocessing (NHWC, RGB, x / 255),
declared to zoo as a recipe. Tolerance: top-1 exactly on every held-back image, class probabilities
within 1e-4 absolute (the same float32 graph, different kernels).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from roundtrip_helpers import add, colour_images, nhwc_recipe, predict

tf = pytest.importorskip("tensorflow", reason="tensorflow-cpu is not installed: run `tox -e roundtrip-keras`")
tf2onnx = pytest.importorskip("tf2onnx", reason="tf2onnx is not installed: run `tox -e roundtrip-keras`")

SIZE = 16
PROB_ATOL = 1e-4
CLASSES = ["red", "green", "blue"]


def train(x: np.ndarray, y: np.ndarray) -> object:
    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([
        tf.keras.Input((SIZE, SIZE, 3), name="image"),
        tf.keras.layers.Conv2D(4, 3, activation="relu"),
        tf.keras.layers.GlobalAveragePooling2D(),
        tf.keras.layers.Dense(3, activation="softmax"),
    ])
    model.compile(optimizer=tf.keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=30, verbose=0)
    return model


def test_keras_image_classifier(tmp_path: Path) -> None:
    _, x_train, y_train = colour_images(tmp_path / "train", 60, seed=1, size=SIZE)
    paths, x_test, _ = colour_images(tmp_path / "held", 12, seed=2, size=SIZE)
    model = train(x_train, y_train)
    spec = (tf.TensorSpec((None, SIZE, SIZE, 3), tf.float32, name="image"),)

    @tf.function(input_signature=spec)
    def serve(image: object) -> object:
        return model(image, training=False)

    onx, _ = tf2onnx.convert.from_function(serve, input_signature=spec, opset=13)
    path = tmp_path / "colours.onnx"
    path.write_bytes(onx.SerializeToString())
    input_name = onx.graph.input[0].name
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps(nhwc_recipe(SIZE, input_name)))
    add(path, "keras-colours", "--task", "classification", "--recipe-json", str(recipe),
        "--labels", ",".join(CLASSES), "--postprocess", "already-probabilities-topk")
    expected = np.asarray(model.predict(x_test, verbose=0))
    rows = predict("keras-colours", *paths, options=("--top-k", "3"))
    assert [r[0]["index"] for r in rows] == expected.argmax(axis=1).tolist()
    got = np.array([[next(c["score"] for c in r if c["index"] == k) for k in range(3)] for r in rows])
    diff = float(np.abs(got - expected).max())
    assert diff < PROB_ATOL, f"probabilities differ by {diff}"
    print(f"keras-colours: top-1 equal on {len(rows)} images, max |dp| {diff:.2e}")
