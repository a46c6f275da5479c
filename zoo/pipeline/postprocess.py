"""Postprocessing: raw graph outputs -> answers, by the manifest's PostprocessSpec.

`decode()` looks the spec's kind up in DECODERS and returns one result per batch
item: a list of Classification or Detection, a Segmentation, an ImageResult, an
Embedding or RawOutputs. A decoder is `fn(spec, ctx) -> list` where ctx is a
Context (outputs, batch, geometries, labels, caller options); add your own with
`register()`. Box decoders live in zoo.pipeline.detection. numpy and PIL are imported
inside functions so `import zoo.cli` stays light.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zoo.errors import ZooError
from zoo.pipeline import detection
from zoo.pipeline.detection import Detection, nms, softmax

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from zoo.index.manifest import PostprocessSpec
    from zoo.pipeline.preprocess import Geometry, Prepared, TileGrid

__all__ = ["DECODERS", "Classification", "Context", "Detection", "Embedding", "ImageResult", "RawOutputs",
           "Segmentation", "decode", "nms", "register", "softmax"]


# -- results ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Classification:
    """One class of a top-k answer."""

    index: int
    label: str | None
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "label": self.label, "score": self.score}


@dataclass(frozen=True, slots=True, eq=False)
class Segmentation:
    """Per-pixel classes at the original image size; -1 marks pixels the model never saw (crops)."""

    class_map: np.ndarray
    shares: tuple[tuple[int, str | None, float], ...]  # (class index, label, pixel share), largest first

    def to_dict(self) -> dict[str, Any]:
        return {"shares": [{"index": i, "label": label, "share": s} for i, label, s in self.shares],
                "shape": [int(n) for n in self.class_map.shape]}


@dataclass(frozen=True, slots=True, eq=False)
class ImageResult:
    """An image the model produced (style transfer, super-resolution)."""

    image: Image.Image

    def to_dict(self) -> dict[str, Any]:
        return {"size": list(self.image.size), "mode": self.image.mode}


@dataclass(frozen=True, slots=True, eq=False)
class Embedding:
    """An L2-normalised float32 vector; compare two with a dot product (cosine similarity)."""

    vector: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        import numpy as np

        return {"dim": int(self.vector.size), "norm": round(float(np.linalg.norm(self.vector)), 6),
                "vector": [float(v) for v in self.vector]}


@dataclass(frozen=True, slots=True, eq=False)
class RawOutputs:
    """Graph outputs returned as they are (text models: zoo ships no tokenizer to decode them)."""

    arrays: dict[str, np.ndarray]

    def to_dict(self) -> dict[str, Any]:
        return {name: {"shape": [int(n) for n in a.shape], "dtype": str(a.dtype)} for name, a in self.arrays.items()}


# -- what a decoder gets ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Context:
    """Everything a decoder needs besides the spec: outputs, per-item geometry, caller options."""

    outputs: Mapping[str, Any]
    batch: int
    geometries: tuple[Geometry | None, ...] = ()
    prepared: tuple[Prepared | None, ...] = ()
    labels: tuple[str, ...] | None = None
    topk: int | None = None
    score_threshold: float | None = None

    def arrays(self, spec: PostprocessSpec, role: str) -> list[np.ndarray]:
        """The arrays of every graph output that plays `role` in the spec."""
        import numpy as np

        names = dict(spec.outputs).get(role)
        if names is None:
            raise ZooError(f"the {spec.kind} decoder needs an output with role {role!r}; the spec has "
                           f"{', '.join(r for r, _ in spec.outputs) or 'none'}",
                           hint="fix postprocess.outputs in the manifest (schema: manifests/README.md)")
        missing = [n for n in names if n not in self.outputs]
        if missing:
            raise ZooError(f"model output {missing[0]!r} (role {role!r} of {spec.kind}) is missing; got "
                           f"{', '.join(self.outputs) or 'no outputs'}",
                           hint="run every graph output, or fix postprocess.outputs in the manifest")
        return [np.asarray(self.outputs[n]) for n in names]

    def array(self, spec: PostprocessSpec, role: str) -> np.ndarray:
        return self.arrays(spec, role)[0]

    def geometry(self, b: int) -> Geometry | None:
        return self.geometries[b] if b < len(self.geometries) else None

    def item(self, b: int) -> Prepared | None:
        return self.prepared[b] if b < len(self.prepared) else None

    def label(self, index: int) -> str | None:
        """The display label of a class index; None without labels or out of range."""
        if self.labels is None or not 0 <= index < len(self.labels):
            return None
        return self.labels[index]

    def threshold(self, spec: PostprocessSpec, default: float) -> float:
        """The caller's score threshold, else the spec's, else the decoder's default."""
        if self.score_threshold is not None:
            return self.score_threshold
        return spec.score_threshold if spec.score_threshold is not None else default


