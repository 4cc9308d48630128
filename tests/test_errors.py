"""Error statuses and bodies (spec: behaviour §3.1, §3.5)."""

import json

import pytest
import requests

from conftest import wait_for

GENERIC_500 = {"error": "An unexpected error has occurred, please check the server log."}


def _assert_json(r):
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    return r.json()


def _assert_validation_error(r, loc, type_):
    assert r.status_code == 400, r.text
    body = _assert_json(r)
    assert set(body) == {"error", "detail"}, body
    assert body["error"] == "1 validation error for Input"
    assert isinstance(body["detail"], list) and len(body["detail"]) == 1
    d = body["detail"][0]
    assert set(d) == {"type", "loc", "msg", "url"}, d  # no "input", no "ctx"
    assert d["type"] == type_
    assert list(d["loc"]) == loc
    assert d["url"].startswith("https://errors.pydantic.dev/")
    return d


def test_missing_argument_is_400(basic_server):
    d = _assert_validation_error(basic_server.post("/add", {"b": 1}), ["a"], "missing")
    assert d["msg"] == "Field required"


def test_missing_body_with_required_argument_is_400(basic_server):
    r = requests.post(basic_server.url + "/add", timeout=30)
    _assert_validation_error(r, ["a"], "missing")


def test_invalid_argument_type_is_400(basic_server):
    _assert_validation_error(basic_server.post("/add", {"a": "not a number"}), ["a"], "int_parsing")


def test_two_errors_keep_singular_wording(basic_server):
    r = basic_server.post("/add", {"a": "x", "b": "y"})
    assert r.status_code == 400, r.text
    body = _assert_json(r)
    assert body["error"] == "2 validation error for Input"
    assert len(body["detail"]) == 2
    for d in body["detail"]:
        assert set(d) == {"type", "loc", "msg", "url"}


def test_malformed_json_is_400(basic_server):
    r = requests.post(basic_server.url + "/add", data=b'{"a": 1,,,',
                      headers={"Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 400, r.text
    body = _assert_json(r)
    assert "error" in body


def test_user_exception_is_500_with_traceback_in_log(basic_server):
    r = basic_server.post("/boom", {})
    assert r.status_code == 500, r.text
    assert _assert_json(r) == GENERIC_500
    assert r.content == json.dumps(GENERIC_500, separators=(",", ":")).encode()
    # the traceback goes to the server's stderr
    log = wait_for(lambda: (lambda t: t if "kaboom-marker-8d1f" in t else None)(basic_server.log()),
                   timeout=10, what="the user exception in the server log")
    assert "Traceback (most recent call last)" in log
    assert "ValueError: kaboom-marker-8d1f" in log
    # the server keeps serving
    assert basic_server.post("/add", {"a": 1, "b": 1}).json() == 2


def test_invalid_argument_exception_is_400_array(basic_server):
    r = basic_server.post("/bad_arg", {})
    assert r.status_code == 400, r.text
    assert _assert_json(r) == [{"error": "x"}]


def test_not_found_exception_is_404_array(basic_server):
    r = basic_server.post("/not_found", {})
    assert r.status_code == 404, r.text
    assert _assert_json(r) == [{"error": "nothing here"}]


def test_service_unavailable_is_503_generic(basic_server):
    r = basic_server.post("/unavailable", {})
    assert r.status_code == 503, r.text
    assert _assert_json(r) == GENERIC_500


def test_unknown_path_is_404_json(basic_server):
    for method in ("GET", "POST"):
        r = requests.request(method, basic_server.url + "/no/such/path", timeout=30)
        assert r.status_code == 404, (method, r.text)
        _assert_json(r)


def test_wrong_method_is_405_json(basic_server):
    r = requests.get(basic_server.url + "/echo", timeout=30)
    assert r.status_code == 405, r.text
    _assert_json(r)
    r = requests.put(basic_server.url + "/add", data="{}", timeout=30)
    assert r.status_code == 405, r.text
    _assert_json(r)


@pytest.mark.parametrize("path", ["/livez", "/healthz", "/readyz"])
def test_health_endpoints(basic_server, path):
    r = requests.get(basic_server.url + path, timeout=30)
    assert r.status_code == 200, r.text
    assert r.content == b"\n"
    r = requests.head(basic_server.url + path, timeout=30)
    assert r.status_code == 200
    assert r.content == b""


def test_async_user_exception_is_500(basic_server):
    r = basic_server.post("/aboom", {})
    assert r.status_code == 500, r.text
    assert _assert_json(r) == GENERIC_500
    wait_for(lambda: "async-kaboom-marker-31b9" in basic_server.log(), 10, what="the traceback in the log")


def test_nested_validation_error_loc(basic_server):
    r = basic_server.post("/model_in", {"item": {"name": "a", "size": "zz"}})
    d = _assert_validation_error(r, ["item", "size"], "int_parsing")
    assert "integer" in d["msg"]


def test_malformed_json_is_pydantic_style_400(basic_server):
    r = requests.post(basic_server.url + "/add", data=b"[1, 2",
                      headers={"Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 400, r.text
    body = _assert_json(r)
    assert body["error"] == "1 validation error for Input"
    assert body["detail"][0]["type"] == "json_invalid"
    assert set(body["detail"][0]) == {"type", "loc", "msg", "url"}


def test_query_string_does_not_change_routing(basic_server):
    r = basic_server.post("/echo?x=1&y=2", {"text": "q"})
    assert r.status_code == 200, r.text
    assert r.text == "q"
