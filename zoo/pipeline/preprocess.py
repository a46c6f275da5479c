"""Preprocessing: run a declarative ImageRecipe on an image -> input tensors.

A recipe is executed by a few registered steps (resize, colour, normalise,
layout, extra inputs). Named recipes (`imagenet`, `caffe-bgr`, `inception`)
are ready for local models; users add their own with `register()`.
Every step also records the Geometry needed to map boxes back to the
original image.

What a recipe may allocate is bounded before any pixel is resized: a 475-byte
1x100000 PNG would otherwise make a shorter-side resize ask for 256 x 25.6M
pixels (~7 GB). Such an image is an ImageError naming the file and the limit.
A tiled recipe (`tiles`) cuts the whole image into overlapping tiles of the
model's fixed input instead of resizing it; postprocessing stitches them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, TypeVar

from zoo.errors import ImageError, ZooError
from zoo.index.manifest import ImageRecipe, ResizeSpec
from zoo.index.manifest_reader import MAX_TENSOR_PIXELS
from zoo.pipeline.images import name_of

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

# Longer side : shorter side, for the resizes that scale the longer side along with the shorter
# (shorter_side*, cover_center_crop). Panoramas and long screenshots stay far below it.
MAX_ASPECT_RATIO = 100
# Tiles of one image run as one batch; super-resolution-10 needs ~30 MB of activations a tile,
# so 48 tiles (an image of about 1680x1264 with 224-pixel tiles) keep a run under 1.5 GB.
MAX_TILES = 48
_SCALES_LONGER_SIDE = ("shorter_side_center_crop", "shorter_side", "cover_center_crop")


_T = TypeVar("_T")


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

        b: np.ndarray = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
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
    tiles: TileGrid | None = None  # set when `tensor` is a batch of tiles of one image


@dataclass(frozen=True, slots=True)
class TileGrid:
    """Where each tile of a tiled image sits: tile i covers (xs[i % len(xs)], ys[i // len(xs)]) onwards."""

    image: tuple[int, int]  # (width, height) of the whole image
    tile: tuple[int, int]  # (width, height) of one tile
    xs: tuple[int, ...]  # left edges of the tile columns
    ys: tuple[int, ...]  # top edges of the tile rows

    @property
    def count(self) -> int:
        return len(self.xs) * len(self.ys)

    def origins(self) -> list[tuple[int, int]]:
        """(x, y) of each tile, in tensor order (row by row)."""
        return [(x, y) for y in self.ys for x in self.xs]


# -- allocation bounds ----------------------------------------------------------------------


def _refuse(img: Image.Image, what: str) -> ImageError:
    return ImageError(name_of(img), f"{what}; resize or crop the image first")


def _guard(img: Image.Image, method: str, *sizes: tuple[int, int]) -> None:
    """Refuse before allocating: an extreme aspect ratio, or a planned (width, height) over the pixel limit.

    Planned sizes up to the image's own pixel count are always allowed: the decoder (bounded by
    images.MAX_PIXELS) has already allocated that much, so only growth is refused.
    """
    w, h = img.size
    if method in _SCALES_LONGER_SIDE and max(w, h) > MAX_ASPECT_RATIO * min(w, h):
        raise _refuse(img, f"aspect ratio {max(w, h) / min(w, h):.0f}:1 of {w}x{h} exceeds the {MAX_ASPECT_RATIO}:1 "
                           f"limit of the {method} resize")
    for pw, ph in sizes:
        if pw * ph > max(MAX_TENSOR_PIXELS, w * h):
            raise _refuse(img, f"the {method} recipe would make {w}x{h} into {pw}x{ph} pixels, over the "
                               f"{MAX_TENSOR_PIXELS} pixel limit")


# -- resize -----------------------------------------------------------------------------


def _filter(name: str) -> int:
    from PIL import Image

    return {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
            "bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}[name]


def resize(img: Image.Image, spec: ResizeSpec, interpolation: str) -> tuple[Image.Image, Geometry]:
    """Apply a ResizeSpec; returns the new image and its Geometry."""
    from PIL import Image

    w, h = img.size
    if w == 0 or h == 0:
        raise _refuse(img, f"the image has no pixels ({w}x{h})")
    f = _filter(interpolation)
    method = spec.method
    if method == "stretch" or method == "face_align":
        # face_align without landmarks falls back to a plain resize of the given crop.
        th, tw = _needs(spec.size, "size", spec)
        _guard(img, method, (tw, th))
        return img.resize((tw, th), f), Geometry((w, h), (tw, th), (tw / w, th / h))
    if method in _SCALES_LONGER_SIDE:
        return _resize_shorter(img, spec, f)
    if method == "letterbox":
        th, tw = _needs(spec.size, "size", spec)
        _guard(img, method, (tw, th))
        s = min(tw / w, th / h)
        rw, rh = max(1, int(w * s)), max(1, int(h * s))
        fill = tuple(int(v) for v in spec.pad_value) if spec.pad_value else (128, 128, 128)
        canvas = Image.new(img.mode, (tw, th), fill if img.mode == "RGB" else fill[0])
        left, top = (tw - rw) // 2, (th - rh) // 2
        canvas.paste(img.resize((rw, rh), f), (left, top))
        return canvas, Geometry((w, h), (tw, th), (rw / w, rh / h), (-left, -top))
    if method == "pad_to_size":
        # Crop here; run_recipe pads the normalized tensor (exact pad values, not rounded pixels).
        th, tw = _needs(spec.size, "size", spec)
        _guard(img, method, (tw, th))
        cw, ch = min(w, tw), min(h, th)
        return img.crop((0, 0, cw, ch)), Geometry((w, h), (cw, ch))
    return img, Geometry((w, h), (w, h))


def _needs(value: _T | None, field: str, spec: ResizeSpec) -> _T:
    """A field the resize method requires (the manifest reader checks them; a hand-made spec may not)."""
    if value is None:
        raise ZooError(f"resize method {spec.method!r} needs {field}",
                       hint="set it in preprocess.resize (schema: manifests/README.md)")
    return value


def _resize_shorter(img: Image.Image, spec: ResizeSpec, f: int) -> tuple[Image.Image, Geometry]:
    """shorter_side_center_crop, shorter_side and cover_center_crop: scale, then maybe centre crop."""
    w, h = img.size
    method = spec.method
    if method == "cover_center_crop":
        th, tw = _needs(spec.size, "size", spec)
        s = max(tw / w, th / h)
    else:
        s = _needs(spec.shorter_side, "shorter_side", spec) / min(w, h)
        if spec.max_longer_side and max(w, h) * s > spec.max_longer_side:
            s = spec.max_longer_side / max(w, h)
    # The shorter side gets exactly the target; the longer one is truncated, as
    # torchvision's Resize and the zoo READMEs' int(ratio * size) do.
    rw, rh = max(1, int(w * s)), max(1, int(h * s))
    if method == "cover_center_crop":
        rw, rh = max(tw, round(w * s)), max(th, round(h * s))
    elif not spec.max_longer_side:
        side = _needs(spec.shorter_side, "shorter_side", spec)
        rw, rh = (side, rh) if w <= h else (rw, side)
    _guard(img, method, (rw, rh))
    resized = img.resize((rw, rh), f)
    if method == "shorter_side":
        return resized, Geometry((w, h), (rw, rh), (rw / w, rh / h))
    ch, cw = _needs(spec.crop if method == "shorter_side_center_crop" else spec.size, "crop or size", spec)
    left, top = (rw - cw) // 2, (rh - ch) // 2
    out = resized.crop((left, top, left + cw, top + ch))
    return out, Geometry((w, h), (cw, ch), (rw / w, rh / h), (left, top))


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

    if recipe.tiles is not None:
        return run_tiled(img, recipe)
    resized, geometry = resize(img, recipe.resize, recipe.interpolation)
    spec = recipe.resize
    if spec.pad_to_multiple and spec.method != "pad_to_size":
        m = spec.pad_to_multiple
        rh, rw = resized.height, resized.width
        _guard(img, f"pad to a multiple of {m}", (rw + -rw % m, rh + -rh % m))
    hwc, chroma = to_channels(resized, recipe.channel_order)
    if recipe.dtype == "float32":
        hwc = normalize(hwc, recipe)
    if spec.method == "pad_to_size":
        th, tw = _needs(spec.size, "size", spec)
        hwc = pad_bottom_right(hwc, th, tw, _pad_value(recipe, hwc.shape[2]))
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


# -- tiles ---------------------------------------------------------------------------------


def tile_starts(length: int, tile: int, overlap: int) -> tuple[int, ...]:
    """Edges of tiles covering 0..length: a stride of tile - overlap, the last tile flush with the end."""
    if length <= tile:
        return (0,)
    starts = list(range(0, length - tile, tile - overlap))
    return (*starts, length - tile)


def plan_tiles(img: Image.Image, recipe: ImageRecipe) -> TileGrid:
    """The tile grid of a tiled recipe for this image, or ImageError when it needs over MAX_TILES."""
    if recipe.tiles is None or recipe.output_size is None:
        raise ZooError("a tiled recipe needs `tiles` and a fixed resize.size", hint="fix the recipe")
    w, h = img.size
    if w == 0 or h == 0:
        raise _refuse(img, f"the image has no pixels ({w}x{h})")
    grid = _grid((w, h), recipe.output_size, recipe.tiles.overlap)
    if grid.count > MAX_TILES:
        fits = (w, h)
        while _grid(fits, recipe.output_size, recipe.tiles.overlap).count > MAX_TILES:
            fits = (max(1, int(fits[0] * 0.95)), max(1, int(fits[1] * 0.95)))
        raise _refuse(img, f"{w}x{h} needs {len(grid.xs)}x{len(grid.ys)} = {grid.count} tiles of "
                           f"{grid.tile[0]}x{grid.tile[1]}, over the limit of {MAX_TILES} tiles run at once "
                           f"(about {fits[0]}x{fits[1]} fits)")
    return grid


def _grid(size: tuple[int, int], tile_hw: tuple[int, int], overlap: int) -> TileGrid:
    (w, h), (th, tw) = size, tile_hw
    return TileGrid((w, h), (tw, th), tile_starts(w, tw, overlap), tile_starts(h, th, overlap))


def run_tiled(img: Image.Image, recipe: ImageRecipe) -> Prepared:
    """The whole image as a batch of overlapping tiles [T, C, H, W] (or [T, H, W, C])."""
    import numpy as np

    grid = plan_tiles(img, recipe)
    (w, h), (tw, th) = grid.image, grid.tile
    hwc, chroma = to_channels(img, recipe.channel_order)
    if recipe.dtype == "float32":
        hwc = normalize(hwc, recipe)
    if w < tw or h < th:  # smaller than one tile: repeat the edge pixels; their output is cut off again
        hwc = np.pad(hwc, ((0, max(0, th - h)), (0, max(0, tw - w)), (0, 0)), mode="edge")
    tiles = [to_layout(hwc[y:y + th, x:x + tw], recipe.layout, recipe.dtype) for x, y in grid.origins()]
    return Prepared(np.stack(tiles), {}, Geometry((w, h), (w, h)), chroma, grid)


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
        ratio = (_needs(recipe.resize.shorter_side, "shorter_side", recipe.resize)
                 / _needs(recipe.resize.crop, "crop", recipe.resize)[0])
        return replace(recipe, resize=replace(recipe.resize, crop=size, shorter_side=round(min(size) * ratio)))
    return replace(recipe, resize=ResizeSpec("stretch", size=size))

