"""zoo export: the in-graph preprocessing against zoo's own, exported models against `zoo predict`,
the CLI, metadata, and zoo.hub.load_composite_model (written from onnx.hub's documentation)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from conftest import DATA, need
from onnx import TensorProto, helper
from PIL import Image

import zoo.api as zoo
from zoo import hub
from zoo.cli import cli
from zoo.errors import ZooError
from zoo.export import equivalence, export_model
from zoo.index.catalog import load_index
from zoo.runtime import EXACT_INT8
from zoo.store import download

IMAGES = DATA / "images"
# The documented bounds (docs/EXPORT.md), in 8-bit pixel levels of the model tensor.
MAX_LEVELS = {"bilinear": 2.0, "nearest": 1.0, "bicubic": 16.0, "lanczos": 20.0}
MAX_SHARE_OVER_ONE_LEVEL = 0.002


def seed(*ids: str) -> None:
    for model_id in ids:
        entry = load_index().resolve(model_id).entry
        download.import_file(entry, entry.file, need(DATA / "models" / entry.file.name))


def photos() -> list[Path]:
    return sorted(p for p in need(IMAGES).iterdir() if p.suffix in (".jpg", ".jpeg"))


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.add_session_config_entry(*EXACT_INT8)  # exact int8 products, as zoo.load runs them (docs/EXPORT.md)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


RECIPES = list(equivalence.distinct_recipes().items())


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    from zoo.pipeline.images import open_image

    paths = [IMAGES / n for n in ("frog.jpg", "age_gender_bruce.jpg")]
    picked = [open_image(need(p)) for p in paths]
    palette = picked[0].convert("P")  # other modes: palette and grey files converted as zoo reads them
    return [v for img in picked for v in equivalence.variants(img)] + [open_image(palette),
                                                                         open_image(picked[1].convert("L"))]


@pytest.mark.parametrize("recipe,ids", RECIPES, ids=[ids[0] for _, ids in RECIPES])
def test_preprocessing_graph_matches_zoo_for_every_recipe(recipe, ids, images) -> None:
    if getattr(recipe, "tiles", None) is not None:
        with pytest.raises(ZooError, match="tiled recipe"):
            equivalence.measure(recipe, images[:1])
        return
    m = equivalence.measure(recipe, images)
    assert m.runs == len(images)
    assert m.max_levels <= MAX_LEVELS[recipe.interpolation] + 1e-3, (ids[0], m)  # float32 noise on a level
    assert m.share_over_one <= MAX_SHARE_OVER_ONE_LEVEL, (ids[0], m)


def test_every_index_recipe_is_measured() -> None:
    """The table covers the whole index, not only the models whose weights are here."""
    assert len(RECIPES) >= 20
    methods = {r.resize.method for r, _ in RECIPES}
    assert {"stretch", "shorter_side_center_crop", "shorter_side", "letterbox", "pad_to_size", "none"} <= methods


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each local vision model exported once (into a module-wide cache)."""
    out = tmp_path_factory.mktemp("exported")
    home = out / "home"
    mp = pytest.MonkeyPatch()
    mp.setenv("ZOO_HOME", str(home))
    ids = ["mobilenetv2-12-int8", "shufflenet-v2-12-int8", "shufflenet-v2-12-qdq", "version-RFB-320",
           "version-RFB-640", "mnist-7", "mnist-8", "mnist-12"]
    seed(*ids)
    files = {i: Path(export_model(i, out / f"{i}.onnx").path) for i in ids}
    mp.undo()
    return files | {"home": home}


@pytest.mark.parametrize("model_id", ["mobilenetv2-12-int8", "shufflenet-v2-12-int8", "shufflenet-v2-12-qdq"])
def test_classifier_top1_equals_zoo_predict_on_every_photo(model_id, exported, monkeypatch) -> None:
    monkeypatch.setenv("ZOO_HOME", str(exported["home"]))
    s = session(exported[model_id])
    paths = photos()
    expected = [r.predictions[0] for r in zoo.load(model_id).predict([str(p) for p in paths], topk=1)]
    for path, want in zip(paths, expected):
        out = dict(zip([o.name for o in s.get_outputs()], s.run(None, {"image": rgb(path)})))
        assert (int(out["top_k"][0, 0]), str(out["top_k_labels"][0, 0])) == (want.index, want.label), path.name
    assert len(paths) >= 10


def test_qdq_export_writes_its_quantization_as_float_ops(exported) -> None:
    """The QDQ file has no Q/DQ left to fuse (AVX2's fused u8s8 kernels said "bonnet" for a diaper);
    the QOperator int8 file keeps its integer ops, which define that model."""
    qdq = onnx.load(str(exported["shufflenet-v2-12-qdq"]))
    ops = {n.op_type for n in qdq.graph.node}
    assert not ops & {"QuantizeLinear", "DequantizeLinear"} and {"Round", "Clip", "Conv"} <= ops
    assert "Cast" in ops  # the int8 weights stay int8 in the file and are cast when loaded
    assert "zoo.quantization" in {p.key for p in qdq.metadata_props}
    int8 = onnx.load(str(exported["shufflenet-v2-12-int8"]))
    assert "QLinearConv" in {n.op_type for n in int8.graph.node}
    assert "zoo.quantization" not in {p.key for p in int8.metadata_props}


