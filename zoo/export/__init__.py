"""`zoo export`: one self-contained ONNX file per zoo model, preprocessing (and decoding) in the graph.

The file takes `image`, uint8 [H, W, 3] RGB ([H, W] for grey models), and runs in any
onnxruntime (Python, Node.js, the browser) with standard ONNX ops only. docs/EXPORT.md
lists, per recipe, how close the in-graph preprocessing comes to zoo's own.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.errors import InputError, ZooError
from zoo.index.manifest import ImageRecipe, ModelEntry

if TYPE_CHECKING:
    import onnx

    from zoo.model import Model

__all__ = ["ExportReport", "build_model", "export_model"]


@dataclass(frozen=True, slots=True)
class ExportReport:
    """What was written: the file, its sha256 and size, its opset, inputs and outputs, what decodes in-graph."""

    model_id: str
    path: str
    sha256: str
    size: int
    opset: int
    inputs: tuple[tuple[str, str, tuple[int | str | None, ...]], ...]
    outputs: tuple[str, ...]
    postprocess: str | None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "path": self.path, "sha256": self.sha256, "bytes": self.size,
                "opset": self.opset,
                "inputs": [{"name": n, "type": t, "shape": list(s)} for n, t, s in self.inputs],
                "outputs": list(self.outputs), "postprocess": self.postprocess, "note": self.note}


@dataclass(frozen=True, slots=True)
class Source:
    """The network to export and the facts that describe it."""

    model_id: str
    path: Path
    recipe: ImageRecipe
    entry: ModelEntry | None
    labels: tuple[str, ...] | None


def _source(name_or_model: str | Model, opset: int | None) -> Source:
    from zoo import api
    from zoo.export import preprocess_graph
    from zoo.index import labels as label_sets

    if isinstance(name_or_model, str):
        entry = api.resolve(name_or_model, opset)
        recipe, model_id = _image_recipe(entry.preprocess, entry.id), entry.id
        labels = label_sets.load(entry.labels) if entry.labels else None
        # Pulled only once the recipe is known to be exportable: a refusal downloads nothing.
        tiles = getattr(recipe, "tiles", None)
        if tiles is not None or recipe.resize.method not in preprocess_graph.SUPPORTED:
            preprocess_graph.build(recipe, "x")  # raises the refusal with its reason
        return Source(model_id, Path(api.pull(entry.id, entry.opset)), recipe, entry, labels)
    recipe = _image_recipe(name_or_model.recipe, name_or_model.name)
    return Source(name_or_model.name, Path(name_or_model.path), recipe, name_or_model.entry, name_or_model.labels)


def _image_recipe(recipe: object, model_id: str) -> ImageRecipe:
    if not isinstance(recipe, ImageRecipe) or recipe.kind != "image":
        kind = getattr(recipe, "kind", None)
        raise ZooError(f"{model_id} has no single-image recipe to put in a graph ({kind or 'no'} recipe)",
                       hint="zoo export covers image models; run the others with zoo.load(name).run(feeds)")
    return recipe


QDQ_NOTE = ("QuantizeLinear/DequantizeLinear written as float ops (Div, Round, Clip; Cast, Sub, Mul), "
            "so no runtime fuses them into integer kernels that round differently")
MAX_TOPK = 2**31 - 1  # far past any class count; k is an int64 constant in the graph, which 10**20 overflowed


def build_model(name_or_model: str | Model, *, opset: int | None = None, postprocess: bool = True,
                topk: int | None = None) -> tuple[onnx.ModelProto, ExportReport]:
    """The exported ModelProto (checked) and its report (path, sha256 and size still empty)."""
    import onnx

    from zoo.export import fake_quant, merge, postprocess_graph, preprocess_graph
    from zoo.export.graph import OPSET

    if topk is not None and (isinstance(topk, bool) or not isinstance(topk, int) or topk < 1):
        raise InputError(f"topk={topk!r}: expected a whole number of 1 or more", expected=["topk=5"])
    topk = None if topk is None else min(topk, MAX_TOPK)  # the graph takes the smaller of k and the classes
    src = _source(name_or_model, opset)
    loaded = onnx.load(str(src.path))
    network = fake_quant.rewrite(loaded)  # QDQ: the float numerics zoo runs, in every runtime
    float_qdq = network is not loaded
    graph_inputs = _graph_inputs(network)
    tensor_input = src.recipe.input or next(iter(graph_inputs))
    if tensor_input not in graph_inputs:
        raise ZooError(f"{src.model_id}'s recipe feeds input {tensor_input!r}, which the graph does not have "
                       f"(it has {', '.join(graph_inputs)})", hint="fix preprocess.input in the manifest")
    spec = src.entry.postprocess if src.entry is not None else None
    decoder = postprocess_graph.plan(spec, src.labels) if postprocess else \
        postprocess_graph.Plan(None, (), "--no-postprocess: the network's raw outputs")
    extra = {x.name: graph_inputs.get(x.name, 1) for x in src.recipe.extra_inputs}
    pre = preprocess_graph.build(src.recipe, tensor_input, extra_ranks=extra, geometry=decoder.geometry)
    pre, network = merge.align(pre, network, names=("the preprocessing graph", src.model_id), minimum=OPSET)
    io_map = [(tensor_input, tensor_input)] + [(x, x) for x in extra]
    # No `outputs=` selection: onnx.compose extracts subgraphs with a tool that does not follow If
    # branches' outer-scope names; every output not wired by io_map stays, which is what is wanted.
    model = merge.merge(pre, network, io_map)
    if decoder.in_graph and spec is not None:
        model = _add_decoder(model, spec, src.labels, network, topk)
    props = _metadata(src, decoder) | ({"zoo.quantization": QDQ_NOTE} if float_qdq else {})
    model = merge.check(merge.set_metadata(_without_initializer_inputs(model), props))
    note = "; ".join(n for n in (decoder.reason, QDQ_NOTE if float_qdq else "") if n)
    report = ExportReport(src.model_id, "", "", 0, merge.default_opset(model), _io(model),
                          tuple(o.name for o in model.graph.output), decoder.kind, note)
    return model, report


def _without_initializer_inputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drop weights listed as graph inputs (IR 3 files do): the exported file has one input, `image`.

    Only after conversion: onnx.version_converter needs them listed in such old files.
    """
    inits = {t.name for t in model.graph.initializer}
    real = [i for i in model.graph.input if i.name not in inits]
    del model.graph.input[:]
    model.graph.input.extend(real)
    return model


