"""The zoo command line: output shapes, exit codes and hints."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import zoo_cli

INFO_KEYS = {"id", "hub_name", "aliases", "task", "opset", "sha256", "bytes", "inputs", "outputs", "preprocess",
             "postprocess", "labels", "license", "sources", "cached_path"}




def test_list_json_has_every_model() -> None:
    data = json.loads(zoo_cli("list", "--json").stdout)
    assert len(data) >= 184
    assert {"id", "hub_name", "task", "opset", "sha256", "bytes", "cached"} <= set(data[0])
    vgg = next(d for d in data if d["id"] == "vgg19-7")
    assert (vgg["bytes"], vgg["opset"], vgg["cached"]) == (574677321, 7, False)


def test_list_table_and_filters() -> None:
    out = zoo_cli("list", "--task", "face-detection").stdout
    assert out.splitlines()[0].split() == ["ID", "TASK", "OPSET", "SIZE", "CACHED"]
    assert sorted(line.split()[0] for line in out.splitlines()[2:]) == [
        "version-RFB-320", "version-RFB-320-int8", "version-RFB-640"]
    tagged = json.loads(zoo_cli("list", "--tag", "text", "--json").stdout)
    assert tagged and all("text" in d["tags"] for d in tagged)


def test_list_marks_cached_models(isolated_env: Path) -> None:
    sha = "692f9f927f1df1b89033787a77a73eac59fd9b3344f9ecdf0b13221e41c2046f"
    blob = isolated_env / "blobs" / "sha256" / sha
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"stand-in: presence marks a verified blob")
    data = {d["id"]: d["cached"] for d in json.loads(zoo_cli("list", "--json").stdout)}
    assert data["vgg19-7"] is True and data["vgg16-7"] is False
    info = json.loads(zoo_cli("info", "vgg19-7", "--json").stdout)
    assert info["cached_path"] == str(blob)


def test_search() -> None:
    out = zoo_cli("search", "yolo").stdout
    assert "yolov4" in out and "tinyyolov2-8" in out and "resnet50" not in out
    assert json.loads(zoo_cli("search", "VGG 19", "--json").stdout)[0]["id"].startswith("vgg19")
    empty = zoo_cli("search", "no-such-thing")
    assert empty.stdout == "" and "no model matches" in empty.stderr
    blank = zoo_cli("search", " ", code=2)  # listed every model before
    assert blank.stdout == "" and "needs some TEXT" in blank.stderr and "`zoo list`" in blank.stderr


def test_info_json_acceptance() -> None:
    data = json.loads(zoo_cli("info", "vgg19-7", "--json").stdout)
    assert set(data) >= INFO_KEYS
    assert data["sha256"].startswith("692f9f92") and data["bytes"] == 574677321 and data["opset"] == 7
    assert data["cached_path"] is None
    assert data["sources"][-2:] == [
        "http://127.0.0.1:9/onnxmodelzoo/legacy_models/resolve/main/validated/vision/classification/vgg/model/vgg19-7.onnx",
        "http://127.0.0.1:9/onnxmodelzoo/vgg19-7/resolve/main/vgg19-7.onnx",
    ]
    assert data["preprocess"]["resize"] == {
        "method": "shorter_side_center_crop", "size": None, "shorter_side": 256, "crop": [224, 224],
        "max_longer_side": None, "pad_to_multiple": None, "pad_value": None, "pad_position": None}


def test_info_lists_mirrors_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOO_MIRROR", "http://mirror.a/zoo, http://mirror.b")
    sources = json.loads(zoo_cli("info", "mnist-8", "--json").stdout)["sources"]
    assert sources[0] == "http://mirror.a/zoo/validated/vision/classification/mnist/model/mnist-8.onnx"
    assert sources[1].startswith("http://mirror.b/validated/") and len(sources) == 4


@pytest.mark.parametrize(("name", "expected"), [("vgg 19", "vgg19-7"), ("VGG 19", "vgg19-7"),
                                                ("resnet50", "resnet50-v1-12")])
def test_info_resolves_and_says_so(name: str, expected: str) -> None:
    result = zoo_cli("info", name, "--json")
    data = json.loads(result.stdout)
    assert data["id"] == expected
    assert f"resolved to {expected}" in result.stderr and data["resolved_from"]


def test_info_of_a_zoo_models_file_is_that_models_info(tmp_path: Path) -> None:
    from conftest import DATA, need

    copy = tmp_path / "downloaded.onnx"  # any name: known by its sha256
    copy.write_bytes(need(DATA / "models" / "mnist-8.onnx").read_bytes())
    result = zoo_cli("info", str(copy), "--json")
    assert json.loads(result.stdout)["id"] == "mnist-8"
    assert f"{copy} is zoo model mnist-8 (sha256 " in result.stderr


def test_info_of_another_file_says_it_is_no_zoo_model(tmp_path: Path) -> None:
    other = tmp_path / "mine.onnx"
    other.write_bytes(b"not a zoo file")
    result = zoo_cli("info", str(other), code=2)  # it said "unknown model" and suggested zoo search
    assert f"error: {other} is no zoo model's file: its sha256 matches none of the catalogue's" in result.stderr
    assert f"zoo predict {other} IMAGE" in result.stderr
    missing = zoo_cli("info", str(tmp_path / "gone.onnx"), code=2)
    assert f"no such model file: {tmp_path / 'gone.onnx'}" in missing.stderr


def test_a_file_where_a_model_name_is_wanted_is_told_what_takes_files(tmp_path: Path) -> None:
    result = zoo_cli("pull", str(tmp_path / "model.onnx"), code=2)  # the hint was "zoo search TEXT"
    hint = "hint: this takes a model name; `zoo cache import FILE` puts a zoo model's file in the cache"
    assert hint in result.stderr
    assert "zoo search" not in result.stderr


def test_info_human() -> None:
    out = zoo_cli("info", "yolov3").stdout
    assert "yolov3-12" in out and "+image_shape=original_hw" in out and "letterbox" in out


def test_unknown_model_exits_2_with_suggestions() -> None:
    result = zoo_cli("info", "resnett50", code=None)
    assert result.exit_code == 2
    assert "unknown model 'resnett50'" in result.stderr and "did you mean: resnet50" in result.stderr
    assert "Traceback" not in result.output


def test_opset_choice_and_error() -> None:
    assert json.loads(zoo_cli("info", "alexnet", "--opset", "7", "--json").stdout)["id"] == "bvlcalexnet-7"
    result = zoo_cli("info", "alexnet", "--opset", "5", code=None)
    assert result.exit_code == 2 and "bvlcalexnet-9 (opset 9)" in result.stderr and "--opset" in result.stderr


def test_bad_user_manifest_exits_2_naming_file_model_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from test_manifest import broken, write_manifest

    path = write_manifest(tmp_path, [broken("file.sha256", "xyz")])
    monkeypatch.setenv("ZOO_MANIFESTS", str(path))
    result = zoo_cli("list", code=None)
    assert result.exit_code == 2
    assert str(path) in result.stderr and "acme-net-1" in result.stderr and "file.sha256" in result.stderr


def test_help_documents_exit_codes_and_examples() -> None:
    top = zoo_cli("--help").stdout
    assert "Exit codes: 0 ok; 1 unexpected error; 2 bad usage" in " ".join(top.split())
    for command in ("list", "search", "info"):
        text = zoo_cli(command, "--help").stdout
        assert "Example" in text and "--json" in text


def test_python_dash_m_and_console_script() -> None:
    proc = subprocess.run([sys.executable, "-m", "zoo", "info", "nope-nope"], capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown model" in proc.stderr and "Traceback" not in proc.stderr
    version = subprocess.run([sys.executable, "-m", "zoo", "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("zoo ")


def test_unexpected_error_exit_1_without_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    from zoo import api

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(api, "list_models", boom)
    result = zoo_cli("list", code=None)
    assert result.exit_code == 1 and "disk on fire" in result.stderr and "--debug" in result.stderr
    assert "Traceback" not in result.output


def test_nan_is_refused_where_a_number_in_a_range_is_expected() -> None:
    """nan passes every comparison a range makes: `zoo serve --max-delay-ms nan` served with no delay at all."""
    for args in (["serve", "--max-delay-ms", "nan", "--port", "0"],
                 ["predict", "mnist-8", "x.png", "--score-threshold", "nan"]):
        result = zoo_cli(*args, code=2)
        assert "'nan' is not a number" in result.stderr, args
