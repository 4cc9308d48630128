"""A graph secret shared by services on different hosts (``--graph-secret-file`` /
``BENTOHOST_GRAPH_SECRET``): the dependency, served alone with ``--service``, takes
pickle on its public port only signed with the secret; the entry, given the same
secret and ``--depends Leaf=URL``, calls it with signed pickle instead of JSON (the
dependency sees pickle and a signature; a Fraction, which only pickle carries, and an
int16 array cross the hop). A wrong secret, or none on the dependency, is a clear
502 at the entry; unsigned, mis-signed or stale pickle is 415 and never unpickled;
JSON needs no signature."""

from __future__ import annotations

import hashlib
import hmac
import pickle
import time
from pathlib import Path

import pytest
import requests

from conftest import SERVICES, free_port
from pickle_probe import CreatesFile, sign

TARGET = f"{SERVICES / 'graph_signed.py'}:Entry"
PICKLE = "application/vnd.bentoml+pickle"
SECRET = "correct horse battery staple 42"


def post(srv, path: str, body: dict) -> requests.Response:
    return requests.post(srv.url + path, json=body, timeout=20)


def secret_file(tmp_path: Path, text: str, name: str = "secret") -> str:
    path = tmp_path / name
    path.write_text(text + "\n")
    path.chmod(0o600)
    return str(path)


def leaf(server_factory, *args: str, **kw):
    port = free_port()
    return server_factory(TARGET, "--service", "Leaf", *args, port=port, **kw), port


def entry(server_factory, leaf_port: int, *args: str, **kw):
    return server_factory(TARGET, "--service", "Entry", "--depends", f"Leaf=http://127.0.0.1:{leaf_port}", *args, **kw)


def test_calls_go_as_signed_pickle(server_factory, tmp_path):
    path = secret_file(tmp_path, SECRET)
    dep, port = leaf(server_factory, "--graph-secret-file", path)
    front = entry(server_factory, port, env={"BENTOHOST_GRAPH_SECRET": SECRET})  # the env form
    assert post(front, "/wire", {}).json() == {"content_type": PICKLE, "signed": True}
    assert post(front, "/third", {"n": 2}).json() == ["Fraction", "2/21"]
    assert post(front, "/scale", {"n": 4}).json() == ["int16", [0, 2, 4, 6]]
    assert post(front, "/bump", {"xs": [1, 2]}).json() == [2, 3]  # a batchable API: JSON
    assert post(front, "/keys_visible", {}).json() == {"entry": [], "leaf": []}
    # JSON still needs no signature
    r = requests.post(dep.url + "/wire", json={}, timeout=10)
    assert r.status_code == 200 and r.json() == {"content_type": "application/json", "signed": False}
    assert SECRET not in dep.log() + front.log()


def test_without_a_secret_calls_are_json(server_factory):
    dep, port = leaf(server_factory)
    front = entry(server_factory, port)
    assert post(front, "/wire", {}).json() == {"content_type": "application/json", "signed": False}
    assert post(front, "/third", {"n": 2}).json() == ["str", "2/21"]  # JSON turned the Fraction into text
    assert post(front, "/scale", {"n": 2}).json()[0] != "int16"


def test_a_wrong_secret_is_a_clear_error_at_the_entry(server_factory, tmp_path):
    _dep, port = leaf(server_factory, "--graph-secret-file", secret_file(tmp_path, SECRET))
    front = entry(server_factory, port, "--graph-secret-file", secret_file(tmp_path, "another secret, 16+ long", "b"))
    r = post(front, "/wire", {})
    assert r.status_code == 502, r.text
    log = front.log()
    assert "refused the signed pickle call to /wire" in log and "same graph secret" in log, log
    assert "signature does not match" in log, log


def test_no_secret_on_the_dependency_refuses_pickle(server_factory, tmp_path):
    dep, port = leaf(server_factory)
    front = entry(server_factory, port, "--graph-secret-file", secret_file(tmp_path, SECRET))
    r = post(front, "/wire", {})
    assert r.status_code == 502, r.text
    assert "refused the signed pickle call" in front.log() and "not allowed" in front.log()
    r = requests.post(dep.url + "/wire", data=pickle.dumps({}), headers={"Content-Type": PICKLE}, timeout=10)
    assert r.status_code == 415


def test_pickle_not_signed_with_the_secret_is_never_unpickled(server_factory, tmp_path):
    dep, _port = leaf(server_factory, "--graph-secret-file", secret_file(tmp_path, SECRET))
    marker = tmp_path / "unpickled"
    evil = pickle.dumps({"value": CreatesFile(marker)})
    key = SECRET.encode()
    cases = {
        "unsigned": None,
        "the bare secret": SECRET,
        "wrong key": sign(b"not the secret at all", "/third", evil),
        "stale": sign(key, "/third", evil, t=int(time.time()) - 3600),
        "another route": sign(key, "/wire", evil),
    }
    for what, signature in cases.items():
        headers = {"Content-Type": PICKLE}
        if signature is not None:
            headers["X-Bentohost-Signature"] = signature
        r = requests.post(dep.url + "/third", data=evil, headers=headers, timeout=10)
        assert r.status_code == 415, (what, r.text)
        assert "refused" in r.text, (what, r.text)
        assert not marker.exists(), f"{what}: the body was unpickled"
    # signed with the secret it is accepted, and the answer is signed for that request
    good = pickle.dumps({"value": 3})
    signature = sign(key, "/third", good)
    r = requests.post(dep.url + "/third", data=good, headers={"Content-Type": PICKLE,
                                                             "X-Bentohost-Signature": signature}, timeout=10)
    assert r.status_code == 200, r.text
    t, mac = (kv.split("=", 1)[1] for kv in r.headers["x-bentohost-signature"].split(","))
    v1 = signature.split("v1=")[1]
    lengths = r.headers.get("buffer-lengths", "")
    expected = hmac.new(key, f"{t}\nresponse {v1}\n{lengths}\n".encode() + r.content, hashlib.sha256).hexdigest()
    assert mac == expected
    assert str(pickle.loads(r.content)) == "1"


@pytest.mark.parametrize("content,message", [
    ("", "too short (0 bytes"),
    ("tiny", "too short (4 bytes"),
])
def test_a_bad_secret_file_is_a_one_line_error(server_factory, tmp_path, content, message):
    srv = server_factory(TARGET, "--graph-secret-file", secret_file(tmp_path, content), start=False)
    srv.start(wait_ready=False)
    assert srv.proc.wait(20) == 2
    assert message in srv.log() and srv.log().count("\n") == 1, srv.log()


def test_an_unreadable_secret_file_is_a_one_line_error(server_factory, tmp_path):
    srv = server_factory(TARGET, "--graph-secret-file", str(tmp_path / "missing"), start=False)
    srv.start(wait_ready=False)
    assert srv.proc.wait(20) == 2
    assert "cannot read --graph-secret-file" in srv.log() and "No such file" in srv.log()
