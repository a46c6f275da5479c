"""Exported models really run in onnxruntime-node and onnxruntime-web (WebAssembly under Node.js).

tests/js/run_exported.mjs is fed raw RGB pixels decoded here, so JavaScript needs no image library.
The npm packages install on first use (`npm install --ignore-scripts` keeps the CPU binaries that ship
in onnxruntime-node); the test skips, saying why, without node/npm or when the install fails.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from conftest import DATA, need
from PIL import Image

from zoo.export import export_model
from zoo.index.catalog import load_index
from zoo.runtime import EXACT_INT8
from zoo.store import download

JS = Path(__file__).parent / "js"
IMAGES = DATA / "images"
PHOTOS = ["frog.jpg", "banana.jpg", "goldfish.jpg", "pelican.jpeg", "ultraface_1.jpg"]


@pytest.fixture(scope="module")
def node() -> str:
    exe, npm = shutil.which("node"), shutil.which("npm")
    if exe is None or npm is None:
        pytest.skip("needs node and npm on PATH to run onnxruntime-node / onnxruntime-web")
    wanted = [JS / "node_modules" / p / "package.json" for p in ("onnxruntime-node", "onnxruntime-web")]
    if not all(p.exists() for p in wanted):
        try:
            # what package.json declares, which stays as committed (naming packages here rewrote it)
            subprocess.run([npm, "install", "--ignore-scripts", "--no-audit", "--no-fund", "--no-save"],
                           cwd=JS, check=True, capture_output=True, text=True, timeout=600)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            pytest.skip(f"npm install of onnxruntime-node/-web failed: {getattr(exc, 'stderr', '') or exc}")
    return exe


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("js-models")
    mp = pytest.MonkeyPatch()
    mp.setenv("ZOO_HOME", str(out / "home"))
    files = {}
    for model_id in ("mobilenetv2-12-int8", "shufflenet-v2-12-int8", "version-RFB-320", "mnist-8"):
        entry = load_index().resolve(model_id).entry
        download.import_file(entry, entry.file, need(DATA / "models" / entry.file.name))
        files[model_id] = Path(export_model(model_id, out / f"{model_id}.onnx").path)
    mp.undo()
    return files


def pixels(tmp: Path, paths: list[Path], mode: str) -> tuple[Path, list[np.ndarray]]:
    """Decode each image here, write raw uint8 .bin files and the JSON list the JS script reads."""
    items, arrays = [], []
    for i, path in enumerate(paths):
        a = np.ascontiguousarray(np.asarray(Image.open(path).convert(mode)))
        (tmp / f"{i}.bin").write_bytes(a.tobytes())
        items.append({"name": path.name, "pixels": f"{i}.bin", "shape": list(a.shape)})
        arrays.append(a)
    (tmp / "inputs.json").write_text(json.dumps(items))
    return tmp / "inputs.json", arrays


def run_js(node: str, backend: str, model: Path, inputs: Path) -> list[dict]:
    done = subprocess.run([node, str(JS / "run_exported.mjs"), backend, str(model), str(inputs)], cwd=JS,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def run_py(model: Path, arrays: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
    options = ort.SessionOptions()
    options.add_session_config_entry(*EXACT_INT8)  # what the JS side sets too (see run_exported.mjs)
    s = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in s.get_outputs()]
    return [dict(zip(names, s.run(None, {"image": a}))) for a in arrays]


@pytest.mark.parametrize("backend", ["node", "web"])
@pytest.mark.parametrize("model_id", ["mobilenetv2-12-int8", "shufflenet-v2-12-int8"])
def test_classifier_top1_in_javascript_equals_python(node, models, backend, model_id, tmp_path) -> None:
    inputs, arrays = pixels(tmp_path, [need(IMAGES / n) for n in PHOTOS], "RGB")
    js, py = run_js(node, backend, models[model_id], inputs), run_py(models[model_id], arrays)
    assert [r["name"] for r in js] == PHOTOS
    got = [(r["outputs"]["top_k"]["data"][0], r["outputs"]["top_k_labels"]["data"][0]) for r in js]
    assert got == [(int(p["top_k"][0, 0]), str(p["top_k_labels"][0, 0])) for p in py]
    if model_id == "mobilenetv2-12-int8":
        assert got[0][1] == "tree frog"


@pytest.mark.parametrize("backend", ["node", "web"])
def test_ultraface_boxes_in_javascript_equal_python(node, models, backend, tmp_path) -> None:
    paths = [need(IMAGES / n) for n in ("ultraface_1.jpg", "ultraface_3.jpg", "age_gender_bruce.jpg")]
    inputs, arrays = pixels(tmp_path, paths, "RGB")
    js, py = run_js(node, backend, models["version-RFB-320"], inputs), run_py(models["version-RFB-320"], arrays)
    faces = 0
    for r, p in zip(js, py):
        boxes = np.asarray(r["outputs"]["boxes"]["data"], dtype=np.float64).reshape(-1, 4)
        assert boxes.shape == p["boxes"].shape and r["outputs"]["labels"]["data"] == list(p["labels"])
        assert np.allclose(boxes, p["boxes"], atol=0.5)  # pixels; same graph, same float32 kernels
        faces += len(boxes)
    assert faces >= 5


def test_mnist_grey_input_in_javascript(node, models, tmp_path) -> None:
    digits = sorted(need(IMAGES / "digits").glob("mnist_*.jpg"))
    inputs, _ = pixels(tmp_path, digits, "L")
    for backend in ("node", "web"):
        js = run_js(node, backend, models["mnist-8"], inputs)
        assert [r["outputs"]["top_k"]["data"][0] for r in js] == [int(p.stem.split("_")[1]) for p in digits]
