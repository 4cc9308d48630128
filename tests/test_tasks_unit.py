"""The task store, the stored-input codec, the settings and ``@task`` without a server."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import bentohost
from bentohost._config import service_config
from bentohost._task_input import InputFormatError, decode_input, encode_input
from bentohost._task_store import Owner, StoredResult, TaskStatus, TaskStore, this_process
from bentohost._tasks import task_routes, task_settings


def open_store(path: Path, ttl: float = 3600.0) -> TaskStore:
    store = TaskStore(str(path), ttl)
    store.open()
    return store


def test_task_decorator_and_routes():
    @bentohost.service
    class Svc:
        @bentohost.task
        def run(self, x: int) -> int:
            return x

        @bentohost.task(route="/other")
        async def arun(self, x: int) -> int:
            return x

        @bentohost.api
        def plain(self) -> str:
            return ""

    assert Svc.apis["run"].is_task and not Svc.apis["plain"].is_task
    assert Svc().run(3) == 3  # still a plain method in Python
    routes = task_routes(Svc)
    assert [(r.route, r.method) for r in routes[:5]] == [
        ("/run/submit", "POST"), ("/run/status", "GET"), ("/run/get", "GET"),
        ("/run/retry", "POST"), ("/run/cancel", "PUT"),
    ]  # fmt: skip
    assert routes[5].route == "/other/submit"
    cfg = service_config(Svc)
    names = [a["name"] for a in cfg["apis"]]
    assert names[:3] == ["run", "arun", "plain"]  # the APIs keep their indexes
    assert names[3:] == [f"{api}_{action}" for api in ("run", "arun") for action in ("submit", "status", "get", "retry", "cancel")]
    assert all(a["needs_request"] for a in cfg["apis"][3:])

    with pytest.raises(ValueError, match="stream"):
        bentohost.task(lambda self: (yield 1))


def test_settings(tmp_path):
    s = task_settings(None, 3, environ={})
    assert s.max_running == 3 and s.ttl == 24 * 3600 and s.store == os.path.abspath("task_result.db")
    s = task_settings({"store": str(tmp_path / "a.db"), "ttl": 5, "max_running": 2}, 1, environ={})
    assert (s.store, s.ttl, s.max_running) == (str(tmp_path / "a.db"), 5.0, 2)
    env = {"BENTOHOST_TASK_STORE": "x.db", "BENTOHOST_TASK_TTL": "7", "BENTOHOST_TASK_MAX_RUNNING": "4"}
    s = task_settings({"store": "y.db", "ttl": 1}, 1, environ=env)
    assert (s.store, s.ttl, s.max_running) == (os.path.abspath("x.db"), 7.0, 4)
    assert task_settings(None, 1, environ={"BENTOML_RESULT_STORE": "b.db"}).store == os.path.abspath("b.db")
    for bad in ({"ttl": 0}, {"max_running": 0}, {"max_running": 5000}, {"unknown": 1}, {"store": ":memory:"}):
        with pytest.raises(ValueError, match="tasks"):
            task_settings(bad, 1, environ={})


def test_input_round_trip(tmp_path):
    part_file = tmp_path / "up" / "0" / "pic.png"
    part_file.parent.mkdir(parents=True)
    part_file.write_bytes(b"\x89PNG....")
    meta = (
        b"POST /x/submit HTTP/1.1\r\nx-a: 1\r\n",
        "127.0.0.1:5",
        str(tmp_path / "up"),
        [("f", "pic.png", "image/png", str(part_file), None), ("note", None, None, None, b'"hi"')],
    )
    blob = encode_input(None, "multipart/form-data; boundary=x", meta)
    part_file.unlink()  # C removes its temp dir after the submit's response
    req = decode_input(blob)
    try:
        head, client, temp_dir, parts = req.meta
        assert head == meta[0] and client == "127.0.0.1:5" and req.body is None
        assert req.content_type.startswith("multipart/form-data")
        (name, filename, ctype, path, data), note = parts
        assert (name, filename, ctype, data) == ("f", "pic.png", "image/png", None)
        assert Path(path).read_bytes() == b"\x89PNG...." and path.startswith(temp_dir)
        assert note == ("note", None, None, None, b'"hi"')
    finally:
        req.close()
    assert not os.path.exists(temp_dir)

    plain = decode_input(encode_input(b'{"a":1}', "application/json", None))
    assert plain.body == b'{"a":1}' and plain.meta[3] is None and plain.meta[2] is None
    for broken in (b"", b"XXXX\0\0\0\0", blob[:20], blob[:-3]):
        with pytest.raises(InputFormatError):
            decode_input(broken)


def test_store_lifecycle(tmp_path):
    store = open_store(tmp_path / "s.db")
    me = this_process("me")
    store.register(me)
    assert store.insert("a" * 32, "Svc", "run", b"in-a", None) is TaskStatus.PENDING
    assert store.insert("b" * 32, "Svc", "run", b"in-b", "me") is TaskStatus.IN_PROGRESS
    assert store.get_row("Other", "a" * 32) is None  # another service's store rows are not its
    assert store.claim("Svc", "me", 5) == [("a" * 32, "run", b"in-a")]
    assert store.claim("Svc", "me", 5) == []
    assert store.finish("a" * 32, "me", StoredResult(200, "application/json", b"1", None))
    assert not store.finish("a" * 32, "me", StoredResult(200, "application/json", b"2", None))  # once only
    row, res = store.get_result("Svc", "a" * 32)
    assert row.status is TaskStatus.COMPLETED and res == StoredResult(200, "application/json", b"1", None)
    after, changed, owner = store.cancel("Svc", "b" * 32)
    assert changed and owner == "me" and after.status is TaskStatus.CANCELED
    assert store.canceled_among(["a" * 32, "b" * 32]) == ["b" * 32]
    assert not store.finish("b" * 32, "me", StoredResult(500, "application/json", b"x", None))  # dropped
    _, changed, _ = store.cancel("Svc", "a" * 32)
    assert not changed
    row, blob = store.get_input("Svc", "a" * 32)
    assert blob == b"in-a"
    store.close()


def test_recover_fails_dead_owners_only(tmp_path):
    store = open_store(tmp_path / "s.db")
    me = this_process("me")
    store.register(me)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    ghost = Owner("ghost", me.host, dead.pid, "1")
    remote_stale = Owner("far", "elsewhere/", 1, "1")
    for o in (ghost, remote_stale):
        store.register(o)
    store.conn.execute("UPDATE bh_task_owners SET beat = ? WHERE token = 'far'", (time.time() - 3600,))
    store.insert("1" * 32, "Svc", "run", b"", "ghost")
    store.insert("2" * 32, "Svc", "run", b"", "far")
    store.insert("3" * 32, "Svc", "run", b"", "me")
    store.insert("4" * 32, "Svc", "run", b"", "unknown-owner")
    store.insert("5" * 32, "Svc", "run", b"", None)  # pending: never touched
    assert store.recover(me) == 3
    status = {r.task_id[0]: r.status for r in (store.get_row("Svc", c * 32) for c in "12345")}
    assert status == {"1": TaskStatus.FAILED, "2": TaskStatus.FAILED, "3": TaskStatus.IN_PROGRESS,
                      "4": TaskStatus.FAILED, "5": TaskStatus.PENDING}  # fmt: skip
    _, res = store.get_result("Svc", "1" * 32)
    assert res.status == 500 and b"exited before it finished" in res.body
    owners = {r[0] for r in store.conn.execute("SELECT token FROM bh_task_owners")}
    assert owners == {"me"}
    store.close()


def test_expiry_and_sweep(tmp_path):
    store = open_store(tmp_path / "s.db", ttl=0.2)
    store.insert("a" * 32, "Svc", "run", b"", "me")
    store.finish("a" * 32, "me", StoredResult(200, "text/plain", b"ok", None))
    store.insert("b" * 32, "Svc", "run", b"", None)
    assert store.get_row("Svc", "a" * 32) is not None
    time.sleep(0.3)
    assert store.get_row("Svc", "a" * 32) is None and store.get_result("Svc", "a" * 32) is None
    assert store.sweep() == 1
    assert store.get_row("Svc", "b" * 32) is not None  # pending tasks do not expire
    store.close()


def test_store_is_wal_and_shared(tmp_path):
    path = tmp_path / "s.db"
    a, b = open_store(path), open_store(path)
    assert a.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    a.insert("a" * 32, "Svc", "run", b"", None)
    assert b.claim("Svc", "b", 1) == [("a" * 32, "run", b"")]
    assert a.claim("Svc", "a", 1) == []
    a.close()
    b.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT owner FROM bh_tasks").fetchone() == ("b",)


def test_unusable_store_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(RuntimeError, match="task store"):
        open_store(blocker / "sub" / "s.db")
