"""JSON nested far too deep, wherever zoo reads JSON it did not write in this process.

Python's json raises RecursionError (not ValueError) about a thousand levels down, so a reader
that handles malformed JSON as ValueError crashed with a traceback on such a file. Classes: the
user manifest and `zoo add --recipe-json` (the user's files), the records a shared cache holds
(fingerprints, optimised-graph records, parallel-download piece tables, extraction records), a
mirror folder's index, and an output file being resumed. Each must read as "unreadable" and go
on, or be refused with exit 2; the server's infer body is in tests/test_serve.py.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from reliability_helpers import assert_clear_error, zoo

from zoo import safejson

DEEP = "[" * 100_000 + "]" * 100_000


def test_the_parser_reports_deep_nesting_as_malformed_json() -> None:
    with pytest.raises(ValueError, match="nested too deeply"):
        safejson.loads(DEEP)
    assert safejson.loads('{"a": [1, 2]}') == {"a": [1, 2]}


def test_a_deep_user_manifest_is_refused_with_exit_2(tmp_path: Path) -> None:
    from zoo.index.user_manifest import default_path

    path = default_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(DEEP, encoding="utf-8")
    assert_clear_error(zoo("remove", "anything"), 2, str(path), "nested too deeply")


def test_a_deep_recipe_file_is_refused_with_exit_2(tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.json"
    recipe.write_text(DEEP, encoding="utf-8")
    model = tmp_path / "m.onnx"
    model.write_bytes(b"not read before the recipe")
    assert_clear_error(zoo("add", str(model), "--id", "mine-1", "--recipe-json", str(recipe)), 2,
                       "--recipe-json", "nested too deeply")


def test_a_deep_fingerprint_record_means_hashing_again(tmp_path: Path) -> None:
    from zoo.store import cache, fingerprint

    data = tmp_path / "model.onnx"
    data.write_bytes(b"weights" * 1000)
    record = fingerprint._record_path(data.resolve(), cache.home())
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(DEEP, encoding="utf-8")
    assert fingerprint.sha256_of(data) == hashlib.sha256(data.read_bytes()).hexdigest()


def test_deep_cache_records_read_as_absent(tmp_path: Path) -> None:
    from zoo.store import archive, graphs, ranges

    graph = tmp_path / "g.onnx"
    graph.write_bytes(b"graph")
    graphs.record_of(graph).write_text(DEEP, encoding="utf-8")
    assert graphs.matches(graph, "ab" * 32) is False

    partial = tmp_path / "x.part"
    partial.write_bytes(b"\0" * 10)
    ranges.record_path(partial).write_text(DEEP, encoding="utf-8")
    assert ranges._load(partial, 10) is None

    folder = tmp_path / "extracted"
    folder.mkdir()
    (folder / archive.RECORD).write_text(DEEP, encoding="utf-8")
    assert archive.missing_members(folder) is None


def test_a_deep_mirror_index_is_ignored_with_a_note(tmp_path: Path) -> None:
    from zoo.store import mirror

    index = tmp_path / "zoo-mirror.json"
    index.write_text(DEEP, encoding="utf-8")
    data, records, notes = mirror._read_index(index)
    assert data is None and records == ()
    assert len(notes) == 1 and "nested too deeply" in notes[0] and str(index) in notes[0]


def test_a_deep_line_in_a_resumed_output_is_skipped(tmp_path: Path) -> None:
    from zoo.batch import done_inputs

    out = tmp_path / "out.jsonl"
    out.write_text('{"input": "a.jpg"}\n' + DEEP + "\n" + '{"input": "b.jpg"}\n', encoding="utf-8")
    assert done_inputs(out) == {"a.jpg", "b.jpg"}
    assert os.path.getsize(out) > 200_000  # the file is read, not rewritten
