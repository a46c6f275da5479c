"""Plugin execution providers (onnxruntime >= 1.22): registered from ZOO_EP_LIBRARIES, engaged per device.

Runs in `tox -e ep-plugin` (onnxruntime + onnxruntime-ep-openvino). That plugin exposes
devices only on Intel CPUs/GPUs/NPUs: elsewhere zoo must report the fallback to CPU,
which onnxruntime does silently.
"""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import pytest
from test_runtime import tiny_model

from zoo.errors import ProviderError
from zoo.runtime import SessionSpec, create_session

plugin = pytest.importorskip("onnxruntime_ep_openvino", reason="onnxruntime-ep-openvino is not installed "
                             "(run `tox -e ep-plugin`)")


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> list:
    monkeypatch.setenv("ZOO_EP_LIBRARIES", f"{plugin.get_ep_name()}={plugin.get_library_path()}")
    create_session(tiny_model(Path(__import__("tempfile").mkdtemp()) / "m.onnx"), SessionSpec())  # registers
    return [d for d in ort.get_ep_devices() if d.ep_name == plugin.get_ep_name()]


def test_plugin_is_used_when_it_has_devices_else_fallback_is_reported(registered: list, tmp_path: Path) -> None:
    warnings: list[str] = []
    session, rep = create_session(tiny_model(tmp_path / "m.onnx"), SessionSpec(providers=("openvino",)),
                                  warn=warnings.append)
    assert rep.used == tuple(session.get_providers())
    if registered:  # an Intel machine: the plugin EP runs the graph
        assert rep.primary == plugin.get_ep_name() and not warnings
    else:  # e.g. AMD: registered, no devices -> CPU, and zoo says so
        assert rep.used == ("CPUExecutionProvider",) and rep.fell_back == ("OpenVINOExecutionProvider",)
        assert warnings and "OpenVINOExecutionProvider not in use" in warnings[0]
        with pytest.raises(ProviderError):
            create_session(tiny_model(tmp_path / "n.onnx"), SessionSpec(providers=("openvino",), strict=True))
