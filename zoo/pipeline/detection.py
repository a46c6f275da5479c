"""Box decoders: in-graph NMS outputs, YOLO grids, RetinaNet anchors, UltraFace; greedy NMS.

Every decoder takes (spec, ctx) as zoo.pipeline.postprocess.decode builds them and returns
one list of Detection per batch item, best score first, boxes as x1, y1, x2, y2 in
ORIGINAL image pixels (mapped back through the item's preprocess Geometry).
numpy is imported inside the functions so `import zoo.cli` stays light.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from zoo.errors import ZooError

if TYPE_CHECKING:
    import numpy as np

    from zoo.index.manifest import PostprocessSpec
    from zoo.pipeline.postprocess import Context
    from zoo.pipeline.preprocess import Geometry


@dataclass(frozen=True, slots=True)
class Detection:
    """One object: class index, label, score and box (x1, y1, x2, y2, original pixels)."""

    index: int
    label: str | None
    score: float
    box: tuple[float, float, float, float]
    mask: np.ndarray | None = field(default=None, compare=False, repr=False)  # bool HxW, original size

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "label": self.label, "score": self.score, "box": list(self.box)}


# -- shared numerics ----------------------------------------------------------------------


def sigmoid(x: np.ndarray) -> np.ndarray:
    import numpy as np

    return 0.5 * (1.0 + np.tanh(0.5 * x))  # tanh form: no overflow warning for large |x|


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax (the max is subtracted first)."""
    import numpy as np

    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    out: np.ndarray = e / np.sum(e, axis=axis, keepdims=True)
    return out


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float, *, offset: float = 0.0) -> np.ndarray:
    """Greedy hard NMS over xyxy boxes: kept indices, highest score first.

    A box is dropped when its IoU with a kept, higher-scoring box exceeds `iou`.
    Ties keep the lower index (stable sort), so the result is deterministic.
    `offset=1` uses the "+1 pixel" width convention of Detectron-era code.
    """
    import numpy as np

    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, dtype=np.float64).reshape(-1), kind="stable")
    area = (b[:, 2] - b[:, 0] + offset).clip(0) * (b[:, 3] - b[:, 1] + offset).clip(0)
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        lo = np.maximum(b[i, :2], b[rest, :2])
        hi = np.minimum(b[i, 2:], b[rest, 2:])
        inter = np.prod((hi - lo + offset).clip(0), axis=1)
        union = area[i] + area[rest] - inter
        overlap = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        order = rest[overlap <= iou]
    return np.asarray(keep, dtype=np.int64)


def batched_nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float, *,
                offset: float = 0.0) -> np.ndarray:
    """NMS within each class separately; kept indices sorted by score, highest first."""
    import numpy as np

    kept = [np.flatnonzero(classes == c)[nms(boxes[classes == c], scores[classes == c], iou, offset=offset)]
            for c in np.unique(classes)]
    kept_all = np.concatenate(kept) if kept else np.zeros(0, dtype=np.int64)
    return kept_all[np.argsort(-scores[kept_all], kind="stable")]


# -- boxes -> Detection -------------------------------------------------------------------


def to_original(boxes: np.ndarray, spec: PostprocessSpec, geometry: Geometry | None) -> np.ndarray:
    """Boxes as the model gives them (spec.box_order / box_coords) -> xyxy original pixels."""
    import numpy as np

    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if spec.box_order == "yxyx":
        b = b[:, [1, 0, 3, 2]]
    coords = spec.box_coords or "input-pixels"
    if geometry is None:
        if coords == "normalized":
            raise ZooError(f"{spec.kind} boxes are normalized, and no image geometry was given to scale them",
                           hint="pass geometries=[prepared.geometry] from zoo.pipeline.preprocess.prepare()")
        return b
    if coords == "original-pixels":
        w, h = geometry.original
        return np.stack([b[:, 0].clip(0, w), b[:, 1].clip(0, h), b[:, 2].clip(0, w), b[:, 3].clip(0, h)], axis=1)
    return geometry.to_original(b, normalized=coords == "normalized")


def _box(row: np.ndarray) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(v) for v in row[:4])
    return x1, y1, x2, y2


def make_detections(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, ctx: Context,
                    masks: list[np.ndarray] | None = None) -> list[Detection]:
    """Detections sorted by score (stable), cut to the caller's top-k when given."""
    import numpy as np

    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[: ctx.topk or None]
    return [Detection(index=int(classes[i]), label=ctx.label(int(classes[i])), score=float(scores[i]),
                      box=_box(boxes[i]), mask=None if masks is None else masks[i])
            for i in order]


