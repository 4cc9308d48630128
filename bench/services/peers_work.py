"""The Python work of bench/peers.py, shared by every server (bentohost, BentoML, Granian RSGI,
FastAPI, LitServe, Ray Serve) and by the in-process ceiling (t_python).

Input: a nested pydantic v2 model, {"user": {"name", "age", "tags": [str]}, "items": [{"id",
"price"}] x 3}. Work: validate it, sum the prices, count the items and tags. Output: a small JSON
object, encoded with the standard library's json (compact separators), as bentohost and Starlette
do for a dict.

Only pydantic and the standard library: it imports in every venv.
"""
from __future__ import annotations

import json

from pydantic import BaseModel


class User(BaseModel):
    name: str
    age: int
    tags: list[str]


class Item(BaseModel):
    id: int
    price: float


class Request(BaseModel):
    user: User
    items: list[Item]


BODY = (b'{"user":{"name":"ada","age":36,"tags":["ml","serving","bench"]},'
        b'"items":[{"id":1,"price":1.5},{"id":2,"price":2.25},{"id":3,"price":3.0}]}')
EXPECT = '6.75'  # a substring of every correct answer ("total": 6.75), whatever the JSON spacing


def compute(user: User, items: list[Item]) -> dict:
    return {"name": user.name, "count": len(items), "total": sum(i.price for i in items),
            "tags": len(user.tags)}


_dumps = json.JSONEncoder(separators=(",", ":")).encode


def work(body: bytes) -> bytes:
    """The whole user function as one call: validate + compute + encode (what t_python times)."""
    req = Request.model_validate_json(body)
    return _dumps(compute(req.user, req.items)).encode()


def loop(seconds: float = 2.0, repeat: int = 5) -> dict:
    """work(BODY) in a tight loop: best of `repeat` timings of ~`seconds`/repeat each -> µs per call."""
    import time
    n = 1000
    out = work(BODY)
    assert EXPECT in out.decode(), out
    t = time.perf_counter()
    for _ in range(n):
        work(BODY)
    per = (time.perf_counter() - t) / n
    n = max(1000, int(seconds / repeat / per))
    best = []
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(n):
            work(BODY)
        best.append((time.perf_counter() - t) / n * 1e6)
    return {"us_per_call": min(best), "us_all": best, "calls_per_run": n, "answer": out.decode()}


if __name__ == "__main__":
    import sys
    import pydantic
    r = loop(float(sys.argv[1]) if len(sys.argv) > 1 else 2.0)
    r["python"] = sys.version.split()[0]
    r["pydantic"] = pydantic.VERSION
    print(json.dumps(r))