@pytest.mark.parametrize("model_id", ["mnist-7", "mnist-8", "mnist-12"])
def test_mnist_exported_reads_the_digits(model_id, exported) -> None:
    s = session(exported[model_id])
    digits = sorted(need(IMAGES / "digits").glob("mnist_*.jpg"))
    got = [int(s.run(["top_k"], {"image": np.asarray(Image.open(p).convert("L"))})[0][0, 0]) for p in digits]
    assert got == [int(p.stem.split("_")[1]) for p in digits] == [0, 3, 5, 7]


def iou(a: np.ndarray, b: tuple[float, ...]) -> float:
    lo, hi = np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])
    inter = float(np.prod(np.clip(hi - lo, 0, None)))
    union = float(np.prod(a[2:] - a[:2]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
    return inter / union if union > 0 else 0.0


@pytest.mark.parametrize("model_id", ["version-RFB-320", "version-RFB-640"])
def test_ultraface_boxes_match_zoo_predict(model_id, exported, monkeypatch) -> None:
    monkeypatch.setenv("ZOO_HOME", str(exported["home"]))
    s = session(exported[model_id])
    model = zoo.load(model_id)
    faces = 0
    for path in photos():
        want = model.predict(str(path)).predictions
        out = dict(zip([o.name for o in s.get_outputs()], s.run(None, {"image": rgb(path)})))
        assert len(out["boxes"]) == len(want), path.name
        for box, label, det in zip(out["boxes"], out["labels"], want):
            assert iou(box, det.box) >= 0.9 and label == det.label == "face", path.name
        faces += len(want)
    assert faces >= 5


def test_cli_export_of_a_zoo_models_file_by_path_is_the_export_of_its_name(tmp_path: Path) -> None:
    """`zoo export ./mobilenetv2-12-int8.onnx out.onnx` said "unknown model"; the file is known by its sha256."""
    seed("mobilenetv2-12-int8")
    by_name, by_path = tmp_path / "name.onnx", tmp_path / "path.onnx"
    for source, out in (("mobilenetv2-12-int8", by_name), (str(need(DATA / "models" / "mobilenetv2-12-int8.onnx")),
                                                          by_path)):
        result = CliRunner().invoke(cli, ["export", source, str(out), "--json"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["model_id"] == "mobilenetv2-12-int8"
    assert by_path.read_bytes() == by_name.read_bytes()
    missing = CliRunner().invoke(cli, ["export", str(tmp_path / "nothing.onnx"), str(tmp_path / "x.onnx")])
    assert missing.exit_code == 2 and "no such model file" in missing.stderr


def test_cli_export_then_plain_onnxruntime_says_tree_frog(tmp_path: Path) -> None:
    seed("mobilenetv2-12-int8")
    out = tmp_path / "m.onnx"
    result = CliRunner().invoke(cli, ["export", "mobilenetv2-12-int8", str(out), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest() and report["opset"] >= 18
    assert report["inputs"] == [{"name": "image", "type": "uint8", "shape": ["height", "width", 3]}]
    # A fresh interpreter that never imports zoo, fed exactly what the issue says.
    script = ("import sys, numpy as np, onnxruntime as ort; from PIL import Image\n"
              f"s = ort.InferenceSession({str(out)!r}, providers=['CPUExecutionProvider'])\n"
              f"x = np.asarray(Image.open({str(need(IMAGES / 'frog.jpg'))!r}).convert('RGB'))\n"
              "print(s.run(['top_k_labels'], {'image': x})[0][0][0]); assert 'zoo' not in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, check=True)
    assert done.stdout.strip() == "tree frog"


def test_exported_file_is_checked_and_carries_metadata(exported) -> None:
    model = onnx.load(str(exported["version-RFB-320"]))
    onnx.checker.check_model(model, full_check=True)
    props = {p.key: p.value for p in model.metadata_props}
    entry = load_index().resolve("version-RFB-320").entry
    assert props["zoo.model_id"] == "version-RFB-320" and props["zoo.source_sha256"] == entry.sha256
    assert props["zoo.labels"] == "face2" and props["zoo.postprocess"] == "boxes-threshold-nms"
    assert json.loads(props["zoo.recipe"])["resize"]["size"] == [240, 320]
    assert [i.name for i in model.graph.input] == ["image"]
    assert {o.domain for o in model.opset_import} <= {"", "ai.onnx", "com.microsoft"}


def test_no_postprocess_keeps_the_raw_outputs(tmp_path: Path) -> None:
    seed("mnist-12")
    report = export_model("mnist-12", tmp_path / "raw.onnx", postprocess=False)
    assert report.outputs == ("Plus214_Output_0",) and report.postprocess is None
    digit = np.asarray(Image.open(need(IMAGES / "digits" / "mnist_7.jpg")).convert("L"))
    assert int(session(tmp_path / "raw.onnx").run(None, {"image": digit})[0].argmax()) == 7


@pytest.mark.parametrize("name,what", [("bert-squad", "no single-image recipe"), ("nosuch-model", "unknown model"),
                                       ("super-resolution-10", "tiled recipe")])
def test_cli_refusals_exit_2_with_a_hint(name: str, what: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["export", name, str(tmp_path / "x.onnx")])
    assert result.exit_code == 2, result.output
    assert what in result.stderr and "hint:" in result.stderr
    assert not (tmp_path / "x.onnx").exists()


def test_a_top_k_past_int64_is_the_classes_and_a_bad_one_is_refused(tmp_path: Path) -> None:
    """topk=10**20 was an OverflowError building the graph's int64 constant (exit 1 from the CLI)."""
    from zoo.errors import InputError
    from zoo.export import export_model

    seed("mobilenetv2-12-int8")
    export_model("mobilenetv2-12-int8", tmp_path / "k.onnx", topk=10**20)
    s = session(tmp_path / "k.onnx")
    photo = np.asarray(Image.open(need(IMAGES / "frog.jpg")).convert("RGB"))
    assert s.run(["top_k"], {"image": photo})[0].shape == (1, 1000)  # every class, ranked
    for bad in (0, True, "5"):
        with pytest.raises(InputError, match="expected a whole number of 1 or more"):
            export_model("mobilenetv2-12-int8", tmp_path / "bad.onnx", topk=bad)  # type: ignore[arg-type]
    cli_result = CliRunner().invoke(cli, ["export", "mobilenetv2-12-int8", str(tmp_path / "c.onnx"), "--top-k",
                                          "99999999999999999999"])
    assert cli_result.exit_code == 2 and "not in the range 1<=x<=1000000" in cli_result.stderr


# -- zoo.hub.load_composite_model, from onnx.hub's docstring: "Builds a composite model including data
#    preprocessing by downloading a network and a preprocessing model and combine it into a single model".


def _preprocessing_model() -> bytes:
    """A tiny opset-18 preprocessing model: uint8 [28, 28] -> float [1, 1, 28, 28] / 255."""
    nodes = [helper.make_node("Cast", ["pixels"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("Div", ["f", "k255"], ["g"]),
             helper.make_node("Reshape", ["g", "shape"], ["prepared"])]
    graph = helper.make_graph(nodes, "prep", [helper.make_tensor_value_info("pixels", TensorProto.UINT8, [28, 28])],
                              [helper.make_tensor_value_info("prepared", TensorProto.FLOAT, [1, 1, 28, 28])],
                              [helper.make_tensor("k255", TensorProto.FLOAT, [], [255.0]),
                               helper.make_tensor("shape", TensorProto.INT64, [4], [1, 1, 28, 28])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    return model.SerializeToString()


def test_hub_load_composite_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seed("mnist-7", "mnist-8", "mnist-12")
    data = _preprocessing_model()
    doc = load_index().resolve("resnet-preproc-v1-18").entry.to_dict() | {
        "id": "mnist-preproc-18", "aliases": [], "hub_name": "MNIST-preproc", "opset": 18, "test_data": None,
        "file": {"path": "private/mnist-preproc-18.onnx", "sha256": hashlib.sha256(data).hexdigest(),
                 "size": len(data)}}
    for key in ("sha256", "bytes"):
        doc.pop(key, None)
    (tmp_path / "m.json").write_text(json.dumps({"schema_version": 1, "family": "prep", "models": [doc]}))
    monkeypatch.setenv("ZOO_MANIFESTS", str(tmp_path / "m.json"))
    (tmp_path / "mnist-preproc-18.onnx").write_bytes(data)
    entry = load_index().resolve("mnist-preproc-18").entry
    download.import_file(entry, entry.file, tmp_path / "mnist-preproc-18.onnx")

    network = hub.load("MNIST", silent=True)
    composite = hub.load_composite_model("MNIST", "MNIST-preproc", silent=True)
    assert isinstance(composite, onnx.ModelProto)
    assert {o.domain or "ai.onnx": o.version for o in network.opset_import}["ai.onnx"] < 18
    # The lower opset (the network's) is converted up to the preprocessing model's 18.
    assert {o.domain or "ai.onnx": o.version for o in composite.opset_import}["ai.onnx"] == 18
    weights = {t.name for t in composite.graph.initializer}  # old files list weights as inputs; kept, as onnx.hub did
    assert [i.name for i in composite.graph.input if i.name not in weights] == ["pixels"]
    assert [o.name for o in composite.graph.output] == [o.name for o in network.graph.output]
    onnx.checker.check_model(composite)
    s = ort.InferenceSession(composite.SerializeToString(), providers=["CPUExecutionProvider"])
    for path in sorted(need(IMAGES / "digits").glob("mnist_*.jpg")):
        x = np.asarray(Image.open(path).convert("L").resize((28, 28)))
        assert int(s.run(None, {"pixels": x})[0].argmax()) == int(path.stem.split("_")[1])
    with pytest.raises(ZooError):
        hub.load_composite_model("MNIST", "no such preprocessing", silent=True)
