"""A real `zoo serve` in a subprocess on a free loopback port, for the test_serve*.py files."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from conftest import DATA, need

pytest.importorskip("starlette", reason="zoo serve needs the serve extra: pip install '.[serve]'")
pytest.importorskip("uvicorn", reason="zoo serve needs the serve extra: pip install '.[serve]'")

IMAGES = DATA / "images"
MODELS = DATA / "models"


def seed_home(home: Path, *ids: str) -> Path:
    """A zoo cache at `home` holding the real files of `ids` (as `zoo cache import` does)."""
    from zoo.index.catalog import load_index
    from zoo.store import download

    for model_id in ids:
        entry = load_index().resolve(model_id).entry
        download.import_file(entry, entry.file, need(MODELS / entry.file.name), root=home)
    return home


def gather_model(path: Path) -> Path:
    """A graph whose run fails on some values only: Gather from a 10-row table by int64 ids (dynamic batch)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    table = numpy_helper.from_array(np.arange(20, dtype=np.float32).reshape(10, 2), "table")
    graph = helper.make_graph([helper.make_node("Gather", ["table", "ids"], ["rows"], axis=0)], "gather",
                              [helper.make_tensor_value_info("ids", TensorProto.INT64, ["n", 1])],
                              [helper.make_tensor_value_info("rows", TensorProto.FLOAT, ["n", 1, 2])], [table])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@dataclass
class Server:
    """A running `zoo serve`: its process, base URL and stderr (notes and the access log)."""

    proc: subprocess.Popen[bytes]
    url: str
    log: Path
    headers: dict[str, str] = field(default_factory=dict)  # the bearer token, when the server wants one

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM (drain, then exit); the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise

    def metric(self, name: str, **labels: str) -> float:
        """One sample of /metrics (0 when absent)."""
        text = requests.get(f"{self.url}/metrics", headers=self.headers, timeout=10).text
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.splitlines():
            sample, _, value = line.rpartition(" ")
            metric, _, label_text = sample.partition("{")
            got = ",".join(sorted(label_text.rstrip("}").split(","))) if label_text else ""
            if metric == name and got == want:
                return float(value)
        return 0.0


def start(home: Path, log: Path, *args: str, ready: bool = True, env: dict[str, str] | None = None) -> Server:
    """Start `zoo serve ARGS --port 0` offline on `home`; wait until it says where it listens (and is ready)."""
    environ = {**os.environ, "ZOO_HOME": str(home), "ZOO_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9",
               "ZOO_SERVE_TOKEN": "", **(env or {})}
    if not environ["ZOO_SERVE_TOKEN"]:
        del environ["ZOO_SERVE_TOKEN"]
    handle = log.open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "zoo", "serve", *args, "--port", "0"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=handle, env=environ)
    handle.close()
    deadline = time.monotonic() + 60
    url = None
    while url is None:
        found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", log.read_text(errors="replace"))
        url = found.group(1) if found else None
        if url is None and (proc.poll() is not None or time.monotonic() > deadline):
            proc.kill()
            pytest.fail(f"zoo serve did not start (exit {proc.poll()}):\n{log.read_text(errors='replace')}")
        time.sleep(0.05)
    token = environ.get("ZOO_SERVE_TOKEN") or (args[args.index("--token") + 1] if "--token" in args else None)
    server = Server(proc, url, log, {"Authorization": f"Bearer {token}"} if token else {})
    while ready:
        try:
            if requests.get(f"{url}/v2/health/ready", timeout=5).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"zoo serve never got ready:\n{server.stderr()}")
        time.sleep(0.05)
    return server
