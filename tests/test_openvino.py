"""A real second execution provider: onnxruntime-openvino (run by `tox -e openvino`).

The default environment has plain onnxruntime, so these tests skip there with
the reason; the openvino tox env replaces onnxruntime with the OpenVINO build.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from conftest import DATA, need

import zoo.api as zoo
from zoo.index.catalog import load_index
from zoo.store import download

OPENVINO = "OpenVINOExecutionProvider"
pytestmark = pytest.mark.skipif(OPENVINO not in ort.get_available_providers(),
                                reason="onnxruntime-openvino is not installed here (run `tox -e openvino`)")


def seed(model_id: str) -> None:
    entry = load_index().resolve(model_id).entry
    download.import_file(entry, entry.file, need(DATA / "models" / entry.file.name))


@pytest.mark.parametrize(("model_id", "image", "rtol"), [
    ("mnist-8", "digits/mnist_7.jpg", 1e-3), ("shufflenet-v2-12-int8", "frog.jpg", 0.05),
    ("version-RFB-320", "ultraface_3.jpg", 1e-2)])
def test_openvino_matches_cpu(model_id: str, image: str, rtol: float) -> None:
    seed(model_id)
    cpu = zoo.load(model_id, providers="cpu")
    ov = zoo.load(model_id, providers="openvino", strict_provider=True)
    assert ov.providers[0] == OPENVINO and cpu.providers == ["CPUExecutionProvider"]
    feeds = cpu.preprocess(str(DATA / "images" / image))
    a, b = cpu.run(feeds), ov.run(feeds)
    for name in a:
        scale = float(np.abs(a[name]).max()) or 1.0
        assert float(np.abs(a[name] - b[name]).max()) <= rtol * scale, name
    first_cpu = cpu.predict(str(DATA / "images" / image))
    first_ov = ov.predict(str(DATA / "images" / image))
    if isinstance(first_cpu.predictions, list) and first_cpu.predictions and hasattr(first_cpu.predictions[0], "box"):
        assert len(first_cpu.predictions) == len(first_ov.predictions)
    else:
        assert first_cpu.predictions[0].index == first_ov.predictions[0].index


def test_openvino_is_preferred_over_cpu_by_default() -> None:
    seed("mnist-8")
    assert zoo.load("mnist-8").providers[0] == OPENVINO


def test_graph_openvino_cannot_compile_falls_back_loudly(capsys: pytest.CaptureFixture) -> None:
    """mobilenetv2-12-int8 has a dynamic-rank tensor OpenVINO's CPU plugin refuses: ORT raises, zoo retries on CPU."""
    seed("mobilenetv2-12-int8")
    model = zoo.load("mobilenetv2-12-int8", providers="openvino")
    assert model.providers == ["CPUExecutionProvider"] and model.report.fell_back == (OPENVINO,)
    assert "OpenVINOExecutionProvider failed to load the model" in capsys.readouterr().err
    assert model.predict(str(DATA / "images" / "frog.jpg")).predictions[0].label == "tree frog"
    with pytest.raises(zoo.ZooError, match="cannot run this model"):
        zoo.load("mobilenetv2-12-int8", providers="openvino", strict_provider=True)
