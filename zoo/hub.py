"""A drop-in for the removed `onnx.hub` API, served by zoo's index and verified cache.

Old code keeps working with one changed import:

    from zoo import hub            # was: from onnx import hub
    model = hub.load("vgg 19")     # an onnx.ModelProto, sha256-verified

Point by point as onnx.hub behaved: names match hub names case-insensitively
(zoo also ignores spaces, and falls back to its own ids and aliases when no hub
name matches); the highest opset wins unless `opset` is given; an unknown
model, a missing opset and a hash mismatch raise errors that are AssertionErrors
(as onnx.hub's were) and ZooErrors; `load` re-hashes the cached file and tells
you to pass `force_reload=True` when it no longer matches;
`download_model_with_test_data` returns the folder that holds the model and its
`test_data_set_*`. Differences: only the zoo's own repo is served, so there is
no untrusted-repo prompt, and zoo's progress goes to stderr (silenced by
`silent=True`) instead of onnx.hub's "Downloading ..." lines on stdout.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.errors import HashMismatchError, InputError, OpsetError, ZooError
from zoo.index.catalog import load_index, normalize
from zoo.store.hashing import sha256_file
from zoo.store.pull import pull_entry, test_data_dir

if TYPE_CHECKING:
    import onnx

    from zoo.index.manifest import ModelEntry

DEFAULT_REPO = "onnx/models:main"
_SERVED_REPOS = (DEFAULT_REPO, "onnx/models", "onnx/models:master")


@dataclass(frozen=True)
class ModelInfo:
    """onnx.hub.ModelInfo's attributes: model, model_path, opset, metadata, model_sha, tags, raw_model_info.

    `raw_model_info` is the model's record as ONNX_HUB_MANIFEST.json had it;
    `id` (zoo's name for the model) is the one addition.
    """

    model: str
    model_path: str
    opset: int
    metadata: dict[str, Any]
    model_sha: str | None
    tags: frozenset[str]  # onnx.hub had a set; a frozenset compares equal to one
    raw_model_info: dict[str, Any]
    id: str | None = None

    @classmethod
    def from_raw(cls, raw_model_info: dict[str, Any], model_id: str | None = None) -> ModelInfo:
        """Read one ONNX_HUB_MANIFEST.json record, as onnx.hub.ModelInfo(raw_model_info) did."""
        metadata: dict[str, Any] = raw_model_info["metadata"]
        return cls(model=raw_model_info["model"], model_path=raw_model_info["model_path"],
                   opset=raw_model_info["opset_version"], metadata=metadata, model_sha=metadata.get("model_sha"),
                   tags=frozenset(metadata.get("tags", ())), raw_model_info=raw_model_info, id=model_id)

    @classmethod
    def from_entry(cls, e: ModelEntry) -> ModelInfo:
        return cls.from_raw(raw_record(e), e.id)

    def __str__(self) -> str:
        return f"ModelInfo(model={self.model}, opset={self.opset}, path={self.model_path}, metadata={self.metadata})"

    __repr__ = __str__  # as onnx.hub's: `print(hub.list_models())` shows the same text


def raw_record(e: ModelEntry) -> dict[str, Any]:
    """The ONNX_HUB_MANIFEST.json record of an entry: model, model_path, onnx_version, opset_version, metadata."""
    metadata: dict[str, Any] = {"model_sha": e.sha256, "model_bytes": e.size, "tags": list(e.tags)}
    if e.inputs is not None and e.outputs is not None:
        metadata["io_ports"] = {kind: [{"name": io.name, "shape": list(io.shape), "type": io.type} for io in ios]
                                for kind, ios in (("inputs", e.inputs), ("outputs", e.outputs))}
    if e.test_data is not None:
        metadata |= {"model_with_data_path": e.test_data.path, "model_with_data_sha": e.test_data.sha256,
                     "model_with_data_bytes": e.test_data.size}
    return {"model": e.hub_name, "model_path": e.file.path, "onnx_version": e.onnx_version,
            "opset_version": e.opset, "metadata": metadata}


def _check_args(*, model: object = "", opset: object = None, tags: object = None) -> None:
    """Refuse arguments of the wrong kind by name (they were AttributeErrors from deep inside, or a str opset
    that matched nothing: "no variant has opset 8; available: ... (opset 8)")."""
    wrong = InputError.wrong_kind
    if not isinstance(model, str):
        raise wrong("model", model, "a model name such as 'mnist' or 'ResNet50'")
    if opset is not None and (isinstance(opset, bool) or not isinstance(opset, int)):
        raise wrong("opset", opset, "an int, or None for the highest")
    if tags is not None and (isinstance(tags, str) or not isinstance(tags, (list, tuple, set))
                             or not all(isinstance(t, str) for t in tags)):
        raise wrong("tags", tags, "a list of tag strings, or None")


def _check_repo(repo: str) -> None:
    if repo not in _SERVED_REPOS:
        raise ZooError(f"repo {repo!r} is not served by zoo (it serves the zoo's validated models only)",
                       hint=f"use the default {DEFAULT_REPO!r}; add private models with ZOO_MANIFESTS instead")


def set_dir(new_dir: str | os.PathLike[str]) -> None:
    """Set the cache directory (zoo's ZOO_HOME) for this process and the processes it starts."""
    if not isinstance(new_dir, (str, os.PathLike)):
        raise InputError.wrong_kind("new_dir", new_dir, "a folder path")
    os.environ["ZOO_HOME"] = os.fspath(Path(new_dir).expanduser())


def get_dir() -> str:
    """The cache directory in use (absolute)."""
    from zoo.store import cache

    return str(cache.home())


def list_models(repo: str = DEFAULT_REPO, model: str | None = None, tags: list[str] | None = None) -> list[ModelInfo]:
    """The models whose hub name is `model` (any case) and that have any of `tags`; None filters nothing."""
    _check_repo(repo)
    _check_args(model="" if model is None else model, tags=tags)
    entries = list(load_index().entries)
    if model is not None:
        entries = [e for e in entries if normalize(e.hub_name) == normalize(model)]
    if tags is not None:  # onnx.hub: tags=[] matches nothing, tags=None everything
        wanted = {t.lower() for t in tags}
        entries = [e for e in entries if wanted & {t.lower() for t in e.tags}]
    return [ModelInfo.from_entry(e) for e in entries]


def _resolve(model: str, opset: int | None) -> ModelEntry:
    """onnx.hub's rule (hub name, highest opset, or exactly `opset`), else zoo's own names."""
    _check_args(model=model, opset=opset)
    index = load_index()
    same = [e for e in index.entries if normalize(e.hub_name) == normalize(model)]
    if not same:
        return index.resolve(model, opset).entry  # ids and aliases; UnknownModelError with suggestions
    chosen = [e for e in same if opset is None or e.opset == opset]
    if not chosen:
        raise OpsetError(model, opset or 0, sorted(((e.id, e.opset) for e in same), key=lambda p: (p[1], p[0])))
    return max(chosen, key=lambda e: (e.opset, e.variant == "fp32"))  # first of the highest, as onnx.hub sorted


def get_model_info(model: str, repo: str = DEFAULT_REPO, opset: int | None = None) -> ModelInfo:
    """The one model a name means (highest opset unless `opset`), without downloading it."""
    _check_repo(repo)
    return ModelInfo.from_entry(_resolve(model, opset))


def _progress(silent: bool) -> bool | None:
    return False if silent else None  # None: a bar when stderr is a terminal


def load(model: str, repo: str = DEFAULT_REPO, opset: int | None = None, force_reload: bool = False,
         silent: bool = False) -> onnx.ModelProto:
    """The model as an onnx.ModelProto, downloaded and verified unless cached; the cached file is re-hashed.

    onnx.hub hashed the cached file on every load, and so does this: parsing reads every
    byte anyway, and a file changed in the cache is then an error, not a wrong model.
    """
    import onnx

    _check_repo(repo)
    entry = _resolve(model, opset)
    path = pull_entry(entry, force=force_reload, progress=_progress(silent))[0].path
    sha256, size = sha256_file(path)
    if (sha256, size) != (entry.sha256, entry.size):
        raise HashMismatchError(entry.id, str(path), expected_sha256=entry.sha256, got_sha256=sha256,
                                expected_size=entry.size, got_size=size, kept=f"the changed file at {path}",
                                hint="pass force_reload=True to download it again (or run `zoo cache verify`)")
    return onnx.load(str(path))


def download_model_with_test_data(model: str, repo: str = DEFAULT_REPO, opset: int | None = None,
                                  force_reload: bool = False, silent: bool = False) -> str:
    """Pull the model and its test-data archive (verified, safely extracted).

    Returns the folder that holds the model file and its test_data_set_* folders: the
    archive's top folder, as onnx.hub returned it.
    """
    _check_repo(repo)
    entry = _resolve(model, opset)
    if entry.test_data is None:  # onnx.hub failed with a KeyError here
        raise ZooError(f"{entry.id} has no test-data archive in the zoo", hint="use hub.load() for the model alone")
    pull_entry(entry, with_test_data=True, force=force_reload, progress=_progress(silent))
    return str(data_folder(test_data_dir(entry)))


def data_folder(extracted: Path) -> Path:
    """The folder in an extracted archive that holds test_data_set_* (the archive's one top folder, usually)."""
    if any(extracted.glob("test_data_set_*")) or any(extracted.glob("*.onnx")):
        return extracted
    holders = sorted({p.parent for p in [*extracted.glob("*/test_data_set_*"), *extracted.glob("*/*.onnx")]})
    if len(holders) == 1:
        return holders[0]
    tops = [p for p in extracted.iterdir() if p.is_dir()]
    return tops[0] if len(tops) == 1 else extracted


def load_composite_model(network_model: str, preprocessing_model: str, network_repo: str = DEFAULT_REPO,
                         preprocessing_repo: str = DEFAULT_REPO, opset: int | None = None,
                         force_reload: bool = False, silent: bool = False) -> onnx.ModelProto:
    """onnx.hub's merge of a preprocessing model in front of a network, as one onnx.ModelProto.

    As onnx.hub: both are loaded (with the same `opset` filter), the lower ai.onnx opset is
    converted to the higher one, other domains must agree, and the preprocessing outputs feed
    the network inputs in order. For a zoo model with its own recipe, `zoo export` needs no
    preprocessing model at all.
    """
    from zoo.export import merge

    preprocessing = load(preprocessing_model, preprocessing_repo, opset, force_reload, silent)
    network = load(network_model, network_repo, opset, force_reload, silent)
    preprocessing, network = merge.align(preprocessing, network, names=(preprocessing_model, network_model))
    io_map = list(zip((o.name for o in preprocessing.graph.output), (i.name for i in network.graph.input)))
    return merge.merge(preprocessing, network, io_map)
