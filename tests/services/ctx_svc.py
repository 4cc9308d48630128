"""bentohost.Context: request, response, state, temp_dir (tests/test_context.py)."""

from __future__ import annotations

import os
from pathlib import Path

import bentohost


@bentohost.service
class CtxSvc:
    @bentohost.api
    def inspect(self, ctx: bentohost.Context) -> dict:
        req = ctx.request
        return {
            "method": req.method,
            "path": req.url.path,
            "path2": req.path,
            "query": dict(req.query_params),
            "multi": req.query_params.getlist("m"),
            "cookies": req.cookies,
            "x_custom": req.headers.get("x-custom"),
            "X_CUSTOM": req.headers["X-Custom"],
            "has_ua": "user-agent" in req.headers,
            "client_host": req.client.host,
            "client_port_ok": isinstance(req.client.port, int) and req.client.port > 0,
        }

    @bentohost.api
    def respond(self, code: int = 201, context: bentohost.Context = None) -> dict:
        context.response.status_code = code
        context.response.headers["X-Reply"] = "yes"
        context.response.headers["Cache-Control"] = "no-store"
        context.response.set_cookie("session", "abc123", max_age=60, httponly=True)
        context.response.set_cookie("theme", "dark", path="/ui", secure=True, samesite="strict")
        return {"ok": True}

    @bentohost.api
    async def arespond(self, ctx: bentohost.Context) -> str:
        ctx.response.status_code = 202
        ctx.response.headers["X-Async"] = "1"
        return "accepted"

    @bentohost.api
    def bad_header(self, ctx: bentohost.Context) -> str:
        ctx.response.headers["X-Evil"] = "a\r\nSet-Cookie: injected=1"
        return "never"

    @bentohost.api
    def counter(self, ctx: bentohost.Context) -> int:
        ctx.state["n"] = ctx.state.get("n", 0) + 1
        return ctx.state["n"]

    @bentohost.api
    def temp(self, ctx: bentohost.Context) -> dict:
        d = ctx.temp_dir
        Path(d, "scratch.txt").write_text("x")
        return {"dir": d, "exists": os.path.isdir(d)}

    @bentohost.api
    def content_type_override(self, ctx: bentohost.Context) -> str:
        ctx.response.headers["Content-Type"] = "application/xml"
        return "<a/>"
