"""Start-up, readiness, hooks, graceful shutdown and start-up failures (behaviour §1.1, §5, §7)."""

import os
import re
import signal
import socket
import threading
import time

import pytest
import requests

from conftest import Server, wait_for


# ----------------------------------------------------------------- graceful shutdown


def test_sigterm_drains_in_flight_requests(server_factory, tmp_path):
    mark_dir = tmp_path / "marks"
    mark_dir.mkdir()
    srv = server_factory("basic.py:Basic", "--workers", "2", env={"BH_TEST_MARK_DIR": mark_dir})
    n = 8
    results = [None] * n
    done_at = [None] * n

    def call(i):
        try:
            r = requests.post(srv.url + "/asleep", json={"seconds": 3.0}, timeout=30)
            results[i] = (r.status_code, r.json() if r.status_code == 200 else r.text)
        except Exception as exc:  # noqa: BLE001
            results[i] = ("error", repr(exc))
        done_at[i] = time.monotonic()

    threads = [threading.Thread(target=call, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    # every call has reached Python
    wait_for(lambda: len(os.listdir(mark_dir)) >= n, 10, what="8 in-flight requests")
    srv.signal(signal.SIGTERM)
    sigterm_at = time.monotonic()

    # new connections are refused while the old requests drain
    refused_at = None
    while time.monotonic() - sigterm_at < 2.5:
        try:
            s = socket.create_connection((srv.host, srv.port), timeout=1)
            s.close()
        except ConnectionRefusedError:
            refused_at = time.monotonic()
            break
        except OSError:
            pass
        time.sleep(0.02)

    for t in threads:
        t.join(30)
    assert all(r is not None and r[0] == 200 for r in results), results
    code = srv.wait_exit(30)
    assert code == 0, srv.log()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((srv.host, srv.port), timeout=2)
    assert refused_at is not None, "new connections were still accepted during the drain"
    assert refused_at < min(done_at), "listening socket closed only after the in-flight requests finished"


def test_drained_keep_alive_response_closes_the_connection(server_factory, tmp_path):
    import json

    from conftest import raw_request

    mark_dir = tmp_path / "marks"
    mark_dir.mkdir()
    srv = server_factory("basic.py:Basic", "--workers", "1", env={"BH_TEST_MARK_DIR": mark_dir})
    with srv.conn(timeout=15) as c:
        c.send(raw_request("POST", "/asleep", json.dumps({"seconds": 1.5})))
        wait_for(lambda: os.listdir(mark_dir), 10, what="the request to start")
        srv.signal(signal.SIGTERM)
        r = c.read_response()
        assert r.status == 200, r
        assert r.headers.get("connection", "").lower() == "close", r
        assert c.wait_closed(5)
    assert srv.wait_exit(15) == 0, srv.log()


def test_sigterm_idle_server_exits_zero_quickly(server_factory):
    srv = server_factory("basic.py:Basic", "--workers", "2")
    srv.wait_all_workers(2)
    t0 = time.monotonic()
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit(15) == 0, srv.log()
    assert time.monotonic() - t0 < 5
    # no worker is left behind
    wait_for(lambda: not srv.worker_pids(), 5, what="workers to be gone")


def test_sigint_also_shuts_down(server_factory):
    srv = server_factory("basic.py:Basic", "--workers", "1")
    srv.signal(signal.SIGINT)
    assert srv.wait_exit(15) == 0, srv.log()


def test_graceful_shutdown_timeout_kills_long_requests(server_factory, tmp_path):
    mark_dir = tmp_path / "marks"
    mark_dir.mkdir()
    srv = server_factory("basic.py:Basic", "--workers", "1", "--timeout-graceful-shutdown", "1",
                         env={"BH_TEST_MARK_DIR": mark_dir})
    outcome = []

    def long_call():
        try:
            outcome.append(requests.post(srv.url + "/asleep", json={"seconds": 60}, timeout=70).status_code)
        except requests.RequestException as exc:
            outcome.append(type(exc).__name__)

    t = threading.Thread(target=long_call, daemon=True)
    t.start()
    wait_for(lambda: os.listdir(mark_dir), 10, what="the long request to start")
    t0 = time.monotonic()
    srv.signal(signal.SIGTERM)
    srv.wait_exit(20)
    assert time.monotonic() - t0 < 10, "--timeout-graceful-shutdown 1 was not enforced"
    t.join(10)
    # the request that could not finish is cut off, not answered 200
    assert outcome and outcome[0] != 200, outcome
    assert not srv.worker_pids()


# ----------------------------------------------------------------- hooks and readiness


def test_startup_and_shutdown_hooks(server_factory, tmp_path):
    hooks_log = tmp_path / "hooks.log"
    srv = server_factory("hooks.py:Hooks", "--workers", "1", env={"HOOKS_LOG": hooks_log})
    # ready means: instance created and every on_startup hook has run
    r = srv.post("/events_seen", {})
    assert r.status_code == 200, r.text
    assert r.json() == ["init", "startup-async", "startup-sync"]
    events = [line.split()[0] for line in hooks_log.read_text().splitlines()]
    assert events[0] == "init"
    assert sorted(events) == ["init", "startup-async", "startup-sync"]
    for line in hooks_log.read_text().splitlines():
        assert line.split()[1] == "1", line  # worker_index is set while hooks run

    srv.signal(signal.SIGTERM)
    assert srv.wait_exit(20) == 0, srv.log()
    events = [line.split()[0] for line in hooks_log.read_text().splitlines()]
    assert "shutdown-sync" in events and "shutdown-async" in events, events
    assert events.count("shutdown-sync") == 1 and events.count("shutdown-async") == 1


def test_hooks_run_once_per_worker(server_factory, tmp_path):
    hooks_log = tmp_path / "hooks.log"
    srv = server_factory("hooks.py:Hooks", "--workers", "2", env={"HOOKS_LOG": hooks_log})

    def both_started():
        lines = hooks_log.read_text().splitlines()
        return sorted(l.split()[1] for l in lines if l.startswith("startup-sync")) == ["1", "2"]

    wait_for(both_started, 20, what="startup hooks in both workers")
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit(20) == 0, srv.log()
    lines = hooks_log.read_text().splitlines()
    for ev in ("init", "startup-sync", "startup-async", "shutdown-sync", "shutdown-async"):
        assert sorted(l.split()[1] for l in lines if l.split()[0] == ev) == ["1", "2"], (ev, lines)


def test_readyz_answers_503_while_init_is_loading(server_factory):
    srv = server_factory("slow_init.py:SlowInit", "--workers", "1",
                         env={"SLOW_INIT_SECONDS": "4"}, wait_ready=False)
    statuses = []
    slowest_503 = 0.0
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        assert srv.proc.poll() is None, srv.log()
        t0 = time.monotonic()
        try:
            r = requests.get(srv.url + "/readyz", timeout=5)
        except requests.ConnectionError:
            time.sleep(0.05)
            continue
        except requests.Timeout:
            srv.fail("/readyz did not answer within 5s while the service was loading")
        took = time.monotonic() - t0
        statuses.append(r.status_code)
        if r.status_code == 503:
            slowest_503 = max(slowest_503, took)
        if r.status_code == 200:
            break
        time.sleep(0.1)
    assert statuses and statuses[-1] == 200, (statuses, srv.log())
    assert 503 in statuses, f"never saw 503 during the 4 s __init__: {statuses}\n{srv.log()}"
    assert set(statuses) <= {503, 200}, statuses
    assert slowest_503 < 1.0, f"/readyz took {slowest_503:.2f}s to answer 503"
    # the liveness probe is not the readiness probe
    assert requests.get(srv.url + "/livez", timeout=5).status_code == 200
    assert srv.post("/ping", {}).text == "pong"


def _answers_while_worker_loads(srv, seconds: float) -> tuple[list, list, float]:
    """/readyz and /whoami on fresh connections for ``seconds``: statuses, indices, slowest."""
    statuses, indices, slowest = [], [], 0.0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        t0 = time.monotonic()
        statuses.append(requests.get(srv.url + "/readyz", timeout=10).status_code)
        r = requests.post(srv.url + "/whoami", json={}, timeout=10)
        slowest = max(slowest, time.monotonic() - t0)
        statuses.append(r.status_code)
        if r.status_code == 200:
            indices.append(r.json()["worker_index"])
        time.sleep(0.02)
    return statuses, indices, slowest


def test_a_worker_still_loading_takes_no_request_from_its_ready_sibling(server_factory):
    """Worker 2 loads for 8 s after worker 1 is ready, and later worker 1 is killed
    and loads again: meanwhile /readyz stays 200 and no request waits for the
    loading worker (it accepts only once ready, like a rolling restart's)."""
    srv = server_factory("slow_init.py:SlowInit", "--workers", "2",
                         env={"SLOW_INIT_SECONDS": "8", "SLOW_INIT_ONLY_WORKER": "2"})
    statuses, indices, slowest = _answers_while_worker_loads(srv, 3)
    assert set(statuses) == {200}, (statuses, srv.log())
    assert set(indices) == {1}, indices
    assert slowest < 4, f"a request waited {slowest:.1f}s: it went to the loading worker\n{srv.log()}"
    # and once loaded, worker 2 serves too
    assert set(srv.wait_all_workers(2, timeout=30)) == {1, 2}

    srv2 = server_factory("slow_init.py:SlowInit", "--workers", "2",
                          env={"SLOW_INIT_SECONDS": "8", "SLOW_INIT_ONLY_WORKER": "1"},
                          wait_ready=False)
    srv2.wait_ready(timeout=60)
    first = srv2.wait_all_workers(2, timeout=30)
    os.kill(first[1], signal.SIGKILL)
    wait_for(lambda: re.search(rf"worker 1 \(pid (?!{first[1]})\d+\) loading", srv2.log()), 20,
             what="worker 1 to be respawned")
    statuses, indices, slowest = _answers_while_worker_loads(srv2, 3)
    assert set(statuses) == {200}, (statuses, srv2.log())
    assert set(indices) == {2}, indices
    assert slowest < 4, f"a request waited {slowest:.1f}s on the respawned worker\n{srv2.log()}"


def test_readyz_waits_for_slow_async_on_startup_hook(server_factory, tmp_path):
    hooks_log = tmp_path / "hooks.log"
    srv = server_factory("hooks.py:Hooks", "--workers", "1", wait_ready=False,
                         env={"HOOKS_LOG": hooks_log, "HOOKS_STARTUP_DELAY": "3"})
    # wait until __init__ ran: from here on, readiness depends only on the hooks
    wait_for(lambda: hooks_log.exists() and "init" in hooks_log.read_text(), 20, what="__init__ to run")
    r = requests.get(srv.url + "/readyz", timeout=5)
    if "startup-async" not in hooks_log.read_text():
        assert r.status_code == 503, r.text
    srv.wait_ready()
    assert "startup-async" in hooks_log.read_text()
    assert srv.post("/events_seen", {}).json() == ["init", "startup-async", "startup-sync"]


def test_idle_keep_alive_connection_does_not_delay_shutdown(server_factory):
    srv = server_factory("basic.py:Basic", "--workers", "1", "--timeout-keep-alive", "30")
    with requests.Session() as s:
        assert s.post(srv.url + "/add", json={"a": 1}, timeout=10).status_code == 200
        t0 = time.monotonic()
        srv.signal(signal.SIGTERM)
        assert srv.wait_exit(20) == 0, srv.log()
        elapsed = time.monotonic() - t0
    assert elapsed < 5, f"an idle keep-alive connection held the shutdown for {elapsed:.1f}s"


def test_connection_accepted_before_sigterm_gets_its_request_answered(server_factory):
    """A client that connected just before the shutdown and sends its request a moment
    later is answered (connection: close), not cut: the drain closes only connections
    between requests; one that never sends anything is closed within a second."""
    srv = server_factory("basic.py:Basic", "--workers", "1", "--timeout-keep-alive", "30")
    late = socket.create_connection((srv.host, srv.port), timeout=10)
    silent = socket.create_connection((srv.host, srv.port), timeout=10)
    try:
        time.sleep(0.3)  # both accepted by the worker, neither has sent a byte
        t0 = time.monotonic()
        srv.signal(signal.SIGTERM)
        time.sleep(0.2)
        late.sendall(b'POST /add HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n'
                     b'Content-Length: 8\r\n\r\n{"a": 1}')
        answer = b""
        while chunk := late.recv(65536):
            answer += chunk
        head = answer.split(b"\r\n\r\n", 1)[0].lower()
        assert head.startswith(b"http/1.1 200"), answer
        assert b"connection: close" in head, answer
        assert srv.wait_exit(20) == 0, srv.log()
        elapsed = time.monotonic() - t0
        assert silent.recv(1) == b""
    finally:
        late.close()
        silent.close()
    assert elapsed < 5, f"a connection that never sent a request held the shutdown for {elapsed:.1f}s"


def test_livez_answers_while_loading(server_factory):
    srv = server_factory("slow_init.py:SlowInit", "--workers", "1",
                         env={"SLOW_INIT_SECONDS": "4"}, wait_ready=False)

    def livez():
        r = requests.get(srv.url + "/livez", timeout=2)
        return r

    r = wait_for(livez, 15, what="/livez to answer")
    assert r.status_code == 200
    assert requests.get(srv.url + "/readyz", timeout=2).status_code == 503


# ----------------------------------------------------------------- start-up failures


def test_port_in_use_is_one_clear_error(server_factory):
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    port = blocker.getsockname()[1]
    try:
        srv = server_factory("basic.py:Basic", port=port, start=False)
        t0 = time.monotonic()
        srv.start(wait_ready=False)
        code = srv.wait_exit(15)
        log = srv.log()
        assert code == 1, log
        assert time.monotonic() - t0 < 10
        assert "Traceback" not in log, log
        errors = [l for l in log.splitlines() if str(port) in l and "in use" in l.lower()]
        assert len(errors) == 1, log
    finally:
        blocker.close()


@pytest.mark.parametrize(
    "target,marker",
    [("syntax_error.py:Broken", "SyntaxError"), ("import_error.py:Broken", "RuntimeError: import-boom-marker-5c2a")],
    ids=["syntax-error", "raises-at-import"],
)
def test_broken_service_file_fails_fast_with_one_traceback(server_factory, target, marker):
    srv = server_factory(target, "--workers", "2", start=False)
    t0 = time.monotonic()
    srv.start(wait_ready=False)
    code = srv.wait_exit(20)
    elapsed = time.monotonic() - t0
    log = srv.log()
    assert code != 0, log
    assert elapsed < 10, f"took {elapsed:.1f}s to give up\n{log}"
    assert log.count(marker) >= 1, log
    # Printed once, and with the user's file but none of bentohost's loader frames
    # (a SyntaxError has no frames at all, so no "Traceback" header either).
    assert log.count("Traceback (most recent call last)") <= 1, log
    assert log.count(marker + ("" if ":" in marker else ":")) == 1, log
    assert target.split(":")[0] in log  # the file name appears in the traceback
    assert "_loader.py" not in log and "importlib" not in log, log
    assert not srv.worker_pids()


def test_missing_class_fails_fast(server_factory):
    srv = server_factory("basic.py:NoSuchClass", start=False)
    srv.start(wait_ready=False)
    code = srv.wait_exit(20)
    log = srv.log()
    assert code != 0, log
    assert "NoSuchClass" in log


def test_missing_file_fails_fast(server_factory, tmp_path):
    srv = server_factory(f"{tmp_path}/nope.py:Svc", start=False)
    srv.start(wait_ready=False)
    code = srv.wait_exit(20)
    assert code != 0, srv.log()
    assert "nope.py" in srv.log()


def test_init_always_raising_gives_up(server_factory):
    srv = server_factory("init_fails.py:InitFails", "--workers", "1", start=False)
    t0 = time.monotonic()
    srv.start(wait_ready=False)
    code = srv.wait_exit(40)
    elapsed = time.monotonic() - t0
    log = srv.log()
    assert code != 0, log
    assert elapsed < 20, f"took {elapsed:.1f}s to give up\n{log}"
    assert "init-boom-marker-77e0" in log
    last = [l for l in log.splitlines() if l.strip()][-3:]
    assert any("error" in l.lower() or "giving up" in l.lower() for l in last), log
