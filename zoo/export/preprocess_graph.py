"""An ImageRecipe -> an ONNX graph that does zoo's preprocessing (zoo.pipeline.preprocess) in-graph.

Input `image`: uint8 [H, W, 3] RGB, or [H, W] for GRAY recipes, any H and W. The graph
follows run_recipe() step for step, in the same order: resize (Pillow's reducing filters:
Resize with antialias, exclude_outside and cubic a=-0.5, run as two separable passes
rounded to 8 bits in between, horizontal first, as Pillow does; Lanczos, which ONNX lacks,
as explicit Pillow weight matrices and MatMul), crop or letterbox, channel order (YCbCr's Y
with Pillow's own integer tables), (x * scale - mean) / std in float32, padding with the
normalised pad value, layout and dtype. Sizes are computed in float64 as Python computes
them, so the output shape equals zoo's for every image size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from zoo.errors import ZooError
from zoo.export.graph import Builder
from zoo.index.manifest import ImageRecipe
from zoo.pipeline.preprocess import normalize

IMAGE = "image"
GEOMETRY = "zoo_geometry"  # (orig_w, orig_h, content_w, content_h, scale_x, scale_y, shift_x, shift_y)
SUPPORTED = ("stretch", "face_align", "shorter_side_center_crop", "shorter_side", "cover_center_crop",
              "letterbox", "pad_to_size", "none")


@dataclass(frozen=True, slots=True)
class Sizes:
    """1-element int64 tensors (names) for a resize target, and the float64 scale it implies."""

    w: str
    h: str


def channels(recipe: ImageRecipe) -> int:
    """Channels of the image as it is resized (before the channel step)."""
    return 1 if recipe.channel_order == "GRAY" else 3


def batched(recipe: ImageRecipe) -> bool:
    """Whether the tensor has a batch axis (of 1): NCHW and NHWC layouts."""
    return recipe.layout in ("NCHW", "NHWC")


def tensor_channels(recipe: ImageRecipe) -> int:
    """Channels of the model tensor (after the channel step)."""
    return 1 if recipe.channel_order in ("GRAY", "Y") else 3


def build(recipe: ImageRecipe, output: str, *, extra_ranks: dict[str, int] | None = None,
          geometry: bool = False) -> onnx.ModelProto:
    """The preprocessing graph alone: `image` -> `output` (+ extra inputs, + zoo_geometry on request)."""
    if getattr(recipe, "tiles", None) is not None:
        raise ZooError("a tiled recipe (the whole image cut into overlapping tiles, outputs stitched) has no "
                       "ONNX export", hint="run this model through zoo.load(name).predict(image)")
    if recipe.resize.method not in SUPPORTED:
        raise ZooError(f"resize method {recipe.resize.method!r} has no ONNX export",
                       hint="run this model through zoo.load(name).predict(image)")
    b = Builder("pre")
    gray = recipe.channel_order == "GRAY"
    b.add_input(IMAGE, "uint8", ["height", "width"] if gray else ["height", "width", 3])
    shape = b.op("Shape", [IMAGE])
    h, w = b.op("Slice", [shape, b.i64(0), b.i64(1)]), b.op("Slice", [shape, b.i64(1), b.i64(2)])
    x = b.cast(IMAGE, "float32")
    x = b.op("Unsqueeze", [x, b.i64(0, 1)]) if gray else b.op("Unsqueeze", [b.op("Transpose", [x], perm=[2, 0, 1]),
                                                                            b.i64(0)])
    x, geo = _resize_step(b, x, recipe, h, w)
    x = _channel_step(b, x, recipe)
    if recipe.dtype == "float32":
        x = _normalize_step(b, x, recipe)
    x = _pad_step(b, x, recipe)
    x = _layout_step(b, x, recipe)
    b.add_output(x, output, recipe.dtype, [None] * (4 if batched(recipe) else 3))
    for item in recipe.extra_inputs:
        hw = b.cast(b.op("Concat", [h, w], axis=0), item.dtype)
        rank = (extra_ranks or {}).get(item.name, 1)
        hw = b.op("Reshape", [hw, b.i64(*([1] * (rank - 1)), 2)]) if rank > 1 else hw
        b.add_output(hw, item.name, item.dtype, [1] * (rank - 1) + [2])
    if geometry:
        b.add_output(b.cast(b.op("Concat", geo, axis=0), "float32"), GEOMETRY, "float32", [8])
    return b.model("zoo_preprocess")


# -- resize -------------------------------------------------------------------------------


def _resize_step(b: Builder, x: str, recipe: ImageRecipe, h: str, w: str) -> tuple[str, list[str]]:
    """Resize (+ crop / letterbox) as preprocess.resize(); returns x and the Geometry as double tensors."""
    spec, method = recipe.resize, recipe.resize.method
    wd, hd = b.cast(w, "float64"), b.cast(h, "float64")
    zero, one = b.const([0.0], "float64"), b.const([1.0], "float64")
    shift = [zero, zero]
    if method in ("none", "pad_to_size"):
        if method == "pad_to_size":  # crop to at most `size` here; the tensor is padded after normalising
            th, tw = spec.size or (0, 0)
            x = b.op("Slice", [x, b.i64(0, 0), b.i64(th, tw), b.i64(2, 3)])
            content = [b.op("Min", [wd, b.const([float(tw)], "float64")]),
                       b.op("Min", [hd, b.const([float(th)], "float64")])]
        else:
            content = [wd, hd]
        return x, [wd, hd, *content, one, one, *shift]
    rw, rh = _target(b, recipe, wd, hd)
    x = resample(b, x, recipe.interpolation, w, h, rw, rh)
    rwd, rhd = b.cast(rw, "float64"), b.cast(rh, "float64")
    scale = [b.op("Div", [rwd, wd]), b.op("Div", [rhd, hd])]
    content = [rwd, rhd]
    if method in ("shorter_side_center_crop", "cover_center_crop"):
        ch, cw = (spec.crop if method == "shorter_side_center_crop" else spec.size) or (0, 0)
        two = b.i64(2)
        left = b.op("Div", [b.op("Sub", [rw, b.i64(cw)]), two])
        top = b.op("Div", [b.op("Sub", [rh, b.i64(ch)]), two])
        starts = b.op("Concat", [top, left], axis=0)
        x = b.op("Slice", [x, starts, b.op("Add", [starts, b.i64(ch, cw)]), b.i64(2, 3)])
        content = [b.const([float(cw)], "float64"), b.const([float(ch)], "float64")]
        shift = [b.cast(left, "float64"), b.cast(top, "float64")]
    elif method == "letterbox":
        th, tw = spec.size or (0, 0)
        left = b.op("Div", [b.op("Sub", [b.i64(tw), rw]), b.i64(2)])
        top = b.op("Div", [b.op("Sub", [b.i64(th), rh]), b.i64(2)])
        right = b.op("Sub", [b.op("Sub", [b.i64(tw), rw]), left])
        bottom = b.op("Sub", [b.op("Sub", [b.i64(th), rh]), top])
        fill = [float(int(v)) for v in (spec.pad_value or (128.0, 128.0, 128.0))][: channels(recipe)]
        x = _pad_with(b, x, fill, [top, left], [bottom, right])
        content = [b.const([float(tw)], "float64"), b.const([float(th)], "float64")]
        shift = [b.op("Neg", [b.cast(left, "float64")]), b.op("Neg", [b.cast(top, "float64")])]
    return x, [wd, hd, *content, *scale, *shift]


def _target(b: Builder, recipe: ImageRecipe, wd: str, hd: str) -> tuple[str, str]:
    """The resized (width, height) as int64 [1] tensors, computed in float64 exactly as resize() does."""
    spec, method = recipe.resize, recipe.resize.method
    if method in ("stretch", "face_align"):
        th, tw = spec.size or (0, 0)
        return b.i64(tw), b.i64(th)
    one = b.const([1.0], "float64")

    def trunc(v: str) -> str:  # int() of a positive double, at least 1
        return b.cast(b.op("Max", [b.op("Floor", [v]), one]), "int64")

    if method == "cover_center_crop":
        th, tw = spec.size or (0, 0)
        tws, ths = b.const([float(tw)], "float64"), b.const([float(th)], "float64")
        s = b.op("Max", [b.op("Div", [tws, wd]), b.op("Div", [ths, hd])])
        # Python's round() is half-to-even, as ONNX Round.
        rw = b.op("Max", [tws, b.op("Round", [b.op("Mul", [wd, s])])])
        rh = b.op("Max", [ths, b.op("Round", [b.op("Mul", [hd, s])])])
        return b.cast(rw, "int64"), b.cast(rh, "int64")
    if method == "letterbox":
        th, tw = spec.size or (0, 0)
        s = b.op("Min", [b.op("Div", [b.const([float(tw)], "float64"), wd]),
                         b.op("Div", [b.const([float(th)], "float64"), hd])])
        return trunc(b.op("Mul", [wd, s])), trunc(b.op("Mul", [hd, s]))
    side = float(spec.shorter_side or 0)
    s = b.op("Div", [b.const([side], "float64"), b.op("Min", [wd, hd])])
    if spec.max_longer_side:
        longer, cap = b.op("Max", [wd, hd]), b.const([float(spec.max_longer_side)], "float64")
        s = b.op("Where", [b.op("Greater", [b.op("Mul", [longer, s]), cap]), b.op("Div", [cap, longer]), s])
        return trunc(b.op("Mul", [wd, s])), trunc(b.op("Mul", [hd, s]))
    rw, rh = trunc(b.op("Mul", [wd, s])), trunc(b.op("Mul", [hd, s]))
    portrait, exact = b.op("LessOrEqual", [wd, hd]), b.i64(int(side))
    return b.op("Where", [portrait, exact, rw]), b.op("Where", [portrait, rh, exact])


def resample(b: Builder, x: str, interpolation: str, w: str, h: str, rw: str, rh: str) -> str:
    """Pillow's Image.resize on [1, C, H, W] pixels: two 1-D passes rounded to 8 bits in between.

    Each pass is bit-equal to Pillow's, but Pillow 13 does not always run the horizontal pass
    first. Measured (docs/EXPORT.md): it runs the vertical one first when that pass has more filter
    taps, in about 92% of random size pairs; the If node makes that choice per image, and a wrong
    guess costs a few pixel levels on a small share of pixels.
    """
    if interpolation == "nearest":
        shape = b.op("Shape", [x])
        lead = b.op("Slice", [shape, b.i64(0), b.i64(2)])
        return _resize(b, x, interpolation, b.op("Concat", [lead, rh, rw], axis=0))

    def taps(size: str, out: str) -> str:
        ratio = b.op("Div", [b.cast(size, "float64"), b.cast(out, "float64")])
        support = {"bilinear": 1.0, "bicubic": 2.0, "lanczos": 3.0}[interpolation]
        return b.op("Ceil", [b.op("Mul", [b.op("Max", [ratio, b.f64(1.0)]), b.f64(support)])])

    across_first = b.op("Not", [b.op("Greater", [taps(h, rh), taps(w, rw)])])
    # Work on [H, W, C] float64, each pass gathering whole rows along axis 0 (contiguous copies).
    hwc = b.op("Transpose", [b.cast(b.op("Squeeze", [x, b.i64(0)]), "float64")], perm=[1, 2, 0])
    first, second = b.branch("horizontal_first"), b.branch("vertical_first")
    for part, order in ((first, ("w", "h")), (second, ("h", "w"))):
        y = hwc
        for axis in order:
            y = _pass(part, y, interpolation, (w, rw) if axis == "w" else (h, rh), across=axis == "w")
        part.add_output(y, part.name("out"), "float64", [None, None, None])
    out = b.if_else(across_first, first, second)
    return b.op("Unsqueeze", [b.cast(b.op("Transpose", [out], perm=[2, 0, 1]), "float32"), b.i64(0)])


def _pass(b: Builder, hwc: str, interpolation: str, sizes: tuple[str, str], *, across: bool) -> str:
    """One Pillow pass on [H, W, C] float64: across (W -> out) or down (H -> out), rounded to 8 bits."""
    size, out = sizes
    rows = b.op("Transpose", [hwc], perm=[1, 0, 2]) if across else hwc  # the resized axis first
    shape = b.op("Shape", [rows])
    flat = b.op("Reshape", [rows, b.op("Concat", [b.op("Slice", [shape, b.i64(0), b.i64(1)]), b.i64(-1)], axis=0)])
    index, weights = _pillow_taps(b, interpolation, size, out)
    taps = b.op("Gather", [flat, index], axis=0)  # [out, k, rest]
    total = b.op("ReduceSum", [b.op("Mul", [taps, b.op("Unsqueeze", [weights, b.i64(2)])]), b.i64(1)], keepdims=0)
    # Pillow's (sum + 2^21) >> 22, then clip8: exact here, as the float64 sum is.
    total = b.op("Clip", [b.op("Floor", [b.op("Add", [total, b.f64(0.5)])]), b.f64(0.0), b.f64(255.0)])
    result = b.op("Reshape", [total, b.op("Concat", [out, b.op("Slice", [shape, b.i64(1), b.i64(3)])], axis=0)])
    return b.op("Transpose", [result], perm=[1, 0, 2]) if across else result


def _pillow_taps(b: Builder, interpolation: str, size: str, out: str) -> tuple[str, str]:
    """Pillow's precompute_coeffs + normalize_coeffs_8bpc: per output pixel, k source indices and weights.

    The weights are Pillow's own fixed-point ones (round(w * 2**22) / 2**22) and the sums run in
    float64, where pixel * weight sums are exact: the rounded result is bit-equal to Pillow's.
    """
    support_base = {"bilinear": 1.0, "bicubic": 2.0, "lanczos": 3.0}[interpolation]
    n_in = b.cast(size, "float64")
    scale = b.op("Div", [n_in, b.cast(out, "float64")])
    fs = b.op("Max", [scale, b.f64(1.0)])
    support = b.op("Mul", [fs, b.f64(support_base)])
    ksize = b.op("Add", [b.op("Mul", [b.op("Ceil", [support]), b.f64(2.0)]), b.f64(1.0)])
    i = b.cast(b.op("Range", [b.const(0, "int64"), b.op("Squeeze", [out]), b.const(1, "int64")]), "float64")
    center = b.op("Unsqueeze", [b.op("Mul", [b.op("Add", [i, b.f64(0.5)]), scale]), b.i64(1)])  # [out, 1]
    lo = b.op("Max", [b.op("Floor", [b.op("Add", [b.op("Sub", [center, support]), b.f64(0.5)])]), b.f64(0.0)])
    hi = b.op("Min", [b.op("Floor", [b.op("Add", [b.op("Add", [center, support]), b.f64(0.5)])]), n_in])
    t = b.cast(b.op("Range", [b.const(0, "int64"), b.cast(b.op("Squeeze", [ksize]), "int64"),
                              b.const(1, "int64")]), "float64")  # [k]
    src = b.op("Add", [lo, t])  # [out, k] source positions
    kernel = _filter(b, interpolation, b.op("Div", [b.op("Add", [b.op("Sub", [src, center]), b.f64(0.5)]), fs]))
    weights = b.op("Where", [b.op("Less", [src, hi]), kernel, b.f64(0.0)])
    total = b.op("ReduceSum", [weights, b.i64(1)], keepdims=1)
    weights = b.op("Div", [weights, b.op("Where", [b.op("Equal", [total, b.f64(0.0)]), b.f64(1.0), total])])
    fixed = b.op("Mul", [weights, b.f64(float(1 << 22))])  # Pillow: (int)(w * 2^22 +- 0.5), half away from 0
    rounded = b.op("Mul", [b.op("Sign", [fixed]), b.op("Floor", [b.op("Add", [b.op("Abs", [fixed]), b.f64(0.5)])])])
    weights = b.op("Div", [rounded, b.f64(float(1 << 22))])
    index = b.cast(b.op("Min", [src, b.op("Sub", [n_in, b.f64(1.0)])]), "int64")  # taps past the end weigh 0
    return index, weights


def _filter(b: Builder, interpolation: str, x: str) -> str:
    """Pillow's bilinear (triangle), bicubic (a = -0.5) or Lanczos-3 filter of float64 x."""
    ax = b.op("Abs", [x])
    if interpolation == "bilinear":
        return b.op("Max", [b.op("Sub", [b.f64(1.0), ax]), b.f64(0.0)])
    if interpolation == "bicubic":
        a = -0.5
        near = b.op("Add", [b.op("Mul", [b.op("Mul", [b.op("Sub", [b.op("Mul", [ax, b.f64(a + 2.0)]), b.f64(a + 3.0)]),
                                                       ax]), ax]), b.f64(1.0)])
        far = b.op("Mul", [b.op("Sub", [b.op("Mul", [b.op("Add", [b.op("Mul", [b.op("Sub", [ax, b.f64(5.0)]), ax]),
                                                                  b.f64(8.0)]), ax]), b.f64(4.0)]), b.f64(a)])
        return b.op("Where", [b.op("Less", [ax, b.f64(1.0)]), near,
                              b.op("Where", [b.op("Less", [ax, b.f64(2.0)]), far, b.f64(0.0)])])
    inside = b.op("And", [b.op("GreaterOrEqual", [x, b.f64(-3.0)]), b.op("Less", [x, b.f64(3.0)])])
    return b.op("Where", [inside, b.op("Mul", [_sinc(b, x, 1.0), _sinc(b, x, 3.0)]), b.f64(0.0)])


