"""Hostile user manifests (ZOO_MANIFESTS) and mirror URLs: refused with the field named, exit 2.

Classes: malformed fields; built-in names a user model tries to take (never shadowed: an error naming
the file, model and field, and built-in resolution stays the same); ids Hugging Face would refuse;
numbers, nesting and bytes that JSON allows (NaN, 5000 digits, 70000x70000, not UTF-8); files that
must never be read to the end (a FIFO, /dev/zero, 17 MB).

tests/test_manifest.py checks the parser (load_index); these go through the CLI a user runs and check the
exit code, the file, the model id and the field in the message. The manifest schema has no per-model
source URL, so the "non-https source" case is a mirror URL (ZOO_MIRROR / --mirror) with another scheme.
"""

from __future__ import annotations

import copy
import json
import os
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

SCHEMES = [pytest.param("file:///tmp/zoo-mirror", id="file"), pytest.param("ftp://127.0.0.1/zoo", id="ftp"),
           # Malformed ones, which urllib refuses with ValueError (a crash, exit 1, before):
           pytest.param("http://[::1", id="unclosed-bracket"), pytest.param("http://[zz::1]/zoo", id="bad-ipv6"),
           pytest.param("http://127.0.0.1:99999/zoo", id="port-out-of-range"),
           pytest.param("http://127.0.0.1:0/zoo", id="port-0")]


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


# -- built-in names are never shadowed ------------------------------------------------------------


