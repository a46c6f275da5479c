"""File names that are not UTF-8, or hold newlines, quotes and commas: rows round-trip them, --resume too."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DATA, need, zoo_cli

from zoo.batch import done_inputs
from zoo.index.catalog import load_index
from zoo.store import download

# Each name is bytes, as the file system holds it.
NAMES = [
    b"plain.jpg",
    b"caf\xe9-latin1.jpg",            # not UTF-8: Python keeps it as a surrogate escape
    b"line\nbreak.jpg",               # a newline inside a CSV field
    b'quote"and,comma.jpg',
    b"\xff\xfe-bytes.jpg",
    b"tab\tand\rreturn.jpg",
    "ünïcödé-€.jpg".encode(),
]


@pytest.fixture
def named_folder(tmp_path: Path) -> Path:
    entry = load_index().resolve("mnist-8").entry
    download.import_file(entry, entry.file, need(DATA / "models" / "mnist-8.onnx"))
    folder = tmp_path / "imgs"
    folder.mkdir()
    digit = need(DATA / "images" / "digits" / "mnist_7.jpg").read_bytes()
    for name in NAMES:
        with open(os.path.join(os.fsencode(folder), name), "wb") as handle:
            handle.write(digit)
    return folder


def expected_inputs(folder: Path) -> set[bytes]:
    return {os.path.join(os.fsencode(folder), name) for name in NAMES}


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_rows_round_trip_any_file_name(named_folder: Path, tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"rows{suffix}"
    zoo_cli("predict", "mnist-8", str(named_folder), "-o", str(out), "--quiet")
    got = done_inputs(out)
    assert {os.fsencode(n) for n in got} == expected_inputs(named_folder)
    assert len(got) == len(NAMES)
    if suffix == ".jsonl":  # every line is standard JSON
        lines = out.read_bytes().splitlines()
        assert len(lines) == len(NAMES) and all(json.loads(line)["predictions"][0]["label"] == "7" for line in lines)
    else:
        text = out.read_bytes().decode("utf-8", errors="surrogateescape")
        table = list(csv.DictReader(io.StringIO(text, newline="")))
        assert len(table) == len(NAMES) and {r["top_label"] for r in table} == {"7"}


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_resume_after_a_torn_record_gives_one_row_per_input(named_folder: Path, tmp_path: Path,
                                                            suffix: str) -> None:
    out = tmp_path / f"rows{suffix}"
    zoo_cli("predict", "mnist-8", str(named_folder), "-o", str(out), "--quiet")
    data = out.read_bytes()
    # A run killed in the middle of the record of the name with a newline in it.
    cut = data.index(b"line") + 6
    out.write_bytes(data[:cut])
    zoo_cli("predict", "mnist-8", str(named_folder), "-o", str(out), "--resume", "--quiet")
    assert {os.fsencode(n) for n in done_inputs(out)} == expected_inputs(named_folder)
    if suffix == ".csv":
        text = out.read_bytes().decode("utf-8", errors="surrogateescape")
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
    else:
        rows = [json.loads(line) for line in out.read_bytes().splitlines()]
    assert len(rows) == len(NAMES)  # nothing twice, nothing lost, no row swallowed by an open quote


def test_stdout_json_and_text_survive_such_names(named_folder: Path) -> None:
    as_json = zoo_cli("predict", "mnist-8", str(named_folder), "--json", "--quiet")
    rows = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert {os.fsencode(r["input"]) for r in rows} == expected_inputs(named_folder)
    text = zoo_cli("predict", "mnist-8", str(named_folder), "--quiet").stdout
    assert text.count("(mnist-8 on ") == len(NAMES)


def test_a_name_with_terminal_escapes_is_not_printed_raw(tmp_path: Path) -> None:
    """zoo's messages never carry a file name's control characters to the terminal."""
    entry = load_index().resolve("mnist-8").entry
    download.import_file(entry, entry.file, need(DATA / "models" / "mnist-8.onnx"))
    evil = tmp_path / "x\x1b]0;pwned\x07\x1b[2J.jpg"
    evil.write_bytes(b"not an image")
    env = {**os.environ, "ZOO_HOME": os.environ["ZOO_HOME"]}
    proc = subprocess.run([sys.executable, "-m", "zoo", "predict", "mnist-8", str(evil)], capture_output=True,
                          env=env, timeout=120)
    assert proc.returncode == 2
    assert b"\x1b" not in proc.stderr and b"\x07" not in proc.stderr and b"\x1b" not in proc.stdout


def test_debug_is_accepted_after_the_subcommand(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "zoo", "info", "no-such-model-x", "--debug"], capture_output=True,
                          text=True, timeout=60)
    assert "Traceback" in proc.stderr and "UnknownModelError" in proc.stderr  # --debug took effect
    assert proc.returncode == 2 and "error: unknown model 'no-such-model-x'" in proc.stderr  # as without it
    plain = subprocess.run([sys.executable, "-m", "zoo", "info", "no-such-model-x"], capture_output=True, text=True,
                           timeout=60)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr


def test_copy_of_names_is_independent_of_the_fixture(named_folder: Path, tmp_path: Path) -> None:
    """A folder copied elsewhere gives the same number of rows: names are not tied to one place."""
    other = tmp_path / "copy"
    shutil.copytree(named_folder, other)
    out = tmp_path / "rows.jsonl"
    zoo_cli("predict", "mnist-8", str(other), "-o", str(out), "--quiet")
    assert len(done_inputs(out)) == len(NAMES)


@pytest.mark.parametrize("command", [["info"], ["pull"], ["serve", "--port", "0"]])
def test_a_model_name_that_is_not_utf8_is_unknown_not_a_crash(command: list[str]) -> None:
    """sqlite cannot take the surrogates Python decodes such bytes to: the compiled index raised (exit 1)."""
    args: list[str | bytes] = [sys.executable, "-m", "zoo", command[0], b"caf\xe9", *command[1:]]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60, env={**os.environ, "ZOO_OFFLINE": "1"})
    assert proc.returncode == 2, proc.stderr
    assert "error: unknown model 'caf\\udce9'" in proc.stderr and "Traceback" not in proc.stderr
