"""Make text safe to print: credentials in URLs redacted, terminal control characters escaped.

Everything zoo prints can carry text it did not write: mirror URLs with
`user:password@`, reason phrases and headers from servers, ids and file names
from manifests and disks. A password must never reach a log, and an escape
sequence from a server must never reach a terminal, where it can rewrite what
the user sees (or, on some terminals, what they paste). Lowest layer: stdlib only.
"""

from __future__ import annotations

import re

# scheme://USERINFO@: greedy up to the last "@" before the path, so a password holding a raw "@" is covered.
_CREDENTIALS = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s@]*(?:@[^/?#\s@]*)*@")
REDACTED = "***"

# Code points a terminal acts on instead of showing: C0 controls, DEL, C1 controls (0x9B is a one-byte CSI),
# bidirectional overrides and isolates (they reorder what is shown), and lone surrogates (undecodable file
# names read with surrogateescape: printing them raises UnicodeEncodeError).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_KEPT_IN_LINES = {"\n", "\t"}


def redact(text: str) -> str:
    """`text` with the `user:password@` of every URL in it replaced by `***@`."""
    return _CREDENTIALS.sub(lambda m: f"{m['scheme']}{REDACTED}@", text)


def escape(text: str, *, keep_newlines: bool = False) -> str:
    r"""`text` with every terminal control character written as a visible escape (`\x1b`, `\u202e`).

    keep_newlines keeps `\n` and `\t` for zoo's own multi-line messages; text from
    outside (a reason phrase, a header, a file name) is escaped with the default.
    """

    def visible(m: re.Match[str]) -> str:
        char = m.group()
        if keep_newlines and char in _KEPT_IN_LINES:
            return char
        code = ord(char)
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"

    return _UNSAFE.sub(visible, text)


def printable(text: str, *, keep_newlines: bool = True) -> str:
    """What zoo may print of `text`: credentials redacted, control characters escaped."""
    return escape(redact(text), keep_newlines=keep_newlines)


def shown(text: str) -> str:
    """One field from outside (URL, reason phrase, header, name) for a one-line message."""
    return escape(redact(text))


def clipped(text: str, limit: int = 100) -> str:
    """`text` in quotes, or its first `limit` characters and its length: a name from outside may be any size."""
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}... ({len(text)} characters)"
