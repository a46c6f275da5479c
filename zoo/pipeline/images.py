"""Read images safely: EXIF orientation, mode conversion, clear errors.

Every decoding failure becomes ImageError naming the file and the reason;
decompression bombs are refused before their pixels are allocated.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.errors import ImageError

if TYPE_CHECKING:
    from PIL import Image

# Pillow's own default bomb limit (~89.5 Mpx); above it we refuse instead of warning.
MAX_PIXELS = 89_478_485


def describe(source: Any) -> str:
    """How to name an input in messages and results."""
    if isinstance(source, (str, Path)):
        return str(source)
    return f"<{type(source).__name__}>"


def open_image(source: Any) -> Image.Image:
    """A decoded RGB, L or RGBA-free image from a path, bytes-like file, PIL image or array."""
    from PIL import Image

    if isinstance(source, Image.Image):
        return to_standard_mode(source)
    if _is_array(source):
        return _from_array(source)
    name = describe(source)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise ImageError(name, "no such file" if not path.exists() else "not a regular file")
        if path.stat().st_size == 0:
            raise ImageError(name, "the file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise ImageError(name, f"{img.width}x{img.height} pixels exceeds the {MAX_PIXELS} pixel limit "
                                           "(decompression bomb protection)")
                img.load()
                return to_standard_mode(_apply_exif(img))
    except ImageError:
        raise
    except Image.UnidentifiedImageError:
        raise ImageError(name, "not an image file Pillow can identify (wrong extension or corrupt header)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(name, f"refused as a decompression bomb: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(name, f"cannot decode: {exc}") from None


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
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit (or 32-bit int) gray: scale to 8 bits instead of clipping at 255.
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        return Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode="L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Composite transparency onto white: what a viewer shows.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")  # CMYK, YCbCr, LAB, HSV, 1, ...


def _is_array(source: Any) -> bool:
    return type(source).__module__ == "numpy" and hasattr(source, "shape")


def _from_array(arr: Any) -> Image.Image:
    """An HWC (or HW) array: uint8 0..255, or float in 0..1 / 0..255."""
    import numpy as np
    from PIL import Image

    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ImageError("<ndarray>", f"expected an HxW or HxWx3 image array, got shape {a.shape}")
    if a.dtype != np.uint8:
        a = a.astype(np.float64)
        if a.size and a.max() <= 1.0:
            a = a * 255.0
        a = np.clip(a + 0.5, 0, 255).astype(np.uint8)
    return to_standard_mode(Image.fromarray(a))