def _select(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, spec: PostprocessSpec, ctx: Context,
            b: int, *, default_iou: float, offset: float = 0.0, limit: int | None = None) -> list[Detection]:
    """Per-class NMS on boxes in input pixels, then map to the original image; drop empty boxes."""
    kept = batched_nms(boxes, scores, classes, spec.nms_iou if spec.nms_iou is not None else default_iou,
                       offset=offset)[:limit]
    xyxy = to_original(boxes[kept], spec, ctx.geometry(b))
    real = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
    return make_detections(xyxy[real], scores[kept][real], classes[kept][real], ctx)


# -- NMS already in the graph -------------------------------------------------------------


def decode_in_graph(spec: PostprocessSpec, ctx: Context) -> list[list[Detection]]:
    """boxes-nms-in-graph: R-CNN / SSD (boxes, labels, scores), TF OD API, or YOLOv3 indices."""
    roles = dict(spec.outputs)
    if "indices" in roles:
        return _gather_indices(spec, ctx)
    if "num_detections" in roles:
        return _tf_object_detection(spec, ctx)
    return _boxes_labels_scores(spec, ctx)


def _boxes_labels_scores(spec: PostprocessSpec, ctx: Context) -> list[list[Detection]]:
    boxes, labels, scores = (ctx.array(spec, r) for r in ("boxes", "labels", "scores"))
    masks = ctx.array(spec, "masks") if "masks" in dict(spec.outputs) else None
    if boxes.ndim == 2:  # Faster/Mask R-CNN: no batch axis, one image per run
        if ctx.batch != 1:
            raise ZooError(f"{spec.kind} outputs without a batch axis cannot hold a batch of {ctx.batch}",
                           hint="run this model on one image at a time")
        boxes, labels, scores = boxes[None], labels[None], scores[None]
        masks = None if masks is None else masks[None]
    threshold = ctx.threshold(spec, 0.5)
    out = []
    for b in range(ctx.batch):
        keep = scores[b] > threshold
        geometry = ctx.geometry(b)
        xyxy = to_original(boxes[b][keep], spec, geometry)
        pasted = None
        if masks is not None and geometry is not None:
            pasted = [paste_mask(m.reshape(m.shape[-2:]), box, geometry.original)
                      for m, box in zip(masks[b][keep], xyxy)]
        out.append(make_detections(xyxy, scores[b][keep], labels[b][keep].astype(int), ctx, pasted))
    return out


