"""uvicorn's httptools protocol with the two limits it lacks on a request's headers, and bodies handed on whole.

Limits: httptools gathers a header's value however long it grows, and uvicorn sets no timer while
a request's headers arrive: one client sending a header without end grew the server by
its size (200 MB in a test), and one sending a byte every few seconds, or nothing at all
on a fresh connection, held its connection for good. This subclass answers 431 once a
request's headers pass `max_header_bytes` (64 KiB, where nginx stops at 32 KiB and Node.js
at 16 KiB) and 408 when they have not all come within `header_timeout` (zoo serve's
--body-timeout), then closes the connection; a fresh connection that sends nothing in that
time is closed without an answer. Idle keep-alive connections stay uvicorn's (5 s).

Bodies: uvicorn hands the app each piece of a body as it is read (256 KiB at most), pausing
the socket past 64 KiB until the app takes it, so a 600 kB tensor crossed the event loop as
three wake-ups, three pause/resume pairs and two more copies (uvicorn's buffer, the app's
join). A body with a declared Content-Length up to `gather_limit` (16 MiB, or the server's
--max-body if smaller) is gathered here instead and handed on in one message when it is
complete: the declared length bounds what is held, and the app reads every body whole anyway.
While it is gathered, the request's `BodyClock` (in the ASGI scope, for zoo.serve.guard's
--body-timeout) says when bytes of it last arrived, so a slow but steady upload is not taken
for a stalled one. Chunked bodies, and longer ones, stream as uvicorn streams them.

It uses only the httptools callbacks, the transport and the request cycle's body and event;
`fits()` checks that the installed uvicorn still has them, and zoo.serve.main falls back to
uvicorn's own protocol (with a warning) when it does not.
"""

from __future__ import annotations

import asyncio
import json
import time

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol  # ImportError without httptools

from zoo.counts import count_of
from zoo.serve.guard import BODY_CLOCK, BodyClock
from zoo.serve.metrics import access_log

MAX_HEADER_BYTES = 64 * 1024
GATHER_LIMIT = 16 * 1024 * 1024
_HOOKS = ("connection_made", "connection_lost", "data_received", "on_message_begin", "on_headers_complete",
          "on_body", "on_message_complete", "on_response_complete")


def fits() -> bool:
    """Whether the installed uvicorn's httptools protocol has the callbacks this subclass extends."""
    return all(callable(getattr(HttpToolsProtocol, name, None)) for name in _HOOKS)


def protocol_for(header_timeout: float | None, max_body: int = GATHER_LIMIT) -> type[HttpToolsProtocol]:
    """The protocol class for uvicorn.Config(http=...), with this header timeout (None: none), gathering
    bodies up to the smaller of GATHER_LIMIT and `max_body`."""
    return type("ZooHttpProtocol", (ServeProtocol,), {"header_timeout": header_timeout,
                                                      "gather_limit": min(GATHER_LIMIT, max_body)})


class ServeProtocol(HttpToolsProtocol):
    """HttpToolsProtocol that bounds a request's headers in size and in time, and hands on bodies whole
    (see the module docstring)."""

    max_header_bytes = MAX_HEADER_BYTES
    header_timeout: float | None = 30.0
    gather_limit = GATHER_LIMIT

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._in_headers, self._header_bytes, self._got_bytes = True, 0, False
        self._gathered: list[bytes] | None = None  # the body's pieces so far, when it is gathered
        self._clock = BodyClock()
        self._header_timer: asyncio.TimerHandle | None = None
        self._awaiting_headers, self._headers_since = False, 0.0
        super().connection_made(transport)
        self._await_headers()

    def data_received(self, data: bytes) -> None:
        self._got_bytes = True
        super().data_received(data)
        if not self._in_headers or self.transport.is_closing():
            return
        self._header_bytes += len(data)  # the whole chunk, when it also ended the last request's body: at most
        if self._header_bytes > self.max_header_bytes:  # a chunk over the limit
            self._refuse(431, f"the request's headers are over {self.max_header_bytes // 1024} KiB",
                         "send fewer or shorter headers")

    def on_message_begin(self) -> None:
        self._in_headers, self._header_bytes = True, 0
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._in_headers, self._header_bytes = False, 0
        self._awaiting_headers = False
        super().on_headers_complete()
        self._gathered = None
        if self.parser.should_upgrade():
            return  # no request cycle of its own (uvicorn answers or hands the connection on)
        declared = next((value for name, value in self.headers if name == b"content-length"), None)
        length = count_of(declared.decode("latin-1")) if declared is not None else None
        if length is not None and 0 < length <= self.gather_limit:
            self._gathered, self._clock = [], BodyClock()
            self.scope[BODY_CLOCK] = self._clock  # type: ignore[literal-required]

    def on_body(self, body: bytes) -> None:
        gathered = self._gathered
        if gathered is None:
            super().on_body(body)
        elif not self.cycle.response_complete:  # else answered already (413, 401): nobody reads the rest
            gathered.append(body)
            self._clock.at = self.loop.time()

    def on_message_complete(self) -> None:
        gathered, self._gathered = self._gathered, None
        if gathered and not self.cycle.response_complete:
            self.cycle.body = gathered[0] if len(gathered) == 1 else b"".join(gathered)  # type: ignore[assignment]
        super().on_message_complete()

    def on_response_complete(self) -> None:
        queued = bool(self.pipeline)  # a request whose headers are in already: it starts now
        super().on_response_complete()
        if not queued and not self.transport.is_closing():  # the next request's headers are to come
            self._got_bytes = self._in_headers and self._header_bytes > 0
            self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._gathered = None
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().connection_lost(exc)

    def _await_headers(self) -> None:
        """Start the clock on the next request's headers.

        One timer per connection, not per request: it stays set, and when it fires with headers
        awaited for less than the limit (a later request's), it sets itself for what is left.
        """
        if self.header_timeout is None:
            return
        self._awaiting_headers, self._headers_since = True, self.loop.time()
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._check_headers)

    def _check_headers(self) -> None:
        assert self.header_timeout is not None
        self._header_timer = None
        if not self._awaiting_headers or self.transport.is_closing():
            return  # none awaited now: the next _await_headers sets the timer again
        waited = self.loop.time() - self._headers_since
        if waited < self.header_timeout:
            self._header_timer = self.loop.call_later(self.header_timeout - waited, self._check_headers)
        else:
            self._headers_late()

    def _headers_late(self) -> None:
        self._awaiting_headers = False
        if not self._in_headers or self.transport.is_closing():
            return
        if not self._got_bytes:  # a connection that never began a request: nobody to answer
            self.transport.close()
            return
        self._refuse(408, f"the request's headers did not all arrive within {self.header_timeout:g} s",
                     "send the whole request promptly (the server's --body-timeout)")

    def _refuse(self, status: int, what: str, hint: str) -> None:
        reason = {408: "Request Timeout", 431: "Request Header Fields Too Large"}[status]
        body = json.dumps({"error": what, "hint": hint}).encode()
        client = self.client[0] if self.client else None  # the access log's line (no path: the headers are not in)
        access_log.info(json.dumps({"ts": round(time.time(), 3), "client": client, "status": status, "error": what},
                                   separators=(",", ":")))
        self.transport.write(f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
                             f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode() + body)
        self._awaiting_headers = False
        self.transport.close()
