"""PyTorch -> torch.onnx.export -> `zoo add` with its recipe -> `zoo predict` on image files.

Run by `tox -e roundtrip-torch`.

A small CNN (NCHW, RGB, x / 255) is trained on noisy red/green/blue squares; its logits are decoded by
zoo's softmax-topk. Tolerance: top-1 exactly on every held-back image, softmax probabilities within
1e-4 absolute.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from roundtrip_helpers import add, colour_images, nhwc_recipe, predict

torch = pytest.importorskip("torch", reason="torch is not installed: run `tox -e roundtrip-torch`")

SIZE = 16
PROB_ATOL = 1e-4
CLASSES = ["red", "green", "blue"]


def train(x: np.ndarray, y: np.ndarray) -> object:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(4, 3))
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    xs, ys = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), torch.from_numpy(y)
    for _ in range(150):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(xs), ys).backward()
        opt.step()
    return net.eval()


def test_torch_image_classifier(tmp_path: Path) -> None:
    _, x_train, y_train = colour_images(tmp_path / "train", 60, seed=1, size=SIZE)
    paths, x_test, _ = colour_images(tmp_path / "held", 12, seed=2, size=SIZE)
    net = train(x_train, y_train)
    path = tmp_path / "colours.onnx"
    example = torch.zeros(1, 3, SIZE, SIZE)
    extra = {"external_data": False} if _dynamo() else {}  # one self-contained file, as `zoo add` wants
    torch.onnx.export(net, (example,), str(path), input_names=["image"], output_names=["logits"], **extra,
                      dynamic_shapes=({0: torch.export.Dim("batch")},) if _dynamo() else None,
                      dynamic_axes=None if _dynamo() else {"image": {0: "batch"}, "logits": {0: "batch"}})
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps(nhwc_recipe(SIZE, "image", layout="NCHW")))
    add(path, "torch-colours", "--task", "classification", "--recipe-json", str(recipe),
        "--labels", ",".join(CLASSES), "--postprocess", "softmax-topk")
    with torch.no_grad():
        logits = net(torch.from_numpy(x_test.transpose(0, 3, 1, 2).copy()))
    expected = torch.softmax(logits, dim=1).numpy()
    rows = predict("torch-colours", *paths, options=("--top-k", "3"))
    assert [r[0]["index"] for r in rows] == expected.argmax(axis=1).tolist()
    got = np.array([[next(c["score"] for c in r if c["index"] == k) for k in range(3)] for r in rows])
    diff = float(np.abs(got - expected).max())
    assert diff < PROB_ATOL, f"probabilities differ by {diff}"
    print(f"torch-colours: top-1 equal on {len(rows)} images, max |dp| {diff:.2e}")


def _dynamo() -> bool:
    """torch >= 2.9 exports through torch.export (dynamo) by default; older ones through TorchScript."""
    major, minor = (int(p) for p in torch.__version__.split(".")[:2])
    return (major, minor) >= (2, 9)
