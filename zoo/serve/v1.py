"""zoo's own endpoints for people: POST an image, get `zoo predict --json`'s row; list the catalogue."""

from __future__ import annotations

import io
import re
from typing import Any

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from zoo.counts import count_of
from zoo.errors import ImageError
from zoo.model import Model
from zoo.printable import clipped
from zoo.serve.errors import RequestError
from zoo.serve.models import ImageJob
from zoo.serve.state import state_of, tag

BODY_NAME = "<request body>"


async def list_models(request: Request) -> JSONResponse:
    """The catalogue (id, task, opset, cached, loaded) and what is loaded now, like `ollama ps`."""
    from zoo import api

    tag(request, "list")
    state = state_of(request)
    loaded = [s.to_dict() for s in state.pool.served]
    names = {row["name"] for row in loaded}

    def catalogue() -> list[dict[str, Any]]:
        return [{"id": e.id, "task": e.task, "opset": e.opset, "aliases": list(e.aliases),
                 "cached": api.info(e.id).cached_path is not None, "loaded": e.id in names}
                for e in api.list_models()]

    return JSONResponse({"loaded": loaded, "models": await state.in_thread(catalogue)})


async def predict(request: Request) -> JSONResponse:
    """One image (raw body or a multipart file) -> one row of `zoo predict --json`."""
    tag(request, "predict")
    topk, threshold = _options(request)
    state = state_of(request)
    served = await state.pool.get(state.pool.key_of(request.path_params["name"]))
    model = served.model
    tag(request, "predict", model.name)
    model.ensure_runnable()
    if model.runner.kind != "image":
        raise RequestError(f"{model.name} takes {model.runner.kind} inputs, not images",
                           hint=f"send tensors to POST /v2/models/{model.name}/infer")
    with served.use():
        data, name = await _image_of(request)
        with served.images.arriving():
            prepared = await state.in_thread(_prepare, model, data, name)
        key = (model.batch_key(prepared), topk, threshold)
        prediction = await served.images.submit(key, ImageJob(name, prepared, topk, threshold))
    return JSONResponse(prediction.to_dict())


def _prepare(model: Model, data: bytes, name: str) -> Any:
    try:
        return model.prepare(io.BytesIO(data))
    except ImageError as exc:  # name the upload, not the in-memory buffer
        raise ImageError(name, exc.reason) from None


def _options(request: Request) -> tuple[int | None, float | None]:
    query = request.query_params
    topk = threshold = None
    if "top_k" in query:
        raw = query["top_k"]
        topk = count_of(raw)
        if topk is None or not 1 <= topk <= 1000:
            raise RequestError(f"top_k must be a whole number from 1 to 1000, got {clipped(raw)}", hint="e.g. ?top_k=5")
    if "score_threshold" in query:
        raw = query["score_threshold"]
        try:
            threshold = float(raw)
        except ValueError:
            threshold = -1.0
        if not 0.0 <= threshold <= 1.0:
            raise RequestError(f"score_threshold must be a number from 0 to 1, got {raw!r}",
                               hint="e.g. ?score_threshold=0.5")
    return topk, threshold


async def _image_of(request: Request) -> tuple[bytes, str]:
    """The image bytes and the name its row carries: the upload's file name, or "<request body>"."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        try:
            async with request.form(max_files=1, max_fields=16) as form:
                files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
                if len(files) != 1:
                    raise RequestError(f"the multipart form has {len(files)} files; send exactly one",
                                       hint="curl -F image=@photo.jpg URL")
                data, name = await files[0].read(), files[0].filename or "<upload>"
        except HTTPException as exc:  # Starlette's parser: too many files or fields, a malformed form
            raise RequestError(f"the multipart form cannot be read: {exc.detail}",
                               hint="send one image file and nothing else: curl -F image=@photo.jpg URL") from None
    else:
        data, name = await request.body(), BODY_NAME
    if not data:
        raise RequestError("the request has no image: the body is empty",
                           hint="send the image bytes as the body (curl --data-binary @photo.jpg) "
                                "or as a multipart file (curl -F image=@photo.jpg)")
    if _URL.match(data[:16]):
        raise RequestError(f"{name} is a URL ({clipped(data[:200].decode('latin-1').strip())}), and zoo serve "
                           "fetches nothing on a client's behalf",
                           hint="download the image yourself and send its bytes: curl --data-binary @photo.jpg")
    return data, name


_URL = re.compile(rb"\s*(https?|ftp|file)://", re.IGNORECASE)


ROUTES = [
    Route("/v1/models", list_models, methods=["GET"]),
    Route("/v1/models/{name}/predict", predict, methods=["POST"]),
]
