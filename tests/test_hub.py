"""zoo.hub as a drop-in for onnx.hub: each test makes the calls onnx.hub's own docs make.

Real zoo files from ../shared are served by a loopback mirror (and a fake Hugging Face hub for
the bad-bytes case); nothing is mocked.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import DATA, need, tar_gz, zoo_files
from servers import FakeHubServer, MirrorServer

from zoo import hub
from zoo.check import find_sets
from zoo.cli import cli
from zoo.errors import HashMismatchError, OpsetError, UnknownModelError, ZooError
from zoo.index.catalog import load_index
from zoo.store import cache

MNIST_8_SHA = "2f06e72de813a8635c9bc0397ac447a601bdbfa7df4bebc278723b958831c9bf"  # onnx.hub's docs print it


@pytest.fixture
def mirror(monkeypatch: pytest.MonkeyPatch) -> Iterator[MirrorServer]:
    with MirrorServer(zoo_files("mnist-7", "mnist-8", "mnist-12")) as server:
        monkeypatch.setenv("ZOO_MIRROR", server.url)
        monkeypatch.setenv("ZOO_RETRY_BACKOFF", "0.01")
        yield server


def body_gets(server: MirrorServer) -> int:
    return len(server.gets())


# -- list_models: hub.list_models(), hub.list_models(model="mnist"), hub.list_models(tags=["vision"]) --------

def test_list_models_as_the_docs_call_it() -> None:
    all_models = hub.list_models()
    assert len(all_models) == len(load_index().entries) >= 184
    mnist_models = hub.list_models(model="mnist")  # every opset of one hub name, any case
    assert [(m.model, m.opset) for m in mnist_models] == [("MNIST", 1), ("MNIST", 7), ("MNIST", 8)]
    vision_models = hub.list_models(tags=["vision"])
    assert {"MNIST", "VGG 19", "ResNet50"} <= {m.model for m in vision_models}
    assert all("vision" in m.tags for m in vision_models) and len(vision_models) < len(all_models)
    assert [m.model_path for m in hub.list_models(tags=["VISION"])] == [m.model_path for m in vision_models]
    assert hub.list_models(tags=[]) == []  # as onnx.hub: no tag asked, none matched
    assert [m.opset for m in hub.list_models(model="MNIST", tags=["mnist", "nothing"])] == [1, 7, 8]
    assert hub.list_models(model="no such model") == []
    with pytest.raises(ZooError, match="not served by zoo"):
        hub.list_models(repo="someone/else:main")


# -- ModelInfo and get_model_info: print(hub.get_model_info(model="mnist", opset=8)) --------------------------

def test_get_model_info_prints_as_the_docs_show() -> None:
    info = hub.get_model_info(model="mnist", opset=8)
    assert str(info).startswith("ModelInfo(model=MNIST, opset=8, path=validated/vision/classification/mnist/model/"
                                f"mnist-8.onnx, metadata={{'model_sha': '{MNIST_8_SHA}', 'model_bytes': 26454, "
                                "'tags': ['vision', 'classification', 'mnist'], 'io_ports': {'inputs': "
                                "[{'name': 'Input3', 'shape': [1, 1, 28, 28], 'type': 'tensor(float)'}]")
    assert repr(info) == str(info)
    assert info.model_sha == info.metadata["model_sha"] == MNIST_8_SHA
    assert info.tags == {"vision", "classification", "mnist"}
    assert set(info.raw_model_info) == {"model", "model_path", "onnx_version", "opset_version", "metadata"}
    assert info.raw_model_info["opset_version"] == info.opset == 8 and info.raw_model_info["metadata"] is info.metadata
    assert info.metadata["model_with_data_path"].endswith("mnist-8.tar.gz") and info.id == "mnist-8"
    assert hub.ModelInfo.from_raw(info.raw_model_info, "mnist-8") == info  # onnx.hub built it from this record
    assert hub.get_model_info("mnist").opset == 8  # the highest, as onnx.hub
    resnet = hub.get_model_info("resnet50")  # the docs' name
    assert resnet.model == "ResNet50" and resnet.opset == max(m.opset for m in hub.list_models(model="ResNet50"))
    assert hub.get_model_info("mnist-12").model == "MNIST-12"  # not a hub name: zoo's ids still work


def test_unknown_model_and_opset_are_assertion_errors() -> None:
    """onnx.hub raised AssertionError for both; old `except AssertionError` clauses still catch them."""
    with pytest.raises(AssertionError) as unknown:
        hub.get_model_info("mnsit")
    assert isinstance(unknown.value, UnknownModelError) and "mnist" in unknown.value.suggestions
    with pytest.raises(AssertionError) as missing:
        hub.get_model_info("mnist", opset=12)  # MNIST-12 is another hub name: onnx.hub refused this too
    assert isinstance(missing.value, OpsetError)
    assert sorted({o for _, o in missing.value.available}) == [1, 7, 8] and "[1, 7, 8]" in missing.value.hint
    with pytest.raises(AssertionError):
        hub.load("no such model", silent=True)


def test_the_cli_error_table_still_maps_these_errors() -> None:
    for args in (["info", "mnsit"], ["info", "mnist-8", "--opset", "3"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2, result.output
        assert "error: " in result.stderr and "hint: " in result.stderr and "Traceback" not in result.output


# -- load: hub.load("resnet50"), with opset, silent, force_reload -----------------------------------------------

def test_load_by_name_and_opset(mirror: MirrorServer) -> None:
    import onnx

    model = hub.load("mnist", silent=True)
    assert isinstance(model, onnx.ModelProto)
    assert model.graph.input[0].name == "Input3" and model.opset_import[0].version == 8
    assert hub.load("MNIST", opset=7, silent=True).opset_import[0].version == 7
    assert hub.load("mnist-12", silent=True).opset_import[0].version == 12
    with pytest.raises(AssertionError, match="opset 12"):
        hub.load("mnist", opset=12, silent=True)


def test_load_silent_cache_hit_and_force_reload(mirror: MirrorServer, capfd: pytest.CaptureFixture[str]) -> None:
    hub.load("mnist", silent=True)
    assert body_gets(mirror) == 1
    hub.load("mnist", silent=True)  # cached: no request
    assert body_gets(mirror) == 1
    hub.load("mnist", silent=True, force_reload=True)  # downloaded again, as asked
    assert body_gets(mirror) == 2
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # silent: nothing on either stream


def test_a_changed_cached_file_is_refused_until_force_reload(mirror: MirrorServer) -> None:
    hub.load("mnist", silent=True)
    blob = cache.blob_path(MNIST_8_SHA)
    data = bytearray(blob.read_bytes())
    data[100] ^= 0xFF
    blob.chmod(0o644)
    blob.write_bytes(bytes(data))
    with pytest.raises(AssertionError) as caught:  # as onnx.hub: the cached file is re-hashed
        hub.load("mnist", silent=True)
    assert isinstance(caught.value, HashMismatchError) and caught.value.expected_sha256 == MNIST_8_SHA
    assert "force_reload=True" in caught.value.hint
    assert hub.load("mnist", silent=True, force_reload=True).graph.input[0].name == "Input3"
    assert hashlib.sha256(blob.read_bytes()).hexdigest() == MNIST_8_SHA  # repaired


def test_bad_bytes_from_every_source_are_an_assertion_error(monkeypatch: pytest.MonkeyPatch,
                                                            isolated_env: Path) -> None:
    entry = load_index().by_id["mnist-8"]
    bad = bytearray(need(DATA / "models" / "mnist-8.onnx").read_bytes())
    bad[200] ^= 0xFF
    repos = {"onnxmodelzoo/legacy_models": {entry.file.path: bytes(bad)},
             "onnxmodelzoo/mnist-8": {entry.file.name: bytes(bad)}}
    with FakeHubServer(repos) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("ZOO_RETRY_BACKOFF", "0.01")
        with pytest.raises(AssertionError) as caught:
            hub.load("mnist", silent=True)
    assert isinstance(caught.value, HashMismatchError) and caught.value.got_sha256 != MNIST_8_SHA
    assert not cache.blob_path(MNIST_8_SHA).exists()  # wrong bytes never enter the cache


# -- set_dir / get_dir ----------------------------------------------------------------------------------------

def test_set_dir_and_get_dir(mirror: MirrorServer, tmp_path: Path) -> None:
    hub.set_dir(tmp_path / "hub-cache")
    assert hub.get_dir() == str(tmp_path / "hub-cache")
    hub.load("mnist", silent=True)
    assert (tmp_path / "hub-cache" / "models" / "mnist-8" / "mnist-8.onnx").is_file()
    hub.set_dir(str(tmp_path / "other"))  # a str, as onnx.hub took it
    assert hub.get_dir() == str(tmp_path / "other")


# -- download_model_with_test_data("mnist") -------------------------------------------------------------------

@pytest.fixture
def with_test_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MirrorServer]:
    """A private copy of mnist-8 whose archive is laid out as the zoo's: mnist/model.onnx, mnist/test_data_set_*."""
    model = need(DATA / "models" / "mnist-8.onnx").read_bytes()
    members = {"mnist/model.onnx": model}
    for pb in sorted(need(DATA / "testdata" / "mnist-8").glob("test_data_set_*/*.pb")):
        members[f"mnist/{pb.parent.name}/{pb.name}"] = pb.read_bytes()
    tar = tar_gz(members)
    doc = load_index().by_id["mnist-8"].to_dict() | {
        "id": "mnist-8-copy", "aliases": [], "hub_name": "MNIST copy",
        "file": {"path": "private/mnist-8-copy.onnx", "sha256": hashlib.sha256(model).hexdigest(), "size": len(model)},
        "test_data": {"path": "private/mnist-8-copy.tar.gz", "sha256": hashlib.sha256(tar).hexdigest(),
                      "size": len(tar)}}
    (tmp_path / "m.json").write_text(json.dumps({"schema_version": 1, "family": "copy", "models": [doc]}))
    monkeypatch.setenv("ZOO_MANIFESTS", str(tmp_path / "m.json"))
    with MirrorServer({"private/mnist-8-copy.onnx": model, "private/mnist-8-copy.tar.gz": tar}) as server:
        monkeypatch.setenv("ZOO_MIRROR", server.url)
        yield server


