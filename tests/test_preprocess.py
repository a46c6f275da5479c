"""Recipes: shapes and dtypes for every vision model, exact numbers, geometry, registry."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from zoo.errors import ZooError
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
    assert out.tensor.shape == (1, 224, 224) and out.chroma is not None and out.chroma.mode == "YCbCr"
    y = out.chroma.getpixel((50, 50))[0]
    assert out.tensor[0, 50, 50] == pytest.approx(y / 255, abs=1e-6)


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
