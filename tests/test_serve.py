"""`zoo serve` against real clients: tritonclient (OIP, binary and JSON), requests (image endpoint), 32 in flight."""

from __future__ import annotations

import json
import re
import socket
import struct
import subprocess
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
from conftest import json_lines, zoo_cli
from serve_helpers import IMAGES, Server, seed_home, start

triton = pytest.importorskip("tritonclient.http", reason="needs tritonclient[http]: pip install '.[test]'")
from tritonclient.utils import InferenceServerException  # noqa: E402

BATCHED, FIXED = "mobilenetv2-12-int8", "shufflenet-v2-12-int8"
PHOTOS = ["frog.jpg", "banana.jpg", "goldfish.jpg", "pelican.jpeg"]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return seed_home(tmp_path_factory.mktemp("serve") / "zoo-home", BATCHED, FIXED)


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[Server]:
    # A long --max-delay-ms makes batching under 32 concurrent requests certain, not a matter of timing, and
    # --fill-batches not a matter of what batches cost on this CPU (tests/test_serve_lifecycle.py tests that choice).
    srv = start(home, home.parent / "serve.log", BATCHED, FIXED, "--max-delay-ms", "50", "--max-body", "4MB",
                "--threads", "1", "--fill-batches")
    yield srv
    assert srv.stop() == 0, srv.stderr()


@pytest.fixture()
def client(server: Server) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(server.url.removeprefix("http://"), connection_timeout=30,
                                        network_timeout=60)


@pytest.fixture()
def as_server(home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test process uses the server's cache (to run `zoo predict` and zoo.load on the same files)."""
    monkeypatch.setenv("ZOO_HOME", str(home))
    return home


def test_health_metadata_and_loopback_only(server: Server, client: triton.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(BATCHED) and client.is_model_ready(FIXED)
    meta = client.get_model_metadata("mobilenetv2-int8")  # an alias names the same model
    assert meta["name"] == BATCHED and meta["platform"] == "onnxruntime_onnx" and meta["versions"] == ["12"]
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 3, 224, 224]}]
    assert meta["outputs"] == [{"name": "output", "datatype": "FP32", "shape": [-1, 1000]}]
    assert client.get_model_metadata(FIXED, model_version="12")["inputs"][0]["shape"] == [1, 3, 224, 224]
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    listening = [line for line in subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True,
                                                 check=True).stdout.splitlines() if f"pid={server.proc.pid}," in line]
    assert listening and all(line.split()[3].startswith("127.0.0.1:") for line in listening), listening


@pytest.mark.parametrize("model_id", [BATCHED, FIXED])
def test_infer_binary_and_json_match_zoo_predict(model_id: str, as_server: Path,
                                                 client: triton.InferenceServerClient) -> None:
    import zoo

    photo = str(IMAGES / "goldfish.jpg")
    expected = json_lines(zoo_cli("predict", model_id, photo, "--json").stdout)[0]["predictions"][0]["index"]
    tensor = zoo.load(model_id).preprocess(photo)["input"]
    for binary in (True, False):
        given = triton.InferInput("input", list(tensor.shape), "FP32")
        given.set_data_from_numpy(tensor, binary_data=binary)
        result = client.infer(model_id, [given], outputs=[triton.InferRequestedOutput("output", binary_data=binary)],
                              request_id="r1")
        assert result.get_response()["id"] == "r1"
        assert result.as_numpy("output").shape == (1, 1000)
        assert int(result.as_numpy("output").argmax()) == expected == 1  # goldfish


