"""Your own models as zoo models: `zoo add` and `zoo remove`.

add_model() checks everything before it changes anything (the file is ONNX, the id is
free, the recipe fits the graph's input, the labels fit its output), imports the file
into the verified cache (download.import_file: hashed again while copied), and only
then writes the entry into the user manifest (zoo.index.user_manifest.update: locked,
atomic). A failure at any step leaves the manifest as it was; a blob imported before a
failed manifest write is an orphan that `zoo cache prune` removes, never a broken entry.
`previous_entry()` and `restore_entry()` let a caller undo an add whose next step failed
(`zoo add --test-inputs` records a test set after adding: zoo.store.recorded).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.errors import InputError, UnknownModelError, ZooError
from zoo.filecheck import not_a_file
from zoo.index import labels as label_sets
from zoo.index import user_manifest
from zoo.index.catalog import builtin_manifest_dir, load_index, read_manifest_file
from zoo.index.manifest import ImageRecipe, ModelEntry
from zoo.index.manifest_reader import id_problem, to_plain
from zoo.index.user_manifest import GraphFacts, GraphIO
from zoo.store import cache

# A registered recipe by name, adapted to the model's fixed input (height, width) when it has one.
NamedRecipe = Callable[[tuple[int, int] | None], ImageRecipe]
RecipeArg = ImageRecipe | Mapping[str, Any] | NamedRecipe | None
MANIFEST_NAME = "zoo-manifest.json"  # beside zoo-mirror.json in an exported mirror


if TYPE_CHECKING:
    from zoo.store.recorded import TestDataResult


@dataclass(frozen=True, slots=True)
class AddResult:
    """The entry written, where, and the verified cached file it points at."""

    entry: ModelEntry
    manifest: Path
    path: Path
    replaced: bool
    recorded: TestDataResult | None = None  # the test set `test_inputs` recorded, if any

    def to_dict(self) -> dict[str, Any]:
        return {**self.entry.to_dict(), "manifest": str(self.manifest), "cached_path": str(self.path),
                "replaced": self.replaced, "recorded": None if self.recorded is None else self.recorded.to_dict()}


@dataclass(frozen=True, slots=True)
class RemoveResult:
    """The entry taken out of the manifest and the cached files deleted with it."""

    model_id: str
    manifest: Path
    deleted: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.model_id, "manifest": str(self.manifest), "deleted": list(self.deleted)}


def add_model(path: Path, model_id: str, *, task: str | None = None, recipe: RecipeArg = None,
              labels: str | Sequence[str] | None = None, postprocess: str | None = None,
              manifest: Path | None = None) -> AddResult:
    """Add the ONNX file at `path` as model `model_id` (see the module docstring for the order of steps)."""
    from zoo.store import download  # the CLI starts without requests
    from zoo.store.hashing import sha256_file

    manifest = Path(manifest) if manifest is not None else user_manifest.default_path()
    path = Path(path)
    if not path.is_file():
        raise InputError(f"cannot add {path}: {not_a_file(path)}", expected=["the path of an .onnx file"])
    user_manifest.check_target(manifest)
    replaced = check_id(model_id, manifest)
    facts = user_manifest.read_graph(path)
    image = _recipe(recipe, facts)
    sha256, size = sha256_file(path)
    doc = user_manifest.build_entry(
        model_id, facts, sha256=sha256, size=size, task=task or ("classification" if image else "tabular"),
        recipe=None if image is None else recipe_dict(image), labels=_labels(labels, facts),
        postprocess=_postprocess(postprocess, facts))
    entry = ModelEntry.from_dict(doc, source=str(manifest), family=user_manifest.FAMILY, where="models[-1]")
    fetched = download.import_file(entry, entry.file, path)
    user_manifest.update(manifest, lambda d: user_manifest.upsert(d, doc), _validate)
    return AddResult(entry, manifest, fetched.path, replaced)


def check_id(model_id: str, manifest: Path) -> bool:
    """Refuse an unusable id or one another model answers to; True when it replaces an entry of `manifest`."""
    problem = id_problem(model_id)
    if problem is not None:
        raise InputError(f"model id {model_id!r} {problem}", expected=["an id like rf-iris or my-classifier-1"])
    try:
        found = load_index().resolve(model_id)
    except UnknownModelError:
        return False
    if found.how == "id" and Path(found.entry.manifest) == manifest:
        return True
    builtin = Path(found.entry.manifest).parent == builtin_manifest_dir()
    owner = "built-in model" if builtin else f"model from {found.entry.manifest}"
    raise ZooError(f"model id {model_id!r} is taken: it is the {found.how.replace('_', ' ')} of {owner} "
                   f"{found.entry.id}", hint="choose an id of your own (`zoo search TEXT` shows what is taken); "
                   "built-in names are never overridden")


def _validate(tmp: Path) -> None:
    """The new manifest parses with the catalog's own reader before it replaces the old one."""
    read_manifest_file(tmp)


# -- recipe ------------------------------------------------------------------------------


