"""Run the server: parse the CLI's values, pull the start-up models, bind, serve with uvicorn, drain on SIGTERM."""

from __future__ import annotations

import functools
import re
import signal
import socket
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from zoo.errors import ZooError
from zoo.printable import clipped
from zoo.serve.state import ServeConfig

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb|kib|mib|gib)?\s*$", re.IGNORECASE)
_BYTES = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30, None: 1}
MAX_SIZE = 10**15  # bytes: far beyond any request body a machine can hold
DRAIN_SECONDS = 30  # SIGTERM: requests in flight get this long to finish


def parse_duration(text: str, option: str = "--keep-alive") -> float | None:
    """Seconds from `30s`, `5m`, `1h`, `500ms`, a bare number of seconds; None for `-1`/`forever`."""
    if text.strip().lower() in ("-1", "forever", "never", "inf"):
        return None
    match = _DURATION.match(text)
    if not match:
        raise ZooError(f"{option} {text!r} is not a duration", hint="e.g. 30s, 5m, 1h, 0 (at once) or forever")
    return float(match.group(1)) * _SECONDS[match.group(2)]


def parse_size(text: str, option: str = "--max-body") -> int:
    """Bytes from `64MB`, `8MiB`, `1000000`."""
    match = _SIZE.match(text)
    if not match or float(match.group(1)) <= 0:
        raise ZooError(f"{option} {text!r} is not a size", hint="e.g. 64MB, 8MiB or a number of bytes")
    unit = match.group(2).lower() if match.group(2) else None
    size = float(match.group(1)) * _BYTES[unit]
    if size > MAX_SIZE:  # 5000 digits are inf to float(), which int() refuses
        raise ZooError(f"{option} {clipped(text)} is over {MAX_SIZE // 10**12} TB", hint="e.g. 64MB, 8MiB or 2GB")
    return int(size)


def prepare_models(names: Sequence[str]) -> tuple[tuple[str, ...], tuple[tuple[str, Path], ...]]:
    """Pull the start-up models through the verified cache; their keys, and the request names of local files.

    A local file is served under its file name and its stem (and its zoo id when its sha256 is a
    zoo model's); requests can name no other file.
    """
    from zoo import api

    keys: list[str] = []
    files: list[tuple[str, Path]] = []
    for name in names:
        located = api.locate(name)
        if located.path is not None:
            path = located.path.resolve()
            keys.append(f"file:{path}")
            aliases = {path.name, path.stem, *([located.entry.id] if located.entry else [])}
            files += [(alias, path) for alias in sorted(aliases)]
        else:
            assert located.entry is not None  # locate() gives an entry whenever it gives no path
            api.pull(located.entry.id)
            keys.append(located.entry.id)
    return tuple(dict.fromkeys(keys)), tuple(files)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: a free one); ZooError naming the address when that fails."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ZooError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                       hint="pass an address of this machine with --host (default 127.0.0.1)") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ZooError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                       hint="pick another --port (0: any free one), or stop what uses this one") from None
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def run(config: ServeConfig, sock: socket.socket) -> None:
    """Serve until SIGTERM or Ctrl-C, then let requests in flight finish (up to DRAIN_SECONDS) and return.

    A start-up model that fails to load stops the server the same way, and raises its error
    (as Triton's --exit-on-error does by default): a server that can never be ready is no use
    kept running, and its exit status tells a supervisor or a script at once.
    """
    import uvicorn

    from zoo.serve.app import build_app

    _log_to_stderr()
    app = build_app(config, write_access=sys.stderr.write)  # the access log: one line per request, no logging record
    uv = uvicorn.Config(app, lifespan="on", access_log=False, log_config=None, log_level="warning",
                        timeout_graceful_shutdown=DRAIN_SECONDS, server_header=False,
                        http=http_protocol(config.body_timeout, config.max_body))
    server = uvicorn.Server(uv)
    app.state.on_startup_failure = functools.partial(setattr, server, "should_exit", True)
    with _signals_stop(server):
        server.run(sockets=[sock])
    failure = app.state.startup_failure
    if failure is not None:
        if isinstance(failure, ZooError):
            raise failure
        raise ZooError(f"start-up models did not load: {failure}", hint="the log above has the traceback")


def http_protocol(header_timeout: float | None, max_body: int) -> Any:
    """uvicorn's HTTP protocol for zoo serve: zoo.serve.protocol's (limits on headers, bodies whole),
    else uvicorn's own pick."""
    import logging

    try:
        from zoo.serve import protocol
    except ImportError:  # no httptools: uvicorn's h11 protocol, which bounds headers itself (16 KiB)
        return "auto"
    if protocol.fits():
        from zoo.serve.front import INFER_PATH

        return protocol.protocol_for(header_timeout, max_body, view_paths=INFER_PATH)  # what Front answers
    logging.getLogger("zoo.serve").warning("zoo serve: this uvicorn's httptools protocol is not the one zoo knows: "
                                           "request headers are not limited in size or time")
    return "auto"


def _log_to_stderr() -> None:
    """zoo.serve's notes and its access log (one JSON line per request) go to stderr, as the CLI's notes do."""
    import logging

    logger = logging.getLogger("zoo.serve")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


@contextmanager
def _signals_stop(server: Any) -> Iterator[None]:
    """SIGTERM and SIGINT ask the server to drain and stop, before uvicorn's own handlers are in place too.

    After draining, uvicorn raises the signal again for the handler it found (these), which
    would otherwise kill the process by SIGTERM or raise KeyboardInterrupt; here that replay
    only sets the flag again, the server returns, and `zoo serve` exits 0.
    """
    previous: dict[signal.Signals, Any] = {}

    def stop(signum: int, frame: Any) -> None:
        server.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, stop)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
