"""Manifest data: frozen entries parsed and validated from manifest dicts.

`ModelEntry.from_dict` is the only way in; it raises ManifestError naming the
manifest file, the model id and the field path. `to_dict()` is exactly what
`--json` prints. The schema is documented in manifests/README.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any, Literal

from zoo.index.manifest_reader import MAX_ID_LENGTH, MAX_SIDE, id_problem, to_plain
from zoo.index.manifest_reader import Reader as _Reader
from zoo.index.manifest_reader import only as _only

Layout = Literal["NCHW", "NHWC", "CHW", "HWC"]
ChannelOrder = Literal["RGB", "BGR", "GRAY", "Y"]
ResizeMethod = Literal[
    "stretch",  # resize to `size`, aspect ratio not kept
    "shorter_side_center_crop",  # shorter side -> `shorter_side`, then center crop `crop`
    "shorter_side",  # shorter side -> `shorter_side` (cap: max_longer_side), any size out
    "letterbox",  # fit inside `size`, keep aspect, pad with pad_value, centered
    "cover_center_crop",  # scale so both sides cover `size`, then center crop
    "pad_to_size",  # no scaling: pad (bottom/right) or crop to `size`
    "face_align",  # similarity transform of 5 landmarks onto a template
    "none",  # feed the image at its own size
]
Interpolation = Literal["nearest", "bilinear", "bicubic", "lanczos"]
PadPosition = Literal["center", "bottom-right"]
RecipeKind = Literal["image", "image-sequence", "text", "tensor"]
Variant = Literal["fp32", "fp16", "int8", "qdq", "preprocessing"]
ConfidenceLevel = Literal["high", "medium", "low"]
BoxOrder = Literal["xyxy", "yxyx"]
BoxCoords = Literal["normalized", "input-pixels", "original-pixels"]
LabelFormat = Literal["index", "category-id"]
PostprocessKind = Literal[
    "softmax-topk",
    "already-probabilities-topk",
    "scores-topk",
    "boxes-nms-in-graph",
    "yolov2-grid-decode-nms",
    "yolov4-decode-nms",
    "retinanet-anchor-decode-nms",
    "boxes-threshold-nms",
    "segmentation-argmax",
    "duc-reshape-argmax",
    "embedding-l2-normalize",
    "image-output",
    "super-resolution-ycbcr-merge",
    "squad-span",
    "span-indices",
    "lm-logits",
    "hidden-states",
    "tensor-output",
]
ExtraInputValue = Literal["original_hw"]

_SHA256 = re.compile(r"[0-9a-f]{64}")
_Dim = int | str | None


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file in the zoo repo layout, with the sha256 and size it must have."""

    path: str
    sha256: str
    size: int

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @classmethod
    def from_dict(cls, r: _Reader) -> FileEntry:
        _only(r, cls)
        path = r.text("path", required=True)
        parts = path.split("/")
        if path.startswith(("/", "\\")) or ".." in parts or "\\" in path or ":" in parts[0]:
            r.fail("path", f"must be a relative path inside the zoo layout, got {path!r}")
        sha256 = r.text("sha256", required=True)
        if not _SHA256.fullmatch(sha256):
            r.fail("sha256", f"must be 64 lowercase hex digits, got {sha256!r}")
        return cls(path=path, sha256=sha256, size=r.positive_int("size", required=True))


@dataclass(frozen=True, slots=True)
class IOSpec:
    """One graph input or output as the manifest declares it."""

    name: str
    shape: tuple[_Dim, ...]
    type: str

    @classmethod
    def from_dict(cls, r: _Reader) -> IOSpec:
        _only(r, cls)
        shape = r.get("shape", list, required=True)
        if not all(d is None or (isinstance(d, (int, str)) and not isinstance(d, bool)) for d in shape):
            r.fail("shape", f"dimensions must be integers, names or null, got {shape!r}")
        return cls(name=r.text("name", required=True), shape=tuple(shape), type=r.text("type", required=True))