def _resize(b: Builder, x: str, interpolation: str, sizes: str) -> str:
    if interpolation == "nearest":
        # Pillow's NEAREST samples floor((i + 0.5) * in / out): half_pixel with ties rounded up.
        return b.op("Resize", [x, "", "", sizes], mode="nearest", coordinate_transformation_mode="half_pixel",
                    nearest_mode="round_prefer_ceil")
    # antialias widens the filter by the reduction factor and exclude_outside renormalises the taps
    # that fall off the image: both are what Pillow's resampling does; its bicubic uses a = -0.5.
    return b.op("Resize", [x, "", "", sizes], mode="linear" if interpolation == "bilinear" else "cubic",
                antialias=1, exclude_outside=1, cubic_coeff_a=-0.5, coordinate_transformation_mode="half_pixel")


def _sinc(b: Builder, t: str, width: float) -> str:
    """sin(pi x) / (pi x) of x = t / width, 1 at 0 (Pillow's sinc_filter)."""
    px = b.op("Mul", [t, b.const([np.pi / width], "float64")])
    zero = b.op("Equal", [px, b.const([0.0], "float64")])
    safe = b.op("Where", [zero, b.const([1.0], "float64"), px])
    return b.op("Where", [zero, b.const([1.0], "float64"), b.op("Div", [b.op("Sin", [safe]), safe])])


