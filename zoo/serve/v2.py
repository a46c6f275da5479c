"""Open Inference Protocol (KServe v2) routes: health, metadata, infer, and the model repository extension."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from zoo.counts import count_of
from zoo.printable import clipped
from zoo.serve import oip
from zoo.serve.errors import RequestError
from zoo.serve.models import Served
from zoo.serve.state import ServerState, state_of, tag
from zoo.version import __version__

EXTENSIONS = ["binary_tensor_data", "classification", "model_repository"]
# Below these sizes parsing or encoding takes well under a millisecond: a thread hop would cost more.
INLINE_JSON = 64 * 1024  # bytes of JSON header
INLINE_VALUES = 20_000  # tensor values written as JSON
PLAN_HEADER = 4096  # JSON headers up to this size are remembered with their plan, per model


async def server_metadata(request: Request) -> JSONResponse:
    tag(request, "server_metadata")
    return JSONResponse({"name": "zoo", "version": __version__, "extensions": EXTENSIONS})


async def live(request: Request) -> JSONResponse:
    tag(request, "health")
    return JSONResponse({"live": True})


async def ready(request: Request) -> JSONResponse:
    tag(request, "health")
    state = state_of(request)
    if state.startup_error:
        return JSONResponse({"ready": False, "error": f"start-up models failed to load: {state.startup_error}"}, 503)
    if not state.ready:
        return JSONResponse({"ready": False, "error": "loading the start-up models"}, 503)
    return JSONResponse({"ready": True})


def _key(request: Request) -> str:
    name = request.path_params["name"]
    key = state_of(request).pool.key_of(name, request.path_params.get("version"))
    return key


async def _served(request: Request, endpoint: str) -> Served:
    tag(request, endpoint)
    served = await state_of(request).pool.get(_key(request))
    tag(request, endpoint, served.model.name)
    return served


def version_of(served: Served) -> str:
    """A zoo model's one version is its opset; a local file's is 1."""
    return str(served.model.entry.opset) if served.model.entry else "1"


async def model_metadata(request: Request) -> JSONResponse:
    served = await _served(request, "metadata")
    model = served.model

    def tensors(metas: Any) -> list[dict[str, Any]]:
        return [{"name": m.name, "datatype": oip.datatype_of(m.type), "shape": oip.shape_of(m.shape)} for m in metas]

    return JSONResponse({"name": model.name, "versions": [version_of(served)], "platform": "onnxruntime_onnx",
                         "inputs": tensors(model.input_metas), "outputs": tensors(model.output_metas),
                         "parameters": {"task": model.task, "provider": model.report.primary,
                                        "max_batch_size": served.tensors.max_batch}})


async def model_ready(request: Request) -> JSONResponse:
    tag(request, "model_ready")
    key = _key(request)
    served = state_of(request).pool.loaded(key)
    if served is None:
        return JSONResponse({"name": request.path_params["name"], "ready": False,
                             "error": f"{key} is not loaded; it loads on its first request, or with "
                                      f"POST /v2/repository/models/{request.path_params['name']}/load"}, 503)
    tag(request, "model_ready", served.model.name)
    return JSONResponse({"name": served.model.name, "ready": True})


async def infer(request: Request) -> Response:
    """The infer route through Starlette; zoo.serve.front answers POSTs to it before Starlette (same answer)."""
    served = await _served(request, "infer")
    payload, json_length = await answer_infer(state_of(request), served, await request.body(),
                                              request.headers.get(oip.HEADER))
    if json_length is None:
        return Response(payload, media_type="application/json")
    return Response(payload, media_type="application/octet-stream", headers={oip.HEADER: str(json_length)})


async def answer_infer(state: ServerState, served: Served, body: bytes | memoryview,
                       header_value: str | None) -> tuple[bytes, int | None]:
    """The response body of one infer request, and its JSON header's length when binary outputs follow.

    A JSON header seen before for this model (up to PLAN_HEADER bytes, every input binary) skips
    its parse and checks: its plan (oip.Plan) says where the inputs lie and what to answer.
    """
    model = served.model
    with served.use():
        header_length = header_length_of(header_value)
        head = plan = feeds = None
        if header_length is not None and 0 < header_length <= min(len(body), PLAN_HEADER):
            head = bytes(body[:header_length])  # a dict key (the body may be a memoryview: zoo.serve.protocol)
            plan = served.plans.get(head)
            feeds = None if plan is None else plan.feeds(body, header_length)
        if plan is None or feeds is None:
            plan, feeds = await _checked(state, served, body, header_length)
            if head is not None and plan.inputs is not None:
                served.remember(head, plan)
        key = plan.batch_key if plan.batch_key is not None else object()
        outputs = await served.tensors.submit(key, feeds, plan.rows)
        picked = [(name, oip.classified(outputs[name], classes, model.labels, name) if classes else outputs[name],
                   binary) for name, binary, classes in plan.outputs]

        def encode() -> tuple[bytes, int | None]:
            return oip.encode_response(model=model.name, version=version_of(served), request_id=plan.request_id,
                                       outputs=picked)

        as_json = sum(value.size for _, value, binary in picked if not binary)
        return encode() if as_json <= INLINE_VALUES else await state.in_thread(encode)


async def _checked(state: ServerState, served: Served, body: bytes | memoryview,
                   header_length: int | None) -> tuple[oip.Plan, dict[str, Any]]:
    """Parse a request and check it against the model: its plan and its feeds."""
    model = served.model
    if (len(body) if header_length is None else header_length) <= INLINE_JSON:
        parsed = oip.parse_request(body, header_length)  # binary tensors: a small header, parsed at once
    else:
        with served.tensors.arriving():  # JSON tensors: ~150k numbers for one image, parsed off the loop
            parsed = await state.in_thread(oip.parse_request, body, header_length)
    feeds = oip.feeds_for(parsed, model.input_metas, model.name)
    chosen = oip.chosen_outputs(parsed, [m.name for m in model.output_metas], model.name)
    key, rows = served.tensor_key(feeds)
    return oip.plan_of(parsed, chosen, key, rows), feeds


def header_length_of(value: str | None) -> int | None:
    """The JSON part's length from the Inference-Header-Content-Length header (None: the body is all JSON)."""
    if value is None:
        return None
    length = count_of(value.strip())
    if length is None:
        raise RequestError(f"{oip.HEADER} must be a byte count, got {clipped(value)}")
    return length


