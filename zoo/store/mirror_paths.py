"""Where a mirror may put its files: path rules, collisions, and what in DIR is in the way.

Manifest paths come from untrusted files (ZOO_MANIFESTS), and DIR may hold anything. These
checks let `zoo mirror export` refuse a whole export before writing one byte: a path that would
replace the index, paths that collide (a file and a folder at one place; names equal but for
case, one file on macOS and Windows), and symbolic links among DIR's folders, which would make
zoo write outside DIR. Only lstat is used: no link is ever followed.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

INDEX_NAME = "zoo-mirror.json"
# Files zoo itself writes at the top of DIR: the index, and the in-house models' manifest that
# `zoo mirror export` adds beside it (zoo.store.add.MANIFEST_NAME).
RESERVED = (INDEX_NAME, "zoo-manifest.json")
InTheWay = Literal["symlink", "file", "folder"]


def path_problem(path: str) -> str | None:
    """Why a mirror path cannot be written inside DIR, or None."""
    parts = path.split("/")
    if path.startswith("/") or "\\" in path or ":" in parts[0] or any(p in ("", ".", "..") for p in parts):
        return "is not a relative path inside the mirror"
    first = parts[0].casefold()
    for name in RESERVED:
        if first == name or first.startswith(f".{name}."):  # the file, or its temp name while written
            return f"would take the place of the mirror's own {name}"
    return None


@dataclass(frozen=True, slots=True)
class Obstacle:
    """Something in DIR that stands where a mirror path needs a folder or a file."""

    path: str  # the mirror path it blocks
    at: str  # where it is, relative to DIR
    kind: InTheWay
    target: str = ""  # where a symbolic link points

    def describe(self, dest: Path) -> str:
        where = dest / self.at
        if self.kind == "symlink":
            return (f"{where} is a symbolic link (to {self.target}); zoo writes only into real folders inside "
                    f"{dest}, never through a link")
        if self.kind == "file":
            return f"{where} is a file, but {self.path} needs it to be a folder"
        return f"{where} is a folder where the file {self.path} must go"


def obstacle(dest: Path, path: str) -> Obstacle | None:
    """What stands in DIR where `path` needs folders and a file (lstat only: links are not followed)."""
    parts = path.split("/")
    for i in range(1, len(parts) + 1):
        at = "/".join(parts[:i])
        try:
            st = os.lstat(dest / at)
        except OSError:
            return None  # missing: created when written
        last = i == len(parts)
        if stat.S_ISLNK(st.st_mode):
            if last:
                return None  # a link in the file's own place is replaced by the real file, not followed
            return Obstacle(path, at, "symlink", os.readlink(dest / at))
        if last and stat.S_ISDIR(st.st_mode):
            return Obstacle(path, at, "folder")
        if not last and not stat.S_ISDIR(st.st_mode):
            return Obstacle(path, at, "file")
    return None


def collisions(files: Sequence[tuple[str, str]]) -> list[str]:
    """(path, model id) pairs that cannot all exist in one folder tree, on any disk (case-insensitive too)."""
    found: list[str] = []
    by_key: dict[str, tuple[str, str]] = {}
    for path, model_id in files:
        other, other_id = by_key.setdefault(path.casefold(), (path, model_id))
        if other != path:
            found.append(f"{path} ({model_id}) and {other} ({other_id}) differ only in case")
    for path, model_id in files:
        parts = path.casefold().split("/")
        for i in range(1, len(parts)):
            hit = by_key.get("/".join(parts[:i]))
            if hit is not None:
                found.append(f"{hit[0]} ({hit[1]}) is a file, but {path} ({model_id}) needs a folder there")
    return found
