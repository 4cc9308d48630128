"""BENTOML_NO_UDS (``serve --no-uds``): the graph's dependency pools listen on
127.0.0.1 ports instead of Unix sockets, and answer like the Unix-socket graph
(tests/test_graph_calls.py); no runtime directory, no ``.sock`` file. Every local
user can reach those ports, so pickle there must be signed with the run's key:
unsigned, mis-signed or stale pickle gets 415 and is never unpickled (the pickle
would create a file if it were), while JSON keeps working."""

from __future__ import annotations

import os
import pickle
import re
import signal
import time
from pathlib import Path

import pytest
import requests

from conftest import SERVICES, children_of, wait_for
from pickle_probe import CreatesFile, sign

# The Unix-socket graph's own tests, collected here again: they run against `chain`
# below, the same graph on loopback ports.
from test_graph_calls import (  # noqa: F401
    test_calls_across_hops,
    test_calls_spread_over_the_dependency_workers,
    test_each_hop_runs_in_its_own_pool,
    test_errors_keep_their_meaning,
    test_numpy_crosses_a_hop,
)

CALLS = f"{SERVICES / 'graph_calls.py'}:Front"
SIGNED = f"{SERVICES / 'graph_signed.py'}:Entry"
PICKLE = "application/vnd.bentoml+pickle"


def post(srv, path: str, body: dict, **kw) -> requests.Response:
    return requests.post(srv.url + path, json=body, timeout=kw.pop("timeout", 20), **kw)


def loopback_ports(srv) -> dict[str, list[int]]:
    """{service: [port, ...]} from the supervisor's log line."""
    m = re.search(r"dependencies listen on 127\.0\.0\.1 \([^)]*\):(.*)", srv.log())
    assert m, srv.log()
    out: dict[str, list[int]] = {}
    for chunk in m.group(1).split(","):
        name, *ports = chunk.split()
        out[name] = [int(p) for p in ports]
    return out


def listening(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp{,6} writes them) listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            addr, hexport = fields[1].split(":")
            if int(hexport, 16) == port and fields[3] == "0A":  # LISTEN
                found.add(addr)
    return found


def environ_has_key(pid: int) -> bool:
    return b"BENTOHOST_PRIVATE_KEY=" in Path(f"/proc/{pid}/environ").read_bytes()


