"""``SchemaProxy`` without a server: arguments checked against the schema's input,
the call mode chosen by the calling context, and a dependency whose schema cannot
be read (ServiceUnavailable, fetch retried at most once per ``RETRY_S``)."""

from __future__ import annotations

import asyncio

import pytest

from bentohost import _schema_proxy
from bentohost._schema_proxy import SchemaProxy
from bentohost.exceptions import ServiceUnavailable
from conftest import free_port
from test_remote_unit import CannedTransport

ROUTES = [
    {"name": "add", "route": "/add", "input": {"properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                                               "required": ["a"]}, "output": {"type": "integer"}},
    {"name": "shout", "route": "/shout", "input": {"type": "string", "root_input": True}, "output": {"type": "string"}},
]


def proxy(result=(200, {"content-type": "application/json"}, b"3")) -> tuple[SchemaProxy, CannedTransport]:
    t = CannedTransport(result)
    p = SchemaProxy("http://dep:3000", ("127.0.0.1", free_port()), "dep:3000", t)
    for route in ROUTES:
        p._routes[route["name"]] = _schema_proxy.RemoteApi(route)
    p._routes.loaded = True
    return p, t


def test_arguments_follow_the_schema():
    p, t = proxy()
    assert p.add(1, b=2) == 3 and t.calls[-1]["route"] == "/add"
    with pytest.raises(TypeError, match="missing required arguments: a"):
        p.add(b=1)
    with pytest.raises(TypeError, match="unexpected arguments: c"):
        p.add(a=1, c=2)
    with pytest.raises(TypeError, match="multiple values"):
        p.add(1, a=1)
    with pytest.raises(AttributeError, match="no API named 'nope'"):
        p.nope  # noqa: B018
    assert sorted(n for n in dir(p) if n in ("add", "shout")) == ["add", "shout"]


def test_the_calling_context_picks_the_mode():
    p, _t = proxy((200, {"content-type": "text/plain; charset=utf-8"}, b"HI"))
    assert p.shout("hi") == "HI"  # no loop: blocking

    async def inside() -> str:
        pending = p.shout("hi")
        assert asyncio.iscoroutine(pending)
        return await pending

    assert asyncio.run(inside()) == "HI"
    assert p.to_sync.shout("hi") == "HI"
    assert asyncio.run(p.to_async.shout("hi")) == "HI"


def test_an_unreachable_schema_is_service_unavailable(monkeypatch):
    t = CannedTransport((200, {}, b""))
    p = SchemaProxy("http://dep:1", ("127.0.0.1", free_port()), "dep:1", t)
    assert p.fetch(timeout=1) is False and "refused" in p.last_error.lower()
    tries = []
    monkeypatch.setattr(p, "fetch", lambda timeout=1.0: tries.append(1) or False)
    with pytest.raises(ServiceUnavailable, match="cannot read its /schema.json"):
        p.add(a=1)
    with pytest.raises(ServiceUnavailable):
        asyncio.run(p.to_async.add(a=1))
    assert tries == [], "within RETRY_S of the failed fetch: no new try"
    p._failed_at -= _schema_proxy.RETRY_S
    with pytest.raises(ServiceUnavailable):
        p.to_sync.add(a=1)
    assert tries == [1] and t.calls == []
