"""Hostile user manifests (ZOO_MANIFESTS) and mirror URLs: refused with the field named, exit 2.

tests/test_manifest.py checks the parser (load_index); these go through the CLI a user runs and check the
exit code, the file, the model id and the field in the message. The manifest schema has no per-model
source URL, so the "non-https source" case is a mirror URL (ZOO_MIRROR / --mirror) with another scheme.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from reliability_helpers import assert_clear_error, synthetic, write_manifest, zoo
from servers import FakeHubServer

MODEL = synthetic("rel-manifest-1", 4096, seed=61)
RECIPE = {
    "kind": "image", "resize": {"method": "stretch", "size": [28, 28]}, "interpolation": "bilinear",
    "scale": 1.0, "mean": [0.5], "std": [0.5], "channel_order": "GRAY", "layout": "NCHW", "dtype": "float32",
}


def entry_with(field: str, value: Any) -> dict[str, Any]:
    """MODEL's manifest entry (with a preprocess recipe) with one dotted field replaced."""
    entry = copy.deepcopy({**MODEL.manifest_entry(), "preprocess": RECIPE,
                           "test_data": {"path": "private/t.tar.gz", "sha256": "ab" * 32, "size": 10}})
    *parents, last = field.split(".")
    target = entry
    for key in parents:
        target = target[key]
    target[last] = value
    return entry


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        pytest.param("file.path", "../../ESCAPED.onnx", "must be a relative path", id="path-dotdot"),
        pytest.param("file.path", "private/../../ESCAPED.onnx", "must be a relative path", id="path-inner-dotdot"),
        pytest.param("file.path", "/etc/ESCAPED.onnx", "must be a relative path", id="path-absolute"),
        pytest.param("file.path", "..\\ESCAPED.onnx", "must be a relative path", id="path-backslash"),
        pytest.param("file.path", "C:/ESCAPED.onnx", "must be a relative path", id="path-drive"),
        pytest.param("test_data.path", "../ESCAPED.tar.gz", "must be a relative path", id="test-data-dotdot"),
        pytest.param("opset", "13", "expected int, got str '13'", id="opset-str"),
        pytest.param("opset", True, "expected int, got bool True", id="opset-bool"),
        pytest.param("file.size", "big", "expected int, got str 'big'", id="size-str"),
        pytest.param("preprocess.mean", "0.5", "expected list, got str '0.5'", id="mean-str"),
        pytest.param("file.sha256", "AB" * 32, "64 lowercase hex digits", id="sha256-upper"),
    ],
)
def test_hostile_manifest_field_is_refused(
    field: str, value: Any, problem: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = write_manifest(tmp_path, [entry_with(field, value)])
    monkeypatch.setenv("ZOO_MANIFESTS", str(manifest))
    for args in (["list"], ["pull", "--quiet", MODEL.model_id]):
        result = zoo(*args)
        assert_clear_error(result, 2, f"bad manifest {manifest}", f"model '{MODEL.model_id}'",
                           f"field '{field}'", problem, "hint: fix the field")
        assert result.stdout == ""


def test_the_unbroken_entry_is_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The control: the entry the table breaks is valid as it is."""
    monkeypatch.setenv("ZOO_MANIFESTS", str(write_manifest(tmp_path, [entry_with("opset", 13)])))
    result = zoo("list", "--json")
    assert result.exit_code == 0, result.stderr
    assert MODEL.model_id in result.stdout


# -- mirror URLs that are not http(s) ------------------------------------------------------------

SCHEMES = [pytest.param("file:///tmp/zoo-mirror", id="file"), pytest.param("ftp://127.0.0.1/zoo", id="ftp")]


@pytest.mark.parametrize("where", ["--mirror", "ZOO_MIRROR"])
@pytest.mark.parametrize("mirror", SCHEMES)
def test_non_http_mirror_is_refused_up_front(
    mirror: str, where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZOO_MANIFESTS", str(write_manifest(tmp_path, [MODEL.manifest_entry()])))
    args = ["pull", "--quiet", MODEL.model_id]
    if where == "ZOO_MIRROR":
        monkeypatch.setenv("ZOO_MIRROR", mirror)
    else:
        args += ["--mirror", mirror]
    with FakeHubServer({"onnxmodelzoo/legacy_models": {MODEL.path: MODEL.data}}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)  # a good source after the bad mirror: today it is used
        result = zoo(*args)
    assert_clear_error(result, 2, where, mirror, "http")
    assert hub.requests == []  # refused before any download starts
