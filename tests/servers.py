"""Real HTTP servers on loopback for download tests: a zoo mirror and a fake Hugging Face hub.

Both serve bytes with Range support, record every request, and inject faults
per path (see Fault). Nothing is mocked: requests and huggingface_hub talk to
them over TCP as they would to the internet.

    with MirrorServer({"validated/.../mnist-8.onnx": data}) as mirror:
        mirror.inject("validated/.../mnist-8.onnx", Fault(status=500), Fault(drop_after=1000))
        ...  # the first GET answers 500, the second drops after 1000 bytes, later ones behave
        assert [r.range for r in mirror.gets()] == [None, None, "bytes=...-"]
"""

from __future__ import annotations

import hashlib
import re
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

PIECE = 64 * 1024


@dataclass(frozen=True)
class Fault:
    """What goes wrong with one GET response; fields left unset behave."""

    status: int | None = None  # answer this status, empty body
    headers: dict[str, str] = field(default_factory=dict)  # extra headers, e.g. {"Retry-After": "0"}
    corrupt_at: int | None = None  # flip the byte at this file offset
    drop_after: int | None = None  # close the connection after this many body bytes
    stall: float = 0.0  # seconds to stall (headers already sent; unstall() ends it early) ...
    stall_at: int = 0  # ... once this many body bytes are out
    ignore_range: bool = False  # answer 200 with the whole file even to a Range request
    bad_range: bool = False  # answer a Range request with a Content-Range that starts elsewhere
    extra: int = 0  # send (and declare) this many bytes beyond the file
    redirect_loop: bool = False  # 302 back to the same URL, forever
    redirect_to: str | None = None  # 302 to this Location (any scheme, any host)
    reason: str | None = None  # the reason phrase of a `status` answer (control characters included)
    trickle_headers: float = 0.0  # send the status line and headers one byte per this many seconds
    trickle_body: float = 0.0  # send the body one byte per this many seconds
    declared_length: str | None = None  # the Content-Length sent in place of the true one (then hang up)


@dataclass(frozen=True)
class Request:
    """One request as the server saw it."""

    method: str
    path: str  # unquoted, without the leading slash
    range: str | None
    headers: dict[str, str]


