"""Where a file can come from, in the order sources are tried.

Mirrors (ZOO_MIRROR, comma-separated, or --mirror) are laid out like the zoo
repo; then Hugging Face: onnxmodelzoo/legacy_models with the zoo path, then
the per-model repo onnxmodelzoo/<id> with <id>.onnx at its root.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote

from zoo.manifest import FileEntry, ModelEntry

HF_ORG = "onnxmodelzoo"
HF_LEGACY_REPO = f"{HF_ORG}/legacy_models"
HF_REVISION = "main"
DEFAULT_HF_ENDPOINT = "https://huggingface.co"


@dataclass(frozen=True, slots=True)
class Source:
    """One place to fetch one file from."""

    kind: Literal["mirror", "huggingface"]
    url: str
    repo_id: str | None = None
    filename: str | None = None


def mirrors(extra: Sequence[str] = ()) -> list[str]:
    """Mirror base URLs: explicit ones first, then ZOO_MIRROR."""
    env = [m.strip() for m in os.environ.get("ZOO_MIRROR", "").split(",") if m.strip()]
    return list(dict.fromkeys([*extra, *env]))


def hf_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", DEFAULT_HF_ENDPOINT).rstrip("/")


def plan(entry: ModelEntry, file: FileEntry | None = None, *, extra_mirrors: Sequence[str] = ()) -> list[Source]:
    """Every source for `file` (default: the model file), in the order to try them."""
    file = file or entry.file
    out = [Source("mirror", f"{base.rstrip('/')}/{quote(file.path)}") for base in mirrors(extra_mirrors)]
    endpoint = hf_endpoint()
    out.append(
        Source("huggingface", f"{endpoint}/{HF_LEGACY_REPO}/resolve/{HF_REVISION}/{quote(file.path)}",
               HF_LEGACY_REPO, file.path)
    )
    suffix = file.name.rsplit(".", 1)[-1] if file.name.endswith(".onnx") else "tar.gz"
    per_model = f"{entry.id}.{suffix}"
    repo = f"{HF_ORG}/{entry.id}"
    out.append(Source("huggingface", f"{endpoint}/{repo}/resolve/{HF_REVISION}/{quote(per_model)}", repo, per_model))
    return out
