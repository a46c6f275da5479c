"""What a fetch returns: a verified local file and where its bytes came from.

Its own module so that the downloader and the Hugging Face cache reuse (which the
downloader calls) can both build one without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class FetchResult:
    """A verified local file and where its bytes came from."""

    model_id: str
    path: Path  # the readable view, models/<id>/<name>
    sha256: str
    size: int
    source: str  # the URL that delivered the bytes (credentials redacted), "cache", or the imported file
    downloaded: bool

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.model_id, "path": str(self.path), "sha256": self.sha256, "bytes": self.size,
                "source": self.source, "downloaded": self.downloaded}
