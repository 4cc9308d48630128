"""Worker processes: worker_index, the embedded host binary, crash respawn (behaviour §1.3)."""

import os
import re
import signal
import time

import pytest
import requests

from conftest import HOST_BINARY, children_of, pid_dead, wait_for


@pytest.fixture
def two_workers(server_factory):
    srv = server_factory("basic.py:Basic", "--workers", "2")
    srv.index_to_pid = srv.wait_all_workers(2)
    return srv


def test_worker_index_covers_1_to_n(two_workers):
    srv = two_workers
    assert set(srv.index_to_pid) == {1, 2}
    assert len(set(srv.index_to_pid.values())) == 2
    assert sorted(srv.index_to_pid.values()) == sorted(srv.worker_pids())


def test_worker_index_with_three_workers(server_factory):
    srv = server_factory("basic.py:Basic", "--workers", "3")
    seen = srv.wait_all_workers(3)
    assert set(seen) == {1, 2, 3}
    assert sorted(seen.values()) == srv.worker_pids()


def test_workers_run_the_host_binary_not_python(two_workers):
    srv = two_workers
    expected = os.path.realpath(HOST_BINARY)
    # the launcher execs the supervisor: the Popen pid is the host binary
    assert os.path.realpath(f"/proc/{srv.pid}/exe") == expected
    for pid in srv.index_to_pid.values():
        exe = os.readlink(f"/proc/{pid}/exe")
        assert os.path.realpath(exe) == expected, exe
        assert "python" not in os.path.basename(exe)


def test_start_log_shows_workers_and_listening(two_workers):
    srv = two_workers
    log = wait_for(lambda: (lambda t: t if "listening on" in t else None)(srv.log()), 10,
                   what="'listening on' in the log")
    lines = log.splitlines()
    listen = [i for i, l in enumerate(lines) if f"listening on http://127.0.0.1:{srv.port}" in l]
    assert listen, log
    for index, pid in srv.index_to_pid.items():
        pat = re.compile(rf"\b{index}\b.*\b{pid}\b")
        loading = [i for i, l in enumerate(lines) if pat.search(l) and re.search("load", l, re.I)]
        ready = [i for i, l in enumerate(lines) if pat.search(l) and re.search("ready", l, re.I)]
        assert loading, f"no 'loading' line for worker {index} pid {pid}:\n{log}"
        assert ready, f"no 'ready' line for worker {index} pid {pid}:\n{log}"
        assert loading[0] < ready[0] < listen[0], log


def test_kill_9_respawns_with_same_index(two_workers):
    srv = two_workers
    victim_index = 1
    victim = srv.index_to_pid[victim_index]
    survivor = srv.index_to_pid[2]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: pid_dead(victim), 10, what=f"worker pid {victim} to die")

    # the other worker keeps answering while the victim is replaced
    for _ in range(20):
        r = requests.post(srv.url + "/whoami", timeout=10)
        assert r.status_code == 200, r.text

    def respawned():
        kids = children_of(srv.pid)
        new = [p for p in kids if p not in (victim, survivor)]
        return new if len(kids) == 2 and new else None

    new_pid = wait_for(respawned, 20, what="a replacement worker process")[0]
    assert survivor in children_of(srv.pid)
    assert os.path.realpath(f"/proc/{new_pid}/exe") == os.path.realpath(HOST_BINARY)

    srv.wait_ready()
    seen = srv.wait_all_workers(2)
    assert seen[victim_index] == new_pid, seen
    assert seen[2] == survivor, seen
    assert srv.proc.poll() is None
    # the supervisor says what happened
    log = srv.log()
    assert re.search(rf"\b{victim}\b.*(killed|signal|9)", log), log
    assert re.search(rf"\b{victim_index}\b.*\b{new_pid}\b.*load", log, re.I), log
    assert re.search(rf"\b{victim_index}\b.*\b{new_pid}\b.*ready", log, re.I), log


def test_all_workers_killed_are_all_replaced(two_workers):
    srv = two_workers
    for pid in list(srv.index_to_pid.values()):
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: pid_dead(pid), 10, what=f"worker {pid} to die")
    srv.wait_ready(30)
    seen = srv.wait_all_workers(2)
    assert set(seen.values()).isdisjoint(srv.index_to_pid.values())
    assert srv.post("/add", {"a": 2, "b": 2}).json() == 4


def test_bentoml_style_service(server_factory):
    srv = server_factory("bentoml_style.py:Summarizer")  # workers=2 from the decorator
    r = srv.post("/summarize", {"text": "a long piece of text"})
    assert r.status_code == 200, r.text
    assert r.text == "summary: a long pie"
    r = srv.post("/stats", {"text": "two words"})
    assert r.status_code == 200, r.text
    assert r.content == b'{"words":2,"chars":9}'
    seen = srv.wait_all_workers(2)
    assert set(seen) == {1, 2}
    assert len(srv.worker_pids()) == 2


def test_workers_exit_when_supervisor_is_killed(two_workers):
    """No orphans: a SIGKILLed supervisor takes its workers with it."""
    srv = two_workers
    kids = list(srv.index_to_pid.values())
    os.kill(srv.pid, signal.SIGKILL)
    srv.proc.wait(10)
    wait_for(lambda: all(pid_dead(p) for p in kids), 10, what=f"orphaned workers {kids} to exit")


def test_many_simultaneous_connections(two_workers):
    import json

    from conftest import raw_request

    srv = two_workers
    conns = [srv.conn(timeout=30) for _ in range(300)]
    try:
        for i, c in enumerate(conns):
            c.send(raw_request("POST", "/add", json.dumps({"a": i, "b": 0})))
        for i, c in enumerate(conns):
            r = c.read_response()
            assert r.status == 200 and int(r.body) == i, r
    finally:
        for c in conns:
            c.close()


def test_workers_flag_overrides_decorator(server_factory):
    srv = server_factory("bentoml_style.py:Summarizer", "--workers", "1")
    assert len(srv.worker_pids()) == 1
    assert srv.whoami()["worker_index"] == 1


def _policies(pid: int) -> set[int]:
    return {os.sched_getscheduler(int(tid)) for tid in os.listdir(f"/proc/{pid}/task")}


def test_worker_threads_run_batch_scheduling_unless_told_not_to(server_factory):
    """A worker's I/O thread and Python threads run SCHED_BATCH, so that on a shared CPU a
    hand-off does not preempt the thread running (csrc/worker/worker.c); the supervisor
    keeps the normal policy, and BENTOHOST_SCHED_NORMAL=1 keeps it for workers too."""
    srv = server_factory("basic.py:Basic", "--workers", "1")
    (pid,) = srv.wait_all_workers(1).values()
    assert srv.post("/echo", json_body={"text": "hi"}).status_code == 200
    assert _policies(pid) == {os.SCHED_BATCH}
    assert len(os.listdir(f"/proc/{pid}/task")) >= 2  # the I/O thread and Python's
    assert _policies(srv.pid) == {os.SCHED_OTHER}

    normal = server_factory("basic.py:Basic", "--workers", "1", env={"BENTOHOST_SCHED_NORMAL": "1"})
    (pid,) = normal.wait_all_workers(1).values()
    assert normal.post("/echo", json_body={"text": "hi"}).status_code == 200
    assert _policies(pid) == {os.SCHED_OTHER}
