"""CORS answered by C (csrc/server/cors.c), configured by BentoML's http.cors keys
from the decorator, the configuration file or BENTOML_CONFIG_OVERRIDES: preflights
(any path) and the lines on every other response, API and C-made alike. Where
starlette is importable, each answer is compared with Starlette's CORSMiddleware
(which BentoML installs) given the same settings, driven in-process."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from conftest import RawConn, SERVICES

CORS = f"{SERVICES / 'cors_svc.py'}:Cors"
PLAIN = f"{SERVICES / 'cors_svc.py'}:CorsPlain"
APP = "https://app.example"
EVIL = "https://evil.example"

DECORATOR = {"enabled": True, "access_control_allow_origins": [APP], "access_control_allow_methods": ["GET", "POST"],
             "access_control_allow_headers": ["X-Token"], "access_control_max_age": 120}
SETTINGS: dict[str, dict[str, Any]] = {
    "decorator": DECORATOR,
    "wildcard": {"enabled": True, "access_control_allow_origins": "*"},
    "wildcard-credentials": {"enabled": True, "access_control_allow_origins": ["*"],
                             "access_control_allow_credentials": True, "access_control_allow_methods": ["*"],
                             "access_control_expose_headers": ["X-Total", "X-Page"]},
    "regex": {"enabled": True, "access_control_allow_origins": [APP], "access_control_allow_credentials": True,
              "access_control_allow_origin_regex": r"https://[a-z]+\.trusted\.example(:\d+)?",
              "access_control_allow_headers": ["*"], "access_control_allow_methods": ["get", "POST"],
              "access_control_expose_headers": "X-Total"},
}

# (method, path, headers): what each configuration is asked
CASES: list[tuple[str, str, list[tuple[str, str]]]] = [
    ("OPTIONS", "/echo", [("Origin", APP), ("Access-Control-Request-Method", "POST"),
                          ("Access-Control-Request-Headers", "X-Token, content-type")]),
    ("OPTIONS", "/echo", [("Origin", EVIL), ("Access-Control-Request-Method", "POST")]),
    ("OPTIONS", "/echo", [("Origin", APP), ("Access-Control-Request-Method", "PUT")]),
    ("OPTIONS", "/echo", [("Origin", APP), ("Access-Control-Request-Method", "GET"),
                          ("Access-Control-Request-Headers", "x-other")]),
    ("OPTIONS", "/echo", [("Origin", APP), ("Access-Control-Request-Method", "GET"),
                          ("Access-Control-Request-Headers", "")]),
    ("OPTIONS", "/echo", [("Origin", APP), ("Access-Control-Request-Method", "GET"),
                          ("Access-Control-Request-Headers", " X-Token ,Accept ,, ")]),
    ("OPTIONS", "/nope", [("Origin", APP), ("Access-Control-Request-Method", "GET"),
                          ("Access-Control-Request-Private-Network", "true")]),
    ("OPTIONS", "/livez", [("Origin", "https://sub.trusted.example:8443"), ("Access-Control-Request-Method", "get")]),
    ("OPTIONS", "/echo", [("Origin", EVIL), ("Access-Control-Request-Method", "DELETE"),
                          ("Access-Control-Request-Headers", "X-Evil")]),
    ("POST", "/echo", [("Origin", APP)]),
    ("POST", "/echo", [("Origin", EVIL)]),
    ("POST", "/echo", []),
    ("POST", "/echo", [("Origin", "https://x.trusted.example"), ("Cookie", "a=b")]),
    ("POST", "/echo", [("Origin", "https://x.trusted.example.evil")]),
    ("GET", "/livez", [("Origin", APP)]),
    ("GET", "/nope", [("Origin", APP)]),
    ("OPTIONS", "/echo", [("Origin", APP)]),  # no request method: not a preflight, a 405
]


def request(srv, method: str, path: str, headers: list[tuple[str, str]], body: bytes = b""):
    if method == "POST" and not body:
        body = b'{"text": "hi"}'
    head = f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers)
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    with RawConn(srv.host, srv.port) as conn:
        conn.send(head.encode() + b"\r\n" + body)
        return conn.read_response(head=method == "HEAD")


def cors_lines(headers: list[tuple[str, str]]) -> dict[str, str]:
    """The Access-Control-* and Vary headers, repeated ones joined as a client reads them."""
    out: dict[str, str] = {}
    for k, v in headers:
        k = k.lower()
        if k.startswith("access-control-") or k == "vary":
            out[k] = f"{out[k]}, {v}" if k in out else v
    return out


def overrides(settings: dict[str, Any]) -> dict[str, str]:
    return {"BENTOML_CONFIG_OVERRIDES": json.dumps({"services.CorsPlain.http.cors": settings})}


@pytest.fixture(scope="module")
def servers(module_server_factory):
    """One server per configuration, started once for the module."""
    cache: dict[str, Any] = {}

    def get(name: str):
        if name not in cache:
            if name == "decorator":
                cache[name] = module_server_factory(CORS)
            else:
                cache[name] = module_server_factory(PLAIN, env=overrides(SETTINGS[name]))
        return cache[name]

    return get


# ---- against Starlette's CORSMiddleware ------------------------------------------------------


def bentoml_options(settings: dict[str, Any]) -> dict[str, Any]:
    """BentoML's access_control_options (configuration/containers.py): the CORSMiddleware kwargs."""
    names = {"access_control_allow_origins": "allow_origins", "access_control_allow_origin_regex":
             "allow_origin_regex", "access_control_allow_credentials": "allow_credentials",
             "access_control_allow_methods": "allow_methods", "access_control_allow_headers": "allow_headers",
             "access_control_max_age": "max_age", "access_control_expose_headers": "expose_headers"}
    out = {names[k]: v for k, v in settings.items() if k in names and v is not None}
    for key in ("allow_origins", "allow_headers", "expose_headers", "allow_methods"):
        if isinstance(out.get(key), str):
            out[key] = [out[key]]
    return out


