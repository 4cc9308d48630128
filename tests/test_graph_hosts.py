"""One service per host: `--service NAME` serves a single service of a graph on
TCP, and `--depends NAME=URL` tells a caller where its dependency runs; calls go
over TCP with JSON (never pickle: that port is reachable from other hosts). A
dependency that goes away makes the caller answer 503, and it recovers by itself
when the dependency returns. (On loopback; tests/test_graph_netns.py does the same
across network namespaces.)"""

from __future__ import annotations

import pickle

import pytest
import requests

from conftest import SERVICES, free_port, wait_for

CALLS = str(SERVICES / "graph_calls.py")


def post(srv, path: str, body: dict) -> requests.Response:
    return requests.post(srv.url + path, json=body, timeout=20)


def test_services_on_their_own_hosts_call_by_url(server_factory):
    model_port = free_port()
    model = server_factory(f"{CALLS}:Front", "--service", "Model", port=model_port)
    middle = server_factory(f"{CALLS}:Front", "--service", "Middle",
                            "--depends", f"Model=http://127.0.0.1:{model_port}")
    r = post(middle, "/predict", {"x": [1, 2, 3]})
    assert r.status_code == 200, r.text + middle.log()
    assert r.json() == 7.0
    r = post(middle, "/apredict", {"x": [1, 2]})
    assert r.status_code == 200 and r.json() == 7.0, r.text
    # only the named service runs there: one pool, no dependency pools
    assert "service Middle: 1 worker" in middle.log() and "private sockets" not in middle.log()
    # that port is public: it refuses pickle
    r = requests.post(model.url + "/predict", data=pickle.dumps({"x": [1.0]}),
                      headers={"content-type": "application/vnd.bentoml+pickle"}, timeout=10)
    assert r.status_code == 415

    model.kill()
    r = post(middle, "/predict", {"x": [1]})
    assert r.status_code == 503, r.text

    again = server_factory(f"{CALLS}:Front", "--service", "Model", port=model_port)
    wait_for(lambda: post(middle, "/predict", {"x": [1]}).status_code == 200, 20, what="recovery")
    assert again.proc.poll() is None


def test_bad_depends_is_a_one_line_error(server_factory):
    srv = server_factory(f"{CALLS}:Front", "--depends", "Model=localhost:1", start=False)
    srv.start(wait_ready=False)
    assert srv.proc.wait(20) != 0
    assert "--depends expects NAME=http://host:port" in srv.log()


def test_depends_url_with_on(server_factory):
    model_port = free_port()
    server_factory(f"{CALLS}:Front", "--service", "Model", port=model_port)
    by_url = server_factory(f"{SERVICES / 'graph_url.py'}:ByUrl",
                            env={"MODEL_URL": f"http://127.0.0.1:{model_port}",
                                 "PYTHONPATH": str(SERVICES)})
    r = post(by_url, "/predict", {"x": [1, 2]})
    assert r.status_code == 200, r.text + by_url.log()
    assert r.json() == 30.0


def test_bentoml_runner_map(server_factory):
    """BentoML's BENTOML_RUNNER_MAP ({service: uri}, tcp:// taken as http://) places a
    dependency as --depends does; a malformed one is a one-line error."""
    import os

    model_port = free_port()
    server_factory(f"{CALLS}:Front", "--service", "Model", port=model_port)
    env = {**os.environ, "BENTOML_RUNNER_MAP": f'{{"Model": "tcp://127.0.0.1:{model_port}"}}'}
    middle = server_factory(f"{CALLS}:Front", "--service", "Middle", env=env)
    r = post(middle, "/predict", {"x": [1, 2, 3]})
    assert r.status_code == 200 and r.json() == 7.0, r.text + middle.log()
    bad = server_factory(f"{CALLS}:Front", env={**os.environ, "BENTOML_RUNNER_MAP": "{nope"}, start=False)
    bad.start(wait_ready=False)
    assert bad.wait_exit(30) != 0
    assert "BENTOML_RUNNER_MAP is not JSON" in bad.log()
