"""What a path that should be a regular file is instead, in words for a message.

A FIFO or a device such as /dev/zero must never be opened where a file is expected (it
blocks, or never ends), and a user told "no such file" about a folder or a symlink loop
is sent looking for the wrong problem.
"""

from __future__ import annotations

import os


def not_a_file(path: str | os.PathLike[str]) -> str:
    """Why a path that is not a regular file cannot be read as one, in a few words for a message."""
    if not os.path.lexists(path):
        return "no such file"
    if not os.path.exists(path):
        return "a broken symbolic link, or one in a loop"
    if os.path.isdir(path):
        return "a folder, not a file"
    return "not a regular file (a device, FIFO or socket is never read)"
