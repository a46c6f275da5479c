"""Recipes: shapes and dtypes for every vision model, exact numbers, geometry, registry."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from zoo.errors import ImageError, ZooError
from zoo.index.catalog import load_index
from zoo.index.manifest import ImageRecipe, ResizeSpec
from zoo.pipeline import preprocess
from zoo.pipeline.preprocess import Geometry, Prepared, prepare
from zoo.runtime import numpy_dtype

PHOTO = Image.fromarray(np.random.default_rng(0).integers(0, 256, (375, 500, 3), dtype=np.uint8))


def vision_models() -> list[str]:
    return [e.id for e in load_index().entries
            if isinstance(e.preprocess, ImageRecipe) and e.preprocess.kind == "image"]


def fits(shape: tuple, declared: tuple) -> bool:
    return len(shape) == len(declared) and all(not isinstance(d, int) or d == s for s, d in zip(shape, declared))


@pytest.mark.parametrize("model_id", vision_models())
def test_recipe_makes_declared_input(model_id: str) -> None:
    entry = load_index().resolve(model_id).entry
    recipe = entry.preprocess
    out = prepare(PHOTO, recipe)
    tensor = out.tensor[None] if recipe.has_batch_dim else out.tensor
    if entry.inputs is None:  # 22 old-opset models: no IO recorded, check the recipe's own size
        h, w = recipe.output_size
        assert tensor.shape == (1, 3 if recipe.channel_order in ("RGB", "BGR") else 1, h, w)
        return
    declared = {io.name: io for io in entry.inputs}
    main = declared[recipe.input]
    assert fits(tensor.shape, main.shape), (tensor.shape, main.shape)
    assert str(tensor.dtype) == numpy_dtype(main.type)
    for name, value in out.extra.items():
        assert fits(value[None].shape, declared[name].shape) and str(value.dtype) == numpy_dtype(declared[name].type)
    assert set(declared) == {recipe.input, *out.extra}


def solid(rgb: tuple[int, int, int], size=(300, 200)) -> Image.Image:
    return Image.new("RGB", size, rgb)


def test_torchvision_numbers() -> None:
    out = prepare(solid((255, 0, 0)), load_index().resolve("mobilenetv2-12-int8").entry.preprocess)
    expected = [(1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (0 - 0.406) / 0.225]
    np.testing.assert_allclose(out.tensor[:, 100, 100], expected, rtol=1e-5)


def test_caffe_bgr_numbers() -> None:
    out = prepare(solid((255, 0, 0)), load_index().resolve("bvlcalexnet-12").entry.preprocess)
    np.testing.assert_allclose(out.tensor[:, 10, 10], [0 - 103.939, 0 - 116.779, 255 - 123.68], rtol=1e-6)


def test_efficientnet_nhwc_and_ferplus_gray() -> None:
    eff = prepare(solid((255, 255, 255)), load_index().resolve("efficientnet-lite4-11").entry.preprocess)
    assert eff.tensor.shape == (224, 224, 3)
    np.testing.assert_allclose(eff.tensor[0, 0], [(255 - 127) / 128] * 3)
    fer = prepare(solid((255, 255, 255)), load_index().resolve("emotion-ferplus-8").entry.preprocess)
    assert fer.tensor.shape == (1, 64, 64) and fer.tensor.max() == 255.0


def test_ssd_mobilenet_raw_uint8_any_size() -> None:
    out = prepare(solid((1, 2, 3), (123, 45)), load_index().resolve("ssd_mobilenet_v1_12").entry.preprocess)
    assert out.tensor.shape == (45, 123, 3) and out.tensor.dtype == np.uint8
    assert out.tensor[0, 0].tolist() == [1, 2, 3]


def test_letterbox_pads_gray_and_maps_boxes_back() -> None:
    recipe = load_index().resolve("yolov3-10").entry.preprocess
    out = prepare(solid((0, 0, 0), (800, 400)), recipe)
    assert out.tensor.shape == (3, 416, 416)
    np.testing.assert_allclose(out.tensor[:, 0, 0], [128 / 255] * 3, rtol=1e-6)  # pad band on top
    assert out.tensor[:, 208, 208].tolist() == [0.0, 0.0, 0.0]  # the image in the middle
    assert out.extra["image_shape"].tolist() == [400.0, 800.0]
    # the content band is rows 104..312: its corners map to the image corners
    np.testing.assert_allclose(out.geometry.to_original([[0, 104, 416, 312]]), [[0, 0, 800, 400]], atol=1)


def test_rcnn_pads_to_32_with_zeros_after_mean() -> None:
    out = prepare(solid((255, 255, 255), (500, 375)), load_index().resolve("FasterRCNN-12").entry.preprocess)
    c, h, w = out.tensor.shape
    assert (c, h % 32, w % 32, h) == (3, 0, 0, 800)
    assert out.geometry.content == (1066, 800)
    assert out.tensor[:, :, 1066:].max() == 0.0 and out.tensor[:, :, 1066:].min() == 0.0
    np.testing.assert_allclose(out.geometry.to_original([[0, 0, 1066, 800]]), [[0, 0, 500, 375]], atol=0.5)


def test_center_crop_geometry() -> None:
    out = prepare(solid((9, 9, 9), (512, 256)), load_index().resolve("resnet50").entry.preprocess)
    g = out.geometry
    assert g.content == (224, 224) and g.scale == (1.0, 1.0) and g.shift == (144, 16)
    np.testing.assert_allclose(g.to_original([[0, 0, 224, 224]]), [[144, 16, 368, 240]])


def test_super_resolution_keeps_chroma() -> None:
    out = prepare(solid((200, 30, 30)), load_index().resolve("super-resolution-10").entry.preprocess)
    # 300x200 in 224x224 tiles: two columns (x 0 and 76, flush with the right edge), one row (padded)
    assert out.tensor.shape == (2, 1, 224, 224) and out.chroma is not None and out.chroma.mode == "YCbCr"
    assert out.tiles.xs == (0, 76) and out.tiles.ys == (0,) and out.chroma.size == (300, 200)
    y = out.chroma.getpixel((50, 50))[0]
    assert out.tensor[0, 0, 50, 50] == pytest.approx(y / 255, abs=1e-6)
    assert out.tensor[0, 0, 223, 50] == pytest.approx(y / 255, abs=1e-6)  # rows 200.. repeat the last row


def test_duc_pads_with_mean_to_zero() -> None:
    out = prepare(solid((100, 100, 100), (700, 500)), load_index().resolve("duc").entry.preprocess)
    assert out.tensor.shape == (3, 800, 800)
    assert out.tensor[:, 600:, :].max() == 0.0 and out.tensor[:, :, 750:].min() == 0.0
    assert out.geometry.content == (700, 500)


def test_named_recipes_and_registry() -> None:
    assert {"imagenet", "caffe-bgr", "inception"} <= set(preprocess.names())
    inception = prepare(solid((255, 0, 0)), "inception")
    assert inception.tensor.shape == (3, 299, 299)
    np.testing.assert_allclose(inception.tensor[:, 5, 5], [1.0, -1.0, -1.0])

    def double(img: Image.Image) -> Prepared:
        return Prepared(np.zeros((3, 2, 2), np.float32), geometry=Geometry(img.size, (2, 2)))

    preprocess.register("test-double", double)
    assert prepare(solid((1, 1, 1)), "test-double").tensor.shape == (3, 2, 2)
    with pytest.raises(ZooError, match="already registered"):
        preprocess.register("test-double", double)
    with pytest.raises(ZooError, match="unknown recipe"):
        prepare(solid((1, 1, 1)), "nope")


def test_with_input_adapts_named_recipe() -> None:
    adapted = preprocess.with_input(preprocess.get("imagenet"), (160, 160))
    assert adapted.resize == ResizeSpec("shorter_side_center_crop", shorter_side=183, crop=(160, 160))


# -- allocation bounds ---------------------------------------------------------------------------


def named(img: Image.Image, name: str = "photo.png") -> Image.Image:
    from zoo.pipeline.images import SOURCE_KEY

    img.info[SOURCE_KEY] = name  # what open_image records for a file
    return img


def recipe_with(resize: ResizeSpec) -> ImageRecipe:
    return ImageRecipe(kind="image", input=None, resize=resize, interpolation="bilinear", scale=1.0, mean=None,
                       std=None, channel_order="GRAY", layout="NCHW", dtype="float32")


@pytest.mark.parametrize(("size", "resize", "words"), [
    ((1, 101), ResizeSpec("shorter_side_center_crop", shorter_side=256, crop=(224, 224)), "aspect ratio 101:1"),
    ((101, 1), ResizeSpec("shorter_side", shorter_side=800), "aspect ratio 101:1"),
    ((1, 500), ResizeSpec("cover_center_crop", size=(224, 224)), "aspect ratio 500:1"),
    ((4, 4), ResizeSpec("stretch", size=(8000, 8000)), "into 8000x8000 pixels, over the 33554432 pixel limit"),
    ((4, 4), ResizeSpec("letterbox", size=(9000, 9000), pad_value=(0.0,)), "over the 33554432 pixel limit"),
    ((4, 4), ResizeSpec("pad_to_size", size=(6000, 6000)), "over the 33554432 pixel limit"),
    ((50, 50), ResizeSpec("shorter_side", shorter_side=6000), "into 6000x6000 pixels"),
    ((4, 4), ResizeSpec("none", pad_to_multiple=10_000), "pad to a multiple of 10000"),
])
def test_recipes_that_would_allocate_too_much_are_refused(size, resize: ResizeSpec, words: str) -> None:
    with pytest.raises(ImageError) as err:
        prepare(named(Image.new("L", size)), recipe_with(resize))
    assert err.value.path == "photo.png" and words in err.value.reason


def test_bounds_allow_what_the_decoder_already_holds() -> None:
    """'none' feeds the image at its own size: bounded by the decode limit, never refused for growth."""
    out = prepare(named(Image.new("L", (6000, 6000))), recipe_with(ResizeSpec("none")))
    assert out.tensor.shape == (1, 6000, 6000)
    ok = prepare(named(Image.new("L", (1, 100))), recipe_with(ResizeSpec("shorter_side", shorter_side=256)))
    assert ok.tensor.shape == (1, 25600, 256)  # exactly 100:1 is allowed


def test_an_empty_image_is_refused_not_divided_by() -> None:
    with pytest.raises(ImageError, match="no pixels"):
        prepare(named(Image.new("L", (0, 5))), recipe_with(ResizeSpec("shorter_side", shorter_side=256)))


# -- tiles -----------------------------------------------------------------------------------------


def test_tile_starts_cover_the_whole_length_with_the_overlap() -> None:
    assert preprocess.tile_starts(800, 224, 16) == (0, 208, 416, 576)
    assert preprocess.tile_starts(224, 224, 16) == (0,) and preprocess.tile_starts(100, 224, 16) == (0,)
    for length in (225, 431, 432, 433, 1000):
        starts = preprocess.tile_starts(length, 224, 16)
        assert starts[0] == 0 and starts[-1] == length - 224
        assert all(b - a <= 208 for a, b in zip(starts, starts[1:]))  # each pair shares >= 16 pixels


def test_tiled_recipe_cuts_the_whole_image() -> None:
    recipe = load_index().resolve("super-resolution-10").entry.preprocess
    assert recipe.tiles is not None and not recipe.has_batch_dim
    out = prepare(PHOTO, recipe)  # 500x375
    assert out.tiles.xs == (0, 208, 276) and out.tiles.ys == (0, 151)
    assert out.tensor.shape == (6, 1, 224, 224)
    y = np.asarray(PHOTO.convert("YCbCr"), np.float32)[:, :, 0] / 255
    for i, (x0, y0) in enumerate(out.tiles.origins()):
        np.testing.assert_allclose(out.tensor[i, 0], y[y0:y0 + 224, x0:x0 + 224], atol=1e-6)


def test_too_many_tiles_is_refused_with_a_size_that_fits() -> None:
    recipe = load_index().resolve("super-resolution-10").entry.preprocess
    with pytest.raises(ImageError) as err:
        prepare(named(Image.new("RGB", (2000, 2000))), recipe)
    assert "needs 10x10 = 100 tiles" in err.value.reason and "limit of 48" in err.value.reason
    fits = err.value.reason.split("about ")[1].split(" fits")[0]
    w, h = (int(v) for v in fits.split("x"))
    assert prepare(Image.new("RGB", (w, h)), recipe).tiles.count <= preprocess.MAX_TILES
