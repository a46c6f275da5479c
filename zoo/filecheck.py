"""What a path that should be a regular file is instead, in words for a message.

A FIFO or a device such as /dev/zero must never be opened where a file is expected (it
blocks, or never ends), and a user told "no such file" about a folder or a symlink loop
is sent looking for the wrong problem.

Paths that users type are tested with os.path's functions, not pathlib's: in Python 3.11
Path.exists() and is_file() raise for a name over the file system's limit (ENAMETOOLONG),
where os.path answers False and not_a_file() then says why.
"""

from __future__ import annotations

import os
import re

_URL = re.compile(r"(?i)(https?|ftp|s3|gs|hf)://?[^/]")  # a URL given where a file is expected


def unusable(noun: str, path: str | os.PathLike[str]) -> str:
    """ "no such {noun}: PATH", or "cannot use {noun} PATH: why" when it is there but no regular file."""
    reason = not_a_file(path)
    return f"no such {noun}: {os.fspath(path)}" if reason == "no such file" else \
        f"cannot use {noun} {os.fspath(path)}: {reason}"


def not_a_file(path: str | os.PathLike[str]) -> str:
    """Why a path that is not a regular file cannot be read as one, in a few words for a message."""
    try:
        os.lstat(path)
    except FileNotFoundError:
        if _URL.match(os.fspath(path)):  # pathlib folds the // of a URL: https:/host/x
            return "a URL, and zoo reads local files only: download it first (curl -LO URL)"
        return "no such file"
    except OSError as exc:  # a name over the file system's limit, a folder on the way zoo may not search
        return str(exc.strerror or exc).lower()
    except ValueError:  # a NUL byte in the name
        return "a name with a NUL byte, which no file has"
    if not os.path.exists(path):
        return "a broken symbolic link, or one in a loop"
    if os.path.isdir(path):
        return "a folder, not a file"
    return "not a regular file (a device, FIFO or socket is never read)"


def looks_like_path(text: str) -> bool:
    """The documented rule: a value is a file path when it ends in .onnx or has a folder part."""
    return text.lower().endswith(".onnx") or "/" in text or os.sep in text or text.startswith(("~", "."))
