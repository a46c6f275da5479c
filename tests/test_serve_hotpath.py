"""`zoo serve`'s per-request shortcuts: the access line, plans of repeated headers, response headers, one queue.

Each shortcut must give what the long way gives; these tests hold them to it, in process.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from serve_helpers import gather_model


@pytest.mark.parametrize("fields", [
    {"client": "127.0.0.1", "method": "POST", "path": "/v2/models/mobilenetv2-12-int8/infer", "model": "m",
     "endpoint": "infer"},
    {"client": None, "method": "GET", "path": "/v1/models", "model": None, "endpoint": None},
    {"client": "::1", "method": "GET", "path": '/x/"quoted"\\back\nline\x00\x1f', "model": "é-model ü",
     "endpoint": "x"},
    {"client": "10.0.0.1", "method": "PUT", "path": "/\u2028\udc80/🐸", "model": "m", "endpoint": "other"},
])
@pytest.mark.parametrize("numbers", [(1764000000.123, 0.0, 200, 0, 0), (1.5, 12345.67, 499, 602_400, 4_100),
                                     (1e-05, 1e16, 500, 2**40, 1)])
def test_the_access_line_is_what_json_dumps_writes(fields: dict[str, Any], numbers: tuple[Any, ...]) -> None:
    from zoo.serve.metrics import access_line

    ts, ms, status, received, sent = numbers
    line = access_line(ts=ts, status=status, ms=ms, received=received, sent=sent, **fields)
    as_dict = {"ts": ts, "client": fields["client"], "method": fields["method"], "path": fields["path"],
               "status": status, "ms": ms, "model": fields["model"], "endpoint": fields["endpoint"],
               "bytes_in": received, "bytes_out": sent}
    assert line == json.dumps(as_dict, separators=(",", ":"))
    assert json.loads(line) == as_dict


def _record(metrics: Any, status: int = 200) -> None:
    metrics.record(method="POST", path="/v2/models/m/infer", status=status, seconds=0.0123, model="m",
                   endpoint="infer", client="127.0.0.1", received=10, sent=20)


def test_access_lines_go_to_the_writer_one_line_each() -> None:
    from zoo.serve.metrics import Metrics

    written: list[str] = []
    metrics = Metrics(write_access=written.append)
    _record(metrics)
    _record(metrics, status=400)
    assert [w.endswith("\n") and w.count("\n") for w in written] == [1, 1]
    lines = [json.loads(w) for w in written]
    assert [line["status"] for line in lines] == [200, 400] and lines[0]["ms"] == 12.3
    assert metrics.registry.get_sample_value("zoo_requests_total", {"model": "m", "endpoint": "infer",
                                                                    "status": "400"}) == 1


def test_a_writer_that_fails_is_dropped_and_the_requests_still_count() -> None:
    """stderr closed under a running server: the lines are lost, the requests are not failed by it."""
    from zoo.serve.metrics import Metrics

    calls: list[str] = []

    def broken(line: str) -> None:
        calls.append(line)
        raise BrokenPipeError(32, "Broken pipe")

    metrics = Metrics(write_access=broken)
    for _ in range(3):
        _record(metrics)
    assert len(calls) == 1  # tried once, then no more
    assert metrics.registry.get_sample_value("zoo_requests_total", {"model": "m", "endpoint": "infer",
                                                                    "status": "200"}) == 3


@pytest.fixture
def gather(tmp_path: Path, isolated_env: Path) -> Iterator[tuple[Any, Any]]:
    """A served gather model (int64 ids [n, 1] -> float rows [n, 1, 2], row i = [2i, 2i+1]) and a server state."""
    import zoo
    from zoo.serve.metrics import Metrics
    from zoo.serve.models import PoolConfig, Served
    from zoo.serve.state import ServeConfig, ServerState

    model = zoo.load(gather_model(tmp_path / "gather.onnx"), threads=1)
    state = ServerState(ServeConfig(pool=PoolConfig(slots=1)))
    served = Served("file:gather", model, config=PoolConfig(slots=1), metrics=Metrics(), pinned=False)
    try:
        yield served, state
    finally:
        served.lanes.close()
        for pool in (state.prepare_pool, state.load_pool):
            pool.shutdown(wait=False)


def _binary_body(ids: list[int], **header: Any) -> tuple[bytes, str]:
    values = np.array(ids, dtype=np.int64).reshape(-1, 1)
    head = json.dumps({"inputs": [{"name": "ids", "datatype": "INT64", "shape": list(values.shape),
                                   "parameters": {"binary_data_size": values.nbytes}}],
                       "outputs": [{"name": "rows", "parameters": {"binary_data": True}}], **header}).encode()
    return head + values.tobytes(), str(len(head))


def _answer(served: Any, state: Any, body: bytes, header: str | None) -> tuple[dict[str, Any], np.ndarray | None]:
    from zoo.serve.v2 import answer_infer

    payload, json_length = asyncio.run(answer_infer(state, served, body, header))
    if json_length is None:
        return json.loads(payload), None
    head = json.loads(payload[:json_length])
    output = head["outputs"][0]
    return head, np.frombuffer(payload[json_length:], dtype=np.float32).reshape(output["shape"])


def test_a_repeated_header_is_answered_from_its_plan_with_the_new_values(gather: tuple[Any, Any]) -> None:
    served, state = gather
    first, header = _binary_body([1, 2], id="same")
    head, rows = _answer(served, state, first, header)
    assert len(served.plans) == 1 and rows is not None and rows.tolist() == [[[2, 3]], [[4, 5]]]
    second, same_header = _binary_body([7, 0], id="same")
    assert same_header == header and second[:int(header)] == first[:int(header)]  # the same header, byte for byte
    again, rows = _answer(served, state, second, header)
    assert rows is not None and rows.tolist() == [[[14, 15]], [[0, 1]]]  # the new body's values, not the first's
    assert again == head == {"model_name": "gather.onnx", "model_version": "1", "id": "same",
                             "outputs": [{"name": "rows", "datatype": "FP32", "shape": [2, 1, 2],
                                          "parameters": {"binary_data_size": 16}}]}
    assert len(served.plans) == 1


@pytest.mark.parametrize(("tail", "error"), [
    (b"\x00" * 8, "the body has 8 bytes of binary data that no input claims"),
    (None, "input 'ids': 8 bytes left in the body, but shape [2, 1] of INT64 needs 16 bytes"),
])
def test_a_body_that_does_not_fit_its_remembered_header_gets_the_parse_error(
        gather: tuple[Any, Any], tail: bytes | None, error: str) -> None:
    from zoo.serve.errors import RequestError

    served, state = gather
    body, header = _binary_body([1, 2])
    _answer(served, state, body, header)
    bad = body + tail if tail is not None else body[:-8]
    with pytest.raises(RequestError) as caught:
        _answer(served, state, bad, header)
    assert caught.value.what == error and caught.value.status == 400


def test_json_data_and_long_headers_make_no_plan_and_plans_are_bounded(gather: tuple[Any, Any]) -> None:
    from zoo.serve.models import PLANS_KEPT

    served, state = gather
    as_json = json.dumps({"inputs": [{"name": "ids", "datatype": "INT64", "shape": [1, 1], "data": [4]}]}).encode()
    head, _ = _answer(served, state, as_json, None)
    assert head["outputs"][0]["data"] == [8.0, 9.0] and served.plans == {}
    as_json_with_length, _ = _answer(served, state, as_json, str(len(as_json)))  # the header is all the body
    assert as_json_with_length["outputs"][0]["data"] == [8.0, 9.0] and served.plans == {}
    long, header = _binary_body([3], id="x" * 5000)
    assert _answer(served, state, long, header)[1].tolist() == [[[6, 7]]] and served.plans == {}
    for i in range(PLANS_KEPT + 5):  # request ids are the clients' to choose: each is another header
        _answer(served, state, *_binary_body([i % 10], id=str(i)))
    assert 0 < len(served.plans) <= PLANS_KEPT


def test_response_headers_of_binary_outputs_match_the_general_encoding() -> None:
    from zoo.serve import oip
    from zoo.serve.errors import RequestError

    outputs = [("probs", np.arange(6, dtype=np.float32).reshape(2, 3), True),
               ("flags", np.array([True, False]), True), ("ids", np.array([[7]], dtype=np.int64), True)]
    for request_id in (None, "r-1"):
        body, length = oip.encode_response(model="m", version="3", request_id=request_id, outputs=outputs)
        assert length is not None
        head = json.loads(body[:length])
        assert head == {"model_name": "m", "model_version": "3", **({"id": request_id} if request_id else {}),
                        "outputs": [{"name": "probs", "datatype": "FP32", "shape": [2, 3],
                                     "parameters": {"binary_data_size": 24}},
                                    {"name": "flags", "datatype": "BOOL", "shape": [2],
                                     "parameters": {"binary_data_size": 2}},
                                    {"name": "ids", "datatype": "INT64", "shape": [1, 1],
                                     "parameters": {"binary_data_size": 8}}]}
        assert body[length:] == b"".join(a.tobytes() for _, a, _ in outputs)
    swapped = np.arange(3, dtype=np.float32)
    mixed, length = oip.encode_response(model="m", version="3", request_id=None,
                                        outputs=[("a", swapped, False), ("b", swapped, True)])
    assert length is not None and json.loads(mixed[:length])["outputs"][0]["data"] == [0.0, 1.0, 2.0]
    assert mixed[length:] == swapped.tobytes()
    big_endian = np.arange(3, dtype=">f4")
    for binary in (True, False):
        with pytest.raises(RequestError) as caught:
            oip.encode_response(model="m", version="3", request_id=None, outputs=[("x", big_endian, binary)])
        assert caught.value.status == 500 and "dtype >f4, which the protocol cannot carry" in caught.value.what


def test_runs_of_one_item_share_one_queue_in_arrival_order() -> None:
    """A fixed-batch model's requests each came with a key of their own: one queue each, and a free worker
    looked through all of them for the oldest (30 at 32 clients) before every run."""
    import threading

    from zoo.serve.batching import Batcher, Lanes

    gate, order, queues_seen = threading.Event(), [], []

    def run(items: list[int]) -> list[int]:
        gate.wait(10)
        queues_seen.append(len(lanes._queues))
        order.extend(items)
        return [i * 10 for i in items]

    async def scenario() -> list[int]:
        tasks = [asyncio.ensure_future(one.submit(object(), i)) for i in range(6)]  # a fresh key each, as v2 gives
        while one.depth < 5:  # one taken by the worker, the rest queued behind it
            await asyncio.sleep(0.005)
        gate.set()
        return list(await asyncio.gather(*tasks))

    lanes = Lanes(1, max_delay=0.0)
    one: Batcher[int, int] = Batcher(run, max_batch=1, lanes=lanes)
    try:
        assert asyncio.run(scenario()) == [0, 10, 20, 30, 40, 50]
    finally:
        lanes.close()
    assert order == [0, 1, 2, 3, 4, 5]  # first come, first run
    assert max(queues_seen) == 1  # every waiting item in one queue, not one queue per key