def test_classification_extension_names_zoo_predicts_top_classes(as_server: Path,
                                                                   client: triton.InferenceServerClient) -> None:
    """tritonclient's class_count (the classification extension) was ignored: the client got 1000 raw scores."""
    import zoo

    photo = str(IMAGES / "frog.jpg")
    expected = json_lines(zoo_cli("predict", BATCHED, photo, "--json", "--top-k", "3").stdout)[0]["predictions"]
    tensor = zoo.load(BATCHED).preprocess(photo)["input"]
    assert "classification" in client.get_server_metadata()["extensions"]
    for binary in (True, True, False):  # the second binary request is answered from its header's plan
        given = triton.InferInput("input", list(tensor.shape), "FP32")
        given.set_data_from_numpy(tensor, binary_data=binary)
        wanted = triton.InferRequestedOutput("output", binary_data=binary, class_count=3)
        result = client.infer(BATCHED, [given], outputs=[wanted])
        assert result.get_output("output")["datatype"] == "BYTES" and result.get_output("output")["shape"] == [1, 3]
        rows = [(item.decode() if isinstance(item, bytes) else item).split(":") for item in
                result.as_numpy("output")[0]]
        assert [(int(index), label) for _, index, label in rows] == [(p["index"], p["label"]) for p in expected]
        logits = [float(score) for score, _, _ in rows]
        assert logits == sorted(logits, reverse=True) and rows[0][2] == "tree frog"


def test_image_endpoint_is_zoo_predict_json(server: Server, as_server: Path) -> None:
    photo = IMAGES / "frog.jpg"
    expected = json_lines(zoo_cli("predict", BATCHED, str(photo), "--json", "--top-k", "3").stdout)[0]
    raw = requests.post(f"{server.url}/v1/models/{BATCHED}/predict?top_k=3", data=photo.read_bytes(), timeout=30)
    with photo.open("rb") as f:
        form = requests.post(f"{server.url}/v1/models/mobilenetv2-int8/predict", params={"top_k": 3},
                             files={"image": ("frog.jpg", f, "image/jpeg")}, timeout=30)
    assert raw.status_code == form.status_code == 200
    for got, name in ((raw.json(), "<request body>"), (form.json(), "frog.jpg")):
        assert got["input"] == name
        assert {k: got[k] for k in ("model", "provider", "task")} == {k: expected[k] for k in ("model", "provider",
                                                                                               "task")}
        assert [p["label"] for p in got["predictions"]] == [p["label"] for p in expected["predictions"]]
        assert [p["score"] for p in got["predictions"]] == pytest.approx([p["score"] for p in expected["predictions"]],
                                                                         rel=1e-4)
    # As with `zoo predict --score-threshold`, the threshold filters detections; a classifier keeps its top-k.
    fixed = requests.post(f"{server.url}/v1/models/{FIXED}/predict?top_k=2&score_threshold=0.5",
                          data=photo.read_bytes(), timeout=30).json()
    assert fixed["model"] == FIXED and fixed["predictions"][0]["label"] == "tree frog"
    assert len(fixed["predictions"]) == 2


def test_32_in_flight_are_batched(server: Server) -> None:
    before = (server.metric("zoo_batch_size_count", model=BATCHED), server.metric("zoo_batch_size_sum", model=BATCHED))
    photos = {name: (IMAGES / name).read_bytes() for name in PHOTOS}
    jobs = [PHOTOS[i % len(PHOTOS)] for i in range(32)]

    def post(name: str) -> tuple[str, int, str]:
        r = requests.post(f"{server.url}/v1/models/{BATCHED}/predict?top_k=1", data=photos[name], timeout=60)
        return name, r.status_code, r.json()["predictions"][0]["label"]

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(post, jobs))
    labels = {"frog.jpg": "tree frog", "banana.jpg": "banana", "goldfish.jpg": "goldfish", "pelican.jpeg": "pelican"}
    assert [(n, code, label) for n, code, label in results] == [(n, 200, labels[n]) for n in jobs]
    runs = server.metric("zoo_batch_size_count", model=BATCHED) - before[0]
    rows = server.metric("zoo_batch_size_sum", model=BATCHED) - before[1]
    assert rows == 32 and runs < 32, (runs, rows)  # some requests shared a session run
    assert server.metric("zoo_requests_total", model=BATCHED, endpoint="predict", status="200") >= 32
    assert server.metric("zoo_queue_depth", model=BATCHED) == 0
    assert server.metric("zoo_models_loaded") == 2


