"""Image reading: every odd input gets the documented outcome."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zoo.errors import ImageError
from zoo.pipeline.images import open_image


def save(img: Image.Image, path: Path, **kwargs) -> Path:
    img.save(path, **kwargs)
    return path


def bomb_png(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header claims width x height pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def test_rgb_jpeg_is_read(tmp_path: Path) -> None:
    img = open_image(save(Image.new("RGB", (40, 30), (200, 10, 10)), tmp_path / "red.jpg"))
    assert (img.mode, img.size) == ("RGB", (40, 30))
    assert abs(img.getpixel((5, 5))[0] - 200) < 8


def test_truncated_jpeg(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.effect_noise((200, 200), 50).convert("RGB").save(buf, "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageError) as err:
        open_image(path)
    assert err.value.path == str(path) and "truncated" in err.value.reason


def test_text_named_jpg(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a picture")
    with pytest.raises(ImageError, match="not an image file"):
        open_image(path)


def test_zero_bytes_and_missing(tmp_path: Path) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        open_image(tmp_path / "empty.png")
    with pytest.raises(ImageError, match="no such file"):
        open_image(tmp_path / "missing.png")


def test_decompression_bomb_header_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as err:
        open_image(bomb_png(tmp_path / "bomb.png", 40000, 40000))
    assert "decompression bomb" in err.value.reason


def test_cmyk_becomes_rgb(tmp_path: Path) -> None:
    path = save(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), tmp_path / "cmyk.jpg")
    img = open_image(path)
    assert img.mode == "RGB"
    r, g, b = img.getpixel((4, 4))
    assert r > 200 and g < 60 and b < 60  # cyan 0, magenta+yellow full = red


def test_16_bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    arr = np.full((6, 6), 32768, dtype=np.uint16)
    path = save(Image.fromarray(arr), tmp_path / "deep.png")
    img = open_image(path)
    assert img.mode == "L" and img.getpixel((0, 0)) == 128


def test_rgba_is_composited_on_white(tmp_path: Path) -> None:
    path = save(Image.new("RGBA", (4, 4), (0, 0, 0, 0)), tmp_path / "clear.png")
    assert open_image(path).getpixel((0, 0)) == (255, 255, 255)


def test_palette_and_gray(tmp_path: Path) -> None:
    pal = Image.new("P", (4, 4))
    pal.putpalette([10, 20, 30] * 256)
    assert open_image(save(pal, tmp_path / "p.png")).getpixel((0, 0)) == (10, 20, 30)
    assert open_image(save(Image.new("L", (4, 4), 77), tmp_path / "g.png")).mode == "L"


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    img = Image.new("RGB", (60, 20), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "rotated.jpg"
    img.save(path, exif=exif)
    assert open_image(path).size == (20, 60)


def test_arrays_and_pil_images() -> None:
    assert open_image(np.zeros((5, 7, 3), dtype=np.uint8)).size == (7, 5)
    assert open_image(np.ones((5, 7), dtype=np.float32)).getpixel((0, 0)) == 255
    assert open_image(Image.new("LA", (3, 3))).mode == "RGB"
    with pytest.raises(ImageError, match="shape"):
        open_image(np.zeros((2, 3, 5)))


def test_integer_arrays_are_read_as_integer_image_files_are() -> None:
    """16-bit values are scaled to 8 bits, as a 16-bit PNG's are (they were clipped: a white picture)."""
    assert open_image(np.full((2, 2, 3), 32768, np.uint16)).getpixel((0, 0)) == (128, 128, 128)
    assert open_image(np.full((2, 2, 3), 65535, np.uint16)).getpixel((0, 0)) == (255, 255, 255)
    assert open_image(np.full((2, 2, 3), 200, np.int64)).getpixel((0, 0)) == (200, 200, 200)  # 8-bit values
    assert open_image(np.full((2, 2), 300, np.int32)).getpixel((0, 0)) == 1  # over 255: a 16-bit image
    assert open_image(np.ones((2, 2), bool)).getpixel((0, 0)) == 255


@pytest.mark.parametrize("values", [np.full((4, 4), 70000, np.int32), np.full((4, 4, 3), 2**40, np.int64),
                                    np.full((4, 4, 3), -5, np.int16), np.arange(-1, 15, dtype=np.int8).reshape(4, 4)])
