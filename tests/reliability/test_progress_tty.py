"""Progress bars on a real terminal: `zoo pull -j 2` draws one bar per file on its own row while both run,
a folder `zoo predict` draws its bar, and none is left at the end; on a sized and on an unsized terminal.

stderr is a pseudo-terminal (so zoo draws bars), stdout a pipe (so results stay clean); the
bytes the terminal received are replayed on a small screen model that knows what tqdm writes:
carriage return, newline, cursor up, erase to end of line, and plain characters.
"""

from __future__ import annotations

import json
import os
import re
import select
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from reliability_helpers import MIB, Mirror, assert_cache_clean, synthetic, use_models

fcntl = pytest.importorskip("fcntl", reason="needs a POSIX pseudo-terminal")
termios = pytest.importorskip("termios", reason="needs a POSIX pseudo-terminal")

FIRST = synthetic("rel-tty-1", 6 * MIB, seed=31)
SECOND = synthetic("rel-tty-2", 6 * MIB, seed=32)
ESCAPE = re.compile(rb"\x1b\[(\d*)([A-Za-z])")


class Screen:
    """The rows a terminal shows after the bytes fed so far (no scrolling, no wrapping: enough for tqdm)."""

    def __init__(self) -> None:
        self.rows: list[list[str]] = [[]]
        self.row = self.col = 0

    def feed(self, data: bytes) -> None:
        at = 0
        for match in ESCAPE.finditer(data):
            self._text(data[at:match.start()])
            count, command = int(match[1] or 1), match[2]
            if command == b"A":  # cursor up
                self.row = max(0, self.row - count)
            elif command == b"K":  # erase to the end of the line
                del self.rows[self.row][self.col:]
            at = match.end()
        self._text(data[at:])

    def _text(self, data: bytes) -> None:
        for char in data.decode("utf-8", errors="replace"):
            if char == "\r":
                self.col = 0
            elif char == "\n":
                self.row, self.col = self.row + 1, 0
                while len(self.rows) <= self.row:
                    self.rows.append([])
            else:
                line = self.rows[self.row]
                line.extend(" " * (self.col - len(line) + 1))
                line[self.col] = char
                self.col += 1

    def lines(self) -> list[str]:
        return ["".join(row).rstrip() for row in self.rows]


@pytest.fixture
def slow_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    use_models(monkeypatch, tmp_path / "manifests", FIRST, SECOND)
    with Mirror({**FIRST.files(), **SECOND.files()}) as mirror:
        mirror.rate = 2 * MIB  # 3 s per file: the bars redraw several times (every 0.5 s at most)
        yield mirror


def run_on_a_terminal(argv: list[str], env: dict[str, str], size: tuple[int, int],
                      watch: Callable[[list[str]], None]) -> tuple[int, bytes, Screen]:
    """Run argv with stderr on a pty of `size` (rows, columns); `watch` sees the screen after every read."""
    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))
    env = {key: value for key, value in env.items() if key not in ("COLUMNS", "LINES")}  # the pty's size only
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=follower, env=env)
    os.close(follower)
    screen, deadline = Screen(), time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # the child closed its end: everything has been read
                    break
                if not chunk:
                    break
                screen.feed(chunk)
                watch(screen.lines())
            elif proc.poll() is not None:
                break
        out, _ = proc.communicate(timeout=30)
    finally:
        os.close(leader)
    return proc.returncode, out, screen


SIZES = pytest.mark.parametrize("size", [(24, 100), (0, 0)], ids=["sized", "unsized"])


@SIZES
def test_parallel_pull_draws_one_bar_per_file_and_clears_them(slow_mirror: Mirror, isolated_env: Path,
                                                              size: tuple[int, int]) -> None:
    """An unsized pty (0x0: some CI runners, editors' shells) made tqdm hide every bar as off-screen."""
    seen = []

    def watch(lines: list[str]) -> None:
        bars = [line for line in lines if "%|" in line]
        rows = [[line for line in bars if f"{m.model_id}.onnx" in line] for m in (FIRST, SECOND)]
        seen.append(len(bars) == 2 and all(len(r) == 1 for r in rows))

    env = {**os.environ, "ZOO_HOME": str(isolated_env), "ZOO_MIRROR": slow_mirror.url}
    code, out, screen = run_on_a_terminal([sys.executable, "-m", "zoo", "pull", "-j", "2", FIRST.model_id,
                                           SECOND.model_id], env, size, watch)
    assert code == 0
    assert any(seen), f"never saw the two bars on two rows; screen at the end: {screen.lines()}"
    assert [line for line in screen.lines() if "%|" in line] == [], screen.lines()  # leave=False: cleared
    assert "Traceback" not in "\n".join(screen.lines())
    paths = out.decode().split()
    assert [Path(p).read_bytes() for p in paths] == [FIRST.data, SECOND.data]  # stdout: the two paths only
    assert assert_cache_clean(isolated_env) == 2


@SIZES
def test_folder_predict_draws_its_bar_and_clears_it(tmp_path: Path, size: tuple[int, int]) -> None:
    from conftest import DATA, need
    from serve_helpers import seed_home

    home = seed_home(tmp_path / "home", "mobilenetv2-12-int8")
    photos = tmp_path / "photos"
    photos.mkdir()
    frog = need(DATA / "images" / "frog.jpg").read_bytes()
    for n in range(24):
        (photos / f"frog-{n:02d}.jpg").write_bytes(frog)
    seen: list[bool] = []
    env = {**os.environ, "ZOO_HOME": str(home), "ZOO_OFFLINE": "1"}
    code, out, screen = run_on_a_terminal(
        [sys.executable, "-m", "zoo", "predict", "mobilenetv2-12-int8", str(photos), "--json"], env, size,
        lambda lines: seen.append(any("%|" in line and "input" in line for line in lines)))
    assert code == 0 and any(seen), screen.lines()
    assert [line for line in screen.lines() if "%|" in line] == [], screen.lines()
    rows = [json.loads(line) for line in out.decode().splitlines()]
    assert len(rows) == 24 and {r["predictions"][0]["label"] for r in rows} == {"tree frog"}
