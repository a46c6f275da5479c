"""A drop-in for the removed `onnx.hub` API, served by zoo's index and verified cache.

Old code keeps working with one changed import:

    from zoo import hub            # was: from onnx import hub
    model = hub.load("vgg 19")     # an onnx.ModelProto, sha256-verified
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo import api
from zoo.errors import ZooError
from zoo.index.manifest import ModelEntry
from zoo.store import cache

DEFAULT_REPO = "onnx/models:main"


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """The fields onnx.hub.ModelInfo had: model, model_path, opset, metadata (model_sha, tags, io_ports ...)."""

    model: str
    model_path: str
    opset: int
    metadata: dict[str, Any]
    id: str

    @classmethod
    def from_entry(cls, e: ModelEntry) -> ModelInfo:
        io_ports = None
        if e.inputs is not None:
            io_ports = {k: [{"name": io.name, "shape": list(io.shape), "type": io.type} for io in ios or ()]
                        for k, ios in (("inputs", e.inputs), ("outputs", e.outputs))}
        meta: dict[str, Any] = {"model_sha": e.sha256, "model_bytes": e.size, "tags": list(e.tags),
                                "io_ports": io_ports}
        if e.test_data is not None:
            meta |= {"model_with_data_path": e.test_data.path, "model_with_data_sha": e.test_data.sha256,
                     "model_with_data_bytes": e.test_data.size}
        return cls(e.hub_name, e.file.path, e.opset, meta, e.id)

    def __str__(self) -> str:
        return f"ModelInfo(model={self.model}, opset={self.opset}, path={self.model_path}, metadata={self.metadata})"


def _check_repo(repo: str) -> None:
    if repo not in (DEFAULT_REPO, "onnx/models", "onnx/models:master"):
        raise ZooError(f"repo {repo!r} is not served by zoo",
                       hint=f"use the default {DEFAULT_REPO!r}; add private models with ZOO_MANIFESTS instead")


def set_dir(new_dir: str | os.PathLike[str]) -> None:
    """Set the cache directory (zoo's ZOO_HOME) for this process."""
    os.environ["ZOO_HOME"] = str(Path(new_dir).expanduser().resolve())


def get_dir() -> str:
    """The cache directory in use."""
    return str(cache.home())


def list_models(repo: str = DEFAULT_REPO, model: str | None = None, tags: list[str] | None = None) -> list[ModelInfo]:
    """Models, filtered like onnx.hub: case-insensitive name, and any of `tags`."""
    _check_repo(repo)
    entries = api.list_models()
    if model is not None:
        key = model.lower()
        entries = [e for e in entries if e.hub_name.lower() == key or e.id.lower() == key]
    if tags:
        wanted = {t.lower() for t in tags}
        entries = [e for e in entries if wanted & {t.lower() for t in e.tags}]
    return [ModelInfo.from_entry(e) for e in entries]


def _resolve(model: str, opset: int | None) -> ModelEntry:
    """onnx.hub's rule first (hub name, case-insensitive, highest opset), then zoo's names."""
    same = [e for e in api.list_models() if e.hub_name.lower() == model.lower()]
    if opset is not None:
        same = [e for e in same if e.opset == opset]
    if same:
        return max(same, key=lambda e: e.opset)
    return api.resolve(model, opset)


def get_model_info(model: str, repo: str = DEFAULT_REPO, opset: int | None = None) -> ModelInfo:
    """The one model a name means (highest opset unless `opset`)."""
    _check_repo(repo)
    return ModelInfo.from_entry(_resolve(model, opset))


def _fetch(model: str, repo: str, opset: int | None, force_reload: bool, silent: bool,
           with_test_data: bool) -> tuple[ModelEntry, Path]:
    _check_repo(repo)
    entry = _resolve(model, opset)
    results = api.pull_entry(entry, with_test_data=with_test_data, force=force_reload,
                             progress=False if silent else None)
    return entry, results[0].path


def load(model: str, repo: str = DEFAULT_REPO, opset: int | None = None, force_reload: bool = False,
         silent: bool = False) -> Any:
    """The verified model as an onnx.ModelProto."""
    import onnx

    _, path = _fetch(model, repo, opset, force_reload, silent, with_test_data=False)
    return onnx.load(str(path))


def download_model_with_test_data(model: str, repo: str = DEFAULT_REPO, opset: int | None = None,
                                  force_reload: bool = False, silent: bool = False) -> str:
    """Pull the model and its test-data archive (verified, safely extracted); returns the extracted folder."""
    entry, _ = _fetch(model, repo, opset, force_reload, silent, with_test_data=True)
    if entry.test_data is None:
        raise ZooError(f"{entry.id} has no test-data archive in the zoo", hint="use hub.load() for the model alone")
    return str(api.test_data_dir(entry))


def load_composite_model(*args: Any, **kwargs: Any) -> Any:
    """onnx.hub's preprocessing+network merge; zoo has no network preprocessing models to merge."""
    raise ZooError("load_composite_model is not supported by zoo.hub",
                   hint="use zoo.load(name).predict(image): zoo runs the preprocessing recipe itself")