@dataclass(frozen=True, slots=True)
class ResizeSpec:
    """How the image is brought to the network's size."""

    method: ResizeMethod
    size: tuple[int, int] | None = None
    shorter_side: int | None = None
    crop: tuple[int, int] | None = None
    max_longer_side: int | None = None
    pad_to_multiple: int | None = None
    pad_value: tuple[float, ...] | None = None
    pad_position: PadPosition | None = None

    @classmethod
    def from_dict(cls, r: _Reader) -> ResizeSpec:
        _only(r, cls)
        spec = cls(
            method=r.choice("method", ResizeMethod, required=True),
            size=r.size("size"),
            shorter_side=r.positive_int("shorter_side", limit=MAX_SIDE),
            crop=r.size("crop"),
            max_longer_side=r.positive_int("max_longer_side", limit=MAX_SIDE),
            pad_to_multiple=r.positive_int("pad_to_multiple", limit=MAX_SIDE),
            pad_value=r.numbers("pad_value"),
            pad_position=r.choice("pad_position", PadPosition),
        )
        needs = {
            "stretch": ("size",),
            "shorter_side_center_crop": ("shorter_side", "crop"),
            "shorter_side": ("shorter_side",),
            "letterbox": ("size", "pad_value"),
            "cover_center_crop": ("size",),
            "pad_to_size": ("size",),
            "face_align": ("size",),
        }.get(spec.method, ())
        for key in needs:
            if getattr(spec, key) is None:
                r.fail(key, f"is required when method is {spec.method!r}")
        return spec


@dataclass(frozen=True, slots=True)
class ExtraInput:
    """A second graph input computed from the image, e.g. YOLOv3's image_shape."""

    name: str
    value: ExtraInputValue
    dtype: str

    @classmethod
    def from_dict(cls, r: _Reader) -> ExtraInput:
        _only(r, cls)
        return cls(
            name=r.text("name", required=True),
            value=r.choice("value", ExtraInputValue, required=True),
            dtype=r.text("dtype", required=True),
        )


@dataclass(frozen=True, slots=True)
class TileSpec:
    """Run a fixed-input, fully convolutional model on the whole image: overlapping tiles of its
    input size, fed as one batch and stitched (super-resolution-10 takes only 224x224)."""

    overlap: int  # pixels two neighbouring tiles share; the seam falls in the middle

    @classmethod
    def from_dict(cls, r: _Reader) -> TileSpec:
        _only(r, cls)
        return cls(overlap=r.positive_int("overlap", required=True, limit=MAX_SIDE))


@dataclass(frozen=True, slots=True)
class ImageRecipe:
    """Declarative image preprocessing: tensor = (pixel * scale - mean) / std.

    `pixel` is the 0..255 value in `channel_order`; mean and std are listed in
    that same order. `std` None means no division.
    """

    kind: Literal["image", "image-sequence"]
    input: str | None
    resize: ResizeSpec
    interpolation: Interpolation
    scale: float
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    channel_order: ChannelOrder
    layout: Layout
    dtype: Literal["float32", "uint8"]
    extra_inputs: tuple[ExtraInput, ...] = ()
    tiles: TileSpec | None = None  # set: the whole image in tiles of output_size, `resize` unused
    notes: str = ""

    @property
    def has_batch_dim(self) -> bool:
        """Whether one image's tensor lacks the batch axis (a tiled image's tensor is its own batch)."""
        return self.layout in ("NCHW", "NHWC") and self.tiles is None

    @property
    def output_size(self) -> tuple[int, int] | None:
        """The (height, width) the recipe produces, or None when it follows the image."""
        r = self.resize
        if r.method == "shorter_side_center_crop":
            return r.crop
        if r.method in ("shorter_side", "none"):
            return None
        return r.size

    @classmethod
    def from_dict(cls, r: _Reader) -> ImageRecipe:
        _only(r, cls)
        order = r.choice("channel_order", ChannelOrder, required=True)
        channels = 1 if order in ("GRAY", "Y") else 3
        extra = r.get("extra_inputs", list) or []
        resize = ResizeSpec.from_dict(r.child("resize", r.data.get("resize")))
        tiles = None if r.data.get("tiles") is None else TileSpec.from_dict(r.child("tiles", r.data["tiles"]))
        size = resize.crop if resize.method == "shorter_side_center_crop" else resize.size
        if tiles is not None and (size is None or 2 * tiles.overlap >= min(size)):
            r.fail("tiles.overlap", f"needs a fixed tile size (resize.size) more than twice the overlap "
                                    f"{tiles.overlap}, got {size}")
        return cls(
            kind=r.choice("kind", RecipeKind, required=True),
            input=r.text("input"),
            resize=resize,
            interpolation=r.choice("interpolation", Interpolation, required=True),
            scale=r.number("scale") or 1.0,
            mean=r.numbers("mean", channels),
            std=r.numbers("std", channels, nonzero=True),
            channel_order=order,
            layout=r.choice("layout", Layout, required=True),
            dtype=r.choice("dtype", Literal["float32", "uint8"], required=True),
            extra_inputs=tuple(
                ExtraInput.from_dict(r.child(f"extra_inputs[{i}]", e)) for i, e in enumerate(extra)
            ),
            tiles=tiles,
            notes=r.text("notes") or "",
        )


