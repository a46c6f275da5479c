"""Read images safely: EXIF orientation, mode conversion, clear errors.

Every decoding failure becomes ImageError naming the file and the reason;
decompression bombs are refused before their pixels are allocated. Only the
first frame of an animated or multi-page file is decoded. A decoded image
carries its file name in `info[SOURCE_KEY]`, so that preprocessing, which
only sees pixels, can still name the file when it refuses one.
"""

from __future__ import annotations

import io
import struct
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.errors import ImageError
from zoo.filecheck import not_a_file

if TYPE_CHECKING:
    from PIL import Image

# Pillow's own default bomb limit (~89.5 Mpx); above it we refuse instead of warning.
MAX_PIXELS = 89_478_485
SOURCE_KEY = "zoo.source"


def name_of(img: Image.Image) -> str:
    """The file a decoded image came from (as open_image recorded it), else "<Image>"."""
    return str(img.info.get(SOURCE_KEY, "<Image>"))


def describe(source: Any) -> str:
    """How to name an input in messages and results."""
    if isinstance(source, (str, Path)):
        return str(source)
    return f"<{type(source).__name__}>"


# What Pillow's plugins raise on malformed files (its fuzzers keep finding new ones), and on a closed image.
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, KeyError, TypeError,
                 ZeroDivisionError)


def open_image(source: Any) -> Image.Image:
    """A decoded RGB, L or RGBA-free image from a path, bytes-like file, PIL image or array."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(source, Image.Image):
        name = describe(source)
        _check_pixels(name, source.width, source.height)
        try:
            source.load()  # a lazily opened image decodes now; a closed one says so
        except DECODE_ERRORS as exc:
            raise ImageError(name, f"cannot read its pixels: {exc or type(exc).__name__}") from None
        return _convert(name, source)
    if _is_array(source):
        return _from_array(source)
    name = describe(source)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise ImageError(name, not_a_file(path))
        if path.stat().st_size == 0:
            raise ImageError(name, "the file is empty (0 bytes)")
    elif isinstance(source, (bytes, bytearray, memoryview)):  # the encoded file itself (PIL takes bytes as a path)
        if not len(source):
            raise ImageError(name, "the data is empty (0 bytes)")
        source = io.BytesIO(source)
    elif not callable(getattr(source, "read", None)):
        raise ImageError(name, "expected an image file path, its bytes, a file object, a PIL image or an "
                               "HxWx3 numpy array")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as img:
                _check_pixels(name, img.width, img.height)
                img.load()  # the first frame only: the frames of an animation are never all decoded
                _check_pixels(name, img.width, img.height)  # a frame may have grown the canvas
                out = to_standard_mode(_apply_exif(img))
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(name, "not an image file Pillow can identify (wrong extension or corrupt header)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(name, f"refused as a decompression bomb: {exc}") from None
    except DECODE_ERRORS as exc:
        raise ImageError(name, f"cannot decode: {exc or type(exc).__name__}") from None
    except MemoryError:
        raise ImageError(name, "decoding it ran out of memory") from None
    if isinstance(source, (str, Path)):
        out.info[SOURCE_KEY] = name  # our own image object: tagging it touches nothing of the caller's
    return out


def _check_pixels(name: str, width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise ImageError(name, f"{width}x{height} pixels exceeds the {MAX_PIXELS} pixel limit "
                               "(decompression bomb protection)")


def _convert(name: str, img: Image.Image) -> Image.Image:
    """to_standard_mode, with Pillow's refusals (an unconvertible mode) as ImageError."""
    try:
        return to_standard_mode(img)
    except (OSError, ValueError) as exc:
        raise ImageError(name, f"cannot convert {img.mode} pixels to RGB: {exc}") from None


def _apply_exif(img: Image.Image) -> Image.Image:
    """Rotate/flip by the EXIF orientation tag; untouched (no copy) when there is none."""
    from PIL import ImageOps

    if img.getexif().get(0x0112, 1) == 1:  # most photos: no rotation, so skip exif_transpose's full copy
        return img
    return ImageOps.exif_transpose(img) or img


