"""Paths that are not regular files given where a file is read: FIFOs, devices, folders, link loops.

Each command refuses them before opening anything (a FIFO or /dev/zero would block or never end),
with exit 2 and the reason in words; `zoo predict` on folders with nothing to run on says so
before any model is loaded or downloaded.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from reliability_helpers import assert_clear_error

from zoo.errors import ImageError, not_a_file

KINDS: list[tuple[str, Callable[[Path], Path], str]] = [
    ("missing", lambda d: d / "nothing.onnx", "no such file"),
    ("fifo", lambda d: (os.mkfifo(d / "fifo"), d / "fifo")[1], "not a regular file (a device, FIFO or socket"),
    ("device", lambda d: Path("/dev/zero"), "not a regular file (a device, FIFO or socket"),
    ("folder", lambda d: (d / "folder").mkdir() or d / "folder", "a folder, not a file"),
    ("link loop", lambda d: (os.symlink(d / "b", d / "a"), os.symlink(d / "a", d / "b"), d / "a")[2],
     "a broken symbolic link, or one in a loop"),
    ("broken link", lambda d: (os.symlink(d / "gone", d / "dangling"), d / "dangling")[1],
     "a broken symbolic link, or one in a loop"),
]
needs_posix = pytest.mark.skipif(not hasattr(os, "mkfifo") or not os.path.exists("/dev/zero"),
                                 reason="FIFOs and /dev/zero are POSIX")


def _zoo(*args: str) -> subprocess.CompletedProcess[str]:
    """A real process with a deadline: a command that opened a FIFO would block, not fail."""
    return subprocess.run([sys.executable, "-m", "zoo", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "ZOO_OFFLINE": "1"})


@needs_posix
@pytest.mark.parametrize(("kind", "make", "reason"), KINDS, ids=[k[0] for k in KINDS])
def test_reason_in_words(tmp_path: Path, kind: str, make: Callable[[Path], Path], reason: str) -> None:
    assert not_a_file(make(tmp_path)).startswith(reason)


@needs_posix
@pytest.mark.parametrize(("kind", "make", "reason"), KINDS[1:], ids=[k[0] for k in KINDS[1:]])
def test_cache_import_and_add_refuse_with_the_reason(tmp_path: Path, kind: str, make: Callable[[Path], Path],
                                                    reason: str) -> None:
    path = make(tmp_path)
    assert_clear_error(_zoo("cache", "import", str(path)), 2, f"cannot import {path}: {reason}")
    assert_clear_error(_zoo("add", str(path), "--id", "mine-1"), 2, f"cannot add {path}: {reason}")


@needs_posix
def test_an_image_that_is_a_fifo_is_refused_without_opening_it(tmp_path: Path) -> None:
    from zoo.pipeline.images import open_image

    fifo = tmp_path / "photo.jpg"
    os.mkfifo(fifo)
    with pytest.raises(ImageError, match="not a regular file"):
        open_image(str(fifo))


def test_predict_on_folders_without_images_says_so_before_loading_a_model(tmp_path: Path) -> None:
    empty, texts = tmp_path / "empty", tmp_path / "texts"
    empty.mkdir()
    texts.mkdir()
    (texts / "notes.txt").write_text("not an image")
    (texts / "deeper").mkdir()
    (texts / "deeper" / "frog.jpg").write_bytes(b"not read")
    # The model is not cached and ZOO_OFFLINE is set: reaching the load would exit 3, not 2.
    result = _zoo("predict", "mobilenetv2-12-int8", str(empty), str(texts))
    assert_clear_error(result, 2, f"no inputs: {empty}, {texts} holds no image files", "add -r")
    result = _zoo("predict", "mobilenetv2-12-int8", str(texts), "-r", "--glob", "*.png")
    assert_clear_error(result, 2, "holds no files matching '*.png'")
    assert "add -r" not in result.stderr