async def repository_index(request: Request) -> JSONResponse:
    """The repository: every model in the catalogue (and the files named at start-up), READY when loaded."""
    from zoo import api

    tag(request, "repository")
    body = await request.body()
    only_ready = oip.parse_json(body, _REPOSITORY_HINT).get("ready", False) if body.strip() else False
    if not isinstance(only_ready, bool):
        raise RequestError(f"\"ready\" must be true or false, got {clipped(json.dumps(only_ready))}",
                           hint='POST {"ready": true} lists the loaded models only')
    pool = state_of(request).pool
    loaded = {s.key: s for s in pool.served}
    rows = [{"name": name, "version": "1", "state": "READY" if f"file:{path}" in loaded else "UNAVAILABLE"}
            for name, path in sorted(pool.files.items())]
    rows += [{"name": e.id, "version": str(e.opset), "state": "READY" if e.id in loaded else "UNAVAILABLE"}
             for e in api.list_models()]
    for row in rows:
        if row["state"] != "READY":
            row["reason"] = "not loaded"
    return JSONResponse([r for r in rows if r["state"] == "READY" or not only_ready])


async def repository_load(request: Request) -> JSONResponse:
    """Load a model and keep it (pinned) until it is unloaded."""
    tag(request, "repository")
    await _repository_parameters(request, "load", {})
    served = await state_of(request).pool.get(_key(request), pin=True)
    tag(request, "repository", served.model.name)
    return JSONResponse({})


async def repository_unload(request: Request) -> JSONResponse:
    tag(request, "repository")
    await _repository_parameters(request, "unload", {"unload_dependents": bool})  # zoo models have no dependents
    key = _key(request)
    state_of(request).pool.unload(key)
    return JSONResponse({})


_REPOSITORY_HINT = 'send no body, {} or {"parameters": {...}} as a JSON object'


async def _repository_parameters(request: Request, action: str, takes: dict[str, type]) -> None:
    """Check a load or unload request's body (empty, or an object with "parameters"), refusing any parameter zoo
    cannot honour: those in `takes` (name -> type) change nothing for zoo's models.

    Triton's load takes "config" and "file:..." parameters, a model configuration and files to
    load instead of the repository's; zoo loads its catalogue's verified files only, so a client
    that sends them is told so rather than answered as if they had been applied.
    """
    body = await request.body()
    if not body.strip():
        return
    request_body = oip.parse_json(body, _REPOSITORY_HINT)
    parameters = request_body.get("parameters", {})
    if not isinstance(parameters, dict):
        raise RequestError(f"\"parameters\" must be a JSON object, got {clipped(json.dumps(parameters))}",
                           hint=_REPOSITORY_HINT)
    for name, value in parameters.items():
        wanted = takes.get(name)
        if wanted is None:
            raise RequestError(f"zoo serve takes no {action} parameter {clipped(name)}: models load from zoo's "
                               "catalogue and verified cache, with their own configuration",
                               hint=f"POST an empty body or {{}} to {action} the model by its zoo name")
        if not isinstance(value, wanted):
            raise RequestError(f"{action} parameter {name!r} must be {wanted.__name__}, "
                               f"got {clipped(json.dumps(value))}", hint=_REPOSITORY_HINT)


ROUTES = [
    Route("/v2", server_metadata, methods=["GET"]),
    Route("/v2/health/live", live, methods=["GET"]),
    Route("/v2/health/ready", ready, methods=["GET"]),
    Route("/v2/models/{name}", model_metadata, methods=["GET"]),
    Route("/v2/models/{name}/versions/{version}", model_metadata, methods=["GET"]),
    Route("/v2/models/{name}/ready", model_ready, methods=["GET"]),
    Route("/v2/models/{name}/versions/{version}/ready", model_ready, methods=["GET"]),
    Route("/v2/models/{name}/infer", infer, methods=["POST"]),
    Route("/v2/models/{name}/versions/{version}/infer", infer, methods=["POST"]),
    Route("/v2/repository/index", repository_index, methods=["POST"]),
    Route("/v2/repository/models/{name}/load", repository_load, methods=["POST"]),
    Route("/v2/repository/models/{name}/unload", repository_unload, methods=["POST"]),
]
