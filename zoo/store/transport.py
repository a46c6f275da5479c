"""HTTP sessions for downloads: redirects checked before they are followed, and a watchdog per attempt.

requests bounds each socket read (the read timeout), never a whole response: a
server that trickles a byte a second, in its headers or its body, holds a read
open for ever. A Watch runs beside each attempt; when less than `speed_limit`
bytes/s arrived over the last `speed_time` seconds (curl's --speed-limit and
--speed-time), or when a stop is requested (Ctrl-C), it shuts the attempt's
sockets down, which wakes the blocked read at once. To know those sockets, the
session's connections register themselves with the Watch of their thread when
they wait for a response.

requests and urllib3 are imported inside functions: `zoo --help` must not pay for them.
"""

from __future__ import annotations

import contextlib
import functools
import io
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urljoin

from zoo.counts import count_of
from zoo.printable import shown
from zoo.store import interrupt
from zoo.store.netpolicy import Settings, redirect_refusal, source_kinds

if TYPE_CHECKING:
    import requests

MAX_REDIRECTS = 10
T = TypeVar("T")
_CURRENT = threading.local()  # .watch: the Watch of the attempt running in this thread


class RedirectRefusedError(Exception):
    """A redirect pointed where this source must not send zoo (another scheme, a private address)."""


class TransientError(Exception):
    """A failure worth another attempt at the same source, after `delay` when the server set one."""

    def __init__(self, reason: str, delay: float | None = None) -> None:
        super().__init__(reason)
        self.delay = delay


class SourceFailedError(Exception):
    """This source cannot deliver the file; go on to the next one."""


_CAUSES = (("refused", "connection refused"), ("Name or service not known", "host name not found"),
           ("Temporary failure in name resolution", "host name not found"), ("timed out", "timed out"),
           ("reset by peer", "connection reset"), ("RemoteDisconnected", "connection closed by the server"),
           ("IncompleteRead", "connection closed mid-body"), ("Connection broken", "connection closed mid-body"))


def describe(exc: BaseException) -> str:
    """A short reason: requests/urllib3 messages nest the cause three levels deep."""
    text = str(exc.args[0] if exc.args else exc)
    if isinstance(exc, OSError) and exc.strerror:  # raw socket errors: args[0] is the errno
        text = exc.strerror
    for needle, short in _CAUSES:
        if needle in text:
            return f"{type(exc).__name__}: {short}"
    return f"{type(exc).__name__}: {shown(text[:200])}"


class BodyReader:
    """Read a response body into caller buffers: one recv per call, no allocation, no copy in Python.

    urllib3's read1() returns a new bytes object per call, and allocating and
    faulting in a fresh megabyte per chunk costs as much as the copy itself.
    When the body is plain (a Content-Length, no transfer or content coding),
    this reads the connection's buffered reader directly with readinto1();
    otherwise it falls back to read1() and copies, which is always correct.
    """

    def __init__(self, resp: requests.Response) -> None:
        self._resp = resp
        fp = getattr(getattr(resp.raw, "_fp", None), "fp", None)  # http.client's BufferedReader on the socket
        headers = resp.headers
        plain = ("Content-Length" in headers and "Transfer-Encoding" not in headers
                 and headers.get("Content-Encoding", "identity").strip().lower() == "identity")
        self._fp = fp if plain and isinstance(fp, io.BufferedReader) else None
        # The buffered reader knows nothing of the body's end: stop at Content-Length, as http.client would.
        self._left = _content_length(headers.get("Content-Length")) if self._fp is not None else 0
        if self._left < 0:
            self._fp = None

    def readinto(self, view: memoryview) -> int:
        """Bytes read into `view` (0 at the end of the body); raises TransientError for cuts and timeouts."""
        import urllib3

        try:
            if self._fp is not None:
                if not self._left:
                    return 0
                got = self._fp.readinto1(view[: self._left])
                self._left -= got
                return got
            chunk = self._resp.raw.read1(len(view), decode_content=True)
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:  # ValueError: read after a shutdown
            raise TransientError(describe(exc)) from exc
        view[: len(chunk)] = chunk
        return len(chunk)