# -- colour, normalisation, padding, layout ----------------------------------------------------


def _y_tables() -> list[np.ndarray]:
    """Pillow's RGB -> YCbCr luma tables: round(64 * coefficient * value), summed and shifted by 6."""
    return [np.round(np.arange(256) * c * 64).astype(np.float32) for c in (0.299, 0.587, 0.114)]


def _channel_step(b: Builder, x: str, recipe: ImageRecipe) -> str:
    if recipe.channel_order == "BGR":
        return b.op("Gather", [x, b.i64(2, 1, 0)], axis=1)
    if recipe.channel_order == "Y":
        index = b.cast(x, "int64")
        parts = [b.op("Gather", [b.const(t), b.op("Slice", [index, b.i64(c), b.i64(c + 1), b.i64(1)])])
                 for c, t in enumerate(_y_tables())]
        total = b.op("Sum", parts)
        return b.op("Floor", [b.op("Div", [total, b.const(64.0)])])
    return x


def _normalize_step(b: Builder, x: str, recipe: ImageRecipe) -> str:
    """(x * scale - mean) / std with float32 constants, in normalize()'s order (bit-equal)."""
    c = tensor_channels(recipe)
    if recipe.scale != 1.0:
        x = b.op("Mul", [x, b.const(np.asarray(recipe.scale, np.float32))])
    if recipe.mean is not None:
        x = b.op("Sub", [x, b.const(np.asarray(recipe.mean, np.float32).reshape(1, c, 1, 1))])
    if recipe.std is not None:
        x = b.op("Div", [x, b.const(np.asarray(recipe.std, np.float32).reshape(1, c, 1, 1))])
    return x


