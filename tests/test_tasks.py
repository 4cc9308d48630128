"""``@bentohost.task`` end to end: BentoML's task routes on real servers over real HTTP, the
SQLite store shared by several workers, a crash and a restart, expiry, and the real
``bentoml`` client's task API (tests/services/task_svc.py, task_client_checks.py)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import pytest
import requests

from conftest import SERVICES, pid_dead, wait_for

TARGET = "task_svc.py:TaskSvc"


def task_env(store: Path, **extra: object) -> dict:
    env = {"BENTOHOST_TASK_STORE": str(store)}
    env.update({f"BENTOHOST_TASK_{k.upper()}": str(v) for k, v in extra.items()})
    return env


def submit(srv, api: str, payload: dict) -> str:
    r = srv.post(f"/{api}/submit", json_body=payload)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"task_id", "status"} and body["status"] in ("pending", "in_progress"), body
    return body["task_id"]


def status(srv, api: str, task_id: str) -> dict:
    r = srv.get(f"/{api}/status", params={"task_id": task_id})
    assert r.status_code == 200, r.text
    return r.json()


def wait_status(srv, api: str, task_id: str, wanted: str, timeout: float = 30.0) -> dict:
    def check():
        body = status(srv, api, task_id)
        assert body["status"] in ("pending", "in_progress", wanted), body
        return body if body["status"] == wanted else None

    return wait_for(check, timeout, interval=0.05, what=f"task {task_id} to be {wanted}")


def result(srv, api: str, task_id: str) -> requests.Response:
    return srv.get(f"/{api}/get", params={"task_id": task_id})


def wait_file(path: Path, timeout: float = 20.0) -> str:
    return wait_for(lambda: path.exists() and path.read_text(), timeout, what=f"{path} to be written")


def rows(store: Path, where: str = "1") -> list[tuple]:
    with sqlite3.connect(store, timeout=10) as conn:
        return conn.execute(f"SELECT task_id, status FROM bh_tasks WHERE {where}").fetchall()


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tasks") / "store.db"


@pytest.fixture(scope="module")
def srv(module_server_factory, store):
    return module_server_factory(TARGET, "--workers", "2", env=task_env(store, max_running=2))


# --------------------------------------------------------------------------- round trips


def test_sync_task_round_trip(srv, store):
    task_id = submit(srv, "add", {"a": 2, "b": 3, "delay": 0.6})
    first = status(srv, "add", task_id)
    assert set(first) == {"task_id", "status", "created_at", "executed_at"}
    assert first["task_id"] == task_id and first["status"] in ("pending", "in_progress")
    datetime.fromisoformat(first["created_at"])
    r = result(srv, "add", task_id)
    assert r.status_code == 400 and r.json() == {"error": f"task {task_id} is not completed yet"}
    done = wait_status(srv, "add", task_id, "completed")
    assert datetime.fromisoformat(done["executed_at"]) >= datetime.fromisoformat(done["created_at"])
    r = result(srv, "add", task_id)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json()["total"] == 5
    # the API itself still answers directly
    r = srv.post("/add", json_body={"a": 1})
    assert r.status_code == 200 and r.json()["total"] == 2
    assert rows(store, f"task_id = '{task_id}'") == [(task_id, "completed")]


def test_async_task_round_trip(srv):
    task_id = submit(srv, "shout", {"text": "quiet", "delay": 0.2})
    wait_status(srv, "shout", task_id, "completed")
    r = result(srv, "shout", task_id)
    assert r.status_code == 200 and r.text == "QUIET"
    assert r.headers["content-type"].startswith("text/plain")


def test_file_input_task(srv):
    r = requests.post(
        srv.url + "/upload/submit",
        files={"f": ("pic.png", b"\x89PNG" + b"\0" * 100, "image/png")},
        data={"note": '"hello"'},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    task_id = r.json()["task_id"]
    wait_status(srv, "upload", task_id, "completed")
    assert result(srv, "upload", task_id).json() == {"name": "pic.png", "size": 104, "head": "\x89PNG", "note": "hello"}


def test_failing_task(srv):
    task_id = submit(srv, "boom", {"message": "kaput"})
    wait_status(srv, "boom", task_id, "failed")
    r = result(srv, "boom", task_id)
    assert r.status_code == 500
    assert r.json() == {"error": "An unexpected error has occurred, please check the server log."}
    assert "kaput" in srv.log()  # the traceback is in the log, as for an API
    # a bentohost exception keeps its status and body, as the API would answer
    task_id = submit(srv, "refuse", {"why": "no"})
    wait_status(srv, "refuse", task_id, "failed")
    r = result(srv, "refuse", task_id)
    assert r.status_code == 400 and r.json() == [{"error": "refused: no"}]


def test_retry_failed_task(srv, tmp_path):
    marker = tmp_path / "flaky"
    task_id = submit(srv, "flaky", {"marker": str(marker)})
    wait_status(srv, "flaky", task_id, "failed")
    r = srv.post(f"/flaky/retry?task_id={task_id}")
    assert r.status_code == 200, r.text
    again = r.json()["task_id"]
    assert again != task_id
    wait_status(srv, "flaky", again, "completed")
    assert result(srv, "flaky", again).text == "second run"
    assert status(srv, "flaky", task_id)["status"] == "failed"  # the old one is kept as it was
    # retrying a running task is refused, as BentoML does
    hang = submit(srv, "ahang", {"marker": str(tmp_path / "h"), "seconds": 5})
    r = srv.post(f"/ahang/retry?task_id={hang}")
    assert r.status_code == 400 and r.json() == {"error": f"task {hang} is not completed yet"}
    assert requests.put(f"{srv.url}/ahang/cancel", params={"task_id": hang}, timeout=10).status_code == 200


def test_bad_input_at_submit(srv, store):
    before = len(rows(store))
    r = srv.post("/add/submit", json_body={"a": "x"})
    assert r.status_code == 400
    body = r.json()
    assert body["error"].startswith("1 validation error") and body["detail"][0]["loc"] == ["a"]
    r = srv.post("/add/submit", data=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400
    r = srv.post("/add/submit", json_body={"a": 1, "delay": 99})  # Field(le=60)
    assert r.status_code == 400 and r.json()["detail"][0]["loc"] == ["delay"]
    assert len(rows(store)) == before  # nothing was stored


def test_route_errors(srv):
    for api in ("add", "shout"):
        r = srv.get(f"/{api}/status")
        assert r.status_code == 400 and r.json() == {"error": "task_id is required"}
        for bad in ("0" * 32, "nope", "x" * 5000):
            for action in ("status", "get"):
                r = srv.get(f"/{api}/{action}", params={"task_id": bad})
                assert r.status_code == 404 and r.json() == {"error": "task_id not found"}
        r = srv.post(f"/{api}/retry?task_id={'0' * 32}")
        assert r.status_code == 404
        r = requests.put(f"{srv.url}/{api}/cancel", params={"task_id": "0" * 32}, timeout=10)
        assert r.status_code == 404
    # one method per route, as Starlette routes them
    for method, path, allow in (
        ("POST", "/add/status", "GET, HEAD"),
        ("PUT", "/add/get", "GET, HEAD"),
        ("GET", "/add/submit", "POST"),
        ("GET", "/add/cancel", "PUT"),
        ("PUT", "/add/retry", "POST"),
    ):
        r = requests.request(method, srv.url + path, timeout=10)
        assert r.status_code == 405 and r.headers["allow"] == allow, (method, path, r.status_code)


def test_schema_marks_tasks(srv):
    schema = srv.get("/schema.json").json()
    by_name = {r["name"]: r for r in schema["routes"]}
    assert by_name["add"]["is_task"] is True and by_name["whoami"]["is_task"] is False
    assert by_name["ashout"]["route"] == "/shout"
    assert "/add/submit" not in schema["paths"]  # BentoML lists the API routes only
    doc = srv.get("/docs.json").json()
    for suffix, method in (("status", "get"), ("get", "get"), ("submit", "post"), ("retry", "post"), ("cancel", "put")):
        op = doc["paths"][f"/add/{suffix}"][method]
        assert op["tags"] == ["Service APIs"]
    assert "TaskStatusResponse" in doc["components"]["schemas"]
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(doc)


def test_bentohost_client_tasks(srv):
    import bentohost

    with bentohost.SyncHTTPClient(srv.url) as c:
        task = c.add.submit(a=4, b=5)
        wait_for(lambda: task.get_status() == "completed", 20, what="the task")
        assert task.get() == {"total": 9, "worker": task.get()["worker"]}
        failing = c.boom.submit()
        wait_for(lambda: failing.get_status() == "failed", 20, what="the failure")
        with pytest.raises(bentohost.exceptions.BentoMLException):
            failing.get()


# --------------------------------------------------------------------------- cancel


def test_cancel_pending_and_running(server_factory, tmp_path):
    store = tmp_path / "store.db"
    srv = server_factory(TARGET, "--workers", "1", env=task_env(store, max_running=1))
    marker = tmp_path / "running"
    running = submit(srv, "ahang", {"marker": str(marker), "seconds": 30})
    wait_file(marker)
    queued = submit(srv, "add", {"a": 1})
    assert status(srv, "add", queued)["status"] == "pending"  # the only slot is taken

    r = requests.put(f"{srv.url}/add/cancel", params={"task_id": queued}, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "canceled" and r.json()["task_id"] == queued
    assert status(srv, "add", queued)["status"] == "canceled"
    r = result(srv, "add", queued)
    assert r.status_code == 400 and r.json() == {"error": f"task {queued} was canceled"}
    r = requests.put(f"{srv.url}/add/cancel", params={"task_id": queued}, timeout=10)
    assert r.status_code == 400 and r.json() == {"error": f"task {queued} cannot be canceled: it is canceled"}

    # a running async task is interrupted and its slot freed: the next one runs
    after = submit(srv, "add", {"a": 41})
    r = requests.put(f"{srv.url}/ahang/cancel", params={"task_id": running}, timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "canceled"
    wait_status(srv, "add", after, "completed", timeout=10)
    assert result(srv, "add", after).json()["total"] == 42
    assert status(srv, "ahang", running)["status"] == "canceled"

    # a running sync task cannot be interrupted: it is canceled at once, its result dropped
    marker2 = tmp_path / "sync"
    sync_id = submit(srv, "hang", {"marker": str(marker2), "seconds": 1.0})
    wait_file(marker2)
    r = requests.put(f"{srv.url}/hang/cancel", params={"task_id": sync_id}, timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "canceled"
    wait_for(lambda: "was canceled; its result is dropped" in srv.log(), 10, what="the dropped result")
    assert status(srv, "hang", sync_id)["status"] == "canceled"
    # and a finished task cannot be canceled
    r = requests.put(f"{srv.url}/add/cancel", params={"task_id": after}, timeout=10)
    assert r.status_code == 400 and "it is completed" in r.json()["error"]


# --------------------------------------------------------------------------- several workers


def test_four_workers_concurrent_submits(server_factory, tmp_path):
    store = tmp_path / "store.db"
    srv = server_factory(TARGET, "--workers", "4", env=task_env(store, max_running=2))
    srv.wait_all_workers(4)
    n = 200

    def one(i: int) -> tuple[int, str]:
        with requests.Session() as s:
            r = s.post(srv.url + "/add/submit", json={"a": i, "b": 0}, timeout=60)
            assert r.status_code == 200, r.text
            return i, r.json()["task_id"]

    with ThreadPoolExecutor(32) as ex:
        ids = dict(ex.map(one, range(n)))
    assert len(set(ids.values())) == n

    def all_done():
        left = rows(store, "status IN ('pending', 'in_progress')")
        return not left

    wait_for(all_done, 60, interval=0.2, what="every task to finish")
    assert sorted(r[1] for r in rows(store)) == ["completed"] * n
    workers = set()
    with requests.Session() as s:
        for i, task_id in ids.items():
            r = s.get(srv.url + "/add/get", params={"task_id": task_id}, timeout=10)
            assert r.status_code == 200, r.text
            assert r.json()["total"] == i
            workers.add(r.json()["worker"])
    assert len(workers) >= 2, workers  # submits landed on several workers and ran there
    log = srv.log()
    assert "database is locked" not in log and "Traceback" not in log, log[-3000:]


# --------------------------------------------------------------------------- crash, restart, expiry


def test_results_survive_worker_kill_and_restart(server_factory, tmp_path):
    store = tmp_path / "store.db"
    env = task_env(store, max_running=1)
    srv = server_factory(TARGET, "--workers", "1", env=env)
    done = submit(srv, "add", {"a": 20, "b": 22})
    wait_status(srv, "add", done, "completed")

    # kill -9 the worker in the middle of a task: its replacement marks the task failed
    marker = tmp_path / "pid"
    victim = submit(srv, "hang", {"marker": str(marker), "seconds": 60})
    pid = int(wait_file(marker))
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: pid_dead(pid), 10, what="the worker to die")
    srv.wait_ready()
    wait_status(srv, "hang", victim, "failed", timeout=20)
    r = result(srv, "hang", victim)
    assert r.status_code == 500 and "exited before it finished" in r.json()["error"]
    assert result(srv, "add", done).json()["total"] == 42  # still there

    # a pending task and the finished ones survive a full restart on the same store
    marker2 = tmp_path / "pid2"
    busy = submit(srv, "hang", {"marker": str(marker2), "seconds": 0.5})
    wait_file(marker2)
    queued = submit(srv, "add", {"a": 1, "b": 1})
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit(30) == 0
    assert dict(rows(store))[queued] == "pending"
    assert dict(rows(store))[busy] == "completed"  # a graceful stop lets the running one finish

    again = server_factory(TARGET, "--workers", "2", env=env)
    wait_status(again, "add", queued, "completed")
    assert result(again, "add", queued).json()["total"] == 2
    assert result(again, "add", done).json()["total"] == 42
    assert status(again, "hang", victim)["status"] == "failed"


def test_dead_worker_tasks_failed_by_a_sibling(server_factory, tmp_path):
    """A worker that never comes back (another store user's crash) is noticed by the others."""
    store = tmp_path / "store.db"
    env = task_env(store, max_running=1)
    srv = server_factory(TARGET, "--workers", "1", env=env)
    marker = tmp_path / "pid"
    victim = submit(srv, "ahang", {"marker": str(marker), "seconds": 60})
    wait_file(marker)
    os.killpg(srv.pid, signal.SIGKILL)  # the whole server: nobody respawns the worker
    srv.wait_exit(10)
    other = server_factory(TARGET, "--workers", "1", env=env)
    wait_status(other, "ahang", victim, "failed", timeout=20)


def test_results_expire(server_factory, tmp_path):
    store = tmp_path / "store.db"
    srv = server_factory(TARGET, "--workers", "1", env=task_env(store, ttl=1))
    task_id = submit(srv, "add", {"a": 1})
    wait_status(srv, "add", task_id, "completed")
    assert result(srv, "add", task_id).status_code == 200
    time.sleep(1.3)
    assert srv.get("/add/status", params={"task_id": task_id}).status_code == 404
    assert result(srv, "add", task_id).status_code == 404
    assert srv.post(f"/add/retry?task_id={task_id}").status_code == 404
    wait_for(lambda: not rows(store), 15, interval=0.5, what="the expired row to be deleted")


def test_bad_settings_stop_the_start(server_factory, tmp_path):
    srv = server_factory(TARGET, "--workers", "1", env=task_env(tmp_path / "s.db", ttl=-1), wait_ready=False)
    assert srv.wait_exit(30) != 0
    assert "tasks.ttl" in srv.log()


# --------------------------------------------------------------------------- the real BentoML client


@pytest.mark.slow
def test_real_bentoml_client_tasks(bentoml_python, server_factory, tmp_path):
    store = tmp_path / "store.db"
    srv = server_factory(TARGET, "--workers", "2", env=task_env(store, max_running=2))
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env["BENTOML_HOME"] = str(tmp_path / "home")
    env["BENTOML_DO_NOT_TRACK"] = "True"
    r = subprocess.run(
        [str(bentoml_python), str(SERVICES / "task_client_checks.py"), srv.url, str(tmp_path)],
        capture_output=True, text=True, timeout=300, env=env, cwd=str(tmp_path),
    )  # fmt: skip
    if r.returncode != 0 or "ALL OK" not in r.stdout:
        pytest.fail(f"rc {r.returncode}\n--- stdout ---\n{r.stdout}\n--- stderr ---\n{r.stderr[-6000:]}\n"
                    f"--- server ---\n{srv.log()[-4000:]}")  # fmt: skip


from test_bentoml_clients import bentoml_python  # noqa: E402,F401 - the shared venv fixture