def test_raw_tensors_are_batched_and_split_back(server: Server, as_server: Path) -> None:
    import zoo

    model = zoo.load(BATCHED)
    tensors = [model.preprocess(str(IMAGES / name))["input"] for name in PHOTOS]
    expected = [int(model.run({"input": t})["output"].argmax()) for t in tensors]
    before = server.metric("zoo_batch_size_count", model=BATCHED)
    clients = [triton.InferenceServerClient(server.url.removeprefix("http://")) for _ in range(8)]

    def infer(i: int) -> int:
        given = triton.InferInput("input", [1, 3, 224, 224], "FP32")
        given.set_data_from_numpy(tensors[i % 4])
        return int(clients[i].infer(BATCHED, [given]).as_numpy("output").argmax())

    def rounds(i: int) -> list[int]:  # each client sends 4 in a row: 8 in flight, 2 run slots, the rest queue
        return [infer(i) for _ in range(4)]

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(rounds, range(8))) == [[expected[i % 4]] * 4 for i in range(8)]
    assert server.metric("zoo_batch_size_count", model=BATCHED) - before < 32


def _infer_body(header: dict, binary: bytes = b"") -> tuple[bytes, dict[str, str]]:
    head = json.dumps(header).encode()
    return head + binary, ({"Inference-Header-Content-Length": str(len(head))} if binary else {})


ZEROS = np.zeros((1, 3, 224, 224), np.float32)
GOOD_INPUT = {"name": "input", "datatype": "FP32", "shape": [1, 3, 224, 224]}


def _bin(**changes: object) -> dict:
    return {**GOOD_INPUT, "parameters": {"binary_data_size": ZEROS.nbytes}, **changes}