def starlette_answer(settings: dict[str, Any], method: str, path: str, headers: list[tuple[str, str]]):
    pytest.importorskip("starlette")
    import asyncio

    import httpx
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.cors import CORSMiddleware
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def ok(request):
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/echo", ok, methods=["POST"]), Route("/livez", ok, methods=["GET"])],
                    middleware=[Middleware(CORSMiddleware, **bentoml_options(settings))])
    # In-process there is no HTTP server to take the blanks off the ends of a value
    # (RFC 9112 5.1; uvicorn's h11 and httptools do): done here as they would.
    headers = [(k, v.strip(" \t")) for k, v in headers]

    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            return await client.request(method, path, headers=headers,
                                        content=b'{"text": "hi"}' if method == "POST" else None)

    r = asyncio.run(call())
    return r.status_code, r.content, list(r.headers.multi_items())


@pytest.mark.parametrize("name", list(SETTINGS))
def test_same_answers_as_starlette(servers, name):
    srv = servers(name)
    for method, path, headers in CASES:
        status, body, their = starlette_answer(SETTINGS[name], method, path, headers)
        ours = request(srv, method, path, headers)
        what = f"{name}: {method} {path} {headers}"
        assert ours.status == status, what
        assert cors_lines(ours.header_list) == cors_lines(their), what
        if method == "OPTIONS" and any(k == "Access-Control-Request-Method" for k, _ in headers):
            assert ours.body == body and ours.headers["content-type"] == "text/plain; charset=utf-8", what


# ---- the rules, spelled out (whether or not starlette is here) -------------------------------


def test_preflight_allowed_and_disallowed(servers):
    srv = servers("decorator")
    ok = request(srv, "OPTIONS", "/echo", [("Origin", APP), ("Access-Control-Request-Method", "POST"),
                                          ("Access-Control-Request-Headers", "x-token")])
    assert ok.status == 200 and ok.body == b"OK"
    assert cors_lines(ok.header_list) == {
        "vary": "Origin, Access-Control-Request-Method, Access-Control-Request-Headers, "
                "Access-Control-Request-Private-Network",
        "access-control-allow-methods": "GET, POST", "access-control-max-age": "120",
        "access-control-allow-headers": "Accept, Accept-Language, Content-Language, Content-Type, X-Token",
        "access-control-allow-origin": APP}
    bad = request(srv, "OPTIONS", "/echo", [("Origin", EVIL), ("Access-Control-Request-Method", "PUT")])
    assert bad.status == 400 and bad.body == b"Disallowed CORS origin, method"
    assert "access-control-allow-origin" not in bad.headers
    # a preflight never reaches Python or the limiter: it is answered on any path
    assert request(srv, "OPTIONS", "/no/such/path", [("Origin", APP),
                                                      ("Access-Control-Request-Method", "GET")]).status == 200


