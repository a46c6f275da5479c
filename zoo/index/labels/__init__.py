"""Packaged label sets: `load(name)` -> display labels indexed by class."""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path

from zoo.errors import ZooError
from zoo.filecheck import not_a_file

_DIR = Path(__file__).resolve().parent
_WNID = re.compile(r"n\d{8} ")
MAX_FILE = 16 * 2**20  # a label file is text, one line per class: 16 MiB is a million long labels


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
    if not os.path.isfile(path):  # os.path, not pathlib: a name too long is no file, not an OSError
        path = Path(name_or_path)
    if "," in name_or_path and not os.path.isfile(path):  # a manifest written by `zoo add` carries its labels inline
        return tuple(s.strip() for s in name_or_path.split(","))
    hint = f"use one of {', '.join(names())} or a text file with one label per line"
    if os.path.exists(path) and not os.path.isfile(path):  # a FIFO or /dev/zero would block or never end
        raise ZooError(f"cannot read label file {name_or_path!r}: {not_a_file(path)}", hint=hint)
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_FILE + 1)
    except OSError as exc:
        raise ZooError(f"unknown label set or unreadable label file {name_or_path!r}: {exc.strerror or exc}",
                       hint=hint) from None
    if len(raw) > MAX_FILE:
        raise ZooError(f"label file {name_or_path!r} is larger than {MAX_FILE // 2**20} MiB", hint=hint)
    try:
        return parse(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ZooError(f"label file {name_or_path!r} is not UTF-8 text ({exc.reason} at byte {exc.start})",
                       hint=hint) from None
