"""Overload bench service: max_concurrency=8, an async API that sleeps 50 ms.

The API counts its own in-flight calls; GET-less /stats (POST) returns and resets the peak.
Runs unchanged under bentohost and BentoML (bench/overload.py).
"""
import asyncio

try:
    import bentohost as bentoml
except ImportError:
    import bentoml

_state = {"inflight": 0, "peak": 0, "calls": 0}


@bentoml.service(traffic={"max_concurrency": 8, "timeout": 60})
class Overload:
    @bentoml.api
    async def work(self) -> dict:
        _state["inflight"] += 1
        _state["calls"] += 1
        if _state["inflight"] > _state["peak"]:
            _state["peak"] = _state["inflight"]
        try:
            await asyncio.sleep(0.05)
        finally:
            _state["inflight"] -= 1
        return {"ok": True}

    @bentoml.api
    async def stats(self, reset: bool = False) -> dict:
        out = dict(_state)
        if reset:
            _state["peak"] = _state["inflight"]
            _state["calls"] = 0
        return out
