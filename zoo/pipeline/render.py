"""Human renderings of answers: text tables, notebook HTML, and annotated images for --save.

Every function dispatches on the answer's type (zoo.pipeline.answers), never on dictionary keys.
"""

from __future__ import annotations

import html as html_lib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from zoo.pipeline.answers import (
    Answer,
    Classes,
    Detections,
    Embedding,
    ImageResult,
    Plain,
    RawOutputs,
    Rows,
    Segmentation,
)
from zoo.printable import shown

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image


@dataclass(frozen=True, slots=True)
class Header:
    """What a rendering says about where an answer came from."""

    input: str
    model: str
    provider: str

    def __str__(self) -> str:
        # Names come from outside (file systems, manifests): never print their control characters raw.
        return f"{shown(self.input)}  ({shown(self.model)} on {self.provider})"


def text(head: Header, answer: Answer) -> str:
    """A readable block for one answer: the header line, then one line per class/object/row."""
    return "\n".join([str(head), *_lines(answer)])


def _lines(answer: Answer) -> list[str]:
    if isinstance(answer, Detections):
        rows = [f"  {d.label or d.index:<20} {d.score:.3f}  [{', '.join(f'{v:.0f}' for v in d.box)}]"
                for d in answer]
        return [f"  {len(answer)} detection(s)" if answer else "  nothing found", *rows]
    if isinstance(answer, Classes):
        return [f"  {i + 1}. {c.label if c.label is not None else c.index:<28} {c.score:.4f}  (class {c.index})"
                for i, c in enumerate(answer)]
    if isinstance(answer, Rows):
        out = []
        for row in answer:
            if row.label is None and row.value is not None:  # a regressor
                values = row.value if isinstance(row.value, tuple) else (row.value,)
                out.append("  value " + ", ".join(f"{v:.6g}" for v in values))
                continue
            probs = ", ".join(f"{k}: {v:.3f}" for k, v in row.probabilities)
            out.append(f"  label {_plain(row.label)}" + (f"  ({probs})" if probs else ""))
        return out
    if isinstance(answer, Segmentation):
        return [f"  {label or index:<20} {100 * share:5.1f}%" for index, label, share in answer.shares[:10]]
    if isinstance(answer, ImageResult):
        return [f"  output image {answer.image.size[0]}x{answer.image.size[1]} {answer.image.mode}"
                " (save it with --save OUT.png)"]
    if isinstance(answer, Embedding):
        return [f"  embedding, {answer.vector.size} values (L2-normalised)"]
    if isinstance(answer, RawOutputs):
        return [f"  {name}: {list(a.shape)} {a.dtype}" for name, a in answer.arrays.items()]
    if isinstance(answer, Plain):
        return [f"  {answer.data}"]
    raise TypeError(f"no text rendering for {type(answer).__name__}")


def _plain(value: object) -> object:
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def has_picture(answer: Answer) -> bool:
    """Whether annotated() can draw something for this answer."""
    return isinstance(answer, Detections | Segmentation | ImageResult)


def annotated(answer: Answer, original: Image.Image) -> Image.Image:
    """The image to save: the output image, a segmentation overlay, or boxes drawn on the original."""
    from PIL import Image, ImageDraw

    if isinstance(answer, ImageResult):
        return answer.image
    if isinstance(answer, Segmentation):
        return _overlay(original, answer.class_map)
    canvas = original.convert("RGB").copy()
    if not isinstance(answer, Detections):
        return canvas
    draw = ImageDraw.Draw(canvas)
    width = max(2, round(min(canvas.size) / 250))
    for det in answer:
        colour = _colour(det.index)
        draw.rectangle(det.box, outline=colour, width=width)
        caption = f"{det.label or det.index} {det.score:.2f}"
        left, top = det.box[0], max(0, det.box[1] - 12)
        draw.rectangle(draw.textbbox((left, top), caption), fill=colour)
        draw.text((left, top), caption, fill=(0, 0, 0))
    return canvas if canvas.mode == "RGB" else Image.new("RGB", canvas.size)


def html(head: Header, answer: Answer, picture: Image.Image | None = None, *, max_side: int = 512) -> str:
    """Notebook HTML: the header, the text lines as a table, and the picture inline (PNG, data URI)."""
    rows = "".join(f"<tr><td style='text-align:left;font-family:monospace'>{html_lib.escape(line.strip())}</td></tr>"
                   for line in _lines(answer))
    img = ""
    if picture is not None:
        import base64
        import io

        thumb = picture.copy()
        thumb.thumbnail((max_side, max_side))
        buf = io.BytesIO()
        thumb.save(buf, format="PNG")
        img = f"<img src='data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}' alt='annotated'/>"
    return (f"<div class='zoo-prediction'><b>{html_lib.escape(str(head))}</b>"
            f"<table>{rows}</table>{img}</div>")


def _colour(index: int) -> tuple[int, int, int]:
    # A fixed, well spread palette: the golden-ratio hue walk.
    import colorsys

    r, g, b = colorsys.hsv_to_rgb((index * 0.618033988749895) % 1.0, 0.75, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def _overlay(original: Image.Image, class_map: np.ndarray) -> Image.Image:
    import numpy as np
    from PIL import Image

    palette = np.array([_colour(i) for i in range(max(int(class_map.max()), 0) + 1)], dtype=np.uint8)
    colours = palette[class_map.clip(0)]
    colours[class_map <= 0] = 0  # background (and pixels the model never saw) stay uncoloured
    mask = Image.fromarray(colours, "RGB").resize(original.size, Image.Resampling.NEAREST)
    return Image.blend(original.convert("RGB"), mask, 0.5)
