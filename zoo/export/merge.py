"""Join ONNX graphs: align opsets (onnx.version_converter), merge (onnx.compose), stamp metadata.

`align` and `merge` are shared by `zoo export` and zoo.hub.load_composite_model, which
follows onnx.hub's rules: the default domain is converted up to the higher opset of the two,
other domains must already agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import onnx
from onnx import compose, version_converter

from zoo.errors import ZooError


def default_opset(model: onnx.ModelProto) -> int:
    """The model's ai.onnx opset version (0 when it imports none)."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def convert(model: onnx.ModelProto, opset: int, *, what: str) -> onnx.ModelProto:
    """`model` at ai.onnx `opset` (unchanged when it is already there); ZooError when ONNX cannot convert it."""
    if default_opset(model) == opset:
        return model
    try:
        converted = version_converter.convert_version(model, opset)
    except Exception as exc:  # the converter raises bare RuntimeError/ValueError/IndexError for unsupported ops
        raise ZooError(f"onnx.version_converter cannot bring {what} from opset {default_opset(model)} to {opset}: "
                       f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                       hint="export with another variant (--opset N lists the model's variants)") from None
    return converted


def align(first: onnx.ModelProto, second: onnx.ModelProto, *, names: tuple[str, str] = ("first", "second"),
          minimum: int = 0) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """Both models at the same ai.onnx opset (the higher one, at least `minimum`) and IR version."""
    versions = [{(o.domain or "ai.onnx"): o.version for o in m.opset_import} for m in (first, second)]
    for domain in versions[0].keys() & versions[1].keys():
        if domain != "ai.onnx" and versions[0][domain] != versions[1][domain]:
            raise ZooError(f"{names[0]} and {names[1]} use different opsets of domain {domain!r} "
                           f"({versions[0][domain]} vs {versions[1][domain]}); only the default domain is converted",
                           hint="merge models whose custom domains agree")
    target = max(default_opset(first), default_opset(second), minimum)
    first, second = convert(first, target, what=names[0]), convert(second, target, what=names[1])
    ir = max(first.ir_version, second.ir_version)
    first.ir_version = second.ir_version = ir
    return first, second


def merge(first: onnx.ModelProto, second: onnx.ModelProto, io_map: Sequence[tuple[str, str]], *,
          prefix: str | None = None) -> onnx.ModelProto:
    """onnx.compose.merge_models, after prefixing `second` when its names could collide with `first`'s."""
    if prefix:
        second = compose.add_prefix(second, prefix=prefix)
        io_map = [(a, prefix + b) for a, b in io_map]
    try:
        return compose.merge_models(first, second, io_map=list(io_map))
    except (ValueError, onnx.checker.ValidationError) as exc:
        raise ZooError(f"cannot merge the graphs: {exc}", hint="check the io_map names against the graphs' "
                       "inputs and outputs") from None


def rename_outputs(model: onnx.ModelProto, names: Mapping[str, str]) -> onnx.ModelProto:
    """Rename graph outputs (and their producers' outputs) in place: prefixed names back to plain ones."""
    for node in model.graph.node:
        node.output[:] = [names.get(o, o) for o in node.output]
        node.input[:] = [names.get(i, i) for i in node.input]
    for out in model.graph.output:
        out.name = names.get(out.name, out.name)
    return model


def set_metadata(model: onnx.ModelProto, props: Mapping[str, str]) -> onnx.ModelProto:
    """Replace metadata_props with `props` (keys kept from the network when not overridden)."""
    current = {p.key: p.value for p in model.metadata_props} | dict(props)
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, current)
    return model


def check(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnx.checker and strict shape inference; returns the model with inferred shapes."""
    try:
        onnx.checker.check_model(model)
        return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ZooError(f"the exported graph fails onnx.checker or shape inference: {exc}",
                       hint="report it with the model id; `zoo export --no-postprocess` may avoid the failing part") \
            from None
