"""End to end: bentohost.Context (request head, response status/headers/cookies, state, temp_dir)."""

from __future__ import annotations

import os
import time

import pytest


@pytest.fixture(scope="module")
def tmp_env(tmp_path_factory):
    return tmp_path_factory.mktemp("ctx_tmp")


@pytest.fixture(scope="module")
def srv(module_server_factory, tmp_env):
    return module_server_factory("ctx_svc.py:CtxSvc", "--workers", "1", env={"TMPDIR": str(tmp_env)})


def test_request_head(srv):
    r = srv.post(
        "/inspect?a=1&m=x&m=y&empty=",
        json_body={},
        headers={"X-Custom": "hello", "Cookie": "sid=42; theme=\"dark\""},
    )
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["method"] == "POST"
    assert got["path"] == "/inspect" and got["path2"] == "/inspect"
    assert got["query"] == {"a": "1", "m": "x", "empty": ""}
    assert got["multi"] == ["x", "y"]
    assert got["cookies"] == {"sid": "42", "theme": "dark"}
    assert got["x_custom"] == "hello" and got["X_CUSTOM"] == "hello"
    assert got["has_ua"] is True
    assert got["client_host"] == "127.0.0.1" and got["client_port_ok"] is True


def test_response_status_headers_cookies(srv):
    with srv.conn() as c:
        body = b'{"code": 203}'
        c.send(
            b"POST /respond HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        resp = c.read_response()
    assert resp.status == 203
    assert resp.headers["x-reply"] == "yes"
    assert resp.headers["cache-control"] == "no-store"
    cookies = resp.header_values("set-cookie")
    assert len(cookies) == 2
    assert cookies[0].startswith("session=abc123")
    assert "Max-Age=60" in cookies[0] and "HttpOnly" in cookies[0] and "Path=/" in cookies[0]
    assert "SameSite=lax" in cookies[0]
    assert cookies[1].startswith("theme=dark") and "Secure" in cookies[1] and "Path=/ui" in cookies[1]
    assert "SameSite=strict" in cookies[1]
    assert resp.json() == {"ok": True}


def test_async_context(srv):
    r = srv.post("/arespond", json_body={})
    assert r.status_code == 202 and r.text == "accepted" and r.headers["x-async"] == "1"


def test_header_injection_rejected(srv):
    r = srv.post("/bad_header", json_body={})
    assert r.status_code == 500
    assert "injected" not in r.headers.get("set-cookie", "")


def test_content_type_override(srv):
    r = srv.post("/content_type_override", json_body={})
    assert r.headers["content-type"] == "application/xml" and r.text == "<a/>"


def test_state_is_per_worker_and_persistent(srv):
    first = srv.post("/counter", json_body={}).json()
    assert srv.post("/counter", json_body={}).json() == first + 1


def test_temp_dir_removed_after_response(srv, tmp_env):
    got = srv.post("/temp", json_body={}).json()
    assert got["exists"] is True
    assert got["dir"].startswith(str(tmp_env))
    deadline = time.monotonic() + 5
    while os.path.exists(got["dir"]) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not os.path.exists(got["dir"])


def test_zz_nothing_left_in_tmpdir(srv, tmp_env):
    deadline = time.monotonic() + 5
    while any(tmp_env.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(p.name for p in tmp_env.rglob("*")) == []
