"""The OpenAPI description of every route, and a self-contained page that shows it (no CDN: works offline)."""

from __future__ import annotations

import html
from typing import Any

from zoo.version import __version__

NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
        "description": "a zoo model id, alias or hub name (`mobilenetv2-12-int8`, `resnet50`, `\"VGG 19\"`)"}
VERSION = {"name": "version", "in": "path", "required": True, "schema": {"type": "string"},
           "description": "the model's opset (another opset picks that variant)"}
ERROR = {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
TENSOR = {"type": "object", "required": ["name", "datatype", "shape"], "properties": {
    "name": {"type": "string"}, "datatype": {"type": "string", "example": "FP32"},
    "shape": {"type": "array", "items": {"type": "integer"}}, "data": {"type": "array", "items": {}},
    "parameters": {"type": "object", "properties": {"binary_data_size": {"type": "integer"},
                                                    "binary_data": {"type": "boolean"}}}}}


def _op(summary: str, description: str, *, params: list[dict[str, Any]] | None = None, body: Any = None,
        ok: str = "ok", errors: tuple[int, ...] = ()) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "description": description, "parameters": params or [],
                          "responses": {"200": {"description": ok}, **{str(c): ERROR for c in errors}}}
    if body is not None:
        op["requestBody"] = body
    return op


def _infer_body() -> dict[str, Any]:
    schema = {"type": "object", "required": ["inputs"], "properties": {
        "id": {"type": "string"}, "inputs": {"type": "array", "items": TENSOR},
        "outputs": {"type": "array", "items": {"type": "object", "properties": {
            "name": {"type": "string"},
            "parameters": {"type": "object", "properties": {
                "binary_data": {"type": "boolean"},
                "classification": {"type": "integer", "minimum": 0, "description": "answer the N highest classes "
                                   "as BYTES \"score:index:label\" strings, highest first (0: the tensor)"}}}}}},
        "parameters": {"type": "object", "properties": {"binary_data_output": {"type": "boolean"}}}}}
    return {"required": True, "description": "JSON tensors; or, with the binary tensor data extension, the JSON "
            "header (its length in `Inference-Header-Content-Length`) followed by the raw tensor bytes",
            "content": {"application/json": {"schema": schema}, "application/octet-stream": {}}}


def _paths() -> dict[str, Any]:
    model, versioned = [NAME], [NAME, VERSION]
    image = {"required": True, "description": "the image file's bytes, or a multipart form with one file",
             "content": {"image/*": {}, "application/octet-stream": {},
                         "multipart/form-data": {"schema": {"type": "object", "properties": {
                             "image": {"type": "string", "format": "binary"}}}}}}
    options = [{"name": "top_k", "in": "query", "schema": {"type": "integer", "minimum": 1}},
               {"name": "score_threshold", "in": "query", "schema": {"type": "number", "minimum": 0, "maximum": 1}}]
    metadata = _op("model metadata", "inputs and outputs with datatype and shape (-1: any size), platform "
                   "onnxruntime_onnx; loads the model", params=model, errors=(404, 500))
    ready = _op("model ready", "200 when loaded, 503 when not (it loads on first use)", params=model, errors=(404, 503))
    infer = _op("infer", "run raw tensors; requests that arrive together share a run on batchable models",
                params=model, body=_infer_body(), errors=(400, 404, 408, 413, 431, 500))
    return {
        "/v1/models/{name}/predict": {"post": _op(
            "predict an image", "the same JSON as one line of `zoo predict --json`: labels, scores, boxes in "
            "original pixels; no URLs are fetched", params=[*model, *options], body=image,
            errors=(400, 404, 408, 413, 431, 500))},
        "/v1/models": {"get": _op("list models", "the catalogue (cached? loaded?) and the loaded models, like "
                                  "`ollama ps`")},
        "/v2": {"get": _op("server metadata", "name, version, extensions")},
        "/v2/health/live": {"get": _op("live", "200 while the server runs")},
        "/v2/health/ready": {"get": _op("ready", "200 once the start-up models are loaded", errors=(503,))},
        "/v2/models/{name}": {"get": metadata},
        "/v2/models/{name}/versions/{version}": {"get": {**metadata, "parameters": versioned}},
        "/v2/models/{name}/ready": {"get": ready},
        "/v2/models/{name}/versions/{version}/ready": {"get": {**ready, "parameters": versioned}},
        "/v2/models/{name}/infer": {"post": infer},
        "/v2/models/{name}/versions/{version}/infer": {"post": {**infer, "parameters": versioned}},
        "/v2/repository/index": {"post": _op("repository index", "every model, READY when loaded; body "
                                             "{\"ready\": true} lists only those")},
        "/v2/repository/models/{name}/load": {"post": _op("load", "load and keep until unloaded; body empty or "
                                                          "{} (Triton's config and file: parameters are refused, "
                                                          "400)", params=model, errors=(400, 404, 500))},
        "/v2/repository/models/{name}/unload": {"post": _op("unload", "unload (requests in flight finish); body "
                                                            "empty, {} or {\"parameters\": {\"unload_dependents\": "
                                                            "bool}}", params=model, errors=(400, 404))},
        "/metrics": {"get": _op("metrics", "Prometheus text format")},
    }


def schema() -> dict[str, Any]:
    """The OpenAPI 3.1 document served at /openapi.json."""
    return {"openapi": "3.1.0",
            "info": {"title": "zoo serve", "version": __version__,
                     "description": "ONNX Model Zoo models over the Open Inference Protocol (KServe v2), "
                                    "plus zoo's image endpoint"},
            "paths": _paths(),
            "components": {"schemas": {"Error": {"type": "object", "required": ["error"], "properties": {
                "error": {"type": "string"}, "hint": {"type": "string"},
                "suggestions": {"type": "array", "items": {"type": "string"}}}}},
                "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}}}


def page(doc: dict[str, Any]) -> str:
    """/docs: every operation with its parameters, as plain HTML."""
    rows = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            params = ", ".join(f"{p['name']} ({p['in']})" for p in op.get("parameters", [])) or "—"
            codes = ", ".join(op["responses"])
            rows.append(f"<tr><td><code>{method.upper()} {html.escape(path)}</code></td>"
                        f"<td><b>{html.escape(op['summary'])}</b>: {html.escape(op['description'])}</td>"
                        f"<td>{html.escape(params)}</td><td>{codes}</td></tr>")
    return ("<!doctype html><meta charset=utf-8><title>zoo serve API</title>"
            "<style>body{font:14px sans-serif;margin:2em}td{padding:4px 8px;vertical-align:top;"
            "border-bottom:1px solid #ddd}</style>"
            f"<h1>zoo serve {html.escape(doc['info']['version'])}</h1><p>{html.escape(doc['info']['description'])}."
            " Machine-readable: <a href=/openapi.json>/openapi.json</a>. Errors are "
            "<code>{\"error\": …}</code>.</p><table><tr><th>route</th><th>what</th><th>parameters</th>"
            "<th>status</th></tr>" + "".join(rows) + "</table>")
