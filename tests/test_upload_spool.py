"""Uploads' dirs and files reused from one request to the next (csrc/common/spool.c):
a later request gets an earlier one's file only when no one holds it any more, never
sees its old bytes, gets a new dir path each time, and nothing stays behind the worker."""

from __future__ import annotations

import fcntl
import hashlib
import os
import signal
import tempfile
from pathlib import Path

import pytest

from conftest import pid_dead, wait_for


def _leases_work(where: Path) -> bool:
    """Whether the kernel grants leases there (files are only reused where it does)."""
    with tempfile.NamedTemporaryFile(dir=where) as f:
        try:
            fcntl.fcntl(f.fileno(), fcntl.F_SETLEASE, fcntl.F_WRLCK)
            fcntl.fcntl(f.fileno(), fcntl.F_SETLEASE, fcntl.F_UNLCK)
            return True
        except OSError:
            return False


@pytest.fixture(scope="module")
def tmp_env(tmp_path_factory):
    return tmp_path_factory.mktemp("spool_tmp")


@pytest.fixture(scope="module")
def srv(module_server_factory, tmp_env):
    return module_server_factory("upload_spool.py:UploadSpool", env={"TMPDIR": str(tmp_env)})


def upload(srv, api: str, content: bytes, name: str = "data.bin", **fields) -> dict:
    r = srv.post(f"/{api}", files={"f": (name, content, "application/octet-stream")}, data=fields)
    assert r.status_code == 200, r.text
    return r.json()


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def test_a_reused_file_shows_only_its_own_bytes(srv, tmp_env):
    big, small = b"a" * (1 << 20), b"b" * 1000
    first = upload(srv, "info", big)
    second = upload(srv, "info", small)
    assert (second["size"], second["sha"]) == (1000, sha(small))
    assert Path(second["path"]).parent != Path(first["path"]).parent
    assert not Path(first["path"]).parent.exists()
    assert Path(first["path"]).name == Path(second["path"]).name == "data.bin"
    if _leases_work(tmp_env):
        assert second["ino"] == first["ino"], "the first request's file was not reused"
    third = upload(srv, "info", big)
    assert (third["size"], third["sha"]) == (len(big), sha(big))


def test_a_file_held_open_or_mapped_is_never_handed_out(srv):
    content = os.urandom(200_000)
    held = upload(srv, "hold", content, token="open")
    mapped = upload(srv, "map", content[::-1], token="mapped")
    for i in range(6):
        other = upload(srv, "info", bytes([i]) * 300_000)
        assert other["ino"] not in (held["ino"], mapped["ino"])
        assert other["sha"] == sha(bytes([i]) * 300_000)
    for token, want in (("open", content), ("mapped", content[::-1])):
        r = srv.post("/held", json_body={"token": token})
        assert r.status_code == 200 and r.text == sha(want), (token, r.text)


def test_linked_and_moved_files_are_left_alone(srv, tmp_path):
    linked, moved = tmp_path / "linked.bin", tmp_path / "moved.bin"
    a, b = os.urandom(100_000), os.urandom(100_000)
    ino_a = upload(srv, "link", a, dest=str(linked))["ino"]
    ino_b = upload(srv, "move", b, dest=str(moved))["ino"]
    for i in range(6):
        assert upload(srv, "info", bytes([i + 7]) * 150_000)["ino"] not in (ino_a, ino_b)
    assert linked.read_bytes() == a and moved.read_bytes() == b


def test_what_the_service_adds_goes_with_its_request(srv, tmp_env):
    littered = upload(srv, "litter", b"x" * 5000, name="mine.txt")
    assert littered["listing"] == ["extra.txt", "mine.txt", "sub"]
    for _ in range(4):
        assert upload(srv, "info", b"y" * 5000, name="next.txt")["listing"] == ["next.txt"]
    # two files of one name: the second in a folder of its own
    r = srv.post("/info", files=[("f", ("same.bin", b"1", "application/octet-stream"))])
    assert r.status_code == 200
    wait_for(lambda: all(p.name.startswith("bentohost-spool-") for p in tmp_env.iterdir()), 5,
             what="request dirs removed")


def test_spool_goes_with_its_worker_crash_or_stop(server_factory, tmp_path):
    """SIGKILL a worker: the supervisor removes its spool dirs (TMPDIR and /dev/shm);
    stop the server: TMPDIR is empty again."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    srv = server_factory("upload_spool.py:UploadSpool", env={"TMPDIR": str(tmp), "BENTOHOST_UPLOADS_IN_MEMORY": "1"})
    chunked = iter([b"--bnd\r\nContent-Disposition: form-data; name=\"f\"; filename=\"c.bin\"\r\n\r\n",
                    b"c" * 4096, b"\r\n--bnd--\r\n"])
    r = srv.post("/info", data=chunked, headers={"Content-Type": "multipart/form-data; boundary=bnd"})
    assert r.status_code == 200, r.text  # a chunked body: TMPDIR
    pid = r.json()["pid"]
    upload(srv, "info", b"m" * 4096)  # small, known length: /dev/shm when it has room

    def spools(pid: int) -> list[Path]:
        mine = f"-{pid}"
        return [p for base in (tmp, Path("/dev/shm")) if base.is_dir()
                for p in base.glob("bentohost-spool-*") if p.name.endswith(mine)]

    assert any(p.parent == tmp for p in spools(pid)), list(tmp.iterdir())
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: pid_dead(pid), 10, what="worker gone")
    wait_for(lambda: not spools(pid), 10, what="the dead worker's spool dirs removed")
    srv.wait_ready()
    new_pid = upload(srv, "info", b"n" * 4096)["pid"]
    assert new_pid != pid
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit(30) == 0
    assert list(tmp.iterdir()) == [] and not spools(new_pid)


def test_spools_of_a_supervisor_killed_with_its_workers_go_at_the_next_start(server_factory, tmp_path):
    import subprocess
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    gone = subprocess.Popen(["true"])
    gone.wait()
    stale = tmp / f"bentohost-spool-{gone.pid}-0badcafe-{gone.pid + 1}"
    (stale / "d3").mkdir(parents=True)
    (stale / "f4").write_bytes(b"old upload")
    alive = tmp / f"bentohost-spool-{os.getpid()}-0badcafe-12345"  # its supervisor (this test) lives
    alive.mkdir()
    srv = server_factory("upload_spool.py:UploadSpool", env={"TMPDIR": str(tmp)})
    assert not stale.exists() and alive.exists()
    upload(srv, "info", b"z" * 10)
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit(30) == 0
    assert [p.name for p in tmp.iterdir()] == [alive.name]
