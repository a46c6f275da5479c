"""Whole numbers from outside: headers, file names, URL parts and query strings read as ASCII digits only."""

from __future__ import annotations

from pathlib import Path

import pytest

from zoo.counts import count_of


@pytest.mark.parametrize(("text", "expected"), [
    ("0", 0), ("42", 42), ("0012", 12), ("9" * 30, int("9" * 30)),
    ("", None), (None, None), ("-1", None), ("+1", None), ("1.0", None), ("1e3", None), ("0x10", None),
    ("\u00b2", None),  # superscript two: str.isdigit() says yes, int() raises
    ("\u0663", None),  # Arabic-Indic three: int() would read 3
    ("\uff11", None),  # fullwidth one
    ("9" * 31, None),  # past MAX_DIGITS; int() raises on 4300+
    ("9" * 5000, None), ("1 2", None), (" 7", None), ("7\n", None),
])
def test_count_of(text: str | None, expected: int | None) -> None:
    assert count_of(text) == expected


def test_hostile_length_and_range_headers_read_as_unknown() -> None:
    from zoo.store import ranges, transport

    assert transport._content_length("1024") == transport._content_length(" 1024 ") == 1024
    for value in ("\u00b2", "9" * 5000, "-5", "", None):  # the body is read the safe way, to its end
        assert transport._content_length(value) == -1
    assert ranges.range_start("bytes 100-199/200") == 100
    assert ranges._range_total("bytes 100-199/200") == 200
    for value in ("bytes \u00b2-5/9", f"bytes {'1' * 5000}-5/9", "items 1-2/3"):
        assert ranges.range_start(value) is None
    assert ranges._range_total("bytes 0-1/\u00b2") is None and ranges._range_total(f"bytes 0-1/{'7' * 5000}") is None


@pytest.mark.parametrize("name", ["input_\u00b2.pb", f"input_{'1' * 200}.pb", "input_ 1.pb", "input_-1.pb"])
def test_a_test_set_file_with_a_number_int_cannot_read_is_named(tmp_path: Path, name: str) -> None:
    from zoo.check import _numbered
    from zoo.errors import InputError

    (tmp_path / "input_0.pb").write_bytes(b"")
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(InputError, match="has a file named"):
        _numbered(tmp_path, "input")
