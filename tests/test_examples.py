"""The shipped examples serve."""

import importlib.util

import pytest

from conftest import REPO

QUICKSTART = REPO / "examples" / "quickstart" / "service.py"
HELLO = REPO / "examples" / "hello" / "service.py"


def test_quickstart_iris(server_factory):
    if importlib.util.find_spec("sklearn") is None:
        pytest.skip("scikit-learn is not installed")
    if not QUICKSTART.exists():
        pytest.skip("examples/quickstart/service.py is not there yet")
    srv = server_factory(f"{QUICKSTART}:IrisClassifier")
    r = srv.post("/classify", {"features": [[5.1, 3.5, 1.4, 0.2]]})
    assert r.status_code == 200, r.text
    assert r.json() == ["setosa"]


def test_hello_example(server_factory):
    if not HELLO.exists():
        pytest.skip("examples/hello/service.py is not there")
    srv = server_factory(f"{HELLO}:Hello")
    r = srv.post("/hello", {"name": "bento"})
    assert r.status_code == 200, r.text
    assert r.json() == {"message": "Hello, bento!"}
    r = srv.post("/hello_async", {})
    assert r.json() == {"message": "Hello, world!"}
    assert srv.post("/ping", {}).text == "pong"