def test_integer_arrays_that_are_no_pixels_are_refused(values: np.ndarray) -> None:
    """Beyond 16 bits or below 0: clipped, they were a white or black picture given a confident label."""
    with pytest.raises(ImageError, match=r"the values span -?\d+\.\.-?\d+, which are no 8- or 16-bit pixels"):
        open_image(values)


def test_a_closed_pil_image_is_named_not_a_crash() -> None:
    img = Image.new("RGB", (8, 8))
    img.close()
    with pytest.raises(ImageError, match="cannot read its pixels: Operation on closed image"):
        open_image(img)


@pytest.mark.parametrize(("array", "message"), [
    pytest.param(np.linspace(-2.1, 2.6, 48).reshape(4, 4, 3), "looks normalized already", id="mean-std-applied"),
    pytest.param(np.full((4, 4, 3), 1e6), "which are no 8-bit pixels", id="far-over-255"),
    pytest.param(np.full((4, 4, 3), -300.0), "which are no 8-bit pixels", id="far-under-0"),
])
def test_float_arrays_that_are_no_pixels_are_refused(array: np.ndarray, message: str) -> None:
    with pytest.raises(ImageError, match=message):  # they gave a confident answer about a black or white picture
        open_image(array)


def test_float_arrays_keep_a_resize_overshoot() -> None:
    assert open_image(np.linspace(-0.05, 1.02, 48).reshape(4, 4, 3)).getpixel((3, 3))[2] == 255  # 0..1 scale
    assert open_image(np.linspace(-3, 260, 48).reshape(4, 4, 3)).getpixel((0, 0))[0] == 0  # 0..255 scale, clipped


def test_only_the_first_frame_of_an_animation_is_decoded(tmp_path: Path) -> None:
    frames = [Image.new("L", (8, 8), v) for v in (200, 10, 90)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=10)
    img = open_image(path)
    assert img.getpixel((3, 3)) == (200, 200, 200)  # frame 0, whatever follows it


def test_palette_transparency_is_composited_on_white(tmp_path: Path) -> None:
    pal = Image.new("P", (4, 4), 0)
    pal.putpalette([9, 9, 9] * 256)
    pal.save(tmp_path / "t.png", transparency=0)
    assert open_image(tmp_path / "t.png").getpixel((1, 1)) == (255, 255, 255)


def test_float_nan_and_inf_become_black_and_white(tmp_path: Path) -> None:
    arr = np.array([[np.nan, np.inf, -np.inf, 100.0]], dtype=np.float32)
    img = open_image(save(Image.fromarray(arr, mode="F"), tmp_path / "f.tif"))
    assert img.mode == "L" and [img.getpixel((x, 0)) for x in range(4)] == [0, 255, 0, 100]


def test_big_endian_16_bit_and_32_bit_gray(tmp_path: Path) -> None:
    assert open_image(Image.new("I;16B", (2, 2), 65535)).getpixel((0, 0)) == 255
    assert open_image(Image.fromarray(np.full((2, 2), 70000, dtype=np.int32))).getpixel((0, 0)) == 255
    assert open_image(Image.fromarray(np.full((2, 2), -5, dtype=np.int32))).getpixel((0, 0)) == 0


def test_premultiplied_alpha_modes_are_converted() -> None:
    assert open_image(Image.new("La", (3, 3), (100, 255))).getpixel((1, 1)) == (100, 100, 100)
    assert open_image(Image.new("RGBa", (3, 3), (10, 20, 30, 255))).getpixel((1, 1)) == (10, 20, 30)


def test_pil_image_over_the_pixel_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from zoo.pipeline import images

    monkeypatch.setattr(images, "MAX_PIXELS", 99)
    with pytest.raises(ImageError, match="10x10 pixels exceeds the 99 pixel limit"):
        open_image(Image.new("RGB", (10, 10)))


def test_a_decoded_file_carries_its_name_for_later_errors(tmp_path: Path) -> None:
    from zoo.pipeline.images import name_of

    path = save(Image.new("RGB", (4, 4)), tmp_path / "named.png")
    assert name_of(open_image(path)) == str(path)
    mine = Image.new("RGB", (4, 4))
    assert name_of(open_image(mine)) == "<Image>" and "zoo.source" not in mine.info  # a caller's image: untouched