def to_standard_mode(img: Image.Image) -> Image.Image:
    """Convert palette, alpha, CMYK, 16-bit and other modes to RGB (colour) or L (gray)."""
    import numpy as np
    from PIL import Image

    if img.mode in ("RGB", "L"):
        return img
    if img.mode.startswith("I"):
        # 16-bit (or 32-bit int) gray: scale to 8 bits instead of clipping at 255. In int32, not
        # float64: half the memory for a large scan, and exact (clipped first, 65535 * 255 fits).
        arr = np.asarray(img).astype(np.int32)
        top = 65535 if img.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255
        np.clip(arr, 0, top, out=arr)
        return Image.fromarray(((arr * 255 + top // 2) // top).astype(np.uint8), mode="L")
    if img.mode == "F":
        # Float TIFFs may hold NaN or inf; those become 0 and 255 instead of undefined casts.
        arr = np.nan_to_num(np.asarray(img, dtype=np.float32), nan=0.0, posinf=255.0, neginf=0.0)
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode="L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("La", "RGBa"):  # premultiplied alpha: Pillow converts these only to their plain forms
        img = img.convert("LA" if img.mode == "La" else "RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        # Composite transparency onto white: what a viewer shows.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")  # CMYK, YCbCr, LAB, HSV, 1, ...


def _is_array(source: Any) -> bool:
    return type(source).__module__ == "numpy" and hasattr(source, "shape")


def _from_array(arr: Any) -> Image.Image:
    """An HWC (or HW) array: uint8 0..255, 16-bit integers (scaled), or float in 0..1 / 0..255."""
    import numpy as np
    from PIL import Image

    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ImageError("<ndarray>", f"expected an HxW or HxWx3 image array, got shape {a.shape}")
    if a.dtype.kind in "iu" and a.dtype != np.uint8:
        # Integers as integer image files are read (to_standard_mode): 16-bit values scaled to 8 bits.
        lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
        if lo < 0 or hi > 65535:
            raise ImageError("<ndarray>", f"the values span {lo}..{hi}, which are no 8- or 16-bit pixels; pass "
                                          "0..255 (or 0..65535 for 16-bit) integers, or 0..1 floats")
        top = 65535 if a.dtype == np.uint16 or hi > 255 else 255
        a = a.astype(np.int64)
        a = ((a * 255 + top // 2) // top).astype(np.uint8)
    elif a.dtype != np.uint8:
        if a.dtype.kind not in "bf":  # object, string, complex, datetime ...
            raise ImageError("<ndarray>", f"expected an array of numbers, got dtype {a.dtype}")
        a = a.astype(np.float64)
        if not np.isfinite(a).all():
            raise ImageError("<ndarray>", "the array holds NaN or infinite values")
        _check_pixel_range(a)
        if a.size and a.max() <= 1.05:  # 0..1, with the overshoot a resize leaves (0..255 that dark is black)
            a = a * 255.0
        a = np.clip(a + 0.5, 0, 255).astype(np.uint8)
    return to_standard_mode(Image.fromarray(a))


def _check_pixel_range(a: Any) -> None:
    """Refuse float arrays that are no pixels: they would give a confident answer about a black or white picture."""
    if not a.size:
        return
    lo, hi = float(a.min()), float(a.max())
    pixels = "pass pixels: 0..255, or 0..1 as floats"
    if hi > 1.5 * 255 or lo < -0.5 * 255:  # beyond any resampling overshoot
        raise ImageError("<ndarray>", f"the values span {lo:.3g}..{hi:.3g}, which are no 8-bit pixels; {pixels} "
                                      "(a 16-bit image as floats: divide it by 257)")
    if lo < -0.5 and hi < 16:  # ImageNet's mean/std give about -2.1..2.6
        raise ImageError("<ndarray>", f"the values span {lo:.3g}..{hi:.3g}: the array looks normalized already "
                                      f"(mean and std applied); {pixels}. zoo applies the model's own preprocessing")
