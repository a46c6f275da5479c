"""Shared pieces of the converter round trips: add a converted model with `zoo add`, predict with `zoo predict`.

Each test module trains a small model in its framework, converts it, and compares the framework's own
predictions on held-back rows or images with what `zoo predict --json` prints. Labels must agree exactly;
probabilities and regression values within the tolerance each module states (float32 in ONNX against
float64 or float32 kernels in the framework). Not a conftest.py: see tests/reliability/reliability_helpers.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from conftest import json_lines, zoo_cli
from PIL import Image


def add(path: Path, model_id: str, *options: str) -> dict[str, Any]:
    """`zoo add PATH --id ID OPTIONS --json` -> the entry it printed."""
    return json.loads(zoo_cli("add", str(path), "--id", model_id, *options, "--json").stdout)


def predict(model_id: str, *inputs: Path, options: tuple[str, ...] = ()) -> list[list[dict[str, Any]]]:
    """The predictions of `zoo predict MODEL INPUTS --json`: one list per row or image (JSON Lines)."""
    rows = json_lines(zoo_cli("predict", model_id, *(str(p) for p in inputs), *options, "--json").stdout)
    assert all("error" not in r for r in rows), rows
    return [r["predictions"] for r in rows]


def write_csv(path: Path, header: list[str], columns: list[np.ndarray]) -> Path:
    """A CSV with a header; each column may be numbers or strings."""
    lines = [",".join(header)]
    lines += [",".join(str(c[i]) for c in columns) for i in range(len(columns[0]))]
    path.write_text("\n".join(lines) + "\n")
    return path


def max_prob_diff(rows: list[dict[str, Any]], expected: np.ndarray, classes: list[Any]) -> float:
    """The largest |zoo - framework| over every row's class probabilities."""
    got = np.array([[r["probabilities"][str(c)] for c in classes] for r in rows])
    return float(np.abs(got - expected).max())


def colour_images(folder: Path, count: int, seed: int, size: int = 16) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """PNG files of noisy red, green or blue squares (already at the model's size, so resizing is exact).

    Returns the paths, the pixels as the recipe makes them (NHWC, x / 255) and the dominant channel.
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    labels = rng.integers(0, 3, count)
    paths, arrays = [], []
    for i, label in enumerate(labels):
        pixels = rng.integers(0, 90, (size, size, 3))
        pixels[..., label] += rng.integers(120, 165)
        img = np.clip(pixels, 0, 255).astype(np.uint8)
        path = folder / f"img{i:03d}.png"
        Image.fromarray(img, "RGB").save(path)
        paths.append(path)
        arrays.append(img.astype(np.float32) / 255)
    return paths, np.stack(arrays), labels


def nhwc_recipe(size: int, input_name: str, layout: str = "NHWC") -> dict[str, Any]:
    """The recipe the Keras and PyTorch models were trained with: RGB, x / 255, no mean or std."""
    return {"kind": "image", "input": input_name, "resize": {"method": "stretch", "size": [size, size]},
            "interpolation": "bilinear", "scale": 1 / 255, "channel_order": "RGB", "layout": layout,
            "dtype": "float32"}
