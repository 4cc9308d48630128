"""The peers of bench/peers.py: peers_work.work() behind other Python servers, one worker each.

    granian --interface rsgi --workers 1 --runtime-threads 1 peers_apps:rsgi_app   # bare RSGI
    uvicorn --loop uvloop --http httptools --workers 1 --no-access-log peers_apps:fastapi_app
    python peers_lit.py --port P              # LitServe: LitAPI decode_request/predict/encode_response
    python peers_apps.py ray --port P         # Ray Serve: one replica, plain __call__ (no FastAPI ingress)

Every app serves POST /predict (the work) and GET /readyz (200, for the start-up poll). Run them
from bench/services/ (peers_work.py is imported from the cwd) with .bench/peers-venv's Python
(Ray: .bench/ray-venv's).
"""
from __future__ import annotations

import sys

from peers_work import Request, compute, work

_JSON = [("content-type", "application/json")]
_TEXT = [("content-type", "text/plain")]


# ------------------------------------------------------------------ (1) Granian RSGI, the bare minimum
async def rsgi_app(scope, proto):
    """read body, Request.model_validate_json, compute, json encode, respond."""
    path = scope.path
    if path == "/predict":
        body = await proto()
        try:
            out = work(body)
        except ValueError as e:  # pydantic.ValidationError is a ValueError
            proto.response_bytes(422, _TEXT, str(e).encode())
            return
        proto.response_bytes(200, _JSON, out)
    elif path in ("/readyz", "/livez"):
        proto.response_bytes(200, _TEXT, b"ok")
    else:
        proto.response_bytes(404, _TEXT, b"not found")


# ------------------------------------------------------------------ (2) FastAPI (on uvicorn)
def _fastapi_app():
    from fastapi import FastAPI
    from fastapi.responses import PlainTextResponse

    app = FastAPI()

    @app.post("/predict")
    async def predict(req: Request):  # FastAPI validates the body as Request; the dict goes out as JSON
        return compute(req.user, req.items)

    @app.get("/readyz", response_class=PlainTextResponse)
    async def readyz():
        return "ok"

    return app


def __getattr__(name):  # uvicorn peers_apps:fastapi_app (granian does not import FastAPI)
    if name == "fastapi_app":
        app = _fastapi_app()
        globals()["fastapi_app"] = app
        return app
    raise AttributeError(name)


# ------------------------------------------------------------------ (3) LitServe: peers_lit.py


# ------------------------------------------------------------------ (4) Ray Serve
def serve_ray(port: int) -> None:
    import json
    import time

    import ray
    from ray import serve
    from starlette.responses import PlainTextResponse, Response

    ray.init(num_cpus=1, include_dashboard=False, object_store_memory=80 * 1024 * 1024,
             log_to_driver=False, configure_logging=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port}, logging_config={"enable_access_log": False})

    @serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0}, max_ongoing_requests=64)
    class Peers:
        async def __call__(self, request):
            if request.url.path.endswith("/readyz"):
                return PlainTextResponse("ok")
            return Response(work(await request.body()), media_type="application/json")

    serve.run(Peers.bind(), route_prefix="/", name="peers")
    print(json.dumps({"ray_serve": "ready", "port": port}), flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("which", choices=("ray",))
    ap.add_argument("--port", type=int, required=True)
    a = ap.parse_args()
    serve_ray(a.port)
