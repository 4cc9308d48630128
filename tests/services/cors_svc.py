"""CORS answered by C. Cors has BentoML's http.cors in its decorator; CorsPlain
has none, so that tests give it whole settings with BENTOML_CONFIG_OVERRIDES or
--config."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import bentohost


@bentohost.service(
    traffic={"max_concurrency": 1},
    http={
        "cors": {
            "enabled": True,
            "access_control_allow_origins": ["https://app.example"],
            "access_control_allow_methods": ["GET", "POST"],
            "access_control_allow_headers": ["X-Token"],
            "access_control_max_age": 120,
        }
    },
)
class Cors:
    @bentohost.api
    def echo(self, text: str) -> str:
        return text

    @bentohost.api
    def vary(self, ctx: bentohost.Context) -> str:
        ctx.response.headers["vary"] = "Accept-Encoding"
        return "ok"

    @bentohost.api
    def chunks(self, n: int = 3) -> Iterator[str]:
        for i in range(n):
            yield f"{i};"

    @bentohost.api
    async def slow(self, seconds: float = 2.0) -> str:
        await asyncio.sleep(seconds)
        return "done"


@bentohost.service
class CorsPlain:
    @bentohost.api
    def echo(self, text: str) -> str:
        return text
