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

from zoo.errors import ImageError
from zoo.filecheck import not_a_file

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


URL_REASON = "a URL, and zoo reads local files only: download it first (curl -LO URL)"


@pytest.mark.parametrize("url", ["https://example.com/cat.jpg", "http://host/m.onnx", "HF://org/repo/m.onnx"])
def test_a_url_given_for_a_file_is_named_as_one(url: str) -> None:
    """It was "no such file": a user who passed a URL was left to guess that zoo does not fetch it."""
    assert not_a_file(url) == URL_REASON
    assert not_a_file(Path(url)) == URL_REASON  # pathlib folds its // into one /
    assert not_a_file("https.jpg") == "no such file" and not_a_file("c:/x.jpg") == "no such file"


def test_predict_on_a_url_says_zoo_reads_local_files() -> None:
    assert_clear_error(_zoo("predict", "mnist-8", "https://example.com/seven.png"), 2,
                       f"cannot use input https://example.com/seven.png: {URL_REASON}")


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


@needs_posix
@pytest.mark.parametrize(("kind", "make", "reason"), KINDS[1:4], ids=[k[0] for k in KINDS[1:4]])
def test_a_model_path_that_is_no_file_is_refused_with_the_reason(tmp_path: Path, kind: str,
                                                                 make: Callable[[Path], Path], reason: str) -> None:
    path = make(tmp_path)
    (tmp_path / "x.jpg").write_bytes(b"an input that exists: the model is checked first")
    result = _zoo("predict", str(path), str(tmp_path / "x.jpg"))
    assert_clear_error(result, 2, f"cannot use model file {path}: {reason}")


@needs_posix
@pytest.mark.parametrize("make", [lambda d: Path("/dev/zero"), lambda d: (os.mkfifo(d / "labels"), d / "labels")[1]],
                         ids=["device", "fifo"])
def test_a_label_file_that_is_no_file_is_refused_without_reading_it(tmp_path: Path,
                                                                    make: Callable[[Path], Path]) -> None:
    """--labels /dev/zero read until memory ran out; a FIFO blocked forever."""
    from zoo.errors import ZooError
    from zoo.index import labels

    with pytest.raises(ZooError, match="not a regular file"):
        labels.load(str(make(tmp_path)))


def test_a_label_file_that_is_not_text_or_too_big_is_refused(tmp_path: Path) -> None:
    from zoo.errors import ZooError
    from zoo.index import labels

    binary = tmp_path / "labels.bin"
    binary.write_bytes(b"\xff\xfe\x00cat\n")
    with pytest.raises(ZooError, match="is not UTF-8 text"):  # was an uncaught UnicodeDecodeError
        labels.load(str(binary))
    big = tmp_path / "big.txt"
    with open(big, "wb") as handle:
        handle.truncate(labels.MAX_FILE + 1)  # sparse: no disk used
    with pytest.raises(ZooError, match="larger than 16 MiB"):
        labels.load(str(big))
    good = tmp_path / "good.txt"
    good.write_text("n01234567 tench, Tinca tinca\ngoldfish\n", encoding="utf-8")
    assert labels.load(str(good)) == ("tench", "goldfish")


def test_a_file_that_is_no_model_gives_the_load_error_and_no_cache_note(tmp_path: Path) -> None:
    """A file onnxruntime cannot parse was reported as 'optimised graphs are not being kept ... cannot write there'."""
    fake = tmp_path / "fake.onnx"
    fake.write_text("root:x:0:0:root:/root:/bin/bash\n")
    (tmp_path / "x.jpg").write_bytes(b"an input that exists: the model is checked first")
    result = _zoo("predict", str(fake), str(tmp_path / "x.jpg"))
    assert_clear_error(result, 2, f"onnxruntime cannot load {fake}", "INVALID_PROTOBUF")
    assert "optimised graphs are not being kept" not in result.stderr


def test_absurd_thread_counts_are_refused_before_onnxruntime_starts_them(tmp_path: Path) -> None:
    """threads=100000 made onnxruntime start 100000 threads (minutes, or the process limit)."""
    import zoo
    from zoo.errors import ZooError

    model = tmp_path / "m.onnx"
    model.write_bytes(b"never read")
    with pytest.raises(ZooError, match="use 1 to 1024"):
        zoo.load(str(model), threads=100_000)
    result = _zoo("predict", str(model), str(tmp_path / "x.jpg"), "--threads", "5000")
    assert result.returncode == 2 and "5000 is not in the range 1<=x<=1024" in result.stderr


# -- and where a file is written ----------------------------------------------------------------------


@pytest.fixture
def mnist_home(isolated_env: Path) -> Path:
    from conftest import DATA, need

    from zoo.index.catalog import load_index
    from zoo.store import download

    entry = load_index().resolve("mnist-8").entry
    download.import_file(entry, entry.file, need(DATA / "models" / "mnist-8.onnx"))
    return isolated_env


@needs_posix
def test_export_never_replaces_a_device_or_fifo(mnist_home: Path, tmp_path: Path) -> None:
    """export publishes with an atomic replace: as root, `zoo export mnist-8 /dev/null` put a file there."""
    import stat

    out = tmp_path / "out"
    out.mkdir()
    fifo = out / "model.onnx"
    os.mkfifo(fifo)
    assert_clear_error(_zoo("export", "mnist-8", str(fifo)), 2, f"{fifo} is a device, FIFO or socket")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx"]  # no temporary file left


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc, where no file can be created")
def test_outputs_where_no_file_can_be_created_are_clear_errors(mnist_home: Path, tmp_path: Path) -> None:
    """/proc takes no new files, even from root, whom os.access lets through: each was an exit 1."""
    from conftest import DATA, need

    digit = str(need(DATA / "images" / "digits" / "mnist_7.jpg"))
    assert_clear_error(_zoo("predict", "mnist-8", digit, "-o", "/proc/zoo-out.jsonl"), 2,
                       "cannot write the output file /proc/zoo-out.jsonl")
    assert_clear_error(_zoo("predict", "mnist-8", digit, "--save", "/proc/zoo-out.png"), 2,
                       "cannot save /proc/zoo-out.png")
    assert_clear_error(_zoo("export", "mnist-8", "/proc/zoo-out.onnx"), 2, "cannot write /proc/zoo-out.onnx")


def _tiny_onnx(path: Path) -> Path:
    from onnx import TensorProto, helper, save

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "id",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))
    return path


@needs_posix
@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc, where no file can be created")
def test_add_refuses_a_manifest_target_that_is_no_file_before_importing(isolated_env: Path, tmp_path: Path) -> None:
    """--manifest /dev/null was read as a bad manifest ("fix or delete the file"); /proc/m.json was an exit 1."""
    model = _tiny_onnx(tmp_path / "mine.onnx")
    fifo = tmp_path / "m.json"
    os.mkfifo(fifo)
    for target, reason in ((fifo, "not a regular file"), (Path("/dev/null"), "not a regular file")):
        assert_clear_error(_zoo("add", str(model), "--id", "mine-2", "--manifest", str(target)), 2,
                           f"cannot write the manifest {target}: {reason}")
    assert not (isolated_env / "blobs").exists() or not any((isolated_env / "blobs").rglob("*")), "imported anyway"
    assert_clear_error(_zoo("add", str(model), "--id", "mine-2", "--manifest", "/proc/zoo-m.json"), 2,
                       "cannot write the manifest /proc/zoo-m.json")
    assert_clear_error(_zoo("remove", "mine-2", "--manifest", "/dev/null"), 2,
                       "bad manifest /dev/null, field '': not a regular file")