# (what, model, header, binary bytes, extra headers, status, message)
BAD_TENSORS = [
    ("shape", BATCHED, {"inputs": [_bin(shape=[1, 3, 200, 200], parameters={"binary_data_size": 480000})]},
     np.zeros((1, 3, 200, 200), np.float32).tobytes(), {}, 400,
     r"input 'input' has shape \[1, 3, 200, 200\], model mobilenetv2-12-int8 expects \[-1, 3, 224, 224\]"),
    ("fixed batch", FIXED,
     {"inputs": [_bin(shape=[2, 3, 224, 224], parameters={"binary_data_size": 2 * ZEROS.nbytes})]},
     ZEROS.tobytes() * 2, {}, 400, r"has shape \[2, 3, 224, 224\], model shufflenet-v2-12-int8 expects \[1, 3"),
    ("datatype", BATCHED, {"inputs": [_bin(datatype="FP64", parameters={"binary_data_size": ZEROS.nbytes * 2})]},
     ZEROS.astype(np.float64).tobytes(), {}, 400, r"input 'input' has datatype FP64, .* expects FP32"),
    ("byte count", BATCHED, {"inputs": [_bin(parameters={"binary_data_size": 1000})]}, b"\0" * 1000, {}, 400,
     r"input 'input': binary_data_size 1000, but shape \[1, 3, 224, 224\] of FP32 needs 602112 bytes"),
    ("short body", BATCHED, {"inputs": [_bin()]}, ZEROS.tobytes()[:5000], {}, 400, r"5000 bytes left in the body"),
    ("unclaimed bytes", BATCHED, {"inputs": [_bin()]}, ZEROS.tobytes() + b"xx", {}, 400,
     r"2 bytes of binary data that no input claims"),
    ("zero rows", BATCHED, {"inputs": [_bin(shape=[0, 3, 224, 224], parameters={"binary_data_size": 0})]}, b"", {},
     400, r"input 'input' has shape \[0, 3, 224, 224\]: no values to run on"),  # was a 500: ORT's Reshape failed
    ("json count", BATCHED, {"inputs": [{**GOOD_INPUT, "data": [1.0, 2.0, 3.0]}]}, b"", {}, 400,
     r"\"data\" has 3 values, shape \[1, 3, 224, 224\] needs 150528"),
    ("json values", BATCHED, {"inputs": [{**GOOD_INPUT, "shape": [1], "data": ["x"]}]}, b"", {}, 400,
     r"\"data\" holds text; FP32 takes numbers"),
    ("json booleans", BATCHED, {"inputs": [{**GOOD_INPUT, "data": [True] * 150528}]}, b"", {}, 400,
     r"\"data\" holds true/false values; FP32 takes numbers"),  # was run as 1.0s
    ("input name", BATCHED, {"inputs": [{**GOOD_INPUT, "name": "x", "shape": [1], "data": [1]}]}, b"", {}, 400,
     r"missing input\(s\) \['input'\]; model mobilenetv2-12-int8 has no input\(s\) \['x'\]"),
    ("output name", BATCHED, {"inputs": [_bin()], "outputs": [{"name": "nope"}]}, ZEROS.tobytes(), {}, 400,
     r"has no output\(s\) \['nope'\] \(its outputs: output\)"),
    ("classification count", BATCHED, {"inputs": [_bin()], "outputs": [{"name": "output",
                                                                        "parameters": {"classification": True}}]},
     ZEROS.tobytes(), {}, 400, r"output 'output': classification must be a count of classes, got 'true'"),
    ("shared memory", BATCHED, {"inputs": [{**GOOD_INPUT, "parameters": {"shared_memory_region": "in0",
                                                                         "shared_memory_byte_size": 602112}}]},
     b"", {}, 400, r"input 'input' names a shared-memory region, but zoo serve has no shared-memory extension"),
    ("binary flag", BATCHED, {"inputs": [_bin()], "parameters": {"binary_data_output": "no"}}, ZEROS.tobytes(), {},
     400, r"binary_data_output must be true or false, got '\"no\"'"),  # "no" was taken as true
    ("output binary flag", BATCHED, {"inputs": [_bin()], "outputs": [{"name": "output",
                                                                      "parameters": {"binary_data": 1}}]},
     ZEROS.tobytes(), {}, 400, r"output 'output': binary_data must be true or false, got '1'"),
    ("datatype name", BATCHED, {"inputs": [{**GOOD_INPUT, "datatype": "FLOAT"}]}, b"", {}, 400,
     r"unknown datatype 'FLOAT'"),
    ("datatype list", BATCHED, {"inputs": [{**GOOD_INPUT, "datatype": ["FP32"]}]}, b"", {}, 400,
     r"unknown datatype \"\['FP32'\]\""),  # was a 500: a list is no dictionary key
    ("no inputs", BATCHED, {"outputs": []}, b"", {}, 400, r"no \"inputs\" list"),
    ("header length digit", BATCHED, {"inputs": [_bin()]}, b"", {"Inference-Header-Content-Length": "\u00b2"}, 400,
     r"Inference-Header-Content-Length must be a byte count, got '\u00b2'"),  # was a 500: isdigit() passes it
    ("header length", BATCHED, {"inputs": [_bin()]}, b"", {"Inference-Header-Content-Length": "99999"}, 400,
     r"Inference-Header-Content-Length is 99999, but the body has"),
    ("unknown model", "mobilenetv2-12-int9", {"inputs": [_bin()]}, ZEROS.tobytes(), {}, 404,
     r"unknown model 'mobilenetv2-12-int9' \(did you mean: .*mobilenetv2-12-int8.*\? \(GET /v1/models lists the "
     r"catalogue\)\)$"),
    ("unknown version", f"{BATCHED}/versions/99", {"inputs": [_bin()]}, ZEROS.tobytes(), {}, 404,
     r"no variant of 'mobilenetv2-12-int8' has opset 99; .* \(a model's versions are its opsets: GET /v2/models/"),
    ("version digits", f"{BATCHED}/versions/{'9' * 5000}", {"inputs": [_bin()]}, ZEROS.tobytes(), {}, 404,
     r"model version '9{100}'... \(5000 characters\) is not a number"),  # was a 500: int() refuses 4300+ digits
    ("version superscript", f"{BATCHED}/versions/\u00b2", {"inputs": [_bin()]}, ZEROS.tobytes(), {}, 404,
     r"model version '\u00b2' is not a number"),  # str.isdigit() says it is; int() does not
    ("file path", "my.onnx", {"inputs": [_bin()]}, ZEROS.tobytes(), {}, 404,
     r"'my.onnx' is a file path, not a model name"),
]


@pytest.mark.parametrize(("what", "model", "header", "binary", "headers", "status", "message"), BAD_TENSORS,
                         ids=[row[0] for row in BAD_TENSORS])
def test_bad_tensors_are_refused(server: Server, what: str, model: str, header: dict, binary: bytes,
                                 headers: dict[str, str], status: int, message: str) -> None:
    body, extra = _infer_body(header, binary)
    r = requests.post(f"{server.url}/v2/models/{model}/infer", data=body, headers={**extra, **headers}, timeout=30)
    assert r.status_code == status, r.text
    assert re.search(message, r.json()["error"]), r.json()


