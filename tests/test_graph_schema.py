"""``depends(url=...)`` without ``on=``: the caller builds the proxy's APIs from the
remote server's ``/schema.json`` (two real servers on loopback): keyword and
positional arguments as JSON, sync and async by calling context and with
``to_sync``/``to_async``, a root input, JSON, text, file and image results, 4xx kept,
an unknown API. A dependency that is down when the caller starts does not stop it:
calls are 503 until the dependency comes up, then work, with no restart."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import requests

from conftest import REPO, SERVICES, free_port, wait_for

TARGET = str(SERVICES / "graph_schema.py")


def post(srv, path: str, body: dict) -> requests.Response:
    return requests.post(srv.url + path, json=body, timeout=20)


def value(r: requests.Response):
    """The answer: JSON, or the text of a ``str`` result."""
    return r.json() if r.headers["content-type"].startswith("application/json") else r.text


@pytest.fixture(scope="module")
def caller(module_server_factory):
    port = free_port()
    module_server_factory(f"{TARGET}:Remote", port=port)
    return module_server_factory(f"{TARGET}:Caller", env={"REMOTE_URL": f"http://127.0.0.1:{port}"})


@pytest.mark.parametrize("path,body,expected", [
    ("/add", {"a": 1}, 11 + 2),
    ("/ahello", {"name": "ada"}, "hello ada"),
    ("/sync_hello", {"name": "bob"}, "hello bob"),
    ("/async_add", {"a": 2}, 3),
    ("/describe", {}, {"tags": ["x", "y"], "scale": 1.0}),
    ("/shout", {"text": "root"}, "ROOT"),
    ("/report", {}, "report.txt:all good\n"),
    ("/square", {}, [3, 30]),
])
def test_apis_from_the_schema(caller, path, body, expected):
    r = post(caller, path, body)
    assert r.status_code == 200, r.text + caller.log()
    assert value(r) == expected


@pytest.mark.parametrize("kind,status,text", [
    ("invalid", 400, "kind must not be invalid"),
    ("missing", 404, "nothing here"),
])
def test_errors_keep_their_status(caller, kind, status, text):
    r = post(caller, "/fail", {"kind": kind})
    assert r.status_code == status and text in r.text, r.text


def test_an_unknown_api_and_remote_validation(caller):
    assert "has no API named 'no_such_api'" in post(caller, "/missing", {}).text
    assert "cannot read its /schema.json" not in caller.log(), "fetched at start: no warning"


def test_a_dependency_down_at_start_is_fetched_on_first_use(server_factory):
    port = free_port()
    caller = server_factory(f"{TARGET}:Caller", env={"REMOTE_URL": f"http://127.0.0.1:{port}"})
    assert "cannot read its /schema.json now" in caller.log()
    pid = caller.whoami()["pid"]
    for path in ("/add", "/ahello"):
        r = post(caller, path, {"a": 1} if path == "/add" else {"name": "x"})
        assert r.status_code == 503, r.text
    server_factory(f"{TARGET}:Remote", port=port)
    wait_for(lambda: post(caller, "/add", {"a": 1}).status_code == 200, 20, what="the schema fetched late")
    assert post(caller, "/ahello", {"name": "late"}).text == "hello late"
    assert caller.whoami()["pid"] == pid, "the worker was never restarted"


def test_retries_are_throttled(server_factory):
    """While the dependency is down, a call fails at once (no fetch per call)."""
    caller = server_factory(f"{TARGET}:Caller", env={"REMOTE_URL": f"http://127.0.0.1:{free_port()}"})
    start = time.monotonic()
    codes = [post(caller, "/add", {"a": 1}).status_code for _ in range(20)]
    assert set(codes) == {503} and time.monotonic() - start < 10


@pytest.mark.slow
def test_against_bentoml_serve(bentoml_python, server_factory, tmp_path):
    """`bentoml serve` (the real 1.4, from the venv test_bentoml_clients.py builds) as
    the URL dependency: its /schema.json is what the proxy learns the APIs from."""
    import subprocess

    port = free_port()
    service = tmp_path / "remote.py"
    source = Path(TARGET).read_text().replace("import bentohost\n", "import bentoml as bentohost\n")
    service.write_text(source.replace("from bentohost.exceptions", "from bentoml.exceptions"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["BENTOML_HOME"] = str(tmp_path / "home")
    proc = subprocess.Popen([str(bentoml_python), "-m", "bentoml", "serve", f"{service}:Remote",
                             "--port", str(port)], cwd=tmp_path, env=env,
                            stdout=open(tmp_path / "bentoml.log", "wb"), stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: proc.poll() is None and requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200,
                 180, what="bentoml serve: " + (tmp_path / "bentoml.log").read_text()[-2000:])
        caller = server_factory(f"{TARGET}:Caller", env={"REMOTE_URL": f"http://127.0.0.1:{port}"})
        assert post(caller, "/add", {"a": 1}).json() == 13
        assert post(caller, "/ahello", {"name": "ada"}).text == "hello ada"
    finally:
        proc.kill()
        proc.wait(10)


from test_bentoml_clients import bentoml_python  # noqa: E402,F401  (the session fixture)
