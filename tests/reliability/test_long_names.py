"""Paths longer than the file system allows (a name over 255 bytes): a usage error, wherever zoo meets them.

In Python 3.11 pathlib's exists() and is_file() raise OSError (ENAMETOOLONG) for such a
name where os.path answers False, so each of these was an `unexpected error`, exit 1.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import DATA, need
from reliability_helpers import assert_cache_clean, assert_clear_error, zoo

from zoo.filecheck import not_a_file
from zoo.index.catalog import load_index
from zoo.store import download

LONG = "n" * 300  # one name: over the 255 bytes of ext4, xfs, btrfs and tmpfs

# (the command with {long} and {frog} filled in, words the error must hold)
COMMANDS = [
    pytest.param("predict mnist-8 {long}.png", ["cannot use input", "file name too long"], id="image"),
    pytest.param("predict ./{long}.onnx {frog}", ["cannot use model file", "file name too long"], id="model-file"),
    pytest.param("predict mnist-8 {frog} --labels {long}.txt", ["label file", "File name too long"], id="labels"),
    pytest.param("predict mnist-8 {frog} -o {long}.jsonl", ["File name too long", "... (306 characters)"], id="output"),
    pytest.param("cache import {long}.onnx --id mnist-8", ["cannot import", "file name too long"], id="import"),
    pytest.param("serve ./{long}.onnx --port 0", ["cannot use model file", "file name too long"], id="serve"),
    pytest.param("export mnist-8 {long}.onnx", ["File name too long"], id="export"),
    pytest.param("mirror export {long}/sub", ["cannot write the mirror", "File name too long"], id="mirror"),
]


@pytest.fixture
def seeded(isolated_env: Path) -> Path:
    entry = load_index().resolve("mnist-8").entry
    download.import_file(entry, entry.file, need(DATA / "models" / "mnist-8.onnx"))
    return isolated_env


@pytest.mark.parametrize(("command", "words"), COMMANDS)
def test_a_name_too_long_is_a_usage_error(seeded: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          command: str, words: list[str]) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    frog = need(DATA / "images" / "frog.jpg")
    result = zoo(*command.format(long=LONG, frog=frog).split(), env={"ZOO_OFFLINE": "1"})
    assert_clear_error(result, 2, *words)
    assert "unexpected error" not in result.stderr
    assert assert_cache_clean(seeded) == 1
    assert list(work.iterdir()) == []  # nothing written beside


def test_not_a_file_names_the_reason() -> None:
    assert not_a_file(LONG) == "file name too long"
    assert not_a_file("no-such-file-here.onnx") == "no such file"
    assert not_a_file("nul\0byte.onnx") == "a name with a NUL byte, which no file has"
