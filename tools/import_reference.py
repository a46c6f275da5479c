"""One-off importer: ONNX Model Zoo facts -> manifests/<family>.json.

Reads ../shared/reference/validated_models.json (facts extracted from
onnx/models) and writes one manifest file per family in zoo's schema
(manifests/README.md). The manifests are the source of truth afterwards and
are edited by hand; this tool documents how the free-text recipes of the
reference were mapped onto zoo's closed vocabularies. Run:

    python tools/import_reference.py ../shared/reference/validated_models.json manifests
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from pathlib import Path

# Short names users type; each maps to every model of the group (highest opset wins).
CURATED_ALIASES = {
    r"resnet(18|34|50|101|152)-v1-\d+": lambda m: [f"resnet{m.group(1)}"],
    r"bvlcalexnet-\d+": lambda m: ["alexnet"],
    r"bvlcalexnet-\d+-(int8|qdq)": lambda m: [f"alexnet-{m.group(1)}"],
    r"mobilenetv2-\d+": lambda m: ["mobilenet"],
    r"version-RFB-320": lambda m: ["ultraface-320"],
    r"version-RFB-320-int8": lambda m: ["ultraface-320-int8"],
    r"version-RFB-640": lambda m: ["ultraface-640", "ultraface"],
    r"yolov2-coco-9": lambda m: ["yolov2"],
    r"FasterRCNN-\d+": lambda m: ["faster-rcnn"],
    r"MaskRCNN-\d+": lambda m: ["mask-rcnn"],
    r"ResNet101-DUC-\d+": lambda m: ["duc"],
    r"densenet-\d+": lambda m: ["densenet-121", "densenet121"],
    r"zfnet512-\d+": lambda m: ["zfnet"],
    r"arcfaceresnet100-\d+": lambda m: ["arcface"],
    r"emotion-ferplus-\d+": lambda m: ["ferplus"],
    r"bertsquad-\d+": lambda m: ["bert-squad"],
    r"ssd_mobilenet_v1_\d+": lambda m: ["ssd-mobilenet"],
    r"tinyyolov2-\d+": lambda m: ["tiny-yolov2"],
    r"super-resolution-10": lambda m: ["sub-pixel-cnn"],
}


def opset_alias(model: dict) -> str | None:
    """The id without its opset number: vgg19-7 -> vgg19, mnist-12-int8 -> mnist-int8."""
    m = re.fullmatch(rf"(.+?)[-_]{model['opset']}(-int8|-qdq)?", model["id"])
    return None if m is None else m.group(1) + (m.group(2) or "")


def aliases(model: dict, all_ids: set[str]) -> list[str]:
    out = [a for a in [opset_alias(model)] if a]
    for pattern, make in CURATED_ALIASES.items():
        m = re.fullmatch(pattern, model["id"])
        if m:
            out += make(m)
    return [a for a in dict.fromkeys(out) if a.lower() not in all_ids]


def interpolation(text: str | None) -> str:
    t = (text or "").lower()
    if "bicubic" in t or t == "pil default":
        return "bicubic"  # Pillow's Image.resize default since 7.0
    if "antialias" in t or "lanczos" in t:
        return "lanczos"
    if "nearest" in t:
        return "nearest"
    return "bilinear"  # explicit bilinear, cv2/torchvision defaults, or unspecified


def number(text) -> float | None:
    if text is None or isinstance(text, (int, float)):
        return text
    m = re.search(r"[0-9]*\.?[0-9]+", str(text))
    return float(m.group(0)) if m else None


def resize(pre: dict) -> dict:
    r = pre.get("resize") or {}
    method = str(r.get("method") or "none")
    size = r.get("size") or pre.get("size")
    if method.startswith("direct"):
        return {"method": "stretch", "size": size}
    if method in ("shorter_side_then_center_crop", "aspect_resize_then_center_crop"):
        return {"method": "shorter_side_center_crop", "shorter_side": r["shorter_side"], "crop": r["crop"]}
    if method == "shorter_side" or method.startswith("optional shorter_side"):
        out = {"method": "shorter_side", "shorter_side": r["shorter_side"]}
        if r.get("pad_to_multiple"):
            # README pads the mean-subtracted tensor with 0: in pixel space that is the mean.
            out |= {"pad_to_multiple": r["pad_to_multiple"], "pad_value": pre["mean"], "pad_position": "bottom-right"}
        return out
    if method == "letterbox":
        return {"method": "letterbox", "size": size, "pad_value": r["pad_value"], "pad_position": "center"}
    if method == "resize_cover_then_center_crop":
        return {"method": "cover_center_crop", "size": size}
    if method.startswith("pad/crop"):
        # DUC: pad bottom/right with the mean (0 after subtraction), graph input fixed.
        return {"method": "pad_to_size", "size": size, "pad_to_multiple": r["pad_to_multiple"],
                "pad_value": pre["mean"], "pad_position": "bottom-right"}
    if method == "face_alignment":
        return {"method": "face_align", "size": size}
    return {"method": "none"}


def layout(text: str) -> str:
    for name in ("NCHW", "NHWC", "CHW", "HWC"):
        if text.startswith(name) or f" {name} " in f" {text} ":
            return name
    raise ValueError(f"unknown layout {text!r}")


def preprocess(model: dict) -> dict | None:
    pre = model["preprocess"]
    if pre is None:
        return None
    if pre["kind"] == "text":
        params = {k: pre[k] for k in ("max_seq_length", "doc_stride", "max_query_length") if k in pre}
        return {"kind": "text", "tokenizer": pre.get("tokenizer"), "vocab": pre.get("vocab"),
                "inputs": pre.get("inputs") or {}, "params": params, "notes": pre.get("notes", "")}
    extra = [{"name": e["name"], "value": "original_hw", "dtype": e["dtype"]} for e in pre.get("extra_inputs") or []]
    notes = pre.get("notes", "")
    if pre.get("batch"):
        notes = f"{notes} Batch: {pre['batch']}.".strip()
    return {
        "kind": pre["kind"],
        "input": pre.get("input"),
        "resize": resize(pre) if pre["kind"] == "image" else {"method": "none"},
        "interpolation": interpolation(pre.get("interpolation")),
        "scale": pre.get("scale") if pre.get("scale") is not None else 1.0,
        "mean": pre.get("mean"),
        "std": pre.get("std"),
        "channel_order": pre["channel_order"],
        "layout": layout(pre["layout"]),
        "dtype": pre["dtype"],
        "extra_inputs": extra,
        "notes": notes,
    }


NOTE_KEYS = ("decode", "box_format", "label_format", "nms", "score", "masks", "ordering", "num_detections",
             "channel_layout", "box_mapping", "cls_head_channels", "box_head_channels", "anchors_file", "notes")
PARAM_KEYS = ("anchors", "grid", "cell_size", "anchors_per_cell", "channels_per_anchor", "strides", "xyscale",
              "upscale_factor", "classes", "max_detections", "top_n_per_level", "n_best_size",
              "max_answer_length", "vocab_size", "output_shapes")


def postprocess(model: dict) -> dict:
    post = model["postprocess"]
    outputs = post.get("outputs") or {"output": post.get("output")}
    if isinstance(outputs, list):
        outputs = {"heads": outputs}
    if outputs.get("output") is None and "output" in outputs:
        outputs = {}
    out: dict = {"kind": post["kind"], "outputs": outputs,
                 "apply_softmax": bool(post.get("apply_softmax")), "squeeze": bool(post.get("squeeze"))}
    if post.get("topk"):
        out["topk"] = post["topk"]
    threshold = number(post.get("score_threshold"))
    if threshold is not None:
        out["score_threshold"] = threshold
    iou = post.get("nms_iou") or number(re.search(r"IoU\s*~?\s*([0-9.]+)", post.get("nms") or "") and
                                        re.search(r"IoU\s*~?\s*([0-9.]+)", post["nms"]).group(1))
    if iou is not None:
        out["nms_iou"] = float(iou)
    fmt = post.get("box_format") or ""
    if fmt:
        out["box_order"] = "yxyx" if re.search(r"\[(ymin|y1)", fmt) else "xyxy"
        out["box_coords"] = ("normalized" if "normalized" in fmt else
                             "input-pixels" if "RESIZED" in fmt else "original-pixels")
    if "category id" in (post.get("label_format") or ""):
        out["label_format"] = "category-id"
    params = {k: post[k] for k in PARAM_KEYS if k in post}
    if isinstance(post.get("anchors"), dict):  # RetinaNet: generated anchors
        params["anchors"] = None
        params |= {"anchor_ratios": post["anchors"]["ratios"],
                   "anchor_scales": [round(4 * 2 ** (i / 3), 6) for i in range(3)],
                   "strides": [8, 16, 32, 64, 128]}
    if "score" in post and "column 1" in post["score"]:
        params["score_column"] = 1
    out["params"] = {k: v for k, v in params.items() if v is not None}
    out["notes"] = "; ".join(f"{k}: {post[k]}" if k != "notes" else post[k]
                            for k in NOTE_KEYS if isinstance(post.get(k), str))
    return out


def entry(model: dict, all_ids: set[str]) -> dict:
    test_data = None
    if model.get("tar_path"):
        test_data = {"path": model["tar_path"], "sha256": model["tar_sha256"], "size": model["tar_bytes"]}
    return {
        "id": model["id"],
        "hub_name": model["hub_name"],
        "aliases": aliases(model, all_ids),
        "task": model["task"],
        "variant": model["variant"],
        "opset": model["opset"],
        "onnx_version": model["onnx_version"],
        "tags": model["tags"],
        "license": model["license"],
        "source_framework": model.get("source_framework"),
        "file": {"path": model["path"], "sha256": model["sha256"], "size": model["bytes"]},
        "test_data": test_data,
        "inputs": model["inputs"],
        "outputs": model["outputs"],
        "preprocess": preprocess(model),
        "postprocess": postprocess(model),
        "labels": model["labels"],
        "confidence": model["facts_confidence"],
    }


def main(reference: str, out_dir: str) -> None:
    models = json.loads(Path(reference).read_text())
    all_ids = {m["id"].lower() for m in models}
    families: dict[str, list] = defaultdict(list)
    for model in models:
        families[model["family"]].append(entry(model, all_ids))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for family, entries in families.items():
        name = family.replace("_", "-")
        doc = {"schema_version": 1, "family": family, "models": entries}
        (out / f"{name}.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {len(models)} models in {len(families)} families to {out}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
