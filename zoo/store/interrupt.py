"""One process-wide "stop now" flag for downloads running in worker threads.

Ctrl-C raises KeyboardInterrupt in the main thread only; a download running in
a worker (`zoo pull -j N`, or any pull behind a ThreadPoolExecutor, whose exit
waits for its workers) would go on to the end of the file. The CLI's SIGINT
handler sets this flag; every download watches it, closes its socket, keeps its
partial for resume, and raises KeyboardInterrupt in its own thread. Stdlib only:
the CLI imports this at start-up.
"""

from __future__ import annotations

import threading

_STOP = threading.Event()


def request_stop() -> None:
    """Ask every running download to stop (called from a signal handler: only sets a flag)."""
    _STOP.set()


def clear() -> None:
    """Forget an earlier stop request (each CLI command starts with a clear flag)."""
    _STOP.clear()


def stopping() -> bool:
    return _STOP.is_set()


def check() -> None:
    """Raise KeyboardInterrupt when a stop was requested."""
    if _STOP.is_set():
        raise KeyboardInterrupt("download interrupted")


def sleep(seconds: float) -> None:
    """time.sleep that ends early, with KeyboardInterrupt, when a stop is requested."""
    if _STOP.wait(max(0.0, seconds)):
        raise KeyboardInterrupt("download interrupted")