Decoder = Callable[["PostprocessSpec", Context], list[Any]]


# -- classification -----------------------------------------------------------------------


def decode_topk(spec: PostprocessSpec, ctx: Context) -> list[list[Classification]]:
    """softmax-topk / already-probabilities-topk / scores-topk: flatten, maybe softmax, top-k."""
    import numpy as np

    x = ctx.array(spec, "output").astype(np.float64).reshape(ctx.batch, -1)  # drops [1,1000,1,1] 1-dims
    if spec.kind == "softmax-topk" and spec.apply_softmax:  # never re-softmax probabilities or SVM scores
        x = softmax(x, axis=-1)
    k = ctx.topk or spec.topk or 5
    out = []
    for row in x:
        order = np.argsort(-row, kind="stable")[:k]
        out.append([Classification(int(i), ctx.label(int(i)), float(row[i])) for i in order])
    return out


# -- segmentation -------------------------------------------------------------------------


def decode_segmentation(spec: PostprocessSpec, ctx: Context) -> list[Segmentation]:
    """segmentation-argmax: argmax over classes of [N, C, H, W], mapped back to the original image."""
    roles = dict(spec.outputs)
    scores = ctx.array(spec, "out" if "out" in roles else "output")
    return [_segmentation(scores[b].argmax(axis=0), ctx, b) for b in range(ctx.batch)]


def decode_duc(spec: PostprocessSpec, ctx: Context) -> list[Segmentation]:
    """duc-reshape-argmax: [1, C, H*W/4] -> (C, H/2, W/2) -> bilinear to (H, W) -> argmax."""
    raw = ctx.array(spec, "output")
    classes = spec.param("classes", raw.shape[1])
    out = []
    for b in range(ctx.batch):
        hw = _tensor_hw(ctx, b, raw.shape[-1] * 4)
        half = duc_rearrange(raw[b].reshape(classes, -1), hw)
        out.append(_segmentation(upsample(half, hw).argmax(axis=0), ctx, b))
    return out


def duc_rearrange(raw: np.ndarray, hw: tuple[int, int], *, cell: int = 2, ds_rate: int = 8) -> np.ndarray:
    """DUC's dense upsampling layout: (C, r*r*fh*fw) -> (C, fh*r, fw*r) with r = ds_rate / cell."""
    r = ds_rate // cell
    fh, fw = hw[0] // ds_rate, hw[1] // ds_rate
    c = raw.shape[0]
    out: np.ndarray = raw.reshape(c, r, r, fh, fw).transpose(0, 3, 1, 4, 2).reshape(c, fh * r, fw * r)
    return out


def _tensor_hw(ctx: Context, b: int, pixels: int) -> tuple[int, int]:
    """The input tensor's (height, width): from the prepared tensor, else a square of `pixels`."""
    item = ctx.item(b)
    if item is not None and getattr(item, "tensor", None) is not None and item.tensor.ndim >= 2:
        return int(item.tensor.shape[-2]), int(item.tensor.shape[-1])
    side = round(pixels ** 0.5)
    return side, side


