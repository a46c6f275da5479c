"""zoo serve's HTTP protocol hands an app each body with a declared length whole, in one message.

A real uvicorn runs zoo.serve.protocol's class in a thread here, in front of an ASGI app that
records every message it receives; raw sockets send the bodies in pieces, with pauses between,
so that the server reads each body in several parts.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("httptools", reason="zoo serve's protocol extends uvicorn's httptools one")
pytest.importorskip("uvicorn", reason="zoo serve runs on uvicorn (pip install 'zoo-client[serve]')")

PIECE = 200_000


class Recorder:
    """An ASGI app that answers each request with its body's length, after recording what receive() gave."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        seen: dict[str, Any] = {"messages": [], "clock": scope.get("zoo.body_clock")}
        self.requests.append(seen)
        while True:
            message = await receive()
            seen["messages"].append(message)
            if message["type"] == "http.disconnect" or not message.get("more_body", False):
                break
        body = b"".join(m.get("body", b"") for m in seen["messages"])
        seen["body"] = body
        if seen["messages"][-1]["type"] == "http.disconnect":
            return
        answer = str(len(body)).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(answer)).encode())]})
        await send({"type": "http.response.body", "body": answer})


def _loops() -> list[Any]:
    try:
        import uvloop  # noqa: F401  # zoo serve's loop where it is installed (uvicorn[standard])
    except ImportError:
        return ["asyncio", pytest.param("uvloop", marks=pytest.mark.skip(reason="uvloop is not installed"))]
    return ["asyncio", "uvloop"]


@pytest.fixture(params=_loops())
def server(request: pytest.FixtureRequest) -> Iterator[Any]:
    """(port, recorder, start) where start(max_body) serves the recorder with zoo's protocol class, on
    asyncio's event loop and on uvloop's (whose transports offer a buffer only to a BufferedProtocol)."""
    import uvicorn

    from zoo.serve import protocol

    assert protocol.fits()
    running: list[tuple[Any, threading.Thread]] = []
    recorder = Recorder()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)

    def start(max_body: int = protocol.GATHER_LIMIT) -> None:
        config = uvicorn.Config(recorder, lifespan="on", access_log=False, log_config=None, log_level="warning",
                                http=protocol.protocol_for(None, max_body, view_paths=re.compile("/x")),
                                loop=request.param)
        uv = uvicorn.Server(config)
        thread = threading.Thread(target=lambda: uv.run(sockets=[sock]), daemon=True)
        thread.start()
        running.append((uv, thread))
        deadline = time.monotonic() + 30
        while not uv.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)

    yield sock.getsockname()[1], recorder, start
    for uv, thread in running:
        uv.should_exit = True
        thread.join(30)
    sock.close()


def _send_in_pieces(port: int, head: bytes, body: bytes, pause: float = 0.05, close: bool = False) -> bytes:
    """Send `head` then `body` in PIECE-byte pieces `pause` s apart; the answer (b"" when `close`: none awaited)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.sendall(head)
        for at in range(0, len(body), PIECE):
            time.sleep(pause)
            conn.sendall(body[at:at + PIECE])
        if close:
            return b""
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.endswith(str(len(body)).encode()):
            chunk = conn.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


def _head(length: int | None, extra: str = "", path: str = "/x") -> bytes:
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return f"POST {path} HTTP/1.1\r\nHost: x\r\n{framing}\r\n{extra}\r\n".encode()


def test_a_body_of_declared_length_comes_whole_in_one_message(server: Any) -> None:
    port, recorder, start = server
    start()
    body = bytes(range(256)) * 2400  # 614 400 bytes, in 4 pieces
    answer = _send_in_pieces(port, _head(len(body)), body)
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(str(len(body)).encode()), answer[-200:]
    seen = recorder.requests[-1]
    assert [m["more_body"] for m in seen["messages"]] == [False]  # one message: nothing streamed in parts
    assert seen["body"] == body
    # the buffer the socket was read into, handed on as it is where the path is one named (else as bytes)
    assert type(seen["messages"][0]["body"]) is memoryview
    assert _send_in_pieces(port, _head(len(body), path="/y"), body).endswith(str(len(body)).encode())
    other = recorder.requests[-1]
    assert [m["more_body"] for m in other["messages"]] == [False] and type(other["messages"][0]["body"]) is bytes
    assert other["body"] == body
    assert seen["clock"] is not None and seen["clock"].at > 0  # where the body's last bytes came


def test_longer_and_chunked_bodies_stream_in_parts_as_uvicorn_streams_them(server: Any) -> None:
    port, recorder, start = server
    start(max_body=300_000)  # gathered only up to this
    body = bytes(range(256)) * 2400
    assert _send_in_pieces(port, _head(len(body)), body).startswith(b"HTTP/1.1 200")
    longer = recorder.requests[-1]
    assert len(longer["messages"]) > 1 and longer["body"] == body and longer["clock"] is None

    pieces = [body[at:at + PIECE] for at in range(0, len(body), PIECE)]
    chunked = b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in pieces) + b"0\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(_head(None))
        for at in range(0, len(chunked), PIECE):
            time.sleep(0.05)
            conn.sendall(chunked[at:at + PIECE])
        assert conn.recv(65536).startswith(b"HTTP/1.1 200")
    streamed = recorder.requests[-1]
    assert len(streamed["messages"]) > 1 and streamed["body"] == body and streamed["clock"] is None


def test_a_client_that_leaves_mid_body_is_a_disconnect_and_the_next_request_is_whole(server: Any) -> None:
    port, recorder, start = server
    start()
    _send_in_pieces(port, _head(1_000_000), bytes(300_000), close=True)  # 300 kB of a declared 1 MB, then gone
    deadline = time.monotonic() + 10
    while not recorder.requests or "body" not in recorder.requests[-1]:
        assert time.monotonic() < deadline, "the app never heard the client go"
        time.sleep(0.01)
    assert [m["type"] for m in recorder.requests[-1]["messages"]] == ["http.disconnect"]

    body = b"z" * 250_000
    two = _head(len(body)) + body  # two requests on one connection: each body whole, neither mixed up
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(two + two.replace(b"z", b"y"))
        answer = b""
        while answer.count(b"HTTP/1.1 200") < 2 or not answer.endswith(b"250000"):
            answer += conn.recv(65536)
    assert [r["body"] for r in recorder.requests[-2:]] == [body, b"y" * 250_000]
    assert all(len(r["messages"]) == 1 for r in recorder.requests[-2:])


def test_bytes_after_a_body_read_in_place_are_the_next_request_and_parsed_afresh(server: Any) -> None:
    """The rest of a gathered body is read past httptools, straight into place; the parser starts again after it.
    Whatever follows is parsed as a request of its own: a good one is answered, garbage gets 400."""
    port, recorder, start = server
    start()
    body = bytes(range(256)) * 1000  # 256 kB: its first part comes with the headers, the rest straight into place
    small = b"abc"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.sendall(_head(len(body)) + body[:1000])
        time.sleep(0.05)
        conn.sendall(body[1000:])
        time.sleep(0.05)
        conn.sendall(_head(len(small)) + small)
        answer = b""
        while not answer.endswith(b"\r\n\r\n3"):  # the second answer's end: the length of "abc"
            answer += conn.recv(65536)
        conn.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break  # the server closed the connection after the 400
            answer += chunk
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", answer) == [b"200", b"200", b"400"], answer[-400:]
    assert [r["body"] for r in recorder.requests[-2:]] == [body, small]
