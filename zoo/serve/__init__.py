"""`zoo serve`: zoo models over HTTP (Open Inference Protocol and zoo's image endpoint).

The layer above zoo.model: it uses Model's public building blocks (prepare, batch_key,
run_prepared, run) and never reaches below them. Everything here needs the `serve`
extra (Starlette, uvicorn, prometheus-client, python-multipart), so nothing outside
this package imports it at module level: `zoo --help` stays light.

Modules: errors (HTTP status per failure), oip (protocol tensors, JSON and binary),
batching (the dynamic batcher), models (the pool of loaded models), metrics
(Prometheus and the access log), auth (bind policy and bearer tokens), v2 and v1
(the routes), openapi (the schema and its page), app (the ASGI app), main (run it).
"""