def _recipe(recipe: RecipeArg, facts: GraphFacts) -> ImageRecipe | None:
    if recipe is None:
        return None
    if isinstance(recipe, ImageRecipe):
        chosen = recipe
    elif isinstance(recipe, Mapping):
        chosen = parse_recipe(recipe)
    else:
        chosen = recipe(fixed_hw(facts.inputs[0], "NHWC" if _channels_last(facts.inputs[0]) else "NCHW"))
    check_recipe_fits(chosen, facts)
    return chosen


def parse_recipe(data: Mapping[str, Any], source: str = "--recipe-json") -> ImageRecipe:
    """An ImageRecipe from its manifest form (manifests/README.md); ManifestError names the bad field."""
    from zoo.index.manifest import parse_recipe as parse
    from zoo.index.manifest_reader import Reader

    parsed = parse(Reader(dict(data), "", source, "recipe"))
    if not isinstance(parsed, ImageRecipe):
        raise InputError(f"{source}: kind {parsed.kind!r} is not an image recipe",
                         expected=["an ImageRecipe: kind image, resize, interpolation, channel_order, layout, dtype"])
    return parsed


def recipe_dict(recipe: ImageRecipe) -> dict[str, Any]:
    """The recipe in manifest form, without the fields left at their defaults."""
    plain: dict[str, Any] = to_plain(recipe)
    plain["resize"] = {k: v for k, v in plain["resize"].items() if v is not None}
    return {k: v for k, v in plain.items() if v is not None and v != [] and v != ""}


def _channels_last(io: GraphIO) -> bool:
    return len(io.shape) == 4 and io.shape[3] in (1, 3) and io.shape[1] not in (1, 3)


def fixed_hw(io: GraphIO, layout: str) -> tuple[int, int] | None:
    """The graph input's fixed (height, width) in this layout, or None when either is dynamic."""
    hi, wi = {"NCHW": (2, 3), "NHWC": (1, 2), "CHW": (1, 2), "HWC": (0, 1)}[layout]
    if len(io.shape) <= wi:
        return None
    h, w = io.shape[hi], io.shape[wi]
    return (h, w) if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0 else None


def check_recipe_fits(recipe: ImageRecipe, facts: GraphFacts) -> None:
    """Refuse a recipe whose tensor the graph input cannot take: rank, channels, size, dtype, input name."""
    names = [io.name for io in facts.inputs]
    io = next((i for i in facts.inputs if i.name == recipe.input), None) if recipe.input else facts.inputs[0]
    if io is None:
        raise InputError(f"the recipe's input {recipe.input!r} is not an input of the graph",
                         expected=[f"one of {names}"])
    rank = 4 if recipe.layout in ("NCHW", "NHWC") else 3
    problems = []
    if len(io.shape) != rank:
        problems.append(f"layout {recipe.layout} makes a {rank}-D tensor, the input is {len(io.shape)}-D")
    else:
        axis = {"NCHW": 1, "NHWC": 3, "CHW": 0, "HWC": 2}[recipe.layout]
        channels = 1 if recipe.channel_order in ("GRAY", "Y") else 3
        have = io.shape[axis]
        if isinstance(have, int) and have > 0 and have != channels:
            problems.append(f"{recipe.channel_order} gives {channels} channel(s) on axis {axis}, the input has {have}")
        hw, out = fixed_hw(io, recipe.layout), recipe.output_size
        if hw is not None and out is not None and tuple(out) != hw:
            problems.append(f"the recipe makes {out[0]}x{out[1]} images, the input takes {hw[0]}x{hw[1]}")
    wanted = {"float32": "tensor(float)", "uint8": "tensor(uint8)"}[recipe.dtype]
    if io.type != wanted:
        problems.append(f"dtype {recipe.dtype} is {wanted}, the input is {io.type}")
    if problems:
        raise InputError(f"the recipe does not fit input {io.name!r} {list(io.shape)}: " + "; ".join(problems),
                         expected=[f"a recipe whose layout, channel order, size and dtype match {list(io.shape)} "
                                   f"{io.type}"])


# -- labels and postprocessing ------------------------------------------------------------


def _labels(labels: str | Sequence[str] | None, facts: GraphFacts) -> str | None:
    """The manifest's `labels`: a built-in set's name, or the labels inline, comma-separated."""
    if labels is None:
        return None
    if isinstance(labels, str) and labels in label_sets.names():
        return labels
    if isinstance(labels, str) and Path(labels).is_file():
        names = label_sets.load(str(Path(labels).resolve()))
    elif isinstance(labels, str) and "," in labels:
        names = tuple(s.strip() for s in labels.split(","))
    elif isinstance(labels, str):
        raise InputError(f"--labels {labels!r} is no built-in label set, file or comma-separated list",
                         expected=[f"one of {', '.join(label_sets.names())}", "a file with one label per line",
                                   "a list like setosa,versicolor,virginica"])
    else:
        names = tuple(str(s) for s in labels)
    if not names or any(not n or "," in n for n in names):
        raise InputError(f"labels {list(names)} have an empty label or one with a comma",
                         expected=["non-empty labels without commas"])
    _check_label_count(len(names), facts)
    return ",".join(names)