@dataclass(frozen=True)
class Reply:
    """What a route answers: a status, headers and, for content, the bytes."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None


class Bucket:
    """A token bucket: at most `rate` bytes/s on average, in bursts of at most `burst` bytes."""

    def __init__(self, rate: float, burst: int = PIECE) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.at = float(burst), time.monotonic()

    def take(self, count: int) -> None:
        """Wait until `count` bytes may go out (count <= burst)."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < count:
            time.sleep((count - self.tokens) / self.rate)
            self.tokens, self.at = float(count), time.monotonic()
        self.tokens -= count


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    owner: _Server

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up (timeouts, kill -9, aborted overruns) are part of the tests.
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def do_GET(self) -> None:
        self.server.owner.handle(self, "GET")

    def do_HEAD(self) -> None:
        self.server.owner.handle(self, "HEAD")

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server:
    """Threaded server on 127.0.0.1, port 0; subclasses answer `route()`.

    `cap`: bytes/s per connection (a token bucket per TCP connection, as a CDN caps
    each flow), for bodies sent without a fault; None: as fast as loopback goes.
    """

    def __init__(self, *, cap: float | None = None) -> None:
        self.cap = cap
        self.requests: list[Request] = []
        self._unstalled = threading.Event()
        self._lock = threading.Lock()
        self._faults: dict[str, list[Fault]] = {}
        self._forever: dict[str, Fault] = {}
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("server not started: use it as a context manager")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> Any:
        self._httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.unstall()
        assert self._httpd is not None and self._thread is not None
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def unstall(self) -> None:
        """End every stall now and from now on (also done on shutdown, so a stalled server still stops)."""
        self._unstalled.set()

    def inject(self, path: str, *faults: Fault, forever: bool = False) -> None:
        """Apply `faults` to the next GETs of `path`, one each; with `forever`, the last one stays."""
        with self._lock:
            self._faults.setdefault(path, []).extend(faults[:-1] if forever else faults)
            if forever:
                self._forever[path] = faults[-1]

    def clear_faults(self) -> None:
        """Forget every fault still queued or set forever: from now on, every path behaves."""
        with self._lock:
            self._faults.clear()
            self._forever.clear()

    def gets(self, path: str | None = None) -> list[Request]:
        """The GET requests so far, optionally only those for `path`."""
        with self._lock:
            return [r for r in self.requests if r.method == "GET" and (path is None or r.path == path)]

    def route(self, method: str, path: str) -> Reply:
        raise NotImplementedError

    def handle(self, h: _Handler, method: str) -> None:
        path = unquote(urlsplit(h.path).path).lstrip("/")
        with self._lock:
            self.requests.append(Request(method, path, h.headers.get("Range"), dict(h.headers.items())))
            fault = None
            if method == "GET":
                queue = self._faults.get(path)
                fault = queue.pop(0) if queue else self._forever.get(path)
        fault = fault or Fault()
        if fault.redirect_loop or fault.redirect_to:
            return _send_status(h, Reply(302, {"Location": fault.redirect_to or h.path}))
        if fault.status is not None:
            return _send_status(h, Reply(fault.status, fault.headers), fault.reason)
        reply = self.route(method, path)
        if reply.body is None:
            return _send_status(h, reply)
        if fault.trickle_headers or fault.trickle_body:
            return self._trickle(h, reply.body, fault)
        self._send_content(h, method, reply, fault)

    def _trickle(self, h: _Handler, data: bytes, fault: Fault) -> None:
        """A 200 whose headers, or body, arrive one byte at a time (until the client hangs up or shutdown)."""
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(data)}\r\nContent-Type: application/octet-stream\r\n\r\n"
        h.close_connection = True
        try:
            for part, interval in ((head.encode(), fault.trickle_headers), (data, fault.trickle_body)):
                if not interval:
                    _write(h, memoryview(part))
                    continue
                for at in range(len(part)):
                    h.wfile.write(part[at : at + 1])
                    h.wfile.flush()
                    if self._unstalled.wait(interval):
                        return
        except (ConnectionError, TimeoutError):
            return

    def _send_content(self, h: _Handler, method: str, reply: Reply, fault: Fault) -> None:
        data = reply.body or b""
        if fault.corrupt_at is not None:
            data = data[: fault.corrupt_at] + bytes([data[fault.corrupt_at] ^ 0xFF]) + data[fault.corrupt_at + 1 :]
        status, headers, start = 200, {**reply.headers, **fault.headers}, 0
        asked = h.headers.get("Range")
        if asked and not fault.ignore_range:
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", asked.strip())
            start = int(match[1]) if match else len(data)
            if start >= len(data):
                return _send_status(h, Reply(416, {"Content-Range": f"bytes */{len(data)}"}))
            end = min(int(match[2]), len(data) - 1) if match[2] else len(data) - 1
            data, status = data[start : end + 1], 206
            shown = start + 1 if fault.bad_range else start
            headers["Content-Range"] = f"bytes {shown}-{end}/{len(reply.body or b'')}"
        data += b"\0" * fault.extra
        h.send_response(status)
        declared = str(len(data)) if fault.declared_length is None else fault.declared_length
        for key, value in {**headers, "Accept-Ranges": "bytes", "Content-Length": declared}.items():
            h.send_header(key, value)
        h.end_headers()
        if method == "GET":
            self._write_body(h, data, fault)
        if fault.declared_length is not None:  # the body ends where the connection does
            h.close_connection = True

    def _write_body(self, h: _Handler, data: bytes, fault: Fault) -> None:
        limit = len(data) if fault.drop_after is None else min(fault.drop_after, len(data))
        first = min(fault.stall_at, limit) if fault.stall else 0
        view = memoryview(data)
        try:
            self._send(h, view[:first])
            if fault.stall:
                self._unstalled.wait(fault.stall)
            self._send(h, view[first:limit])
        except (ConnectionError, TimeoutError):
            h.close_connection = True
            return
        if limit < len(data):  # drop: hang up with the body short of its Content-Length
            h.close_connection = True
            h.connection.shutdown(socket.SHUT_RDWR)


    def _send(self, h: _Handler, data: memoryview) -> None:
        if self.cap is None:
            return _write(h, data)
        bucket = h.__dict__.setdefault("bucket", Bucket(self.cap))  # one per connection (handler)
        for at in range(0, len(data), PIECE):
            piece = data[at : at + PIECE]
            bucket.take(len(piece))
            h.wfile.write(piece)
        h.wfile.flush()
        return None


