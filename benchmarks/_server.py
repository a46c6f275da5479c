"""A lean loopback HTTP server for the download benchmarks: files from disk, Range, HEAD, sendfile.

The body goes out with socket.sendfile (zero-copy, as large as the kernel takes),
so the server is never what limits a client on loopback. Routes map a URL path
to a file and extra headers, which is all a zoo mirror or a fake Hugging Face
`/{repo}/resolve/{revision}/{path}` endpoint needs. Unknown paths answer 404
(huggingface_hub's telemetry calls such as /api/agent-harnesses included).

`FileServer(cap=50e6)` caps each TCP connection at 50 MB/s with a token bucket
per connection, as a CDN caps each flow: what parallel Range requests are for.
"""

from __future__ import annotations

import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

HF_COMMIT = "0123456789abcdef0123456789abcdef01234567"


CAP_PIECE = 256 * 1024  # bytes per sendfile call under a cap: fine-grained enough for a smooth rate


class _Bucket:
    """A token bucket: `rate` bytes/s on average, bursts of at most CAP_PIECE bytes."""

    def __init__(self, rate: float) -> None:
        self.rate, self.tokens, self.at = rate, float(CAP_PIECE), time.monotonic()

    def take(self, count: int) -> None:
        now = time.monotonic()
        self.tokens = min(float(CAP_PIECE), self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < count:
            time.sleep((count - self.tokens) / self.rate)
            self.tokens, self.at = float(count), time.monotonic()
        self.tokens -= count


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    routes: dict[str, tuple[Path, dict[str, str]]]
    cap: float | None

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hanging up mid-body are not the benchmark's concern


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, *, body: bool) -> None:
        route = self.server.routes.get(unquote(urlsplit(self.path).path).lstrip("/"))
        if route is None:
            self._empty(404)
            return
        path, extra = route
        size = path.stat().st_size
        start, end = _byte_range(self.headers.get("Range"), size)
        if start >= size and size:
            self._empty(416, {"Content-Range": f"bytes */{size}"})
            return
        self.send_response(206 if self.headers.get("Range") else 200)
        headers = {**extra, "Content-Type": "application/octet-stream", "Accept-Ranges": "bytes",
                   "Content-Length": str(end - start)}
        if self.headers.get("Range"):
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if body:
            self.wfile.flush()
            with open(path, "rb") as f:
                self._body(f, start, end)

    def _body(self, f: Any, start: int, end: int) -> None:
        if self.server.cap is None:
            self.connection.sendfile(f, start, end - start)
            return
        bucket = self.__dict__.setdefault("bucket", _Bucket(self.server.cap))  # one per connection
        for at in range(start, end, CAP_PIECE):
            count = min(CAP_PIECE, end - at)
            bucket.take(count)
            self.connection.sendfile(f, at, count)

    def _empty(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in {**(headers or {}), "Content-Length": "0"}.items():
            self.send_header(key, value)
        self.end_headers()


def _byte_range(header: str | None, size: int) -> tuple[int, int]:
    """[start, end) for a `bytes=START-[END]` header; the whole file without one."""
    match = re.fullmatch(r"bytes=(\d+)-(\d*)", (header or "").strip())
    if not match:
        return 0, size
    start = int(match[1])
    end = min(int(match[2]) + 1, size) if match[2] else size
    return start, end


class FileServer:
    """Serve files on 127.0.0.1 (port 0) until the `with` block ends."""

    def __init__(self, *, cap: float | None = None) -> None:
        self.cap = cap  # bytes/s per connection; None: no cap
        self.routes: dict[str, tuple[Path, dict[str, str]]] = {}
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._httpd is not None, "use FileServer as a context manager"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def add(self, url_path: str, path: Path, headers: dict[str, str] | None = None) -> str:
        """Serve `path` at `url_path`; returns its full URL."""
        self.routes[url_path.lstrip("/")] = (path, dict(headers or {}))
        return f"{self.url}/{url_path.lstrip('/')}"

    def add_hub_file(self, repo_id: str, filename: str, path: Path, sha256: str) -> None:
        """Serve `path` as huggingface.co does an LFS file, without the CDN redirect."""
        headers = {"X-Repo-Commit": HF_COMMIT, "ETag": f'"{sha256}"'}
        self.add(f"{repo_id}/resolve/main/{filename}", path, headers)

    def __enter__(self) -> FileServer:
        self._httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.routes = self.routes
        self._httpd.cap = self.cap
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._httpd is not None and self._thread is not None
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()
