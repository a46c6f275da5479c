"""Human renderings of predictions: text tables and annotated images for --save."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

    from zoo.api import Prediction


def text(pred: Prediction) -> str:
    """A readable block for one prediction."""
    head = f"{pred.input}  ({pred.model} on {pred.provider})"
    d = pred.to_dict()["predictions"]
    if isinstance(d, list) and d and "box" in d[0]:
        rows = [f"  {p['label'] or p['index']:<20} {p['score']:.3f}  [{', '.join(f'{v:.0f}' for v in p['box'])}]"
                for p in d]
        return "\n".join([head, f"  {len(d)} detection(s)", *rows])
    if isinstance(d, list) and d and "score" in d[0]:
        rows = [f"  {i + 1}. {p['label'] if p['label'] is not None else p['index']:<28} {p['score']:.4f}"
                f"  (class {p['index']})" for i, p in enumerate(d)]
        return "\n".join([head, *rows])
    if isinstance(d, list) and d and "probabilities" in d[0]:
        p = d[0]
        probs = ", ".join(f"{k}: {v:.3f}" for k, v in p["probabilities"].items())
        return f"{head}\n  label {p['label']}" + (f"  ({probs})" if probs else "")
    if isinstance(d, dict) and "shares" in d:
        rows = [f"  {s['label'] or s['index']:<20} {100 * s['share']:5.1f}%" for s in d["shares"][:10]]
        return "\n".join([head, *rows])
    if isinstance(d, list) and not d:
        return f"{head}\n  nothing found"
    return f"{head}\n  {d}"


def annotated(pred: Prediction, original: Image.Image) -> Image.Image:
    """The image to save: output image, segmentation overlay, or boxes drawn on the original."""
    from PIL import Image, ImageDraw

    result = pred.predictions
    if hasattr(result, "image"):
        return result.image
    if hasattr(result, "class_map"):
        return _overlay(original, result.class_map)
    canvas = original.convert("RGB").copy()
    draw = ImageDraw.Draw(canvas)
    width = max(2, round(min(canvas.size) / 250))
    for det in result if isinstance(result, list) else []:
        box = getattr(det, "box", None)
        if box is None:
            continue
        colour = _colour(det.index)
        draw.rectangle(box, outline=colour, width=width)
        caption = f"{det.label or det.index} {det.score:.2f}"
        left, top = box[0], max(0, box[1] - 12)
        draw.rectangle(draw.textbbox((left, top), caption), fill=colour)
        draw.text((left, top), caption, fill=(0, 0, 0))
    return canvas if canvas.mode == "RGB" else Image.new("RGB", canvas.size)


def _colour(index: int) -> tuple[int, int, int]:
    # A fixed, well spread palette: the golden-ratio hue walk.
    import colorsys

    r, g, b = colorsys.hsv_to_rgb((index * 0.618033988749895) % 1.0, 0.75, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def _overlay(original: Image.Image, class_map: Any) -> Image.Image:
    import numpy as np
    from PIL import Image

    palette = np.array([_colour(i) for i in range(int(class_map.max()) + 1)], dtype=np.uint8)
    colours = palette[class_map]
    colours[class_map == 0] = 0  # background stays uncoloured
    mask = Image.fromarray(colours, "RGB").resize(original.size, Image.Resampling.NEAREST)
    return Image.blend(original.convert("RGB"), mask, 0.5)


def save_path(out: Path, pred: Prediction, *, many: bool) -> Path:
    """OUT itself for one input; OUT/<stem>.<model>.png for several."""
    if not many:
        return out
    out.mkdir(parents=True, exist_ok=True)
    return out / f"{Path(pred.input).stem}.{pred.model}.png"