def _check_label_count(count: int, facts: GraphFacts) -> None:
    """An image classifier's [N, C] output must have C labels (a tabular model's classes are not in its shape)."""
    if len(facts.outputs) != 1 or len(facts.outputs[0].shape) != 2:
        return
    classes = facts.outputs[0].shape[1]
    if isinstance(classes, int) and classes > 1 and classes != count:
        raise InputError(f"{count} labels given, but output {facts.outputs[0].name!r} has {classes} classes",
                         expected=[f"{classes} labels, one per class"])


def _postprocess(kind: str | None, facts: GraphFacts) -> dict[str, Any] | None:
    if kind is None:
        return None
    from typing import get_args

    from zoo.index.manifest import PostprocessKind

    if kind not in get_args(PostprocessKind):
        raise InputError(f"unknown postprocess kind {kind!r}", expected=list(get_args(PostprocessKind)))
    spec: dict[str, Any] = {"kind": kind, "outputs": {"output": facts.outputs[0].name}}
    if kind == "softmax-topk":
        spec["apply_softmax"] = True
    return spec  # checked with the whole entry by ModelEntry.from_dict


# -- remove and mirror --------------------------------------------------------------------


def remove_model(model_id: str, *, manifest: Path | None = None, keep_files: bool = False) -> RemoveResult:
    """Take `model_id` out of the user manifest and, unless keep_files, delete its cached files."""
    from zoo.store import cache_plan
    from zoo.store.cache_scan import scan

    manifest = Path(manifest) if manifest is not None else user_manifest.default_path()
    doc = user_manifest.read(manifest)
    found = next((m for m in doc["models"] if str(m.get("id", "")).lower() == model_id.lower()), None)
    if found is None:
        listed = ", ".join(str(m.get("id")) for m in doc["models"]) or "none"
        raise ZooError(f"{model_id!r} is not in the user manifest {manifest}",
                       hint=f"models you added: {listed}; built-in models are never removed "
                            "(`zoo cache rm NAME` deletes their cached files)")
    exact = str(found["id"])
    plan = None
    if not keep_files and cache.home().is_dir():
        plan = cache_plan.plan_rm(scan(), [exact])  # planned while the index still knows the model
    user_manifest.update(manifest, lambda d: user_manifest.without(d, exact), _validate)
    deleted: tuple[str, ...] = ()
    if plan is not None:
        result = plan.execute()
        deleted = tuple(str(item.path) for item in result.deleted)
    return RemoveResult(exact, manifest, deleted)


def export_manifest(dest: Path, ids: Sequence[str]) -> Path | None:
    """Write DIR/zoo-manifest.json: the entries of the exported models that are not built in.

    A team mirror then carries in-house models with their manifest; other machines read it
    with ZOO_MANIFESTS. None when every exported model is built in (nothing is written).
    """
    wanted = {i.lower() for i in ids}
    builtin = builtin_manifest_dir()
    entries = [e for e in load_index().entries if e.id.lower() in wanted and Path(e.manifest).parent != builtin]
    if not entries:
        return None
    if any(e.file.path == MANIFEST_NAME for e in load_index().entries if e.id.lower() in wanted):
        raise ZooError(f"a model file of the mirror would be {MANIFEST_NAME}", hint="rename that model's file.path")
    doc = user_manifest.empty_document()
    doc["family"] = "mirror"
    doc["models"] = [_manifest_form(e) for e in entries]
    target = Path(dest) / MANIFEST_NAME
    text = json.dumps(doc, indent=2) + "\n"
    try:
        if target.read_text(encoding="utf-8") == text:
            return target  # a re-export writes nothing
    except (OSError, UnicodeDecodeError):
        pass  # absent or unreadable: write it
    tmp = target.with_name(f".{MANIFEST_NAME}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        read_manifest_file(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _manifest_form(entry: ModelEntry) -> dict[str, Any]:
    """An entry as a manifest lists it: to_dict() less what the reader derives (family, manifest, sha256, bytes)."""
    out = entry.to_dict()
    for key in ("family", "manifest", "sha256", "bytes"):
        out.pop(key, None)
    return {k: v for k, v in out.items() if v is not None}


def previous_entry(model_id: str, manifest: Path | None = None) -> dict[str, Any] | None:
    """The entry `model_id` has in the manifest now (before an add replaces it), or None."""
    manifest = Path(manifest) if manifest is not None else user_manifest.default_path()
    key = model_id.lower()
    return next((m for m in user_manifest.read(manifest)["models"] if str(m.get("id", "")).lower() == key), None)


def restore_entry(model_id: str, previous: dict[str, Any] | None, manifest: Path | None = None) -> None:
    """Undo an add whose test inputs failed: the previous entry back, or none (its blob is left for prune)."""
    manifest = Path(manifest) if manifest is not None else user_manifest.default_path()
    user_manifest.update(manifest, lambda d: user_manifest.upsert(d, previous) if previous is not None
                         else user_manifest.without(d, model_id), _validate)