@pytest.fixture(scope="module")
def tmpdir_env(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tmpdir")


@pytest.fixture(scope="module")
def chain(module_server_factory, tmpdir_env):
    srv = module_server_factory(CALLS, env={"BENTOML_NO_UDS": "1", "TMPDIR": str(tmpdir_env)})
    srv.wait_all_workers(2)
    assert "(a dependency, on loopback ports)" in srv.log()
    return srv


def test_no_socket_files_and_ports_only_on_loopback(chain, tmpdir_env):
    log = chain.log()
    assert "Unix sockets" not in log and "(a dependency, on loopback ports)" in log
    assert list(tmpdir_env.iterdir()) == [], "no runtime directory, no .sock file"
    ports = loopback_ports(chain)
    assert sorted(ports) == ["Middle", "Model"] and len(ports["Model"]) == 2
    for port in ports["Middle"] + ports["Model"]:
        assert listening(port) == {"0100007F"}, f"port {port} listens on {listening(port)}"
    # JSON needs no signature, on a private port too
    r = requests.post(f"http://127.0.0.1:{ports['Model'][0]}/who", json={}, timeout=10)
    assert r.status_code == 200 and r.json()["service"] == "Model"


def test_pickle_without_a_valid_signature_is_never_unpickled(chain, tmp_path):
    port = loopback_ports(chain)["Model"][0]
    marker = tmp_path / "unpickled"
    body = pickle.dumps({"x": CreatesFile(marker)})
    url = f"http://127.0.0.1:{port}/predict"
    cases = {
        "unsigned": {},
        "garbage": {"X-Bentohost-Signature": "let me in"},
        "wrong key": {"X-Bentohost-Signature": sign(b"not the key", "/predict", body)},
        "no mac": {"X-Bentohost-Signature": f"t={int(time.time())}"},
    }
    for what, headers in cases.items():
        r = requests.post(url, data=body, headers={"Content-Type": PICKLE, **headers}, timeout=10)
        assert r.status_code == 415, (what, r.status_code, r.text)
        assert "refused" in r.text and "sign" in r.text, (what, r.text)
        assert not marker.exists(), f"{what}: the body was unpickled"
    # the graph's own signed calls still go through
    assert post(chain, "/predict", {"x": [1]}).json() == 2.0


def test_the_key_is_never_logged_nor_in_an_initial_environment(chain):
    """The supervisor makes the key after it started: no /proc/<pid>/environ shows it
    (workers are forked, not executed), and no 64-hex-digit string is in the log."""
    pids = [chain.pid, *children_of(chain.pid)]
    assert len(pids) == 6
    assert not any(environ_has_key(pid) for pid in pids)
    assert not re.search(r"[0-9a-f]{64}", chain.log())


def test_batchable_api_keys_and_the_flag(server_factory, tmp_path):
    """``--no-uds`` as a flag; a batchable API of the dependency is called with JSON (batch
    members reach Python without their headers, so a signature could not be checked); a
    value only pickle carries crosses; neither worker's user code sees the key."""
    srv = server_factory(SIGNED, "--no-uds", env={"TMPDIR": str(tmp_path)})
    assert loopback_ports(srv).keys() == {"Leaf"}
    assert post(srv, "/bump", {"xs": [1, 2]}).json() == [2, 3]
    assert post(srv, "/wire", {}).json() == {"content_type": PICKLE, "signed": True}
    assert post(srv, "/third", {"n": 2}).json() == ["Fraction", "2/21"]
    assert post(srv, "/keys_visible", {}).json() == {"entry": [], "leaf": []}
    assert not any(p.suffix == ".sock" for p in tmp_path.rglob("*"))


def test_true_and_false_values(server_factory, tmp_path):
    on = server_factory(SIGNED, env={"BENTOML_NO_UDS": "true", "TMPDIR": str(tmp_path)})
    assert loopback_ports(on).keys() == {"Leaf"} and post(on, "/wire", {}).json()["signed"] is True
    off = server_factory(SIGNED, env={"BENTOML_NO_UDS": "0", "TMPDIR": str(tmp_path)})
    assert "dependencies listen on Unix sockets" in off.log()
    assert post(off, "/wire", {}).json() == {"content_type": PICKLE, "signed": False}


def test_respawned_workers_find_the_pools(server_factory, tmp_path):
    """A new life of the entry's first worker (the one that reserved the ports) and of a
    dependency worker: the addresses come from the environment, the ports stay bound."""
    srv = server_factory(CALLS, env={"BENTOML_NO_UDS": "1", "TMPDIR": str(tmp_path)})
    entry = srv.wait_all_workers(2)
    ports = loopback_ports(srv)
    model_pids = {w["pid"] for w in (post(srv, "/who", {}).json()[2] for _ in range(20))}
    for pid in (entry[1], *model_pids):
        os.kill(pid, signal.SIGKILL)

    def new_first_worker_calls() -> bool:
        front, _middle, model = post(srv, "/who", {}).json()
        return front["worker_index"] == 1 and front["pid"] != entry[1] and model["pid"] not in model_pids

    wait_for(new_first_worker_calls, 30, what="the respawned worker 1 calling a respawned Model worker")
    assert all(post(srv, "/predict", {"x": [1, 2]}).json() == 4.0 for _ in range(10))
    assert loopback_ports(srv) == ports and srv.log().count("dependencies listen on") == 1


def test_a_diamond_on_loopback(server_factory, tmp_path):
    """Leaf, reached twice, gets one pool of two workers, each on its own port."""
    srv = server_factory(f"{SERVICES / 'graph_diamond.py'}:Entry", "--no-uds", env={"TMPDIR": str(tmp_path)})
    ports = loopback_ports(srv)
    assert sorted(ports) == ["Leaf", "Left", "Right"] and len(ports["Leaf"]) == 2
    seen = set()
    for name, numbers in ports.items():
        for port in numbers:
            who = requests.post(f"http://127.0.0.1:{port}/who", json={}, timeout=10).json()
            assert who["service"] == name
            seen.add((name, who["worker_index"]))
    assert seen == {("Leaf", 1), ("Leaf", 2), ("Left", 1), ("Right", 1)}