def test_download_model_with_test_data_returns_the_folder_with_the_sets(with_test_data: MirrorServer) -> None:
    folder = Path(hub.download_model_with_test_data("MNIST copy", silent=True))
    assert folder.name == "mnist"  # the archive's top folder, as onnx.hub returned
    assert sorted(p.name for p in folder.iterdir()) == ["model.onnx", "test_data_set_0", "test_data_set_1",
                                                         "test_data_set_2"]
    assert len(find_sets(folder)) == 3
    assert hub.download_model_with_test_data("mnist copy", silent=True) == str(folder)  # cached: same folder
    assert len(with_test_data.gets()) == 2  # the model and the archive, once each


def test_download_model_with_test_data_without_an_archive_says_so(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    doc = load_index().by_id["mnist-8"].to_dict() | {"id": "mnist-8-bare", "aliases": [], "hub_name": "MNIST bare",
                                                      "test_data": None}
    (tmp_path / "m.json").write_text(json.dumps({"schema_version": 1, "family": "bare", "models": [doc]}))
    monkeypatch.setenv("ZOO_MANIFESTS", str(tmp_path / "m.json"))
    with pytest.raises(ZooError, match="mnist-8-bare has no test-data archive"):  # before any download
        hub.download_model_with_test_data("MNIST bare", silent=True)


# -- the dependency floors (pyproject.toml; `tox -e min-versions` runs this on exactly them) ------------------

def _model_with_external_data(folder: Path, location: str) -> Path:
    from onnx import TensorProto, helper

    weight = helper.make_tensor("w", TensorProto.FLOAT, [4], vals=[0.0] * 4)
    weight.ClearField("float_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "16")):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g", [x], [y], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    path = folder / "model.onnx"
    path.write_bytes(model.SerializeToString())
    return path


@pytest.mark.parametrize("location", ["../secret.bin", "link.bin"])
def test_external_data_outside_the_model_folder_is_refused(tmp_path: Path, location: str) -> None:
    """onnx.load (zoo.hub.load) and onnxruntime must not read weights from outside the model's folder.

    onnx < 1.21 follows the symlink, onnxruntime < 1.24 both: the reason for the floors.
    """
    import onnx
    import onnxruntime as ort

    (tmp_path / "secret.bin").write_bytes(bytes(range(16)))
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "link.bin").symlink_to(tmp_path / "secret.bin")
    path = _model_with_external_data(folder, location)
    with pytest.raises(Exception, match="should be"):  # onnx's ValidationError: "should be file inside ..."
        onnx.load(str(path))
    with pytest.raises(Exception, match="External data path validation failed"):
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize(("call", "words"), [
    (lambda: hub.list_models(tags=5), "tags=5 (int)"),
    (lambda: hub.list_models(tags="vision"), "tags='vision' (str)"),  # its letters were the tags: matched nothing
    (lambda: hub.list_models(model=["mnist"]), "model=['mnist'] (list)"),
    (lambda: hub.get_model_info(None), "model=None (NoneType)"),
    (lambda: hub.load("mnist", opset="8"), "opset='8' (str)"),  # was "no variant has opset 8; available: ... 8"
    (lambda: hub.set_dir(None), "new_dir=None (NoneType)"),
])
def test_arguments_of_the_wrong_kind_are_named(call: Any, words: str) -> None:
    """They were AttributeErrors and TypeErrors from deep inside."""
    from zoo.errors import InputError

    with pytest.raises(InputError, match=re.escape(words)):
        call()