def test_bad_tensor_through_tritonclient(client: triton.InferenceServerClient) -> None:
    given = triton.InferInput("input", [1, 3, 224, 224], "FP64")
    given.set_data_from_numpy(ZEROS.astype(np.float64))
    with pytest.raises(InferenceServerException, match=r"\[400\] input 'input' has datatype FP64"):
        client.infer(BATCHED, [given])


def test_malformed_bodies(server: Server) -> None:
    infer = f"{server.url}/v2/models/{BATCHED}/infer"
    r = requests.post(infer, data=b"{not json", timeout=30)
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
    r = requests.post(infer, data=b"[1, 2]", timeout=30)
    assert r.status_code == 400 and "must be a JSON object, not list" in r.json()["error"]
    r = requests.post(infer, data=b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", timeout=30)
    assert r.status_code == 400 and "nested too deeply" in r.json()["error"]  # was a 500 (RecursionError)
    r = requests.post(infer, data=b"0" * (5 * 1000 * 1000), timeout=30)  # declared Content-Length over 4MB
    assert r.status_code == 413 and "over the 4000000 byte limit" in r.json()["error"]
    chunked = requests.post(infer, data=iter([b"0" * 1_000_000] * 5), timeout=30)  # no length: cut while streaming
    assert chunked.status_code == 413 and "--max-body" in chunked.json()["error"]
    r = requests.get(f"{server.url}/v2/nowhere", timeout=30)
    assert r.status_code == 404 and "GET /v2/nowhere" in r.json()["error"]


def test_the_infer_front_door_answers_as_starlette_would(server: Server) -> None:
    """POSTs to infer skip Starlette (zoo.serve.front); every other method and shape of that path still reaches it."""
    body, extra = _infer_body({"inputs": [_bin()], "outputs": [{"name": "output"}]}, ZEROS.tobytes())
    plain = requests.post(f"{server.url}/v2/models/{BATCHED}/infer", data=body, headers=extra, timeout=30)
    versioned = requests.post(f"{server.url}/v2/models/{BATCHED}/versions/12/infer", data=body, headers=extra,
                              timeout=30)
    assert plain.status_code == versioned.status_code == 200
    assert plain.headers["content-type"] == "application/json" and plain.content == versioned.content
    assert plain.json()["outputs"][0]["shape"] == [1, 1000] and len(plain.json()["outputs"][0]["data"]) == 1000
    r = requests.get(f"{server.url}/v2/models/{BATCHED}/infer", timeout=30)
    assert r.status_code == 405 and "GET /v2/models/mobilenetv2-12-int8/infer" in r.json()["error"]
    r = requests.post(f"{server.url}/v2/models/{BATCHED}/infer/extra", data=body, headers=extra, timeout=30)
    assert r.status_code == 404 and set(r.json()) == {"error"}
    with socket.create_connection(("127.0.0.1", server.port)) as conn:  # a client gone in mid-body
        conn.sendall(f"POST /v2/models/{BATCHED}/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 602200\r\n"
                     f"Inference-Header-Content-Length: {len(body) - ZEROS.nbytes}\r\n\r\n".encode() + body[:9000])
    again = requests.post(f"{server.url}/v2/models/{BATCHED}/infer", data=body, headers=extra, timeout=30)
    assert again.status_code == 200 and again.content == plain.content
    assert server.metric("zoo_requests_total", model=BATCHED, endpoint="infer", status="200") >= 3
    deadline = time.monotonic() + 10  # the one that left mid-body is counted as 499, not as a server error
    while server.metric("zoo_requests_total", model=BATCHED, endpoint="infer", status="499") < 1:
        assert time.monotonic() < deadline, "the abandoned request was never counted"
        time.sleep(0.05)
    assert server.metric("zoo_requests_total", model=BATCHED, endpoint="infer", status="500") == 0


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height and holds no pixels: what a decompression bomb looks like up front."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk + struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))


BAD_IMAGES = [
    ("not an image", BATCHED, "", b"hello, not a picture", 400,
     r"cannot use image <request body>: not an image file Pillow can identify"),
    ("bomb", BATCHED, "", _png_header(30000, 30000), 400,
     r"cannot use image <request body>: refused as a decompression bomb"),
    ("truncated", BATCHED, "", (IMAGES / "frog.jpg").read_bytes()[:3000] if IMAGES.exists() else b"", 400,
     r"cannot use image <request body>: cannot decode"),
    ("empty", BATCHED, "", b"", 400, r"the body is empty"),
    ("url", BATCHED, "", b"https://example.com/frog.jpg\n", 400,
     r"<request body> is a URL \('https://example.com/frog.jpg'\), and zoo serve fetches nothing"),
    ("top_k", BATCHED, "?top_k=0", b"x", 400, r"top_k must be a whole number from 1 to 1000, got '0'"),
    ("top_k digit", BATCHED, "?top_k=%C2%B2", b"x", 400, r"top_k must be a whole number from 1 to 1000, got '\u00b2'"),
    ("threshold", BATCHED, "?score_threshold=high", b"x", 400, r"score_threshold must be a number from 0 to 1"),
    ("unknown model", "resnet-51", "", b"x", 404, r"unknown model 'resnet-51'"),
]


@pytest.mark.parametrize(("what", "model", "query", "data", "status", "message"), BAD_IMAGES,
                         ids=[row[0] for row in BAD_IMAGES])
def test_bad_images_are_refused(server: Server, what: str, model: str, query: str, data: bytes, status: int,
                                message: str) -> None:
    r = requests.post(f"{server.url}/v1/models/{model}/predict{query}", data=data, timeout=30)
    assert r.status_code == status, r.text
    assert re.search(message, r.json()["error"]), r.json()
    assert r.json()["hint"]  # zoo's endpoint says what to do next


def test_multipart_needs_one_file(server: Server) -> None:
    r = requests.post(f"{server.url}/v1/models/{BATCHED}/predict", files={"note": (None, "no file here")},
                      timeout=30)
    assert r.status_code == 400 and "the multipart form has 0 files" in r.json()["error"]
    assert "curl -F image=@photo.jpg" in r.json()["hint"]
    many = {f"f{i}": (f"{i}.jpg", b"x") for i in range(3)}
    r = requests.post(f"{server.url}/v1/models/{BATCHED}/predict", files=many, timeout=30)
    assert r.status_code == 400 and "the multipart form cannot be read: Too many files" in r.json()["error"]
    assert "curl -F image=@photo.jpg" in r.json()["hint"]


def test_unknown_model_suggests_names(server: Server) -> None:
    r = requests.post(f"{server.url}/v1/models/mobilenet-v2-int8/predict", data=b"x", timeout=30)
    assert r.status_code == 404 and "mobilenetv2-12-int8" in r.json()["suggestions"]
    # An HTTP client is told where the catalogue is over HTTP, not about the CLI's `zoo search`.
    assert r.json()["hint"].endswith("(GET /v1/models lists the catalogue)") and "zoo search" not in r.json()["hint"]
    r = requests.post(f"{server.url}/v1/models/qqqqqqqqqqqqqqqqqqqq/predict", data=b"x", timeout=30)
    assert (r.status_code, r.json()["suggestions"], r.json()["hint"]) == (404, [], "GET /v1/models lists the catalogue")


def test_a_model_that_fails_to_load_does_not_poison_the_server(server: Server) -> None:
    frog = (IMAGES / "frog.jpg").read_bytes()
    for _ in range(2):  # a failed load is not remembered: the second request tries again
        r = requests.post(f"{server.url}/v1/models/mnist-8/predict", data=frog, timeout=30)
        assert r.status_code == 500
        assert re.search(r"model mnist-8 failed to load: mnist-8 is not cached and zoo is offline", r.json()["error"])
    assert server.metric("zoo_model_loads_total", model="mnist-8", outcome="error") == 2
    ok = requests.post(f"{server.url}/v1/models/{BATCHED}/predict", data=frog, timeout=30)
    assert ok.status_code == 200 and ok.json()["predictions"][0]["label"] == "tree frog"


def test_catalogue_docs_and_access_log(server: Server) -> None:
    listing = requests.get(f"{server.url}/v1/models", timeout=30).json()
    assert {row["name"] for row in listing["loaded"]} == {BATCHED, FIXED}
    by_id = {row["id"]: row for row in listing["models"]}
    assert len(by_id) >= 184 and by_id[BATCHED]["loaded"] and by_id[BATCHED]["cached"]
    assert not by_id["mnist-8"]["cached"] and not by_id["mnist-8"]["loaded"]
    doc = requests.get(f"{server.url}/openapi.json", timeout=30).json()
    assert {"/v1/models/{name}/predict", "/v2/models/{name}/infer", "/v2/repository/index"} <= set(doc["paths"])
    for route in ("/v1/models/{name}/predict", "/v2/models/{name}/infer"):  # every status the guard can answer
        assert {"200", "400", "404", "408", "413", "431", "500"} <= set(doc["paths"][route]["post"]["responses"])
    assert "/v1/models/{name}/predict" in requests.get(f"{server.url}/docs", timeout=30).text
    lines = [json.loads(line) for line in server.stderr().splitlines() if line.startswith('{"ts"')]
    assert any(line["path"] == "/v1/models" and line["status"] == 200 and line["endpoint"] == "list" for line in lines)
    assert {"client", "method", "ms", "model", "bytes_in", "bytes_out"} <= set(lines[-1])


def test_repository_extension(client: triton.InferenceServerClient) -> None:
    index = {row["name"]: row for row in client.get_model_repository_index()}
    assert index[FIXED]["state"] == "READY" and index["mnist-8"]["state"] == "UNAVAILABLE"
    client.unload_model(FIXED)
    assert not client.is_model_ready(FIXED)
    client.load_model(FIXED)
    assert client.is_model_ready(FIXED)


def test_repository_load_refuses_parameters_it_cannot_honour(server: Server,
                                                                client: triton.InferenceServerClient) -> None:
    """A Triton load with a model config, or a body that is not JSON, was answered 200 as if applied."""
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException, match="takes no load parameter 'config'"):
        client.load_model(FIXED, config=json.dumps({"max_batch_size": 8}))
    load, unload = (f"{server.url}/v2/repository/models/{FIXED}/{action}" for action in ("load", "unload"))
    for body, wanted in ((b"{", "the request is not valid JSON"), (b"[1]", "must be a JSON object, not list"),
                         (b'{"parameters": 5}', '"parameters" must be a JSON object, got \'5\''),
                         (b'{"parameters": {"file:1/model.onnx": "AAAA"}}',
                          "takes no load parameter 'file:1/model.onnx'")):
        r = requests.post(load, data=body, timeout=30)
        assert r.status_code == 400 and wanted in r.json()["error"], (body, r.text)
        assert "Inference-Header-Content-Length" not in r.text  # the infer route's hint does not fit here
    r = requests.post(unload, json={"parameters": {"unload_dependents": "yes"}}, timeout=30)
    assert r.status_code == 400 and "'unload_dependents' must be bool, got '\"yes\"'" in r.json()["error"], r.text
    assert client.is_model_ready(FIXED)  # no refused request unloaded it
    for body in (b"", b"{}", b'{"parameters": {}}'):
        assert requests.post(load, data=body, timeout=30).status_code == 200, body
    assert requests.post(unload, json={"parameters": {"unload_dependents": True}}, timeout=30).status_code == 200
    assert not client.is_model_ready(FIXED)
    client.load_model(FIXED)  # tritonclient's own load (it sends {}) as the other tests expect it
    assert client.is_model_ready(FIXED)


def test_repository_index_ready_filter(server: Server) -> None:
    index = f"{server.url}/v2/repository/index"
    ready = requests.post(index, json={"ready": True}, timeout=30).json()
    assert ready and {row["state"] for row in ready} == {"READY"}
    everything = requests.post(index, json={"ready": False}, timeout=30).json()
    assert len(everything) > len(ready) and "UNAVAILABLE" in {row["state"] for row in everything}
    r = requests.post(index, json={"ready": "no"}, timeout=30)  # was taken as true: bool("no")
    assert r.status_code == 400, r.text
    assert r.json()["error"].startswith("\"ready\" must be true or false, got '\"no\"'"), r.text
