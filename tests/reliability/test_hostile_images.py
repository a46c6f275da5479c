"""Hostile images through `zoo predict`: a clear error naming the file, exit 2, no traceback.

The models come from ../shared/data/models, seeded with `zoo cache import`; zoo runs offline, so a test
can never reach for the network. A PNG named .jpg is the control that must work: the content decides.
Classes: unreadable files; recipe bombs (a few hundred bytes whose resize would allocate gigabytes);
declared-size bombs in GIF, TIFF, JPEG and PNG headers; odd modes (palette, 16-bit, CMYK, animation,
float NaN, text-chunk bombs) that must convert and predict; super-resolution's tile bound; and what the
Python API is handed instead of an image (NaN or object arrays, garbage bytes, None), refused by name,
while a photo's encoded bytes predict as its file does.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from conftest import DATA, need
from reliability_helpers import assert_cache_clean, assert_clear_error, zoo


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height gray pixels, with one row of data: a bomb's first bytes."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header)
            + png_chunk(b"IDAT", zlib.compress(b"\0" * (width + 1))) + png_chunk(b"IEND", b""))


def digit(fmt: str) -> bytes:
    from PIL import Image, ImageDraw

    img = Image.new("L", (28, 28), 0)
    ImageDraw.Draw(img).line([(14, 4), (14, 24)], fill=255, width=3)  # a white "1" on black, as MNIST wants
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


HOSTILE = [  # (file name, bytes, words in the error)
    pytest.param("bomb.png", lambda: png_claiming(40_000, 40_000), "decompression bomb", id="bomb-40000x40000"),
    pytest.param("big.png", lambda: png_claiming(10_000, 10_000), "decompression bomb", id="bomb-10000x10000"),
    pytest.param("cut.jpg", lambda: digit("JPEG")[:200], "cannot decode", id="truncated-jpeg"),
    pytest.param("text.png", lambda: b"this is not an image\n", "not an image file", id="text-named-png"),
    pytest.param("empty.png", lambda: b"", "empty (0 bytes)", id="zero-bytes"),
]


@pytest.fixture
def mnist(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    result = zoo("cache", "import", str(need(DATA / "models" / "mnist-8.onnx")))
    assert result.exit_code == 0, result.stderr
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    return "mnist-8"


@pytest.mark.parametrize(("name", "make", "why"), HOSTILE)
def test_hostile_image_is_refused_naming_the_file(
    name: str, make, why: str, mnist: str, tmp_path: Path, isolated_env: Path
) -> None:
    image = tmp_path / name
    image.write_bytes(make())
    result = zoo("predict", mnist, str(image))
    assert_clear_error(result, 2, f"cannot use image {image}", why, "hint: pass a readable")
    assert result.stdout == ""
    assert assert_cache_clean(isolated_env) == 1


def test_png_named_jpg_works(mnist: str, tmp_path: Path) -> None:
    image = tmp_path / "digit.jpg"
    image.write_bytes(digit("PNG"))
    result = zoo("predict", mnist, str(image), "--json")
    assert result.exit_code == 0, result.stderr
    [answer] = [json.loads(line) for line in result.stdout.splitlines()]  # JSON Lines: one object per input
    assert answer["input"] == str(image)
    assert answer["predictions"][0]["label"] == "1"  # decoded as the PNG it is: the "1" drawn in it


def test_one_bad_image_among_good_ones_names_the_bad_one(mnist: str, tmp_path: Path) -> None:
    good, bad = tmp_path / "good.png", tmp_path / "bad.png"
    good.write_bytes(digit("PNG"))
    bad.write_bytes(b"")
    result = zoo("predict", mnist, str(good), str(bad))
    assert_clear_error(result, 2, f"cannot use image {bad}")
    assert str(good) not in result.stderr


# -- recipe bombs: tiny files whose resize would allocate gigabytes ----------------------------------------


def png_gray(width: int, height: int) -> bytes:
    """A real (fully decodable) black gray PNG: rows of zeros compress to almost nothing."""
    raw = (b"\0" * (width + 1)) * height
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(raw, 9))
            + png_chunk(b"IEND", b""))


@pytest.fixture
def mobilenet(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """mobilenetv2-12-int8: shorter side to 256, centre crop 224, the recipe the 1x100000 PNG blew up."""
    result = zoo("cache", "import", str(need(DATA / "models" / "mobilenetv2-12-int8.onnx")))
    assert result.exit_code == 0, result.stderr
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    return "mobilenetv2-12-int8"


STRIPS = [  # (width, height, words): each a few hundred bytes that decode to a legal image
    pytest.param(1, 100_000, "aspect ratio 100000:1 of 1x100000 exceeds the 100:1 limit", id="1x100000"),
    pytest.param(100_000, 1, "aspect ratio 100000:1 of 100000x1 exceeds the 100:1 limit", id="100000x1"),
    pytest.param(3, 65_535, "aspect ratio 21845:1", id="3x65535"),
    pytest.param(101, 1, "aspect ratio 101:1", id="101x1-just-over"),
]


@pytest.mark.parametrize(("width", "height", "words"), STRIPS)
def test_recipe_bomb_is_refused_before_resizing(width: int, height: int, words: str, mobilenet: str,
                                                tmp_path: Path, isolated_env: Path) -> None:
    image = tmp_path / "strip.png"
    image.write_bytes(png_gray(width, height))
    assert image.stat().st_size < 1000
    result = zoo("predict", mobilenet, str(image))
    assert_clear_error(result, 2, f"cannot use image {image}", words, "shorter_side_center_crop resize",
                       "resize or crop the image first")
    assert result.stdout == ""
    assert assert_cache_clean(isolated_env) == 1


def test_recipe_bomb_never_allocates(mobilenet: str, tmp_path: Path, isolated_env: Path) -> None:
    """The 1x100000 PNG in a fresh process: refused with a peak RSS of a few hundred MB, not ~7 GB."""
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc/self/status (Linux) to read the process's own peak RSS")
    image = tmp_path / "strip.png"
    image.write_bytes(png_gray(1, 100_000))
    # VmHWM, not getrusage's ru_maxrss: Linux carries the parent's high-water mark (pytest's, hundreds
    # of MB) into ru_maxrss across fork and exec, while VmHWM belongs to this process alone.
    code = ("import atexit, runpy, sys\n"
            "atexit.register(lambda: print([line for line in open('/proc/self/status') if"
            " line.startswith('VmHWM')][0], file=sys.stderr))\n"
            f"sys.argv = ['zoo', 'predict', {mobilenet!r}, {str(image)!r}]\n"
            "runpy.run_module('zoo', run_name='__main__')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "ZOO_HOME": str(isolated_env), "ZOO_OFFLINE": "1"})
    assert proc.returncode == 2, proc.stderr
    assert "exceeds the 100:1 limit" in proc.stderr
    peak_mib = int(proc.stderr.split("VmHWM:")[-1].split()[0]) // 1024
    assert peak_mib < 600, f"peak RSS {peak_mib} MiB"


def test_edge_of_the_aspect_limit_still_works(mobilenet: str, tmp_path: Path) -> None:
    """The control: 100:1 is allowed (a 256 x 25600 intermediate, then the crop) and predicts."""
    image = tmp_path / "wide.png"
    image.write_bytes(png_gray(100, 1))
    result = zoo("predict", mobilenet, str(image), "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[0])["input"] == str(image)


def test_stretch_recipes_take_a_strip(mnist: str, tmp_path: Path) -> None:
    """Only resizes that scale the longer side are bounded by aspect: mnist-8 stretches to 28x28, so it may."""
    image = tmp_path / "strip.png"
    image.write_bytes(png_gray(1, 100_000))
    result = zoo("predict", mnist, str(image), "--json")
    assert result.exit_code == 0, result.stderr


def test_recipe_bomb_in_a_folder_run_is_an_error_row_and_resume_passes(mobilenet: str, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a-strip.png").write_bytes(png_gray(1, 100_000))
    (folder / "b-frog.jpg").write_bytes(need(DATA / "images" / "frog.jpg").read_bytes())
    out = tmp_path / "rows.jsonl"
    first = zoo("predict", mobilenet, str(folder), "-o", str(out), "-q")
    assert first.exit_code == 2 and "1 predicted, 1 error rows" in first.stderr, first.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [Path(r["input"]).name for r in rows] == ["a-strip.png", "b-frog.jpg"]
    assert "exceeds the 100:1 limit" in rows[0]["error"] and rows[1]["predictions"][0]["label"] == "tree frog"
    again = zoo("predict", mobilenet, str(folder), "-o", str(out), "--resume", "-q")
    assert again.exit_code == 0, again.stderr  # the error row counts as done: resume never stops there
    assert len(out.read_text().splitlines()) == 2


# -- declared-size bombs in other containers ---------------------------------------------------------------


def gif_with_frame(screen: tuple[int, int], frame: tuple[int, int]) -> bytes:
    """A GIF whose logical screen is small and whose one frame claims to be `frame` big."""
    (sw, sh), (fw, fh) = screen, frame
    head = b"GIF89a" + struct.pack("<HHBBB", sw, sh, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    image = b"," + struct.pack("<HHHHB", 0, 0, fw, fh, 0) + b"\x02\x02\x4c\x01\x00\x00"
    return head + image + b";"


def tiff_claiming(width: int, height: int) -> bytes:
    """A little-endian TIFF header and IFD declaring width x height 8-bit gray, with one strip of 1 byte."""
    entries = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 1), (273, 4, 8),
               (277, 3, 1), (278, 4, height), (279, 4, 1)]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", tag, kind, 1, value)
                                                       for tag, kind, value in entries) + b"\0\0\0\0"
    return b"II*\0" + struct.pack("<I", 9) + b"\0" + ifd


def jpeg_claiming(width: int, height: int) -> bytes:
    """SOI and a baseline SOF0 frame header declaring width x height, then EOI: no scan data at all."""
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + sof + b"\xff\xd9"


BOMBS = [
    pytest.param(lambda: gif_with_frame((10, 10), (20_000, 20_000)), "bomb.gif", id="gif-frame-20000x20000"),
    pytest.param(lambda: tiff_claiming(100_000, 100_000), "bomb.tif", id="tiff-100000x100000"),
    pytest.param(lambda: jpeg_claiming(65_000, 65_000), "bomb.jpg", id="jpeg-65000x65000"),
    pytest.param(lambda: png_claiming(1, 89_478_486), "thin.png", id="png-1x89478486"),
]


@pytest.mark.parametrize(("make", "name"), BOMBS)
def test_declared_size_bomb_is_refused(make, name: str, mnist: str, tmp_path: Path, isolated_env: Path) -> None:
    image = tmp_path / name
    image.write_bytes(make())
    result = zoo("predict", mnist, str(image))
    assert_clear_error(result, 2, f"cannot use image {image}", "decompression bomb")
    assert assert_cache_clean(isolated_env) == 1


# -- odd modes: converted, never a crash -------------------------------------------------------------------


def encoded(make) -> bytes:
    buf = io.BytesIO()
    make(buf)
    return buf.getvalue()


def _palette_with_transparency(buf: io.BytesIO) -> None:
    from PIL import Image

    img = Image.new("P", (64, 48), 1)
    img.putpalette([0, 0, 0, 200, 40, 40] + [0] * 762)
    img.save(buf, "PNG", transparency=0)


def _sixteen_bit_gray(buf: io.BytesIO) -> None:
    import numpy as np
    from PIL import Image

    Image.fromarray(np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 20).save(buf, "PNG")


def _cmyk_jpeg(buf: io.BytesIO) -> None:
    from PIL import Image

    Image.new("CMYK", (64, 48), (0, 255, 255, 0)).save(buf, "JPEG")


def _animated_gif(buf: io.BytesIO) -> None:
    from PIL import Image

    frames = [Image.new("L", (64, 48), v) for v in (255, 0, 128)]
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=10, loop=0)


def _float_tiff_with_nan(buf: io.BytesIO) -> None:
    import numpy as np
    from PIL import Image

    arr = np.full((48, 64), 100.0, dtype=np.float32)
    arr[0, :8] = np.nan
    arr[1, :8] = np.inf
    Image.fromarray(arr, mode="F").save(buf, "TIFF")


def _gray_alpha(buf: io.BytesIO) -> None:
    from PIL import Image

    Image.new("LA", (64, 48), (90, 128)).save(buf, "PNG")


def _one_bit(buf: io.BytesIO) -> None:
    from PIL import Image

    Image.new("1", (64, 48), 1).save(buf, "PNG")


def _sixteen_bit_rgb(buf: io.BytesIO) -> None:
    raw = b"".join(b"\0" + b"\x80\x00\x10\x00\xff\xff" * 64 for _ in range(48))
    header = struct.pack(">IIBBBBB", 64, 48, 16, 2, 0, 0, 0)
    buf.write(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(raw))
              + png_chunk(b"IEND", b""))


def _text_chunk_bomb(buf: io.BytesIO) -> None:
    """A valid 8x8 PNG with a zTXt chunk that inflates to 64 MiB: Pillow caps text chunks; so must we."""
    raw = (b"\0" + b"\x7f" * 8) * 8
    header = struct.pack(">IIBBBBB", 8, 8, 8, 0, 0, 0, 0)
    ztxt = b"Comment\0\0" + zlib.compress(b"A" * (64 * 1024 * 1024), 9)
    buf.write(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"zTXt", ztxt)
              + png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b""))


MODES = [
    pytest.param(_palette_with_transparency, "palette.png", id="palette-transparency"),
    pytest.param(_sixteen_bit_gray, "deep.png", id="16-bit-gray"),
    pytest.param(_sixteen_bit_rgb, "deep-rgb.png", id="16-bit-rgb"),
    pytest.param(_cmyk_jpeg, "cmyk.jpg", id="cmyk-jpeg"),
    pytest.param(_animated_gif, "animated.gif", id="animated-gif"),
    pytest.param(_float_tiff_with_nan, "float.tif", id="float-tiff-nan-inf"),
    pytest.param(_gray_alpha, "la.png", id="gray-alpha"),
    pytest.param(_one_bit, "bits.png", id="1-bit"),
]


@pytest.mark.parametrize(("make", "name"), MODES)
def test_odd_modes_are_converted_and_predicted(make, name: str, mobilenet: str, tmp_path: Path) -> None:
    image = tmp_path / name
    image.write_bytes(encoded(make))
    result = zoo("predict", mobilenet, str(image), "--json")
    assert result.exit_code == 0, result.stderr
    [answer] = [json.loads(line) for line in result.stdout.splitlines()]
    assert answer["input"] == str(image) and len(answer["predictions"]) == 5


def test_text_chunk_bomb_is_refused(mnist: str, tmp_path: Path, isolated_env: Path) -> None:
    """65 kB of zTXt that would inflate to 64 MiB: Pillow stops at its text-chunk cap, zoo names the file."""
    image = tmp_path / "ztxt.png"
    image.write_bytes(encoded(_text_chunk_bomb))
    assert image.stat().st_size < 100_000
    result = zoo("predict", mnist, str(image))
    assert_clear_error(result, 2, f"cannot use image {image}", "cannot decode", "too large")


# -- super-resolution: a whole photo, bounded ----------------------------------------------------------------


def test_super_resolution_of_a_huge_photo_is_refused_naming_the_tile_limit(isolated_env: Path, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    result = zoo("cache", "import", str(need(DATA / "models" / "super-resolution-10.onnx")))
    assert result.exit_code == 0, result.stderr
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    image = tmp_path / "big.png"
    image.write_bytes(png_gray(4000, 3000))
    result = zoo("predict", "super-resolution-10", str(image))
    assert_clear_error(result, 2, f"cannot use image {image}", "4000x3000 needs 20x15 = 300 tiles of 224x224",
                       "over the limit of 48 tiles", "fits")


API_REFUSED = [
    ("NaN pixels", lambda np: np.full((8, 8, 3), np.nan, np.float32), "the array holds NaN or infinite values"),
    ("infinite pixels", lambda np: np.full((8, 8, 3), np.inf), "the array holds NaN or infinite values"),
    ("object array", lambda np: np.array([[None]], dtype=object), "expected an array of numbers, got dtype object"),
    ("string array", lambda np: np.array([["a"]]), "expected an array of numbers, got dtype <U1"),
    ("garbage bytes", lambda np: b"\x89PNG not really", "not an image file Pillow can identify"),
    ("empty bytes", lambda np: b"", "the data is empty (0 bytes)"),
    ("an int", lambda np: 5, "expected an image file path, its bytes, a file object"),
    ("None", lambda np: None, "expected an image file path, its bytes, a file object"),
]


@pytest.mark.parametrize(("what", "make", "reason"), API_REFUSED, ids=[c[0] for c in API_REFUSED])
def test_the_python_api_refuses_what_is_no_image_with_the_reason(what: str, make, reason: str) -> None:
    """These predicted silently (NaN and object arrays: a confident made-up class) or raised AttributeError."""
    import numpy as np

    from zoo.errors import ImageError
    from zoo.pipeline.images import open_image

    with pytest.raises(ImageError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        open_image(make(np))


def test_the_encoded_bytes_of_a_photo_are_an_image(mobilenet: str) -> None:
    """bytes were taken as a file name ("No such file or directory: b'\\xff\\xd8...'")."""
    import zoo

    model = zoo.load(mobilenet)
    photo = need(DATA / "images" / "frog.jpg")
    data = photo.read_bytes()
    expected = model.predict(str(photo)).predictions[0].label
    for source in (data, bytearray(data), memoryview(data), io.BytesIO(data)):
        assert model.predict(source).predictions[0].label == expected == "tree frog"
