"""Preprocessing: run a declarative ImageRecipe on an image -> input tensors.

A recipe is executed by a few registered steps (resize, colour, normalise,
layout, extra inputs). Named recipes (`imagenet`, `caffe-bgr`, `inception`)
are ready for local models; users add their own with `register()`.
Every step also records the Geometry needed to map boxes back to the
original image.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from zoo.errors import ZooError
from zoo.index.manifest import ImageRecipe, ResizeSpec

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image


@dataclass(frozen=True, slots=True)
class Geometry:
    """Where the original image went inside the input tensor.

    A point (x, y) of the tensor maps back to the original image at
    ((x + shift_x) / scale_x, (y + shift_y) / scale_y). `content` is the
    (width, height) of the resized image area that normalized model boxes refer to.
    """

    original: tuple[int, int]
    content: tuple[int, int]
    scale: tuple[float, float] = (1.0, 1.0)
    shift: tuple[float, float] = (0.0, 0.0)

    def to_original(self, boxes: np.ndarray, *, normalized: bool = False) -> np.ndarray:
        """Boxes [N, 4] as x1, y1, x2, y2 in tensor pixels (or 0..1) -> original pixels, clipped."""
        import numpy as np

        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
        if normalized:
            b[:, [0, 2]] *= self.content[0]
            b[:, [1, 3]] *= self.content[1]
        b[:, [0, 2]] = (b[:, [0, 2]] + self.shift[0]) / self.scale[0]
        b[:, [1, 3]] = (b[:, [1, 3]] + self.shift[1]) / self.scale[1]
        b[:, [0, 2]] = b[:, [0, 2]].clip(0, self.original[0])
        b[:, [1, 3]] = b[:, [1, 3]].clip(0, self.original[1])
        return b


@dataclass(frozen=True, slots=True)
class Prepared:
    """One image made ready: feeds without batch stacking, and what postprocessing needs."""

    tensor: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    geometry: Geometry | None = None
    chroma: Image.Image | None = None  # CbCr planes kept for super-resolution


# -- resize -----------------------------------------------------------------------------


def _filter(name: str) -> int:
    from PIL import Image

    return {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
            "bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}[name]


def resize(img: Image.Image, spec: ResizeSpec, interpolation: str) -> tuple[Image.Image, Geometry]:
    """Apply a ResizeSpec; returns the new image and its Geometry."""
    from PIL import Image

    w, h = img.size
    f = _filter(interpolation)
    method = spec.method
    if method == "stretch" or method == "face_align":
        # face_align without landmarks falls back to a plain resize of the given crop.
        th, tw = spec.size
        return img.resize((tw, th), f), Geometry((w, h), (tw, th), (tw / w, th / h))
    if method in ("shorter_side_center_crop", "shorter_side", "cover_center_crop"):
        if method == "cover_center_crop":
            th, tw = spec.size
            s = max(tw / w, th / h)
        else:
            s = spec.shorter_side / min(w, h)
            if spec.max_longer_side and max(w, h) * s > spec.max_longer_side:
                s = spec.max_longer_side / max(w, h)
        # The shorter side gets exactly the target; the longer one is truncated, as
        # torchvision's Resize and the zoo READMEs' int(ratio * size) do.
        rw, rh = max(1, int(w * s)), max(1, int(h * s))
        if method == "cover_center_crop":
            rw, rh = max(tw, round(w * s)), max(th, round(h * s))
        elif not spec.max_longer_side:
            rw, rh = (spec.shorter_side, rh) if w <= h else (rw, spec.shorter_side)
        resized = img.resize((rw, rh), f)
        if method == "shorter_side":
            return resized, Geometry((w, h), (rw, rh), (rw / w, rh / h))
        ch, cw = spec.crop if method == "shorter_side_center_crop" else spec.size
        left, top = (rw - cw) // 2, (rh - ch) // 2
        out = resized.crop((left, top, left + cw, top + ch))
        return out, Geometry((w, h), (cw, ch), (rw / w, rh / h), (left, top))
    if method == "letterbox":
        th, tw = spec.size
        s = min(tw / w, th / h)
        rw, rh = max(1, int(w * s)), max(1, int(h * s))
        fill = tuple(int(v) for v in spec.pad_value) if spec.pad_value else (128, 128, 128)
        canvas = Image.new(img.mode, (tw, th), fill if img.mode == "RGB" else fill[0])
        left, top = (tw - rw) // 2, (th - rh) // 2
        canvas.paste(img.resize((rw, rh), f), (left, top))
        return canvas, Geometry((w, h), (tw, th), (rw / w, rh / h), (-left, -top))
    if method == "pad_to_size":
        # Crop here; run_recipe pads the normalized tensor (exact pad values, not rounded pixels).
        th, tw = spec.size
        cw, ch = min(w, tw), min(h, th)
        return img.crop((0, 0, cw, ch)), Geometry((w, h), (cw, ch))
    return img, Geometry((w, h), (w, h))


# -- colour, normalisation, layout --------------------------------------------------------


def to_channels(img: Image.Image, order: str) -> tuple[np.ndarray, Image.Image | None]:
    """HWC float32 0..255 in the recipe's channel order (and chroma planes for Y)."""
    import numpy as np

    if order == "GRAY":
        return np.asarray(img.convert("L"), dtype=np.float32)[:, :, None], None
    if order == "Y":
        ycbcr = img.convert("YCbCr")
        return np.asarray(ycbcr, dtype=np.float32)[:, :, :1], ycbcr
    rgb = np.asarray(img.convert("RGB"), dtype=np.float32)
    return (rgb[:, :, ::-1] if order == "BGR" else rgb), None


