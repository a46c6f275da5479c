"""How a download shows itself on stderr: a bar on a terminal, two lines elsewhere, nothing when quiet.

A bar redrawn with carriage returns is noise in a CI log or a notebook cell, so
when stderr is not a terminal a download says when it starts and, when it ends,
its size, speed and source. Nothing here writes to stdout: results stay clean.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

from zoo.printable import shown

Mode = Literal["bar", "lines", "off"]


def choose(progress: bool | None) -> Mode:
    """True: a bar; False: nothing; None: a bar on a terminal, start and end lines otherwise."""
    if progress is None:
        return "bar" if sys.stderr.isatty() else "lines"
    return "bar" if progress else "off"


def human(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def bar_size() -> tuple[int | None, int | None]:
    """tqdm's (ncols, nrows) when stderr's terminal reports no size; (None, None): tqdm measures it itself.

    A pseudo-terminal that nobody sized (some CI runners, editors' shells, `docker exec -t` before a
    resize) reports 0x0, which tqdm takes at its word: it then hides every bar as off-screen.
    """
    import os

    try:
        columns, lines = os.get_terminal_size(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):  # not a terminal, or stderr replaced by something fileless
        return None, None
    if columns > 0 and lines > 0:
        return None, None
    return columns or 80, lines or 24


class Progress:
    """One file's progress; update() may be called from several threads (parallel ranges)."""

    def __init__(self, mode: Mode, model_id: str, name: str, size: int, log: Callable[[str], None]) -> None:
        self.mode, self.model_id, self.name, self.size, self.log = mode, model_id, shown(name), size, log
        self._bar: Any = None
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._first = 0

    def start(self, offset: int) -> None:
        """Called once, before the first request."""
        self._started, self._first = time.monotonic(), offset
        if self.mode == "lines":
            resume = f", resuming at byte {offset}" if offset else ""
            self.log(f"{self.model_id}: downloading {self.name} ({human(self.size)}{resume})")

    def attempt(self, offset: int) -> None:
        """A request is about to stream from `offset`: (re)position the bar."""
        if self.mode != "bar":
            return
        from tqdm import tqdm  # only on a terminal: not imported in CI logs

        with self._lock:
            if self._bar is None:
                columns, lines = bar_size()
                self._bar = tqdm(total=self.size, initial=offset, desc=self.name, unit="B", unit_scale=True,
                                 unit_divisor=1024, mininterval=0.5, file=sys.stderr, leave=False, ncols=columns,
                                 nrows=lines)
            else:
                self._bar.n = offset
                self._bar.refresh()

    def update(self, count: int) -> None:
        if self._bar is not None:
            with self._lock:
                self._bar.update(count)

    def done(self, source: str) -> None:
        self.close()
        if self.mode == "lines":
            seconds = max(time.monotonic() - self._started, 1e-6)
            got = self.size - self._first
            self.log(f"{self.model_id}: downloaded {self.name}: {human(got)} in {seconds:.1f} s "
                     f"({human(got / seconds)}/s) from {shown(source)}")

    def close(self) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.close()  # leave=False: the bar's line is cleared, nothing is left before results
                self._bar = None
