"""Requests and responses of ordinary API calls (spec: behaviour §2.1-2.3, §3.2, §3.4)."""

import json

import pytest
import requests


def test_str_output_is_text_plain(basic_server):
    r = basic_server.post("/echo", {"text": "hi there"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert r.content == b"hi there"


def test_unicode_roundtrip(basic_server):
    text = "héllo ✓ 日本語 🍱"
    r = basic_server.post("/echo", {"text": text})
    assert r.status_code == 200, r.text
    assert r.content.decode("utf-8") == text


def test_int_output_and_defaults(basic_server):
    r = basic_server.post("/add", {"a": 1, "b": 5})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.content == b"6"
    r = basic_server.post("/add", {"a": 40})
    assert r.status_code == 200, r.text
    assert r.json() == 42


def test_lax_mode_coercion_and_unknown_keys_ignored(basic_server):
    r = basic_server.post("/add", {"a": "7", "b": 1, "unknown": "ignored"})
    assert r.status_code == 200, r.text
    assert r.json() == 8


@pytest.mark.parametrize("body", [None, b"", b"{}"])
def test_no_arguments_missing_or_empty_body(basic_server, body):
    headers = {"Content-Type": "application/json"} if body is not None else {}
    r = requests.post(basic_server.url + "/noargs", data=body, headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json() == {"ok": True}


def test_dict_output_uses_json_dumps_default_separators(basic_server):
    r = basic_server.post("/dict_out", {})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.content == json.dumps({"a": 1, "b": [1, 2], "c": "x"}).encode()
    assert r.content == b'{"a": 1, "b": [1, 2], "c": "x"}'


def test_list_output(basic_server):
    r = basic_server.post("/list_out", {})
    assert r.status_code == 200, r.text
    assert r.content == b"[1, 2, 3]"


def test_pydantic_output_is_compact_json(basic_server):
    r = basic_server.post("/model_out", {"name": "n", "size": 4})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.content == b'{"name":"n","size":4,"tags":[]}'


def test_pydantic_input(basic_server):
    r = basic_server.post("/model_in", {"item": {"name": "a", "size": 21}})
    assert r.status_code == 200, r.text
    assert r.json() == {"name": "a", "double": 42}


def test_numpy_array_output_is_nested_lists(basic_server):
    r = basic_server.post("/array", {"rows": 2, "cols": 3})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    assert r.content == json.dumps([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]).encode()


def test_root_str_input_takes_raw_body(basic_server):
    r = requests.post(basic_server.url + "/raw", data="hello {not json}",
                      headers={"Content-Type": "text/plain"}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert r.content == b"got:hello {not json}"


def test_root_list_input_parses_bare_json(basic_server):
    r = requests.post(basic_server.url + "/root_sum", data="[1, 2, 3, 4]",
                      headers={"Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json() == 10


def test_single_normal_parameter_is_still_an_object(basic_server):
    # `echo(self, text)` is not positional-only: a bare string body is not accepted
    r = requests.post(basic_server.url + "/echo", data='"bare"',
                      headers={"Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 400, r.text


def test_call_maps_to_root(basic_server):
    r = basic_server.post("/", {"name": "bob"})
    assert r.status_code == 200, r.text
    assert r.text == "hello bob"
    r = requests.post(basic_server.url + "/", timeout=30)
    assert r.status_code == 200, r.text
    assert r.text == "hello world"


def test_custom_route(basic_server):
    r = basic_server.post("/v1/custom", {})
    assert r.status_code == 200, r.text
    assert r.text == "custom-route"
    r = basic_server.post("/custom", {})
    assert r.status_code == 404, r.text


def test_non_json_content_type_falls_back_to_json(basic_server):
    r = requests.post(basic_server.url + "/add", data='{"a": 2, "b": 3}',
                      headers={"Content-Type": "application/x-whatever"}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json() == 5


def test_large_request_and_response_bodies(basic_server):
    text = "abcdefghij" * 50_000  # 500 KB
    r = basic_server.post("/length", {"text": text})
    assert r.status_code == 200, r.text
    assert r.json() == len(text)
    r = basic_server.post("/big", {"n": 2_000_000})
    assert r.status_code == 200
    assert len(r.content) == 2_000_000
    assert set(r.content) == {ord("x")}


def test_keep_alive_session_many_calls(basic_server):
    with requests.Session() as s:
        for i in range(50):
            r = s.post(basic_server.url + "/add", json={"a": i, "b": 1}, timeout=30)
            assert r.status_code == 200, r.text
            assert r.json() == i + 1


def test_concurrent_calls(basic_server):
    from concurrent.futures import ThreadPoolExecutor

    def call(i):
        r = requests.post(basic_server.url + "/add", json={"a": i, "b": i}, timeout=30)
        return r.status_code, r.json()

    with ThreadPoolExecutor(16) as ex:
        results = list(ex.map(call, range(64)))
    assert results == [(200, 2 * i) for i in range(64)]


def test_async_api(basic_server):
    r = basic_server.post("/asleep", {"seconds": 0.01})
    assert r.status_code == 200, r.text
    assert r.json()["slept"] == 0.01


def test_async_calls_run_concurrently(basic_server):
    """Eight 1 s async calls on one worker finish together, not one after another."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    def call(_):
        return requests.post(basic_server.url + "/asleep", json={"seconds": 1.0}, timeout=30).status_code

    t0 = time.monotonic()
    with ThreadPoolExecutor(8) as ex:
        codes = list(ex.map(call, range(8)))
    elapsed = time.monotonic() - t0
    assert codes == [200] * 8
    assert elapsed < 6.0, f"8 concurrent 1 s async calls took {elapsed:.1f}s"


def test_context_parameter_is_not_an_input_and_sets_status(basic_server):
    r = basic_server.post("/with_ctx", {"x": 7})
    assert r.status_code == 201, r.text
    assert r.json() == 7


def test_pydantic_field_defaults_and_constraints(basic_server):
    r = basic_server.post("/field_default", {})
    assert r.status_code == 200, r.text
    assert r.json() == 10
    r = basic_server.post("/field_default", {"n": -1})
    assert r.status_code == 400, r.text
    d = r.json()["detail"][0]
    assert d["loc"] == ["n"] and d["type"] == "greater_than_equal"