def paste_mask(probs: np.ndarray, box: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A box-relative mask (e.g. 28x28 probabilities) -> bool HxW mask of the whole image at 0.5."""
    import numpy as np
    from PIL import Image

    w, h = size
    x1, y1, x2, y2 = (int(v) for v in box)
    bw, bh = max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)  # int box +1, as the Mask R-CNN README
    small = np.asarray(Image.fromarray(probs.astype(np.float32)).resize((bw, bh), Image.Resampling.BILINEAR)) > 0.5
    full = np.zeros((h, w), dtype=bool)
    xa, ya, xb, yb = max(x1, 0), max(y1, 0), min(x2 + 1, w), min(y2 + 1, h)
    if xb > xa and yb > ya:
        full[ya:yb, xa:xb] = small[ya - y1: yb - y1, xa - x1: xb - x1]
    return full


def _tf_object_detection(spec: PostprocessSpec, ctx: Context) -> list[list[Detection]]:
    boxes, classes, scores, count = (ctx.array(spec, r) for r in (
        "detection_boxes", "detection_classes", "detection_scores", "num_detections"))
    threshold = ctx.threshold(spec, 0.5)
    out = []
    for b in range(ctx.batch):
        n = int(count.reshape(-1)[b])  # rows past num_detections are padding
        keep = scores[b, :n] > threshold
        xyxy = to_original(boxes[b, :n][keep], spec, ctx.geometry(b))
        out.append(make_detections(xyxy, scores[b, :n][keep], classes[b, :n][keep].astype(int), ctx))
    return out


def _gather_indices(spec: PostprocessSpec, ctx: Context) -> list[list[Detection]]:
    import numpy as np

    boxes, scores = ctx.array(spec, "boxes"), ctx.array(spec, "scores")
    # yolov3: [n, 3]; tiny-yolov3: [1, n, 3]; rows are (batch, class, box).
    indices = ctx.array(spec, "indices").reshape(-1, 3).astype(np.int64)
    threshold = ctx.threshold(spec, 0.0)  # the graph already thresholded; only a caller's value applies
    out = []
    for b in range(ctx.batch):
        sel = indices[indices[:, 0] == b]
        s = scores[sel[:, 0], sel[:, 1], sel[:, 2]]
        keep = s > threshold
        xyxy = to_original(boxes[sel[:, 0], sel[:, 2]][keep], spec, ctx.geometry(b))
        out.append(make_detections(xyxy, s[keep], sel[keep, 1], ctx))
    return out


# -- decoders that do their own NMS -------------------------------------------------------


def decode_threshold_nms(spec: PostprocessSpec, ctx: Context) -> list[list[Detection]]:
    """boxes-threshold-nms (UltraFace): per class column >= 1, threshold, top candidates, hard NMS."""
    import numpy as np

    scores, boxes = ctx.array(spec, "scores"), ctx.array(spec, "boxes")
    column = spec.param("score_column")
    columns = [column] if column is not None else range(1, scores.shape[-1])  # column 0 = background
    threshold, candidates = ctx.threshold(spec, 0.7), spec.param("candidate_size", 200)
    out = []
    for b in range(ctx.batch):
        parts = []
        for c in columns:
            s = scores[b, :, c]
            idx = np.flatnonzero(s > threshold)
            idx = idx[np.argsort(-s[idx], kind="stable")[:candidates]]
            kept = idx[nms(boxes[b, idx], s[idx], spec.nms_iou if spec.nms_iou is not None else 0.5)]
            parts.append((kept, np.full(kept.size, c)))
        kept = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, dtype=np.int64)
        cls = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, dtype=np.int64)
        xyxy = to_original(boxes[b, kept], spec, ctx.geometry(b))
        out.append(make_detections(xyxy, scores[b, kept, cls], cls, ctx))
    return out


def decode_yolov2(spec: PostprocessSpec, ctx: Context) -> list[list[Detection]]:
    """yolov2-grid-decode-nms: sigmoid/exp grid decode, obj * softmax(class), threshold, per-class NMS."""
    import numpy as np

    grid = ctx.array(spec, "output").astype(np.float64)
    per_cell, channels = spec.param("anchors_per_cell", 5), spec.param("channels_per_anchor")
    cells = grid.reshape(grid.shape[0], per_cell, channels or -1, *grid.shape[-2:])
    anchors = np.asarray(spec.param("anchors"), dtype=np.float64).reshape(per_cell, 2)
    threshold = ctx.threshold(spec, 0.5)  # yolov2-coco: pytorch-yolo2 detect.py conf_thresh
    out = []
    for b in range(ctx.batch):
        boxes, scores, classes = _yolov2_boxes(cells[b], anchors, spec.param("cell_size", 32), spec.apply_softmax)
        keep = scores > threshold
        out.append(_select(boxes[keep], scores[keep], classes[keep], spec, ctx, b, default_iou=0.45))
    return out


def _yolov2_boxes(t: np.ndarray, anchors: np.ndarray, cell: float,
                  apply_softmax: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """t [anchors, 5 + classes, gh, gw] -> xyxy input-pixel boxes, best-class score and class."""
    import numpy as np

    cols = np.arange(t.shape[-1])[None, None, :]
    rows = np.arange(t.shape[-2])[None, :, None]
    cx, cy = (cols + sigmoid(t[:, 0])) * cell, (rows + sigmoid(t[:, 1])) * cell
    w = np.exp(t[:, 2]) * anchors[:, 0, None, None] * cell
    h = np.exp(t[:, 3]) * anchors[:, 1, None, None] * cell
    probs = softmax(t[:, 5:], axis=1) if apply_softmax else t[:, 5:]
    conf = sigmoid(t[:, 4])[:, None] * probs
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1).reshape(-1, 4)
    return boxes, conf.max(axis=1).reshape(-1), conf.argmax(axis=1).reshape(-1)


def decode_yolov4(spec: PostprocessSpec, ctx: Context) -> list[list[Detection]]:
    """yolov4-decode-nms: three [S, S, 3, 5 + classes] heads; score = objectness * class prob, as-is."""
    import numpy as np

    heads = ctx.arrays(spec, "heads")
    anchors = np.asarray(spec.param("anchors"), dtype=np.float64).reshape(len(heads), -1, 2)
    strides = spec.param("strides")
    xyscale = spec.param("xyscale") or (1.0,) * len(heads)
    threshold = ctx.threshold(spec, 0.25)
    out = []
    for b in range(ctx.batch):
        pred = np.concatenate([_yolov4_head(h[b].astype(np.float64), anchors[i], strides[i], xyscale[i])
                               for i, h in enumerate(heads)])
        probs = pred[:, 5:]
        classes = probs.argmax(axis=1)
        scores = pred[:, 4] * probs[np.arange(len(pred)), classes]
        keep = scores > threshold
        out.append(_select(pred[keep, :4], scores[keep], classes[keep], spec, ctx, b, default_iou=0.213))
    return out


def _yolov4_head(p: np.ndarray, anchors: np.ndarray, stride: float, scale: float) -> np.ndarray:
    """[S, S, A, 5 + K] -> [S*S*A, 5 + K] with xyxy boxes in input pixels (zoo README decode)."""
    import numpy as np

    gy, gx = np.meshgrid(np.arange(p.shape[0]), np.arange(p.shape[1]), indexing="ij")
    grid = np.stack([gx, gy], axis=-1)[:, :, None, :]
    xy = (sigmoid(p[..., :2]) * scale - 0.5 * (scale - 1) + grid) * stride
    wh = np.exp(p[..., 2:4]) * anchors
    return np.concatenate([xy - wh / 2, xy + wh / 2, p[..., 4:]], axis=-1).reshape(-1, p.shape[-1])


def decode_retinanet(spec: PostprocessSpec, ctx: Context) -> list[list[Detection]]:
    """retinanet-anchor-decode-nms, after NVIDIA retinanet-examples generate_anchors/decode/nms."""
    import numpy as np

    cls_heads, box_heads = ctx.arrays(spec, "cls_heads"), ctx.arrays(spec, "box_heads")
    strides = spec.param("strides")
    anchors = [retinanet_anchors(s, spec.param("anchor_ratios"), spec.param("anchor_scales")) for s in strides]
    threshold, top_n = ctx.threshold(spec, 0.05), spec.param("top_n_per_level", 1000)
    out = []
    for b in range(ctx.batch):
        levels = [_retinanet_level(c[b], x[b], a, s, threshold, top_n)
                  for c, x, a, s in zip(cls_heads, box_heads, anchors, strides)]
        boxes, scores, classes = (np.concatenate([lv[i] for lv in levels]) for i in range(3))
        out.append(_select(boxes, scores, classes, spec, ctx, b, default_iou=0.5, offset=1.0,
                           limit=spec.param("max_detections", 100)))
    return out


def retinanet_anchors(stride: int, ratios: tuple[float, ...], scales: tuple[float, ...]) -> np.ndarray:
    """[len(scales) * len(ratios), 4] xyxy anchors of one cell; index = scale_i * len(ratios) + ratio_i."""
    import numpy as np

    s = np.repeat(np.asarray(scales, dtype=np.float64), len(ratios))
    r = np.tile(np.asarray(ratios, dtype=np.float64), len(scales))
    ws = np.sqrt(stride * stride / r)
    half = 0.5 * np.stack([ws, ws * r], axis=1) * s[:, None]
    return np.concatenate([stride / 2 - half, stride / 2 + half], axis=1)


def _retinanet_level(cls: np.ndarray, box: np.ndarray, anchors: np.ndarray, stride: int, threshold: float,
                     top_n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One pyramid level: cls [A*K, H, W] (already sigmoid), box [A*4, H, W] -> boxes, scores, classes."""
    import numpy as np

    n_anchors = anchors.shape[0]
    n_classes, (height, width) = cls.shape[0] // n_anchors, cls.shape[1:]
    flat = cls.reshape(-1)  # index = ((anchor * K + class) * H + y) * W + x
    keep = np.flatnonzero(flat >= threshold)
    idx = keep[np.argsort(-flat[keep], kind="stable")[:top_n]]
    x, y = idx % width, (idx // width) % height
    k, a = (idx // (width * height)) % n_classes, idx // (n_classes * height * width)
    deltas = box.reshape(n_anchors, 4, height, width)[a, :, y, x].astype(np.float64)
    grid = np.stack([x, y, x, y], axis=1) * stride + anchors[a]
    return _delta2box(deltas, grid, (width, height), stride), flat[idx].astype(np.float64), k


def _delta2box(deltas: np.ndarray, anchors: np.ndarray, size: tuple[int, int], stride: int) -> np.ndarray:
    """retinanet-examples delta2box: +1 width convention, clamped to the input."""
    import numpy as np

    wh = anchors[:, 2:] - anchors[:, :2] + 1
    ctr = anchors[:, :2] + 0.5 * wh
    pred_ctr = deltas[:, :2] * wh + ctr
    pred_wh = np.exp(deltas[:, 2:]) * wh
    top = np.asarray(size, dtype=np.float64) * stride - 1
    return np.concatenate([(pred_ctr - 0.5 * pred_wh).clip(0, top), (pred_ctr + 0.5 * pred_wh - 1).clip(0, top)],
                          axis=1)
