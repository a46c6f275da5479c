"""JSON that zoo did not write itself (requests, users' files, records in a shared cache).

json.loads raises RecursionError, not ValueError, on values nested about a thousand levels
deep: callers that handle malformed JSON as ValueError would let such a document crash
them. loads() reports it as the ValueError it is.
"""

from __future__ import annotations

import json
from typing import Any


def loads(data: str | bytes | bytearray) -> Any:
    """json.loads, with nesting too deep for the parser raised as ValueError."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("values are nested too deeply to parse") from None