def _graph_inputs(model: onnx.ModelProto) -> dict[str, int]:
    """Real graph inputs (not initializers listed as inputs, as IR 3 files do) -> their rank."""
    inits = {t.name for t in model.graph.initializer}
    return {i.name: len(i.type.tensor_type.shape.dim) for i in model.graph.input if i.name not in inits}


def _add_decoder(model: onnx.ModelProto, spec: Any, labels: tuple[str, ...] | None, network: onnx.ModelProto,
                 topk: int | None) -> onnx.ModelProto:
    from zoo.export import merge, postprocess_graph, preprocess_graph
    from zoo.export.postprocess_graph import IN

    ranks = {o.name: len(o.type.tensor_type.shape.dim) for o in network.graph.output}
    post = postprocess_graph.build(spec, labels, ranks, topk=topk)
    post_inputs = [i.name[len(IN):] for i in post.graph.input]
    missing = [n for n in post_inputs if n not in ranks and n != preprocess_graph.GEOMETRY]
    if missing:
        raise ZooError(f"the {spec.kind} decoder reads output {missing[0]!r}, which the network lacks",
                       hint="fix postprocess.outputs in the manifest, or export with --no-postprocess")
    # The decoder's outputs (boxes, scores) may carry the network's own output names: those move aside.
    taken = {o.name for o in post.graph.output} & {o.name for o in model.graph.output}
    moved = {n: f"network/{n}" for n in taken}
    model = merge.rename_outputs(model, moved)
    model, post = merge.align(model, post, names=("the network", "the decoder graph"))
    return merge.merge(model, post, [(moved.get(n, n), IN + n) for n in post_inputs])


def _metadata(src: Source, decoder: Any) -> dict[str, str]:
    from zoo.index.manifest_reader import to_plain

    props = {"zoo.model_id": src.model_id, "zoo.recipe": json.dumps(to_plain(src.recipe), sort_keys=True),
             "zoo.input": "image: uint8 [H, W] grey" if src.recipe.channel_order == "GRAY"
             else "image: uint8 [H, W, 3] RGB",
             "zoo.postprocess": decoder.kind or f"none: {decoder.reason}"}
    if src.entry is not None:
        props |= {"zoo.source_sha256": src.entry.sha256, "zoo.source_path": src.entry.file.path}
        if src.entry.labels:
            props["zoo.labels"] = src.entry.labels
    return props


def _io(model: onnx.ModelProto) -> tuple[tuple[str, str, tuple[int | str | None, ...]], ...]:
    import onnx

    out = []
    for i in model.graph.input:
        t = i.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim)
        out.append((i.name, onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name, dims))
    return tuple(out)


def export_model(name_or_model: str | Model, out_path: str | os.PathLike[str], *, opset: int | None = None,
                 postprocess: bool = True, topk: int | None = None) -> ExportReport:
    """Write the self-contained model to `out_path` (atomically: a complete file or none)."""
    model, report = build_model(name_or_model, opset=opset, postprocess=postprocess, topk=topk)
    data = model.SerializeToString()
    target = Path(out_path).expanduser().resolve()
    if target.is_dir():
        raise ZooError(f"{target} is a directory", hint="give a file name such as model.onnx")
    if os.path.exists(target) and not os.path.isfile(target):  # as root, the replace below took /dev/null's place
        raise ZooError(f"{target} is a device, FIFO or socket: export writes a regular file, which would replace it",
                       hint="give a file name such as model.onnx")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:  # a folder zoo may not write to, a read-only mount
        raise ZooError(f"cannot write {target}: {exc.strerror or exc}",
                       hint="give a path in a folder you can write to") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except OSError as exc:  # a full disk: nothing is left behind
        raise ZooError(f"cannot write {target}: {exc.strerror or exc}", hint="free some space, or write elsewhere"
                       ) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return ExportReport(report.model_id, str(target), hashlib.sha256(data).hexdigest(), len(data), report.opset,
                        report.inputs, report.outputs, report.postprocess, report.note)
