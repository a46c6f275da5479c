"""Shared fixtures: every test gets its own cache and no network configuration."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
REFERENCE = SHARED / "reference" / "validated_models.json"
DATA = SHARED / "data"


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the zoo cache and Hugging Face home at tmp_path; clear network settings."""
    home = tmp_path / "zoo-home"
    monkeypatch.setenv("ZOO_HOME", str(home))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: never the internet
    for name in ("ZOO_MIRROR", "ZOO_MANIFESTS", "ZOO_OFFLINE", "HF_HUB_OFFLINE", "HF_TOKEN", "ZOO_DEBUG",
                 "ZOO_PROVIDERS"):
        monkeypatch.delenv(name, raising=False)
    return home


def need(path: Path) -> Path:
    """Skip the calling test when a ../shared file is missing."""
    if not path.exists():
        pytest.skip(f"needs {path} (the ../shared data beside the repo), which is absent")
    return path


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tar_gz(members: dict[str, bytes]) -> bytes:
    """A .tar.gz holding regular files {name: bytes}."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def json_lines(text: str) -> list[dict]:
    """The objects of `zoo predict --json` output: one JSON object per line."""
    import json

    return [json.loads(line) for line in text.splitlines() if line.strip()]


def zoo_cli(*args: str, code: int | None = 0, command: object = None, input: str | None = None):
    """Run a zoo command in-process (click's CliRunner); check the exit code unless `code` is None."""
    from click.testing import CliRunner

    from zoo.cli import cli

    result = CliRunner().invoke(command or cli, list(args), catch_exceptions=False, input=input)
    if code is not None:
        assert result.exit_code == code, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result


def zoo_files(*ids: str) -> dict[str, bytes]:
    """{zoo path: bytes} of real model files in ../shared/data/models, as a mirror serves them."""
    from zoo.index.catalog import load_index

    out = {}
    for model_id in ids:
        entry = load_index().resolve(model_id).entry
        out[entry.file.path] = need(DATA / "models" / entry.file.name).read_bytes()
    return out


SATURATING_EXACT = [[255 * 127 * 64] * 4]  # what saturating_matmul() answers for a = 255 when products are exact


def saturating_matmul() -> bytes:
    """y = a @ b with u8 a [1, 64] and constant s8 b (all 127): each pair of products is 2 * 255 * 127 = 64,770,
    past int16, which x86's u8s8 kernels (PMADDUBSW) clamp to 32,767 where the CPU has no VNNI."""
    from onnx import TensorProto, helper

    b = helper.make_tensor("b", TensorProto.INT8, [64, 4], [127] * 256)
    graph = helper.make_graph([helper.make_node("MatMulInteger", ["a", "b"], ["y"])], "mmi",
                              [helper.make_tensor_value_info("a", TensorProto.UINT8, [1, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.INT32, [1, 4])], [b])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString()
