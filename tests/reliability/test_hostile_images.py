"""Hostile images through `zoo predict mnist-8`: a clear error naming the file, exit 2, no traceback.

The model comes from ../shared/data/models, seeded with `zoo cache import`; zoo runs offline, so a test
can never reach for the network. A PNG named .jpg is the control that must work: the content decides.
"""

from __future__ import annotations

import io
import json
import struct
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
    [answer] = json.loads(result.stdout)
    assert answer["input"] == str(image)
    assert answer["predictions"][0]["label"] == "1"  # decoded as the PNG it is: the "1" drawn in it


def test_one_bad_image_among_good_ones_names_the_bad_one(mnist: str, tmp_path: Path) -> None:
    good, bad = tmp_path / "good.png", tmp_path / "bad.png"
    good.write_bytes(digit("PNG"))
    bad.write_bytes(b"")
    result = zoo("predict", mnist, str(good), str(bad))
    assert_clear_error(result, 2, f"cannot use image {bad}")
    assert str(good) not in result.stderr