def normalize(hwc: np.ndarray, recipe: ImageRecipe) -> np.ndarray:
    """(pixel * scale - mean) / std, per channel, in float32."""
    import numpy as np

    x = hwc * np.float32(recipe.scale) if recipe.scale != 1.0 else hwc
    if recipe.mean is not None:
        x = x - np.asarray(recipe.mean, dtype=np.float32)
    if recipe.std is not None:
        x = x / np.asarray(recipe.std, dtype=np.float32)
    return x


def pad_bottom_right(hwc: np.ndarray, height: int, width: int, value: np.ndarray | float = 0.0) -> np.ndarray:
    """Pad H and W at the bottom/right up to (height, width) with a per-channel value."""
    import numpy as np

    h, w, c = hwc.shape
    if h >= height and w >= width:
        return hwc
    out = np.empty((max(h, height), max(w, width), c), dtype=hwc.dtype)
    out[...] = value
    out[:h, :w] = hwc
    return out


def _pad_value(recipe: ImageRecipe, channels: int) -> np.ndarray | float:
    """The recipe's pad value as it reads after normalisation (DUC pads with the mean: 0)."""
    import numpy as np

    if recipe.resize.pad_value is None:
        return 0.0
    raw = np.asarray(recipe.resize.pad_value[:channels], dtype=np.float32)
    return normalize(raw, recipe) if recipe.dtype == "float32" else raw


def to_layout(hwc: np.ndarray, layout: str, dtype: str) -> np.ndarray:
    """HWC -> the recipe's layout (without the batch axis) and dtype."""
    import numpy as np

    x = hwc.transpose(2, 0, 1) if layout in ("NCHW", "CHW") else hwc
    if dtype == "uint8":
        return np.ascontiguousarray(np.clip(np.rint(x), 0, 255).astype(np.uint8))
    return np.ascontiguousarray(x, dtype=np.float32)


def run_recipe(img: Image.Image, recipe: ImageRecipe) -> Prepared:
    """Execute a declarative recipe on a decoded image."""
    import numpy as np

    resized, geometry = resize(img, recipe.resize, recipe.interpolation)
    hwc, chroma = to_channels(resized, recipe.channel_order)
    if recipe.dtype == "float32":
        hwc = normalize(hwc, recipe)
    spec = recipe.resize
    if spec.method == "pad_to_size":
        hwc = pad_bottom_right(hwc, spec.size[0], spec.size[1], _pad_value(recipe, hwc.shape[2]))
    elif spec.pad_to_multiple:
        m = spec.pad_to_multiple
        h, w = hwc.shape[:2]
        hwc = pad_bottom_right(hwc, h + -h % m, w + -w % m, _pad_value(recipe, hwc.shape[2]))
    tensor = to_layout(hwc, recipe.layout, recipe.dtype)
    extra = {}
    for item in recipe.extra_inputs:
        w, h = geometry.original
        extra[item.name] = np.asarray([h, w], dtype=item.dtype)
    return Prepared(tensor, extra, geometry, chroma)


# -- the registry -------------------------------------------------------------------------

Step = Callable[["Image.Image"], Prepared]

_TORCH = ImageRecipe(
    kind="image", input=None, interpolation="bilinear", scale=1 / 255, channel_order="RGB", layout="NCHW",
    dtype="float32", resize=ResizeSpec("shorter_side_center_crop", shorter_side=256, crop=(224, 224)),
    mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
)
_RECIPES: dict[str, ImageRecipe | Step] = {
    "imagenet": _TORCH,
    "caffe-bgr": replace(_TORCH, scale=1.0, channel_order="BGR", std=None, mean=(103.939, 116.779, 123.68),
                         resize=ResizeSpec("stretch", size=(224, 224))),
    "inception": replace(_TORCH, mean=(127.5, 127.5, 127.5), std=(127.5, 127.5, 127.5), scale=1.0,
                         resize=ResizeSpec("shorter_side_center_crop", shorter_side=342, crop=(299, 299))),
}


def register(name: str, recipe: ImageRecipe | Step, *, replace_existing: bool = False) -> None:
    """Make a recipe available by name: an ImageRecipe, or fn(image) -> Prepared."""
    if name in _RECIPES and not replace_existing:
        raise ZooError(f"a recipe named {name!r} is already registered", hint="pass replace_existing=True")
    _RECIPES[name] = recipe


def get(name: str) -> ImageRecipe | Step:
    """A registered recipe by name."""
    try:
        return _RECIPES[name]
    except KeyError:
        raise ZooError(f"unknown recipe {name!r}", hint=f"use one of {', '.join(sorted(_RECIPES))} "
                       "or register your own with zoo.preprocessing.register()") from None


def names() -> list[str]:
    return sorted(_RECIPES)


def prepare(img: Image.Image, recipe: ImageRecipe | Step | str) -> Prepared:
    """Turn one decoded image into tensors by a recipe object, callable or registered name."""
    if isinstance(recipe, str):
        recipe = get(recipe)
    if isinstance(recipe, ImageRecipe):
        return run_recipe(img, recipe)
    out = recipe(img)
    if not isinstance(out, Prepared):
        raise ZooError(f"recipe {recipe!r} returned {type(out).__name__}, not zoo.pipeline.preprocess.Prepared")
    return out


def with_input(recipe: ImageRecipe, size: tuple[int, int] | None) -> ImageRecipe:
    """Adapt a named recipe to a model whose input is fixed at `size` (height, width)."""
    if size is None or recipe.output_size == size:
        return recipe
    if recipe.resize.method == "shorter_side_center_crop":
        ratio = recipe.resize.shorter_side / recipe.resize.crop[0]
        return replace(recipe, resize=replace(recipe.resize, crop=size, shorter_side=round(min(size) * ratio)))
    return replace(recipe, resize=ResizeSpec("stretch", size=size))

