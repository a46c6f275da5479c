"""zoo.store.sources: the order sources are tried in, and what each request carries."""

from __future__ import annotations

import hashlib

import pytest

from zoo.index.manifest import ModelEntry
from zoo.store.sources import plan, request_headers, request_url

DATA = b"model bytes"
ZOO_PATH = "validated/vision/classification/mnist/model/mnist-8.onnx"
ENTRY = ModelEntry.from_dict(
    {"id": "mnist-8", "task": "image-classification", "opset": 8,
     "file": {"path": ZOO_PATH, "sha256": hashlib.sha256(DATA).hexdigest(), "size": len(DATA)}},
    source="tests", family="mnist", where="tests",
)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    for name in ("ZOO_MIRROR", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_DISABLE_IMPLICIT_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def test_plan_order_mirrors_then_legacy_then_per_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOO_MIRROR", "http://env-mirror/zoo/, http://cli-mirror")
    sources = plan(ENTRY, extra_mirrors=["http://cli-mirror"])
    assert [(s.kind, s.url) for s in sources] == [
        ("mirror", f"http://cli-mirror/{ZOO_PATH}"),
        ("mirror", f"http://env-mirror/zoo/{ZOO_PATH}"),
        ("huggingface", f"http://127.0.0.1:9/onnxmodelzoo/legacy_models/resolve/main/{ZOO_PATH}"),
        ("huggingface", "http://127.0.0.1:9/onnxmodelzoo/mnist-8/resolve/main/mnist-8.onnx"),
    ]
    assert [(s.repo_id, s.filename) for s in sources[2:]] == [
        ("onnxmodelzoo/legacy_models", ZOO_PATH),
        ("onnxmodelzoo/mnist-8", "mnist-8.onnx"),
    ]


def test_request_url_comes_from_huggingface_hub_with_the_endpoint_read_now(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import hf_hub_url

    hub = plan(ENTRY)[0]
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:8123/")  # changed after planning and after import
    expected = hf_hub_url(hub.repo_id, hub.filename, revision="main", endpoint="http://127.0.0.1:8123")
    assert request_url(hub) == expected == f"http://127.0.0.1:8123/onnxmodelzoo/legacy_models/resolve/main/{ZOO_PATH}"
    assert plan(ENTRY)[0].url == expected  # what `zoo info` shows is what is fetched


def test_filenames_are_quoted_like_huggingface_hub() -> None:
    from huggingface_hub import hf_hub_url

    entry = ModelEntry.from_dict(
        {"id": "odd-1", "task": "x", "opset": 1,
         "file": {"path": "validated/a b/c#d.onnx", "sha256": "0" * 64, "size": 1}},
        source="tests", family="x", where="tests",
    )
    mirror, legacy, _ = plan(entry, extra_mirrors=["http://m"])
    assert mirror.url == "http://m/validated/a%20b/c%23d.onnx"
    expected = hf_hub_url(legacy.repo_id, legacy.filename, endpoint="http://127.0.0.1:9")
    assert legacy.url == request_url(legacy) == expected


def test_token_goes_to_huggingface_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    mirror, legacy, per_model = plan(ENTRY, extra_mirrors=["http://m"])
    assert "Authorization" not in request_headers(mirror)
    assert request_headers(legacy)["Authorization"] == "Bearer hf_secret"
    assert request_headers(per_model)["Authorization"] == "Bearer hf_secret"
    for source in (mirror, legacy):
        assert request_headers(source)["Accept-Encoding"] == "identity"
        assert request_headers(source)["User-Agent"].startswith("zoo/")


def test_no_token_no_authorization(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    # huggingface_hub fixed the token file's path at import: make sure no real login is read.
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    assert "Authorization" not in request_headers(plan(ENTRY)[0])


# -- what zoo prints of a URL or of text from outside (zoo.printable) ------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("http://user:pw@host/x", "http://***@host/x"),
    ("https://user:p@ss@host:8/x?q=a@b", "https://***@host:8/x?q=a@b"),  # a raw "@" in the password
    ("see http://a:b@h1/ and https://c@h2/", "see http://***@h1/ and https://***@h2/"),
    ("http://host/path@x", "http://host/path@x"),  # "@" after the host is not userinfo
    ("mailto-like user@host", "mailto-like user@host"),
])
def test_redact(text: str, expected: str) -> None:
    from zoo.printable import redact

    assert redact(text) == expected


@pytest.mark.parametrize(("text", "one_line", "multi_line"), [
    ("a\x1b[31mb", "a\\x1b[31mb", "a\\x1b[31mb"),
    ("x\ny\tz", "x\\x0ay\\x09z", "x\ny\tz"),
    ("csi\x9bdel\x7f", "csi\\x9bdel\\x7f", "csi\\x9bdel\\x7f"),
    ("bidi\u202egnp.exe", "bidi\\u202egnp.exe", "bidi\\u202egnp.exe"),
    ("bad\udcffname", "bad\\udcffname", "bad\\udcffname"),  # an undecodable file name (surrogateescape)
    ("plain ünïcode 模型", "plain ünïcode 模型", "plain ünïcode 模型"),
])
def test_escape(text: str, one_line: str, multi_line: str) -> None:
    from zoo.printable import escape

    assert escape(text) == one_line
    assert escape(text, keep_newlines=True) == multi_line


def test_source_shown_redacts() -> None:
    mirror = plan(ENTRY, extra_mirrors=["http://me:hunter2@m"])[0]
    assert "hunter2" in mirror.url  # requests needs it to authenticate
    assert mirror.shown == f"http://***@m/{ZOO_PATH}"