def test_simple_responses_carry_the_origin(servers):
    srv = servers("decorator")
    for method, path, status in (("POST", "/echo", 200), ("GET", "/livez", 200), ("GET", "/readyz", 200),
                                 ("GET", "/metrics", 200), ("GET", "/nope", 404), ("GET", "/echo", 405),
                                 ("GET", "/schema.json", 200)):
        r = request(srv, method, path, [("Origin", APP)])
        assert r.status == status and r.headers.get("access-control-allow-origin") == APP, (path, r)
        assert r.header_values("vary") == ["Origin"], (path, r)
        r = request(srv, method, path, [("Origin", EVIL)])
        assert "access-control-allow-origin" not in r.headers and r.header_values("vary") == ["Origin"], path
    r = request(srv, "POST", "/chunks", [("Origin", APP)], b"{}")
    assert r.body == b"0;1;2;" and r.headers["access-control-allow-origin"] == APP
    r = request(srv, "POST", "/vary", [("Origin", APP)], b"{}")
    assert r.header_values("vary") == ["Accept-Encoding", "Origin"]  # read together: "Accept-Encoding, Origin"


def test_credentials_and_wildcard(servers):
    srv = servers("wildcard")
    r = request(srv, "POST", "/echo", [("Origin", EVIL)])
    assert r.headers["access-control-allow-origin"] == "*" and "access-control-allow-credentials" not in r.headers
    pre = request(srv, "OPTIONS", "/echo", [("Origin", EVIL), ("Access-Control-Request-Method", "GET")])
    assert pre.status == 200 and pre.headers["access-control-allow-origin"] == "*"
    assert pre.headers["access-control-max-age"] == "600" and pre.headers["access-control-allow-methods"] == "GET"
    # with credentials "*" is never sent: the origin is named, and Vary says so
    srv = servers("wildcard-credentials")
    r = request(srv, "POST", "/echo", [("Origin", EVIL)])
    assert r.headers["access-control-allow-origin"] == EVIL and r.headers["access-control-allow-credentials"] == "true"
    assert r.headers["access-control-expose-headers"] == "X-Total, X-Page"
    pre = request(srv, "OPTIONS", "/echo", [("Origin", EVIL), ("Access-Control-Request-Method", "PATCH")])
    assert pre.status == 200 and pre.headers["access-control-allow-origin"] == EVIL
    assert pre.headers["access-control-allow-methods"] == "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT, QUERY"
    # no Origin: nothing but Vary
    r = request(srv, "POST", "/echo", [])
    assert cors_lines(r.header_list) == {"vary": "Origin"}


def test_origin_regex_and_mirrored_headers(servers):
    srv = servers("regex")
    for origin, allowed in (("https://a.trusted.example", True), ("https://a.trusted.example:99", True),
                            ("https://a.trusted.example.evil", False), ("http://a.trusted.example", False),
                            ("https://A.trusted.example", False), (APP, True)):
        r = request(srv, "POST", "/echo", [("Origin", origin)])
        assert (r.headers.get("access-control-allow-origin") == origin) is allowed, origin
    pre = request(srv, "OPTIONS", "/echo", [("Origin", "https://b.trusted.example"),
                                           ("Access-Control-Request-Method", "get"),
                                           ("Access-Control-Request-Headers", "X-Anything, X-Else")])
    assert pre.status == 200 and pre.headers["access-control-allow-headers"] == "X-Anything, X-Else"
    # methods are compared as configured and as sent: "GET" is not "get"
    pre = request(srv, "OPTIONS", "/echo", [("Origin", APP), ("Access-Control-Request-Method", "GET")])
    assert pre.status == 400 and pre.body == b"Disallowed CORS method"
    # an origin far longer than any browser's never matches the regex, and costs nothing
    long = "https://" + "a" * 20000 + ".trusted.example"
    r = request(srv, "POST", "/echo", [("Origin", long)])
    assert r.status == 200 and "access-control-allow-origin" not in r.headers


