"""Hostile clients of `zoo serve`: bodies that stop arriving, and pipelined, smuggled or malformed requests.

Each runs against a real `zoo serve` on loopback with raw sockets (what a misbehaving client sends is
exactly what the test writes) and checks the status, that the connection is closed where the rest of
a body could be read as a request, and that the server goes on serving with no traceback.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import numpy as np
import requests
from serve_helpers import IMAGES, seed_home, start

BATCHED = "mobilenetv2-12-int8"


def _read_answer(conn: socket.socket) -> bytes:
    answer = b""
    while chunk := conn.recv(65536):  # the server closes after these answers
        answer += chunk
    return answer


def test_a_body_that_stops_arriving_is_answered_408_and_a_slow_one_is_not(tmp_path: Path) -> None:
    """A client that declared more than it sent held its connection, and what it sent, forever."""
    home = seed_home(tmp_path / "home", BATCHED)
    server = start(home, tmp_path / "serve.log", BATCHED, "--body-timeout", "1s")
    frog = (IMAGES / "frog.jpg").read_bytes()
    for path in (f"/v2/models/{BATCHED}/infer", f"/v1/models/{BATCHED}/predict"):
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as stalled:
            started = time.monotonic()
            stalled.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n".encode() + b"{")
            answer = _read_answer(stalled)
            took = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"connection: close" in answer.lower() and b"no byte of it for 1 s" in answer
        assert 0.9 <= took < 10, took
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as slow:  # never 1 s without a byte
        slow.sendall((f"POST /v1/models/{BATCHED}/predict HTTP/1.1\r\nHost: x\r\nContent-Length: {len(frog)}\r\n"
                      "Connection: close\r\n\r\n").encode())
        for at in range(0, len(frog), len(frog) // 6 + 1):
            time.sleep(0.4)
            slow.sendall(frog[at:at + len(frog) // 6 + 1])
        answer = _read_answer(slow)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["predictions"][0]["label"] == "tree frog"
    metrics = requests.get(f"{server.url}/metrics", timeout=30).text
    assert 'zoo_requests_total{endpoint="infer",model="mobilenetv2-12-int8",status="408"} 1.0' in metrics
    server.proc.send_signal(15)
    assert server.proc.wait(30) == 0 and "Traceback" not in server.stderr()


def test_pipelined_smuggled_and_malformed_requests(tmp_path: Path) -> None:
    home = seed_home(tmp_path / "home", BATCHED)
    server = start(home, tmp_path / "serve.log", BATCHED)
    path = f"/v2/models/{BATCHED}/infer"
    tensor = np.zeros((1, 3, 224, 224), np.float32)
    head = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 224, 224],
                                   "parameters": {"binary_data_size": tensor.nbytes}}]}).encode()
    body = head + tensor.tobytes()
    infer = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
             f"Inference-Header-Content-Length: {len(head)}\r\n").encode()

    def exchange(raw: bytes, then: bytes = b"") -> list[int]:
        """The statuses answered to `raw` (then `then` on the same connection), in order."""
        answer = b""
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn:
            conn.sendall(raw + then)
            while chunk := conn.recv(65536):
                answer += chunk
        return [int(answer[i + 9:i + 12]) for i in range(len(answer)) if answer.startswith(b"HTTP/1.1 ", i)]

    live = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    assert exchange(infer + b"\r\n" + body + infer + b"\r\n" + body, live) == [200, 200, 200]  # pipelined
    chunks = b"".join(f"{len(body[i:i + 65536]):x}\r\n".encode() + body[i:i + 65536] + b"\r\n"
                      for i in range(0, len(body), 65536)) + b"0\r\n\r\n"
    chunked = infer.replace(f"Content-Length: {len(body)}".encode(), b"Transfer-Encoding: chunked")
    assert exchange(chunked + b"\r\n" + chunks, live) == [200, 200]  # no length: chunked is fine
    smuggled = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                "2\r\n{}\r\n0\r\n\r\n").encode()
    assert exchange(smuggled) == [400]  # both lengths: refused, and the connection closed
    assert exchange(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n") == [400]
    assert exchange(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64)) == [400]  # TLS to plain HTTP
    assert requests.get(f"{server.url}/v2/health/ready", timeout=30).status_code == 200
    server.proc.send_signal(15)
    assert server.proc.wait(30) == 0 and "Traceback" not in server.stderr()


def test_headers_without_end_are_answered_431_and_slow_or_no_headers_408(tmp_path: Path) -> None:
    """httptools gathers a header however long it grows and uvicorn times no header: one client grew the server
    by 200 MB with one header, and one that sent a byte every few seconds, or nothing, held its connection."""
    from zoo.serve import protocol

    assert protocol.fits()  # this uvicorn's protocol is the one zoo extends (else zoo serve warns and goes without)
    home = seed_home(tmp_path / "home", BATCHED)
    server = start(home, tmp_path / "serve.log", "--body-timeout", "1s")

    def rss_mib() -> int:
        status = Path(f"/proc/{server.proc.pid}/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1]) // 1024

    before = rss_mib()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as flood:
        flood.sendall(b"GET /v2 HTTP/1.1\r\nHost: x\r\nX-Big: ")
        try:
            for _ in range(64):  # 64 MiB of one header's value
                flood.sendall(b"a" * (1 << 20))
        except OSError:  # the server closed the connection after answering
            pass
        answer = _read_answer(flood)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert b"connection: close" in answer and b"headers are over 64 KiB" in answer
    assert rss_mib() < before + 16

    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as trickle:
        started = time.monotonic()
        trickle.sendall(b"GET /v2 HTTP/1.1\r\n")
        try:
            for _ in range(20):
                trickle.sendall(b"X-Slow: yes\r\n")
                time.sleep(0.3)
        except OSError:
            pass
        answer = _read_answer(trickle)
    assert answer.startswith(b"HTTP/1.1 408") and b"did not all arrive within 1 s" in answer, answer[:200]
    assert time.monotonic() - started < 5

    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as idle:
        started = time.monotonic()
        assert _read_answer(idle) == b""  # closed without an answer: it never began a request
        assert 0.9 <= time.monotonic() - started < 5

    many = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(300))  # 33 KiB of headers: under the limit
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as fine:
        fine.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n" + many + b"Connection: close\r\n\r\n")
        assert _read_answer(fine).startswith(b"HTTP/1.1 200")
    with requests.Session() as session:  # keep-alive: a connection idle between requests is uvicorn's (5 s)
        assert session.get(f"{server.url}/v2/health/live", timeout=30).status_code == 200
        time.sleep(0.5)
        assert session.get(f"{server.url}/v2/health/live", timeout=30).status_code == 200
    log = server.stderr()
    assert '"status":431,"error":"the request\'s headers are over 64 KiB"' in log and '"status":408' in log
    server.proc.send_signal(15)
    assert server.proc.wait(30) == 0 and "Traceback" not in server.stderr()


def test_a_later_request_on_a_connection_gets_the_whole_header_time(tmp_path: Path) -> None:
    """The header clock is one timer per connection, moved on lazily: set for the connection's first
    request, it must give a later request that stalls the whole limit from its own start, and no less."""
    server = start(tmp_path / "home", tmp_path / "serve.log", "--body-timeout", "1s")
    live = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"

    def exchange(conn: socket.socket) -> bytes:
        conn.sendall(live)
        answer = b""
        while not answer.endswith(b'{"live":true}'):
            answer += conn.recv(65536)
        return answer

    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn:
        assert exchange(conn).startswith(b"HTTP/1.1 200")
        time.sleep(0.6)  # the connection's timer, set at its start, fires 0.4 s into the next request
        assert exchange(conn).startswith(b"HTTP/1.1 200")
        stalled = time.monotonic()
        conn.sendall(b"GET /v2/health/live HTTP/1.1\r\n")  # and no more
        answer = _read_answer(conn)
        took = time.monotonic() - stalled
    assert answer.startswith(b"HTTP/1.1 408") and b"did not all arrive within 1 s" in answer, answer[:200]
    assert 0.9 <= took < 5, took
    server.proc.send_signal(15)
    assert server.proc.wait(30) == 0 and "Traceback" not in server.stderr()


def test_bodies_declared_but_not_sent_cost_no_memory_until_they_come(tmp_path: Path) -> None:
    """zoo serve reads a body of declared length straight into a buffer of that length: a buffer that took
    memory when made would let a header of 100 bytes claim 16 MiB (32 connections: 512 MiB)."""
    home = seed_home(tmp_path / "home", BATCHED)
    server = start(home, tmp_path / "serve.log", BATCHED, "--body-timeout", "10s")

    def rss_mib() -> int:
        status = Path(f"/proc/{server.proc.pid}/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1]) // 1024

    declared = 16 << 20  # zoo serve's gather limit: bodies up to it are read into place
    before = rss_mib()
    holders = [socket.create_connection(("127.0.0.1", server.port), timeout=30) for _ in range(32)]
    try:
        for conn in holders:
            conn.sendall(f"POST /v2/models/{BATCHED}/infer HTTP/1.1\r\nHost: x\r\nContent-Length: {declared}\r\n"
                         "Inference-Header-Content-Length: 2\r\n\r\n{}".encode())
        assert requests.get(f"{server.url}/v2/health/ready", timeout=30).status_code == 200  # all headers are in
        time.sleep(0.5)
        held = rss_mib()
    finally:
        for conn in holders:
            conn.close()
    assert held < before + 64, (before, held)
    assert requests.get(f"{server.url}/v2/health/live", timeout=30).status_code == 200
    server.proc.send_signal(15)
    assert server.proc.wait(30) == 0 and "Traceback" not in server.stderr()