@dataclass(frozen=True, slots=True)
class TextRecipe:
    """What a text model needs: tokenizer, vocabulary and the meaning of each input."""

    kind: Literal["text", "tensor"]
    tokenizer: str | None
    vocab: str | None
    inputs: tuple[tuple[str, str], ...]
    params: tuple[tuple[str, int], ...]
    notes: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "tokenizer": self.tokenizer,
            "vocab": self.vocab,
            "inputs": dict(self.inputs),
            "params": dict(self.params),
            "notes": self.notes,
        }

    @classmethod
    def from_dict(cls, r: _Reader) -> TextRecipe:
        _only(r, cls)
        inputs = r.get("inputs", dict) or {}
        params = r.get("params", dict) or {}
        for key, value in params.items():
            if type(value) is not int:
                r.fail(f"params.{key}", f"expected an integer, got {value!r}")
        return cls(
            kind=r.choice("kind", RecipeKind, required=True),
            tokenizer=r.text("tokenizer"),
            vocab=r.text("vocab"),
            inputs=tuple((str(k), str(v)) for k, v in inputs.items()),
            params=tuple(params.items()),
            notes=r.text("notes") or "",
        )


def parse_recipe(r: _Reader) -> ImageRecipe | TextRecipe:
    kind = r.choice("kind", RecipeKind, required=True)
    return ImageRecipe.from_dict(r) if kind in ("image", "image-sequence") else TextRecipe.from_dict(r)


@dataclass(frozen=True, slots=True)
class PostprocessSpec:
    """How raw outputs become an answer; decoder numbers live in `params`."""

    kind: PostprocessKind
    outputs: tuple[tuple[str, tuple[str, ...]], ...]
    apply_softmax: bool = False
    squeeze: bool = False
    topk: int | None = None
    score_threshold: float | None = None
    nms_iou: float | None = None
    box_order: BoxOrder | None = None
    box_coords: BoxCoords | None = None
    label_format: LabelFormat = "index"
    params: tuple[tuple[str, Any], ...] = ()
    notes: str = ""

    def output(self, role: str) -> str:
        """The graph output name playing `role` (e.g. "output", "boxes")."""
        return dict(self.outputs)[role][0]

    def param(self, key: str, default: Any = None) -> Any:
        return dict(self.params).get(key, default)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: to_plain(getattr(self, f.name)) for f in fields(self)}
        out["outputs"] = {k: (v[0] if len(v) == 1 else list(v)) for k, v in self.outputs}
        out["params"] = dict(self.params)
        return out

    @classmethod
    def from_dict(cls, r: _Reader) -> PostprocessSpec:
        _only(r, cls)
        outputs = r.get("outputs", dict, required=True)
        pairs = []
        for role, names in outputs.items():
            names = [names] if isinstance(names, str) else names
            if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
                r.fail(f"outputs.{role}", f"expected an output name or a list of names, got {names!r}")
            pairs.append((role, tuple(names)))
        return cls(
            kind=r.choice("kind", PostprocessKind, required=True),
            outputs=tuple(pairs),
            apply_softmax=bool(r.get("apply_softmax", bool)),
            squeeze=bool(r.get("squeeze", bool)),
            topk=r.positive_int("topk"),
            score_threshold=r.number("score_threshold"),
            nms_iou=r.number("nms_iou"),
            box_order=r.choice("box_order", BoxOrder),
            box_coords=r.choice("box_coords", BoxCoords),
            label_format=r.choice("label_format", LabelFormat) or "index",
            params=tuple(_freeze(v) for v in (r.get("params", dict) or {}).items()),
            notes=r.text("notes") or "",
        )