def test_first_of_repeated_headers_and_split_writes(servers):
    srv = servers("decorator")
    r = request(srv, "POST", "/echo", [("Origin", APP), ("Origin", EVIL)])
    assert r.headers["access-control-allow-origin"] == APP
    r = request(srv, "POST", "/echo", [("Origin", EVIL), ("Origin", APP)])
    assert "access-control-allow-origin" not in r.headers
    # the head arriving a few bytes at a time: header names and values in pieces
    raw = (f"OPTIONS /echo HTTP/1.1\r\nHost: x\r\nOrigin: {APP}\r\nAccess-Control-Request-Method: POST\r\n"
           "Access-Control-Request-Headers: X-Token\r\n\r\n").encode()
    with RawConn(srv.host, srv.port) as conn:
        for i in range(0, len(raw), 7):
            conn.send(raw[i:i + 7])
        r = conn.read_response()
        assert r.status == 200 and r.headers["access-control-allow-origin"] == APP
        # the next request on the connection starts clean
        conn.send(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        r = conn.read_response()
        assert r.status == 200 and cors_lines(r.header_list) == {"vary": "Origin"}


def test_refusals_carry_cors_too(server_factory):
    """Unlike BentoML (whose 429 and 504 come from middlewares outside CORS), C's
    refusals carry the lines, so that a browser can read them."""
    srv = server_factory(CORS, "--timeout", "1")
    r = request(srv, "POST", "/slow", [("Origin", APP)], b'{"seconds": 3}')
    assert r.status == 504 and r.headers["access-control-allow-origin"] == APP
    import time

    # the timed-out call frees its max_concurrency slot once Python has cancelled it:
    # until then the busy call itself may be the one refused, so try a few times
    for _ in range(5):
        with RawConn(srv.host, srv.port) as busy:
            busy.send(b'POST /slow HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n'
                      b'Content-Length: 16\r\n\r\n{"seconds": 0.8}')
            time.sleep(0.2)
            r = request(srv, "POST", "/echo", [("Origin", APP)])
            held = busy.read_response().status == 200
        if held:
            break
    assert r.status == 429 and r.headers["access-control-allow-origin"] == APP
    r = request(srv, "POST", "/echo", [("Origin", APP)], b"x" * 10)
    assert r.status == 400 and r.headers["access-control-allow-origin"] == APP


def test_disabled_means_no_cors_at_all(server_factory):
    srv = server_factory(CORS, env={"BENTOML_CONFIG_OVERRIDES": json.dumps({"services.Cors.http.cors.enabled": False})})
    r = request(srv, "OPTIONS", "/echo", [("Origin", APP), ("Access-Control-Request-Method", "POST")])
    assert r.status == 405 and cors_lines(r.header_list) == {}
    for path in ("/echo", "/livez", "/nope"):
        r = request(srv, "POST" if path == "/echo" else "GET", path, [("Origin", APP)])
        assert cors_lines(r.header_list) == {}, path


def test_config_file_over_the_decorator(server_factory, tmp_path):
    cfg = tmp_path / "bentoml.yaml"
    cfg.write_text("version: 2\nservices:\n  Cors:\n    http:\n      cors:\n"
                   "        access_control_allow_origins: [https://other.example]\n"
                   "        access_control_max_age: 5\n")
    srv = server_factory(CORS, "--config", str(cfg))
    assert "access-control-allow-origin" not in request(srv, "POST", "/echo", [("Origin", APP)]).headers
    r = request(srv, "OPTIONS", "/echo", [("Origin", "https://other.example"), ("Access-Control-Request-Method",
                                                                                  "POST")])
    assert r.status == 200 and r.headers["access-control-max-age"] == "5"
    assert r.headers["access-control-allow-methods"] == "GET, POST"  # kept from the decorator


@pytest.mark.parametrize("settings, message", [
    ({"enabled": True}, "http.cors.access_control_allow_origins must be set when http.cors.enabled is true"),
    ({"enabled": True, "access_control_allow_origins": "*", "access_control_allow_origin_regex": "(?<=a)b"},
     "http.cors.access_control_allow_origin_regex: look-arounds are not supported"),
    ({"enabled": True, "access_control_allow_origins": "*", "access_control_allow_origin_regex": "(x"},
     "http.cors.access_control_allow_origin_regex: not a valid regular expression"),
    ({"enabled": True, "access_control_allow_origins": "*", "access_control_allow_headers": ["X-A\r\nX-B: 1"]},
     "is not a header or method name"),
    ({"enabled": "yes", "access_control_allow_origins": "*"}, "expected true or false"),
])
def test_bad_settings_are_one_line_at_startup(server_factory, settings, message):
    srv = server_factory(PLAIN, env=overrides(settings), wait_ready=False)
    assert srv.wait_exit(30) != 0
    log = srv.log()
    assert message in log and "Traceback" not in log, log


def test_no_python_on_the_preflight_path(servers):
    """Preflights are answered while Python is busy: the only sync thread sleeps."""
    srv = servers("decorator")
    sock = socket.create_connection((srv.host, srv.port), timeout=10)
    try:
        sock.sendall(b'POST /slow HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n'
                     b'{"seconds": 1.5}')
        import time

        start = time.monotonic()
        r = request(srv, "OPTIONS", "/slow", [("Origin", APP), ("Access-Control-Request-Method", "POST")])
        assert r.status == 200 and time.monotonic() - start < 1.0
    finally:
        sock.close()
