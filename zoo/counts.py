"""Whole numbers read from outside (headers, file names, URL parts, query strings)."""

from __future__ import annotations

MAX_DIGITS = 30  # far beyond any byte count or index; int() itself refuses 4300 or more digits


def count_of(text: str | None) -> int | None:
    """`text` as a non-negative whole number in ASCII digits and nothing else (no blanks, no sign), else None.

    str.isdigit() alone is not enough: it passes "²" (which int() refuses) and "٣" (which
    int() reads as 3), and int() raises on a string of 4300 or more digits.
    """
    if text is None:
        return None
    if not text or len(text) > MAX_DIGITS or not text.isascii() or not text.isdigit():
        return None
    return int(text)