def _write(h: _Handler, data: memoryview) -> None:
    for at in range(0, len(data), PIECE):
        h.wfile.write(data[at : at + PIECE])
    h.wfile.flush()


def _send_status(h: _Handler, reply: Reply, reason: str | None = None) -> None:
    if reason is None:
        h.send_response(reply.status)
    else:  # written raw: BaseHTTPRequestHandler would pass control characters through anyway
        h.log_request(reply.status)
        h.wfile.write(f"HTTP/1.1 {reply.status} {reason}\r\n".encode("latin-1"))
    for key, value in {**reply.headers, "Content-Length": "0"}.items():
        h.send_header(key, value)
    h.end_headers()


class MirrorServer(_Server):
    """A mirror laid out like the zoo repo: {url_path: bytes}."""

    def __init__(self, files: dict[str, bytes], *, cap: float | None = None) -> None:
        super().__init__(cap=cap)
        self.files = dict(files)

    def route(self, method: str, path: str) -> Reply:
        data = self.files.get(path)
        return Reply(404) if data is None else Reply(200, {"Content-Type": "application/octet-stream"}, data)


class FakeHubServer(_Server):
    """Answers /{repo_id}/resolve/{revision}/{path} like huggingface.co: a 302 to /cdn/<sha256>.

    `repos` is {repo_id: {path_in_repo: bytes}}. `cdn_host` names the host the
    redirect points at: "localhost" makes the CDN another host than 127.0.0.1,
    as it is on the real hub, so clients must drop the Authorization header.
    """

    COMMIT = "0123456789abcdef0123456789abcdef01234567"

    def __init__(self, repos: dict[str, dict[str, bytes]], *, cdn_host: str = "127.0.0.1") -> None:
        super().__init__()
        self.repos = {repo: dict(files) for repo, files in repos.items()}
        self.blobs = {hashlib.sha256(d).hexdigest(): d for files in self.repos.values() for d in files.values()}
        self.cdn_host = cdn_host

    def route(self, method: str, path: str) -> Reply:
        if path.startswith("cdn/"):
            sha256 = path.removeprefix("cdn/")
            data = self.blobs.get(sha256)
            return Reply(404) if data is None else Reply(200, {"ETag": f'"{sha256}"'}, data)
        parts = path.split("/")
        if "resolve" not in parts[1:] or len(parts) < parts.index("resolve") + 3:
            return Reply(404, {"X-Error-Code": "RepoNotFound"})
        at = parts.index("resolve")
        repo_id, filename = "/".join(parts[:at]), "/".join(parts[at + 2 :])
        if repo_id not in self.repos:
            return Reply(404, {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"})
        data = self.repos[repo_id].get(filename)
        if data is None:
            return Reply(404, {"X-Error-Code": "EntryNotFound", "X-Error-Message": "Entry not found"})
        sha256 = hashlib.sha256(data).hexdigest()
        port = self.url.rsplit(":", 1)[1]
        return Reply(302, {
            "Location": f"http://{self.cdn_host}:{port}/cdn/{sha256}",
            "X-Repo-Commit": self.COMMIT,
            "ETag": f'"{sha256}"',
            "X-Linked-Etag": f'"{sha256}"',
            "X-Linked-Size": str(len(data)),
        })