@pytest.mark.parametrize(("field", "value", "taken"), [
    pytest.param("aliases", ["mnist"], "an alias of built-in model mnist-1", id="alias-mnist"),
    pytest.param("aliases", ["M N I S T"], "an alias of built-in model mnist-1", id="alias-spaced"),
    pytest.param("aliases", ["ResNet50"], "an alias of built-in model resnet50-v1-12", id="alias-resnet50"),
    pytest.param("aliases", ["mnist-8"], "the id of built-in model mnist-8", id="alias-is-a-builtin-id"),
    pytest.param("hub_name", "MNIST", "an alias of built-in model mnist-1", id="hub-MNIST"),
    pytest.param("hub_name", "emotion ferplus", "the hub name of built-in model emotion-ferplus", id="hub-ferplus"),
    pytest.param("id", "vgg19", "an alias of built-in model vgg19-7", id="id-is-a-builtin-alias"),
    pytest.param("id", "resnet50-caffe2", "built-in model", id="id-is-a-builtin-hub-name"),
])
def test_a_user_model_cannot_take_a_builtin_name(field: str, value: Any, taken: str, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    entry = {**MODEL.manifest_entry(), "opset": 999, field: value}
    manifest = write_manifest(tmp_path, [entry])
    monkeypatch.setenv("ZOO_MANIFESTS", str(manifest))
    shown = field if field != "aliases" else "aliases[0]"
    for args in (["list"], ["info", "mnist"], ["pull", "--quiet", "resnet50"]):
        result = zoo(*args)
        assert_clear_error(result, 2, f"bad manifest {manifest}", f"field '{shown}'", taken,
                           "never overridden")
        assert result.stdout == ""


def test_builtin_resolution_is_unchanged_by_a_user_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every id, alias and hub name of every built-in model resolves as it does without ZOO_MANIFESTS."""
    from zoo.index.catalog import load_index

    builtin = load_index()
    names = {n for e in builtin.entries for n in (e.id, e.hub_name, *e.aliases)}
    before = {n: builtin.resolve(n).entry.id for n in names}
    entry = {**MODEL.manifest_entry(), "opset": 999, "aliases": ["rel-net"], "hub_name": "Reliability Net"}
    monkeypatch.setenv("ZOO_MANIFESTS", str(write_manifest(tmp_path, [entry])))
    mixed = load_index()
    assert len(mixed) == len(builtin) + 1 and mixed.resolve("rel-net").entry.id == MODEL.model_id
    assert {n: mixed.resolve(n).entry.id for n in names} == before
    assert len(names) > 400


# -- ids Hugging Face would refuse ---------------------------------------------------------------------


@pytest.mark.parametrize(("model_id", "problem"), [
    pytest.param("a..b", "must not contain '..' or '--'", id="dotdot"),
    pytest.param("a--b", "must not contain '..' or '--'", id="dashdash"),
    pytest.param(".hidden", "must start with a letter or digit", id="leading-dot"),
    pytest.param("-flag", "must start with a letter or digit", id="leading-dash"),
    pytest.param("_under", "must start with a letter or digit", id="leading-underscore"),
    pytest.param("model.", "not end with '.' or '-'", id="trailing-dot"),
    pytest.param("model-", "not end with '.' or '-'", id="trailing-dash"),
    pytest.param("a" * 97, "is 97 characters long; at most 96", id="97-chars"),
    pytest.param("a/b", "must be ASCII letters, digits", id="slash"),
    pytest.param("mod\u00e8le", "must be ASCII letters, digits", id="non-ascii"),
    pytest.param("a b", "must be ASCII letters, digits", id="space"),
])
def test_ids_are_valid_hugging_face_names(model_id: str, problem: str, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = write_manifest(tmp_path, [{**MODEL.manifest_entry(), "id": model_id}])
    monkeypatch.setenv("ZOO_MANIFESTS", str(manifest))
    result = zoo("list")
    assert_clear_error(result, 2, f"bad manifest {manifest}", "field 'id'", problem)
    assert len(result.stderr) < 600  # a long id is shortened, never echoed whole


@pytest.mark.parametrize("model_id", ["a" * 96, "a.b-c_d", "x_", "9lives"])
def test_valid_edge_ids_are_accepted(model_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOO_MANIFESTS", str(write_manifest(tmp_path, [{**MODEL.manifest_entry(), "id": model_id}])))
    result = zoo("list", "--json")
    assert result.exit_code == 0, result.stderr
    assert model_id in result.stdout


# -- numbers, nesting, bytes: whatever JSON allows, zoo refuses with the field -----------------------------


def raw_manifest(tmp_path: Path, model_json: str, *, prefix: bytes = b"") -> Path:
    """A manifest file whose one model is given as raw JSON text (to write what json.dumps never would)."""
    path = tmp_path / "raw.json"
    path.write_bytes(prefix + b'{"schema_version": 1, "family": "raw", "models": [' + model_json.encode("utf-8")
                     + b"]}")
    return path


def model_json(**fields: str) -> str:
    """MODEL's entry (with RECIPE) as JSON text, with fields replaced by raw JSON text (dotted names)."""
    entry = entry_with("opset", 13)
    placeholders = {}
    for i, (name, text) in enumerate(fields.items()):
        *parents, last = name.split("__")
        target = entry
        for key in parents:
            target = target[key]
        target[last] = f"@@{i}@@"
        placeholders[f'"@@{i}@@"'] = text
    out = json.dumps(entry)
    for marker, text in placeholders.items():
        out = out.replace(marker, text)
    return out


NUMBERS = [  # (raw field text, field shown, words)
    pytest.param({"preprocess__scale": "NaN"}, "preprocess.scale", "'NaN' is not a number zoo accepts", id="nan"),
    pytest.param({"preprocess__scale": "Infinity"}, "preprocess.scale", "'Infinity'", id="infinity"),
    pytest.param({"preprocess__mean": "[-Infinity]"}, "preprocess.mean[0]", "'-Infinity'", id="minus-infinity"),
    pytest.param({"preprocess__std": "[1e999]"}, "preprocess.std[0]", "'1e999'", id="float-overflow"),
    pytest.param({"file__size": "1" + "0" * 400}, "file.size", "(403 characters)", id="int-400-digits"),
    pytest.param({"opset": "9" * 5000}, "opset", "(5002 characters)", id="int-5000-digits"),
    pytest.param({"opset": str(2**63)}, "opset", "within 64 bits", id="int-2-to-63"),
    pytest.param({"postprocess": '{"kind": "tensor-output", "outputs": {"output": "y"}, "params": {"x": NaN}}'},
                 "postprocess.params.x", "'NaN'", id="nan-in-params"),
    pytest.param({"preprocess__resize__size": "[70000, 70000]"}, "preprocess.resize.size",
                 "70000x70000 is over the limit of 16384 pixels a side", id="size-70000x70000"),
    pytest.param({"preprocess__resize__size": "[16384, 16384]"}, "preprocess.resize.size",
                 "33554432 pixels in all", id="size-16384x16384"),
    pytest.param({"preprocess__resize": '{"method": "shorter_side", "shorter_side": 1000000}'},
                 "preprocess.resize.shorter_side", "positive integer up to 16384", id="shorter-side-1e6"),
    pytest.param({"preprocess__std": "[0]"}, "preprocess.std", "must not hold 0", id="std-zero"),
    pytest.param({"inputs": "[" * 40 + "]" * 40}, "inputs" + "[0]" * 29, "nested deeper than 32 levels",
                 id="nested-40"),
    pytest.param({"task": '"caf\\udce9"'}, "task", "not valid UTF-8", id="lone-surrogate-escape"),
]


@pytest.mark.parametrize(("fields", "field", "words"), NUMBERS)
def test_hostile_values_name_model_and_field(fields: dict[str, str], field: str, words: str, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = raw_manifest(tmp_path, model_json(**fields))
    monkeypatch.setenv("ZOO_MANIFESTS", str(manifest))
    for args in (["list"], ["info", "mnist"]):
        result = zoo(*args)
        assert_clear_error(result, 2, f"bad manifest {manifest}", f"model '{MODEL.model_id}'", f"field '{field}'",
                           words, "hint: fix the field")
        assert len(result.stderr) < 800


def test_bytes_that_are_not_utf8_name_the_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = tmp_path / "latin1.json"
    manifest.write_bytes(model_json().replace('"classification"', '"caf\u00e9"').join(
        ['{"schema_version": 1, "family": "raw", "models": [', "]}"]).encode("latin-1"))
    monkeypatch.setenv("ZOO_MANIFESTS", str(manifest))
    result = zoo("list")
    assert_clear_error(result, 2, f"bad manifest {manifest}", f"model '{MODEL.model_id}'", "field 'task'",
                       "not valid UTF-8 text: b'caf\\xe9'")


def test_a_utf8_bom_is_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The control: Windows editors write a BOM; it is not an error."""
    monkeypatch.setenv("ZOO_MANIFESTS", str(raw_manifest(tmp_path, model_json(), prefix=b"\xef\xbb\xbf")))
    result = zoo("list", "--json")
    assert result.exit_code == 0, result.stderr
    assert MODEL.model_id in result.stdout


@pytest.mark.parametrize(("make", "words"), [
    pytest.param(lambda p: p.write_text('{"models": ' + "[" * 100_000 + "]" * 100_000 + "}"),
                 "nested far deeper than 32 levels", id="nested-100000"),
    pytest.param(lambda p: p.write_bytes(b'{"schema_version": 1, \xff\xfe "family": "x"}'),
                 "invalid JSON at line 1 column 23", id="bad-byte-between-tokens"),
    pytest.param(lambda p: (p.write_bytes(b"{}"), os.truncate(p, 16 * 1024 * 1024 + 1)),
                 "larger than 16777216 bytes", id="17-MB-sparse"),
    pytest.param(lambda p: os.mkfifo(p), "not a regular file", id="fifo"),
])
def test_hostile_files_are_refused_without_reading_forever(make: Any, words: str, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = tmp_path / "hostile.json"
    make(manifest)
    monkeypatch.setenv("ZOO_MANIFESTS", str(manifest))
    result = zoo("list")
    assert_clear_error(result, 2, f"bad manifest {manifest}", words)


def test_a_device_is_never_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOO_MANIFESTS", "/dev/zero")
    result = zoo("list")
    assert_clear_error(result, 2, "bad manifest /dev/zero", "not a regular file")