def _pad_with(b: Builder, x: str, fill: list[float], before: list[str], after: list[str]) -> str:
    """Pad H, W of [1, C, H, W] with a per-channel value: pad (x - fill) with 0, then add fill back."""
    value = b.const(np.asarray(fill, np.float32).reshape(1, len(fill), 1, 1))
    pads = b.op("Concat", [b.i64(0, 0), *before, b.i64(0, 0), *after], axis=0)
    return b.op("Add", [b.op("Pad", [b.op("Sub", [x, value]), pads]), value])


def _pad_step(b: Builder, x: str, recipe: ImageRecipe) -> str:
    spec = recipe.resize
    if spec.method != "pad_to_size" and not spec.pad_to_multiple:
        return x
    c = tensor_channels(recipe)
    fill = [0.0] * c
    if spec.pad_value is not None:
        raw = np.asarray(spec.pad_value[:c], dtype=np.float32)
        fill = [float(v) for v in (normalize(raw, recipe) if recipe.dtype == "float32" else raw)]
    shape = b.op("Shape", [x])
    h, w = b.op("Slice", [shape, b.i64(2), b.i64(3)]), b.op("Slice", [shape, b.i64(3), b.i64(4)])
    if spec.method == "pad_to_size":
        th, tw = spec.size or (0, 0)
        zero = b.i64(0)
        dh, dw = b.op("Max", [b.op("Sub", [b.i64(th), h]), zero]), b.op("Max", [b.op("Sub", [b.i64(tw), w]), zero])
    else:
        m = b.i64(spec.pad_to_multiple or 1)
        dh = b.op("Mod", [b.op("Sub", [m, b.op("Mod", [h, m])]), m])
        dw = b.op("Mod", [b.op("Sub", [m, b.op("Mod", [w, m])]), m])
    zero = b.i64(0)
    return _pad_with(b, x, fill, [zero, zero], [dh, dw])


def _layout_step(b: Builder, x: str, recipe: ImageRecipe) -> str:
    if recipe.layout in ("NHWC", "HWC"):
        x = b.op("Transpose", [x], perm=[0, 2, 3, 1])
    if recipe.layout in ("CHW", "HWC"):
        x = b.op("Squeeze", [x, b.i64(0)])
    if recipe.dtype == "uint8":
        x = b.cast(b.op("Clip", [b.op("Round", [x]), b.const(0.0), b.const(255.0)]), "uint8")
    return x
