"""Signed pickle without a server: ``_signing``'s format and checks, the gate in
``_dispatch`` (``set_pickle_key``), and ``RemoteProxy(signing_key=...)`` through the
real dispatch code (tests/test_remote_unit.py's in-process transport): requests
signed, answers checked before they are unpickled, batchable APIs in JSON."""

from __future__ import annotations

import hashlib
import hmac
import pickle
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bentohost import _signing
from bentohost._dispatch import build_endpoints, handle_request, set_pickle_allowed, set_pickle_key
from bentohost._remote import RemoteProxy
from bentohost.exceptions import BentoMLException
from pickle_probe import CreatesFile
from test_remote_unit import CannedTransport, Leaf, LocalTransport

KEY = b"k" * 32
PICKLE = "application/vnd.bentoml+pickle"


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    set_pickle_key(None)
    set_pickle_allowed(False)
    yield
    set_pickle_key(None)
    set_pickle_allowed(False)


# --------------------------------------------------------------------------- the format


def test_the_probe_does_create_its_file_when_unpickled(tmp_path: Path) -> None:
    pickle.loads(pickle.dumps(CreatesFile(tmp_path / "made")))
    assert (tmp_path / "made").exists()



def test_request_signature_format_and_checks() -> None:
    body = [b"main", memoryview(b"buf")]
    header, v1 = _signing.sign_request(KEY, "POST", b"/add", "4,3", body, now=1000)
    expected = hmac.new(KEY, b"1000\nPOST /add\n4,3\nmainbuf", hashlib.sha256).hexdigest()
    assert header == f"t=1000,v1={expected}" and v1 == expected
    assert _signing.check_request(KEY, header, "POST", "/add", "4,3", [b"mainbuf"], now=1100) == v1
    bad = {
        "other key": (b"x" * 32, header, "/add", "4,3", b"mainbuf", 1000),
        "other body": (KEY, header, "/add", "4,3", b"mainbuX", 1000),
        "other route": (KEY, header, "/sub", "4,3", b"mainbuf", 1000),
        "other lengths": (KEY, header, "/add", "7", b"mainbuf", 1000),
        "stale": (KEY, header, "/add", "4,3", b"mainbuf", 1000 + _signing.MAX_SKEW_S + 1),
        "from the future": (KEY, header, "/add", "4,3", b"mainbuf", 1000 - _signing.MAX_SKEW_S - 1),
        "missing": (KEY, None, "/add", "4,3", b"mainbuf", 1000),
        "malformed": (KEY, "v1=abc", "/add", "4,3", b"mainbuf", 1000),
    }
    for what, (key, value, route, lengths, data, now) in bad.items():
        with pytest.raises(_signing.SignatureError):
            _signing.check_request(key, value, "POST", route, lengths, [data], now=now)
            pytest.fail(what)


def test_response_signature_is_bound_to_its_request() -> None:
    seal = _signing.sign_response(KEY, "aaaa", "", [b"out"])
    _signing.check_response(KEY, seal, "aaaa", "", [b"out"])
    with pytest.raises(_signing.SignatureError):
        _signing.check_response(KEY, seal, "bbbb", "", [b"out"])


# --------------------------------------------------------------------------- the gate


def _pickle_request(body: bytes, signature: str | None, route: str = "/add") -> tuple:
    ep = {e.method.route: e for e in build_endpoints(Leaf, Leaf())}[route]
    head = f"POST {route} HTTP/1.1\r\ncontent-type: {PICKLE}\r\n"
    if signature is not None:
        head += f"x-bentohost-signature: {signature}\r\n"
    return handle_request(ep, body, PICKLE, (head.encode(), "127.0.0.1:1", None, None))


def test_gate_refuses_what_is_not_signed_with_the_key(tmp_path: Path) -> None:
    set_pickle_key(KEY)
    marker = tmp_path / "unpickled"
    evil = pickle.dumps({"a": CreatesFile(marker), "b": 1})
    stale = _signing.sign_request(KEY, "POST", b"/add", "", [evil], now=time.time() - 3600)[0]
    for signature in (None, "t=1,v1=00", _signing.sign_request(b"other", "POST", b"/add", "", [evil])[0], stale):
        status, _ctype, out, _ = _pickle_request(evil, signature)
        assert status == 415 and b"refused" in out, out
    assert not marker.exists()
    good = pickle.dumps({"a": 2, "b": 3})
    status, ctype, out, headers = _pickle_request(good, _signing.sign_request(KEY, "POST", b"/add", "", [good])[0])
    assert status == 200 and ctype == PICKLE and pickle.loads(out) == 5
    assert "X-Bentohost-Signature: t=" in headers


def test_batch_members_cannot_be_signed_so_pickle_is_refused() -> None:
    set_pickle_key(KEY)
    ep = {e.name: e for e in build_endpoints(Leaf, Leaf())}["batch"]
    with pytest.raises(Exception, match="refused"):
        ep.decode_member(pickle.dumps({"xs": [1]}), PICKLE)


# --------------------------------------------------------------------------- the proxy


def test_signed_proxy_round_trip_and_batchable_json() -> None:
    t = LocalTransport(Leaf)
    set_pickle_key(KEY)
    leaf = RemoteProxy(Leaf, t, signing_key=KEY)
    try:
        assert leaf.add(a=2, b=3) == 5
        assert t.calls[-1]["content_type"] == PICKLE and "X-Bentohost-Signature" in t.calls[-1]["headers"]
        assert leaf.batch(xs=[1, 2]) == [2, 3]
        assert t.calls[-1]["content_type"] == "application/json"
        with pytest.raises(BentoMLException) as info:
            RemoteProxy(Leaf, t, signing_key=b"other").add(a=1, b=1)
        assert int(info.value.error_code) == 502 and "same graph secret" in info.value.message
    finally:
        t.close()


@pytest.mark.parametrize("key,media", [(KEY, PICKLE), (None, "application/json")])
def test_an_answer_that_is_not_trusted_is_never_unpickled(tmp_path: Path, key: bytes | None, media: str) -> None:
    """A keyed proxy unpickles only answers signed for its request; a JSON proxy none."""
    marker = tmp_path / "unpickled"
    evil = pickle.dumps(CreatesFile(marker))
    t = CannedTransport((200, {"content-type": PICKLE, "x-bentohost-signature": "t=1,v1=00"}, evil))
    with pytest.raises(BentoMLException) as info:
        RemoteProxy(Leaf, t, media_type=media, signing_key=key).add(a=1, b=1)
    assert int(info.value.error_code) == 502 and "not unpickled" in info.value.message
    assert not marker.exists()