def _freeze(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple((k, _freeze(v)) for k, v in value.items())
    return value


@dataclass(frozen=True, slots=True)
class Confidence:
    """How sure the facts are, and where they came from."""

    level: ConfidenceLevel
    reason: str

    @classmethod
    def from_dict(cls, r: _Reader) -> Confidence:
        _only(r, cls)
        return cls(level=r.choice("level", ConfidenceLevel, required=True), reason=r.text("reason") or "")


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """One model of the index: identity, file facts, IO and its recipes."""

    id: str
    hub_name: str
    aliases: tuple[str, ...]
    family: str
    task: str
    variant: Variant
    opset: int
    onnx_version: str | None
    tags: tuple[str, ...]
    license: str | None
    file: FileEntry
    test_data: FileEntry | None
    inputs: tuple[IOSpec, ...] | None
    outputs: tuple[IOSpec, ...] | None
    preprocess: ImageRecipe | TextRecipe | None
    postprocess: PostprocessSpec | None
    labels: str | None
    confidence: Confidence
    source_framework: str | None = None
    manifest: str = ""

    @property
    def sha256(self) -> str:
        return self.file.sha256

    @property
    def size(self) -> int:
        return self.file.size

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: to_plain(getattr(self, f.name)) for f in fields(self)}
        out["sha256"], out["bytes"] = self.sha256, self.size
        return out

    @classmethod
    def from_dict(cls, data: Any, *, source: str, family: str, where: str) -> ModelEntry:
        model_id = data.get("id") if isinstance(data, dict) else None
        shown = model_id if isinstance(model_id, str) and len(model_id) <= MAX_ID_LENGTH else where
        r = _Reader(data, "", source, shown)
        _only(r, cls, extra=("sha256", "bytes"))  # to_dict() adds the model file's sha256 and bytes
        model_id = r.text("id", required=True)
        problem = id_problem(model_id)
        if problem is not None:
            r.fail("id", problem)
        test_data = r.data.get("test_data")
        return cls(
            id=model_id,
            hub_name=r.text("hub_name") or model_id,
            aliases=r.strings("aliases"),
            family=family,
            task=r.text("task", required=True),
            variant=r.choice("variant", Variant) or "fp32",
            opset=r.positive_int("opset", required=True),
            onnx_version=r.text("onnx_version"),
            tags=r.strings("tags"),
            license=r.text("license"),
            file=FileEntry.from_dict(r.child("file", r.data.get("file"))),
            test_data=None if test_data is None else FileEntry.from_dict(r.child("test_data", test_data)),
            inputs=_io_list(r, "inputs"),
            outputs=_io_list(r, "outputs"),
            preprocess=(None if r.data.get("preprocess") is None
                        else parse_recipe(r.child("preprocess", r.data["preprocess"]))),
            postprocess=None
            if r.data.get("postprocess") is None
            else PostprocessSpec.from_dict(r.child("postprocess", r.data["postprocess"])),
            labels=r.text("labels"),
            confidence=Confidence.from_dict(r.child("confidence", r.data.get("confidence") or {"level": "low"})),
            source_framework=r.text("source_framework"),
            manifest=source,
        )


def _io_list(r: _Reader, key: str) -> tuple[IOSpec, ...] | None:
    value = r.get(key, list)
    if value is None:
        return None
    return tuple(IOSpec.from_dict(r.child(f"{key}[{i}]", v)) for i, v in enumerate(value))
