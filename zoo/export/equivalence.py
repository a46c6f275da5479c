"""Measure the exported preprocessing graph against zoo's own (Pillow) preprocessing.

Used by tests/test_export.py and to write the table in docs/EXPORT.md:
`python -m zoo.export.equivalence IMAGE...` prints one Markdown row per distinct recipe.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import onnxruntime as ort
from PIL import Image

from zoo.export import preprocess_graph
from zoo.index.catalog import load_index
from zoo.index.manifest import ImageRecipe
from zoo.pipeline.preprocess import run_recipe


@dataclass(frozen=True, slots=True)
class Measurement:
    """Largest |graph - zoo| over the images: in tensor units and in 8-bit pixel levels, and the share of
    tensor values more than one level apart."""

    max_diff: float
    max_levels: float
    share_over_one: float
    runs: int


def distinct_recipes() -> dict[ImageRecipe, list[str]]:
    """Every distinct single-image recipe of the index (input name and notes ignored) -> model ids."""
    out: dict[ImageRecipe, list[str]] = {}
    for entry in load_index().entries:
        recipe = entry.preprocess
        if isinstance(recipe, ImageRecipe) and recipe.kind == "image":
            out.setdefault(replace(recipe, input=None, notes=""), []).append(entry.id)
    return out


def variants(img: Image.Image) -> list[Image.Image]:
    """The photo, a small upscaled-by-the-model copy, and a tall crop: different sizes and aspect ratios."""
    w, h = img.size
    return [img, img.resize((97, 61), Image.Resampling.BILINEAR), img.crop((0, 0, max(1, w // 3), h))]


def level(recipe: ImageRecipe) -> float:
    """How big one 8-bit pixel step is in the tensor (the smallest over channels)."""
    std = min(recipe.std) if recipe.std else 1.0
    return recipe.scale / std if recipe.dtype == "float32" else 1.0


def measure(recipe: ImageRecipe, images: Iterable[Image.Image]) -> Measurement:
    """Run the graph and run_recipe() on each image (grey recipes get the image as L); compare."""
    graph = preprocess_graph.build(recipe, "tensor")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"])
    worst, over, total, runs = 0.0, 0, 0, 0
    step = level(recipe)
    for img in images:
        img = img.convert("L") if recipe.channel_order == "GRAY" else img.convert("RGB")
        want = run_recipe(img, recipe)
        outputs = session.run(None, {preprocess_graph.IMAGE: np.asarray(img)})
        expected = want.tensor[None] if preprocess_graph.batched(recipe) else want.tensor
        got = outputs[0]
        if got.shape != expected.shape:
            raise AssertionError(f"shape {got.shape} != zoo's {expected.shape} for a {img.size} image")
        for extra, value in zip(recipe.extra_inputs, outputs[1:]):
            if not np.array_equal(value.reshape(-1), want.extra[extra.name].reshape(-1)):
                raise AssertionError(f"{extra.name}: {value} != zoo's {want.extra[extra.name]}")
        diff = np.abs(got.astype(np.float64) - expected.astype(np.float64))
        worst = max(worst, float(diff.max(initial=0.0)))
        over += int((diff > step * 1.001).sum())
        total += diff.size
        runs += 1
    return Measurement(worst, worst / step, over / max(total, 1), runs)


def table(paths: Sequence[str]) -> list[str]:
    """Markdown rows: recipe, models, max |diff| (tensor), in pixel levels, share > 1 level."""
    from zoo.pipeline.images import open_image

    images = [v for p in paths for v in variants(open_image(p))]
    rows = []
    for recipe, ids in distinct_recipes().items():
        what = (f"{recipe.resize.method} {recipe.interpolation} {recipe.channel_order} {recipe.layout} "
                f"{recipe.dtype}")
        if getattr(recipe, "tiles", None) is not None:
            rows.append(f"| {what} (tiled) | {', '.join(ids[:3])}{' …' if len(ids) > 3 else ''} | not exported "
                        "(tiles) | | | |")
            continue
        m = measure(recipe, images)
        rows.append(f"| {what} | {', '.join(ids[:3])}{' …' if len(ids) > 3 else ''} | {len(ids)} | "
                    f"{m.max_diff:.4g} | {m.max_levels:.2f} | {100 * m.share_over_one:.3f}% |")
    return rows


if __name__ == "__main__":
    sys.stdout.write("\n".join(table(sys.argv[1:])) + "\n")
