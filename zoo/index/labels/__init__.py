"""Packaged label sets: `load(name)` -> display labels indexed by class."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from zoo.errors import ZooError

_DIR = Path(__file__).resolve().parent
_WNID = re.compile(r"n\d{8} ")


def names() -> list[str]:
    """The built-in label-set names."""
    return sorted(p.stem for p in _DIR.glob("*.txt"))


def parse(text: str) -> tuple[str, ...]:
    """One label per line; drop a WordNet id prefix and keep the first synonym."""
    labels = []
    for line in text.splitlines():
        line = _WNID.sub("", line.strip(), count=1)
        labels.append(line.split(",")[0].strip())
    return tuple(labels)


@cache
def load(name_or_path: str) -> tuple[str, ...]:
    """Labels of a built-in set (e.g. "imagenet1k"), of a text file path, or inline ("cat,dog": `zoo add --labels`)."""
    path = _DIR / f"{name_or_path}.txt"
    if not path.is_file():
        path = Path(name_or_path)
    if "," in name_or_path and not path.is_file():  # a manifest written by `zoo add` carries its labels inline
        return tuple(s.strip() for s in name_or_path.split(","))
    try:
        return parse(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ZooError(
            f"unknown label set or unreadable label file {name_or_path!r}: {exc.strerror or exc}",
            hint=f"use one of {', '.join(names())} or a text file with one label per line",
        ) from None