class Watch:
    """Watchdog of one attempt: ends it when it is too slow or a stop is requested.

    The reading thread reports bytes with add(); `reason` says why the watchdog
    fired (None: it did not), and the reader turns that into the error to raise.
    """

    def __init__(self, settings: Settings) -> None:
        self.limit, self.window = settings.speed_limit, settings.speed_time
        self.received = 0
        self.body_started = False
        self.reason: str | None = None
        self.stopped = False  # fired because of a stop request, not slowness
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="zoo-download-watch", daemon=True)

    def __enter__(self) -> Watch:
        _CURRENT.watch = self
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        _CURRENT.watch = None
        self._done.set()
        self._thread.join()

    def add(self, count: int) -> None:
        self.received += count  # one reading thread per Watch: no lock needed

    def attach(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            self._sockets.append(sock)
            fired = self.reason is not None
        if fired:
            _shut(sock)

    def abort(self, reason: str) -> None:
        """End the attempt now from another thread (a sibling connection failed): its reads wake at once."""
        self._fire(reason)

    def _run(self) -> None:
        tick = min(0.1, self.window / 4)
        samples: deque[tuple[float, int]] = deque([(time.monotonic(), 0)])
        while not self._done.wait(tick):
            if interrupt.stopping():
                self.stopped = True
                return self._fire("interrupted")
            now, got = time.monotonic(), self.received
            samples.append((now, got))
            while len(samples) > 1 and samples[1][0] <= now - self.window:
                samples.popleft()  # keep the newest sample at least a window old
            start, before = samples[0]
            if now - start >= self.window and got - before < self.limit * (now - start):
                return self._fire(self._too_slow(got - before, now - start))
        return None

    def _too_slow(self, count: int, seconds: float) -> str:
        what = "body" if self.body_started else "response headers"
        return (f"too slow: {count} bytes of {what} in the last {seconds:.1f} s, under the low-speed limit of "
                f"{self.limit:g} bytes/s (ZOO_LOW_SPEED_LIMIT, ZOO_LOW_SPEED_TIME)")

    def _fire(self, reason: str) -> None:
        with self._lock:
            self.reason = reason
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)


def run_watched(settings: Settings, attempt: Callable[[Watch], T]) -> T:
    """Run attempt(watch) under a new Watch of this thread, turning what went wrong into one of three kinds.

    KeyboardInterrupt for a stop request; SourceFailedError when the watchdog
    found it too slow, a redirect was refused, or the request was unusable;
    TransientError for connection errors and timeouts worth another attempt.
    """
    import requests

    with Watch(settings) as watch:
        try:
            try:
                return attempt(watch)
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                raise TransientError(describe(exc)) from exc
            except RedirectRefusedError as exc:
                raise SourceFailedError(str(exc)) from exc
            except requests.RequestException as exc:
                raise SourceFailedError(describe(exc)) from exc
        except (Exception, KeyboardInterrupt) as exc:
            if watch.stopped or isinstance(exc, KeyboardInterrupt):
                raise KeyboardInterrupt("download interrupted; the partial is kept for resume") from exc
            if watch.reason is not None and not isinstance(exc, SourceFailedError):
                raise SourceFailedError(watch.reason) from exc
            raise


def _shut(sock: socket.socket) -> None:
    """Wake any thread blocked reading `sock`: shutdown(), unlike close(), is safe from another thread."""
    with contextlib.suppress(OSError):  # already closed
        socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the plain socket's: also for an SSLSocket


def _attach_current(sock: socket.socket | None) -> None:
    watch = getattr(_CURRENT, "watch", None)
    if watch is not None:
        watch.attach(sock)


def _content_length(value: str | None) -> int:
    """The Content-Length as a number; -1 when it is not one (then the safe path reads the body)."""
    number = count_of((value or "").strip())
    return -1 if number is None else number


def new_session(source_url: str) -> requests.Session:
    """A Session whose connections report to the thread's Watch and whose redirects are checked."""
    import requests

    session = requests.Session()
    session.max_redirects = MAX_REDIRECTS  # a redirect loop fails fast and the next source is tried
    adapter = _adapter_class()()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    # Decided once, for the URL zoo was given: where its redirects lead cannot make it private.
    kinds = source_kinds(source_url)
    session.hooks["response"].append(functools.partial(_check_redirect, session, kinds))
    return session


def _check_redirect(session: requests.Session, kinds: frozenset[str], resp: requests.Response, *args: Any,
                    **kwargs: Any) -> requests.Response:
    """A response hook: runs on every hop, before requests follows the redirect."""
    if not resp.is_redirect:
        return resp
    location = session.get_redirect_target(resp) or ""
    try:
        why = redirect_refusal(urljoin(resp.url, location), source=kinds)
    except ValueError as exc:  # a Location such as http://[::1 (unclosed) or http://[zz::1]
        why = f"refused a redirect to {shown(location)}: not a valid URL ({exc})"
    if why is not None:
        resp.close()
        raise RedirectRefusedError(why)
    return resp


@functools.cache
def _adapter_class() -> type[Any]:
    """An HTTPAdapter whose pools make connections that attach their socket to the thread's Watch."""
    from requests.adapters import HTTPAdapter
    from urllib3 import ProxyManager
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    class WatchedHTTPConnection(HTTPConnection):
        def getresponse(self) -> Any:  # the wait for headers: where a trickling server blocks
            _attach_current(self.sock)
            return super().getresponse()

    class WatchedHTTPSConnection(HTTPSConnection):
        def getresponse(self) -> Any:
            _attach_current(self.sock)
            return super().getresponse()

    class WatchedHTTPPool(HTTPConnectionPool):
        ConnectionCls = WatchedHTTPConnection

    class WatchedHTTPSPool(HTTPSConnectionPool):
        ConnectionCls = WatchedHTTPSConnection

    pools = {"http": WatchedHTTPPool, "https": WatchedHTTPSPool}

    class WatchedAdapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = pools

        def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
            manager = super().proxy_manager_for(proxy, **kwargs)
            if isinstance(manager, ProxyManager):  # SOCKS managers keep their own pools
                manager.pool_classes_by_scheme = pools
            return manager

    return WatchedAdapter