def upsample(planes: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of each [C, h, w] plane to hw (half-pixel centres, like cv2.INTER_LINEAR)."""
    import numpy as np
    from PIL import Image

    if planes.shape[-2:] == tuple(hw):
        return planes
    size = (hw[1], hw[0])
    return np.stack([np.asarray(Image.fromarray(p.astype(np.float32)).resize(size, Image.Resampling.BILINEAR))
                     for p in planes])


def _segmentation(tensor_map: np.ndarray, ctx: Context, b: int) -> Segmentation:
    import numpy as np

    class_map = to_original_map(tensor_map, ctx.geometry(b))
    seen = class_map[class_map >= 0]
    counts = np.bincount(seen.reshape(-1)) if seen.size else np.zeros(0, dtype=np.int64)
    order = sorted((i for i in range(counts.size) if counts[i]), key=lambda i: (-counts[i], i))
    shares = tuple((int(i), ctx.label(int(i)), float(counts[i] / seen.size)) for i in order)
    return Segmentation(class_map, shares)


def to_original_map(tensor_map: np.ndarray, geometry: Geometry | None) -> np.ndarray:
    """A per-pixel map in tensor pixels -> the original image (nearest); -1 where the model saw nothing."""
    import numpy as np

    if geometry is None:
        return tensor_map.astype(np.int32)
    (w, h), (cw, ch) = geometry.original, geometry.content
    xs = np.floor((np.arange(w) + 0.5) * geometry.scale[0] - geometry.shift[0]).astype(np.int64)
    ys = np.floor((np.arange(h) + 0.5) * geometry.scale[1] - geometry.shift[1]).astype(np.int64)
    ok_x = (xs >= 0) & (xs < min(cw, tensor_map.shape[1]))
    ok_y = (ys >= 0) & (ys < min(ch, tensor_map.shape[0]))
    out = np.full((h, w), -1, dtype=np.int32)
    out[np.ix_(ok_y, ok_x)] = tensor_map[np.ix_(ys[ok_y], xs[ok_x])]
    return out


# -- images, embeddings, raw --------------------------------------------------------------


def decode_image(spec: PostprocessSpec, ctx: Context) -> list[ImageResult]:
    """image-output: clip 0..255, CHW -> HWC uint8 RGB, resized back to the original size."""
    import numpy as np
    from PIL import Image

    x = ctx.array(spec, "output")
    out = []
    for b in range(ctx.batch):
        img = Image.fromarray(np.clip(x[b], 0, 255).transpose(1, 2, 0).astype(np.uint8))
        geometry = ctx.geometry(b)
        if geometry is not None and img.size != tuple(geometry.original):
            img = img.resize(geometry.original, Image.Resampling.BICUBIC)
        out.append(ImageResult(img))
    return out


def decode_super_resolution(spec: PostprocessSpec, ctx: Context) -> list[ImageResult]:
    """super-resolution-ycbcr-merge: Y out * 255 -> L; Cb, Cr of the input resized BICUBIC; merge -> RGB.

    A tiled item (its tensor a batch of tiles of one image) has its tile outputs stitched first,
    so the answer covers the whole input at the model's scale.
    """
    import numpy as np
    from PIL import Image

    y = ctx.array(spec, "output")
    out = []
    for b in range(ctx.batch):
        item = ctx.item(b)
        grid = getattr(item, "tiles", None)
        plane = stitch(y, grid) if grid is not None else y[b].reshape(y.shape[-2:])
        luma = Image.fromarray(np.clip(plane * 255.0, 0, 255).astype(np.uint8))
        chroma = getattr(item, "chroma", None)
        if chroma is None:  # no colour planes kept: the grey image is all there is
            out.append(ImageResult(luma))
            continue
        _, cb, cr = chroma.convert("YCbCr").split()
        planes = [luma] + [p.resize(luma.size, Image.Resampling.BICUBIC) for p in (cb, cr)]
        out.append(ImageResult(Image.merge("YCbCr", planes).convert("RGB")))
    return out


def stitch(tiles: np.ndarray, grid: TileGrid) -> np.ndarray:
    """One plane [H*k, W*k] from tile outputs [T, 1, h*k, w*k]: each tile gives the part of the image
    nearer its own centre than its neighbours', so every seam sits mid-overlap, away from the tile
    borders where the model saw padding instead of the image."""
    import numpy as np

    (w, h), (tw, th) = grid.image, grid.tile
    if tiles.shape[0] != grid.count or tiles.shape[-1] % tw or tiles.shape[-2] % th:
        raise ZooError(f"the model returned {list(tiles.shape)} for {grid.count} tiles of {tw}x{th}",
                       hint="a tiled recipe needs a model whose output is a whole multiple of its input")
    k = tiles.shape[-1] // tw
    plane = np.zeros((max(h, th) * k, max(w, tw) * k), dtype=np.float32)
    spans_x, spans_y = _spans(grid.xs, tw, w), _spans(grid.ys, th, h)
    for i, ((x, x0, x1), (y, y0, y1)) in enumerate((sx, sy) for sy in spans_y for sx in spans_x):
        tile = tiles[i].reshape(tiles.shape[-2:])
        plane[y0 * k:y1 * k, x0 * k:x1 * k] = tile[(y0 - y) * k:(y1 - y) * k, (x0 - x) * k:(x1 - x) * k]
    return plane[: h * k, : w * k]


def _spans(starts: tuple[int, ...], tile: int, length: int) -> list[tuple[int, int, int]]:
    """(tile start, first kept pixel, end of kept pixels) per tile along one axis."""
    cuts = [0, *((b + a + tile) // 2 for a, b in zip(starts, starts[1:])), max(length, tile)]
    return [(s, cuts[i], cuts[i + 1]) for i, s in enumerate(starts)]


def decode_embedding(spec: PostprocessSpec, ctx: Context) -> list[Embedding]:
    """embedding-l2-normalize: one float32 unit vector per item (a zero vector stays zero)."""
    import numpy as np

    x = ctx.array(spec, "output").astype(np.float32).reshape(ctx.batch, -1)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    unit = x / np.where(norms > 0, norms, 1.0)
    return [Embedding(unit[b].astype(np.float32)) for b in range(ctx.batch)]


def decode_raw(spec: PostprocessSpec, ctx: Context) -> list[RawOutputs]:
    """Text and tensor models: every output as is; with batch > 1, arrays whose first axis is the
    batch are sliced per item (kept as a length-1 axis)."""
    import numpy as np

    def part(a: Any, b: int) -> np.ndarray:
        arr: np.ndarray = np.asarray(a)
        return arr[b: b + 1] if ctx.batch > 1 and arr.ndim and arr.shape[0] == ctx.batch else arr

    return [RawOutputs({name: part(a, b) for name, a in ctx.outputs.items()}) for b in range(ctx.batch)]


# -- registry and entry point -------------------------------------------------------------

DECODERS: dict[str, Decoder] = {
    "softmax-topk": decode_topk,
    "already-probabilities-topk": decode_topk,
    "scores-topk": decode_topk,
    "boxes-nms-in-graph": detection.decode_in_graph,
    "yolov2-grid-decode-nms": detection.decode_yolov2,
    "yolov4-decode-nms": detection.decode_yolov4,
    "retinanet-anchor-decode-nms": detection.decode_retinanet,
    "boxes-threshold-nms": detection.decode_threshold_nms,
    "segmentation-argmax": decode_segmentation,
    "duc-reshape-argmax": decode_duc,
    "embedding-l2-normalize": decode_embedding,
    "image-output": decode_image,
    "super-resolution-ycbcr-merge": decode_super_resolution,
    "squad-span": decode_raw,
    "span-indices": decode_raw,
    "lm-logits": decode_raw,
    "hidden-states": decode_raw,
    "tensor-output": decode_raw,
}


def register(kind: str, fn: Decoder, *, replace_existing: bool = False) -> None:
    """Make a decoder available for a postprocess kind: fn(spec, ctx) -> one result per batch item."""
    if kind in DECODERS and not replace_existing:
        raise ZooError(f"a decoder for postprocess kind {kind!r} is already registered",
                       hint="pass replace_existing=True to override it")
    DECODERS[kind] = fn


def decode(spec: PostprocessSpec, outputs: Mapping[str, Any], *, batch: int,
           geometries: Sequence[Geometry | None], prepared: Sequence[Prepared | None] = (),
           labels: Sequence[str] | None = None, topk: int | None = None,
           score_threshold: float | None = None) -> list[Any]:
    """Turn one run's outputs (whole batch, by graph output name) into one result per batch item."""
    fn = DECODERS.get(spec.kind)
    if fn is None:
        raise ZooError(f"no decoder for postprocess kind {spec.kind!r}",
                       hint="register one with zoo.pipeline.postprocess.register(kind, fn), or use model.run() "
                            "for the raw outputs")
    if batch < 1:
        raise ZooError(f"batch must be at least 1, got {batch}")
    ctx = Context(outputs=dict(outputs), batch=batch, geometries=tuple(geometries), prepared=tuple(prepared),
                  labels=None if labels is None else tuple(labels), topk=topk, score_threshold=score_threshold)
    results = list(fn(spec, ctx))
    if len(results) != batch:
        raise ZooError(f"the {spec.kind} decoder returned {len(results)} results for a batch of {batch}",
                       hint="a decoder must return exactly one result per batch item")
    return results
