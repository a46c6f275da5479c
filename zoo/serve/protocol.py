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
three wake-ups, three pause/resume pairs and four copies (the event loop's read buffer into
bytes, httptools' piece, uvicorn's buffer, the app's join). A body with a declared
Content-Length up to `gather_limit` (16 MiB, or the server's --max-body if smaller) is
gathered here instead and handed on in one message when it is complete: the declared length
bounds what is held, and the app reads every body whole anyway. Once a request's headers are
in, what is left of such a body is read from the socket straight into its place (the
transport sees a BufferedProtocol, `BodyReader`, whose buffer is then the body's remaining
bytes, exactly, so the next request's bytes never land there), past httptools, which gets a
fresh parser when the body is complete. The place is not zeroed: its pages become memory
only as bytes come, so a header that declares 16 MiB costs nothing until they do.
uvicorn's receive() then makes the one copy left (into bytes, the type ASGI gives), except on
the paths named (the infer route: zoo.serve.front reads tensors from any buffer), whose app
gets a memoryview of the buffer itself. While a body is gathered, the request's `BodyClock`
(in the ASGI scope, for zoo.serve.guard's --body-timeout) says when bytes of it last
arrived, so a slow but steady upload is not taken for a stalled one. Chunked bodies, and
longer ones, stream as uvicorn streams them.

It uses only the httptools callbacks, the parser's construction, the transport and the
request cycle's body and event; `fits()` checks that the installed uvicorn still has them,
and zoo.serve.main falls back to uvicorn's own protocol (with a warning) when it does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httptools
import numpy as np
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol  # ImportError without httptools

from zoo.counts import count_of
from zoo.serve.guard import BODY_CLOCK, BodyClock
from zoo.serve.metrics import access_log

MAX_HEADER_BYTES = 64 * 1024
GATHER_LIMIT = 16 * 1024 * 1024
# What one read takes outside a gathered body (headers, other bodies): libuv's suggestion. Small, so that
# the read that brings a request's headers brings little of its body, which the parser then copies.
READ_SIZE = 64 * 1024
_HOOKS = ("connection_made", "connection_lost", "data_received", "on_message_begin", "on_headers_complete",
          "on_body", "on_message_complete", "on_response_complete")


def fits() -> bool:
    """Whether the installed uvicorn's httptools protocol has the callbacks this subclass extends."""
    return all(callable(getattr(HttpToolsProtocol, name, None)) for name in _HOOKS)


def protocol_for(header_timeout: float | None, max_body: int = GATHER_LIMIT,
                 view_paths: re.Pattern[str] | None = None) -> type[BodyReader]:
    """The protocol class for uvicorn.Config(http=...), with this header timeout (None: none), gathering
    bodies up to the smaller of GATHER_LIMIT and `max_body`; requests to paths that `view_paths` matches
    whole get a gathered body as a memoryview of the buffer it was read into, the rest as bytes."""
    http = type("ZooHttpProtocol", (ServeProtocol,), {"header_timeout": header_timeout,
                                                      "gather_limit": min(GATHER_LIMIT, max_body),
                                                      "view_paths": view_paths})
    return type("ZooBodyReader", (BodyReader,), {"http_class": http})


class _WholeBody:
    """A gathered request's receive(): uvicorn's, with the body put in as it was gathered, a memoryview of
    its buffer (uvicorn's own receive() copies what it holds into bytes, 600 kB for a mobilenet tensor)."""

    __slots__ = ("body", "inner")

    def __init__(self, inner: Callable[[], Awaitable[Any]]) -> None:
        self.inner = inner
        self.body: memoryview | None = None  # set when it is complete

    async def __call__(self) -> Any:
        message = await self.inner()
        if self.body is not None and message["type"] == "http.request":
            message["body"], self.body = self.body, None
        return message


class _Scratch(threading.local):
    """The buffer reads outside a gathered body go to, one per thread: each read's bytes are copied out
    (BodyReader.buffer_updated) before that thread's event loop reads again, so connections can share it."""

    def __init__(self) -> None:
        self.view = memoryview(bytearray(READ_SIZE))


_scratch = _Scratch()


class BodyReader(asyncio.BufferedProtocol):
    """What the transport talks to: it reads into the body being gathered where there is one, else into
    a scratch buffer whose bytes go on to the HTTP protocol as data_received would have had them.

    The HTTP protocol is uvicorn's, an asyncio.Protocol, which uvloop never offers a buffer to:
    hence a protocol of its own in front of it, handing on every other callback.
    """

    http_class: type[ServeProtocol]
    __slots__ = ("_into_body", "http")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.http = self.http_class(*args, **kwargs)
        self._into_body = False  # whether the last buffer handed out was the body's

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.http.connection_made(transport)  # type: ignore[arg-type]

    def connection_lost(self, exc: Exception | None) -> None:
        self.http.connection_lost(exc)

    def eof_received(self) -> None:
        self.http.eof_received()  # uvicorn's: None, so the transport closes itself

    def pause_writing(self) -> None:
        self.http.pause_writing()

    def resume_writing(self) -> None:
        self.http.resume_writing()

    def get_buffer(self, sizehint: int) -> memoryview:
        rest = self.http.body_rest()
        self._into_body = rest is not None
        return _scratch.view if rest is None else rest

    def buffer_updated(self, nbytes: int) -> None:
        if self._into_body:
            self.http.body_read(nbytes)
        else:
            self.http.data_received(bytes(_scratch.view[:nbytes]))


class ServeProtocol(HttpToolsProtocol):
    """HttpToolsProtocol that bounds a request's headers in size and in time, and hands on bodies whole
    (see the module docstring)."""

    max_header_bytes = MAX_HEADER_BYTES
    header_timeout: float | None = 30.0
    gather_limit = GATHER_LIMIT
    view_paths: re.Pattern[str] | None = None  # see protocol_for

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._in_headers, self._header_bytes, self._got_bytes = True, 0, False
        self._body: memoryview | None = None  # the body being gathered, at its declared length
        self._filled = 0  # its bytes in so far
        self._past_parser = False  # whether its bytes now come straight from the socket (BodyReader)
        self._whole: _WholeBody | None = None  # its request's receive()
        self._clock = BodyClock()
        self._header_timer: asyncio.TimerHandle | None = None
        self._awaiting_headers, self._headers_since = False, 0.0
        super().connection_made(transport)
        self._await_headers()

    def on_message_begin(self) -> None:
        self._in_headers, self._header_bytes = True, 0
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._in_headers, self._header_bytes = False, 0
        self._awaiting_headers = False
        super().on_headers_complete()
        self._body = None
        if self.parser.should_upgrade():
            return  # no request cycle of its own (uvicorn answers or hands the connection on)
        declared = next((value for name, value in self.headers if name == b"content-length"), None)
        length = count_of(declared.decode("latin-1")) if declared is not None else None
        if length is not None and 0 < length <= self.gather_limit:
            # Not zeroed, as a bytearray would be (see the module docstring).
            self._body = np.empty(length, np.uint8).data
            self._filled, self._past_parser, self._clock = 0, False, BodyClock()
            self.scope[BODY_CLOCK] = self._clock  # type: ignore[literal-required]
            self._whole = None
            if self.view_paths is not None and self.view_paths.fullmatch(self.scope["path"]):
                self._whole = _WholeBody(self.cycle.receive)
                self.cycle.receive = self._whole  # type: ignore[method-assign]  # the app's task has not begun yet

    def data_received(self, data: bytes) -> None:
        self._got_bytes = True
        super().data_received(data)
        if self._body is not None:  # the chunk ended inside a gathered body: the rest comes past the parser
            self._past_parser = True
        if not self._in_headers or self.transport.is_closing():
            return
        self._header_bytes += len(data)  # the whole chunk, when it also ended the last request's body: at most
        if self._header_bytes > self.max_header_bytes:  # a chunk over the limit
            self._refuse(431, f"the request's headers are over {self.max_header_bytes // 1024} KiB",
                         "send fewer or shorter headers")

    def body_rest(self) -> memoryview | None:
        """Where the next read goes when it is the gathered body's (BodyReader): its remaining bytes, exactly."""
        body = self._body
        if body is None or not self._past_parser:
            return None
        return body[self._filled:]

    def body_read(self, nbytes: int) -> None:
        """`nbytes` more of the gathered body came straight into it (BodyReader)."""
        assert self._body is not None
        self._unset_keepalive_if_required()
        self._filled += nbytes
        self._clock.at = self.loop.time()
        if self._filled == len(self._body):
            # The old parser still waits for these bytes: the next request starts on a fresh one, as uvicorn makes it.
            self.parser = httptools.HttpRequestParser(self)
            with contextlib.suppress(AttributeError):  # httptools < 0.6.3 has no leniencies
                self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
            self._past_parser = False
            self.on_message_complete()

    def on_body(self, body: bytes) -> None:
        gathered = self._body
        if gathered is None:
            super().on_body(body)
        else:  # the part that came with the headers (the rest comes past the parser)
            gathered[self._filled:self._filled + len(body)] = body
            self._filled += len(body)
            self._clock.at = self.loop.time()

    def on_message_complete(self) -> None:
        gathered, self._body = self._body, None
        if gathered is not None and not self.cycle.response_complete:  # (else answered already: 413, 401)
            if self._whole is not None:
                self._whole.body = gathered
            else:
                self.cycle.body = gathered  # type: ignore[assignment]  # uvicorn's receive() makes bytes of it
        super().on_message_complete()

    def on_response_complete(self) -> None:
        queued = bool(self.pipeline)  # a request whose headers are in already: it starts now
        super().on_response_complete()
        if not queued and not self.transport.is_closing():  # the next request's headers are to come
            self._got_bytes = self._in_headers and self._header_bytes > 0
            self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._body = None
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
