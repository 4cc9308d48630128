"""The access log written by C, request ids, one log format for C and Python, whole print() lines.

Real server processes (tests/conftest.py) and real HTTP; the access lines are read back
from the server's output and parsed field by field.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import pytest
import requests

from conftest import Server, base_env, raw_request, wait_for

SVC = "logs_svc.py:LogsSvc"

ACCESS_RE = re.compile(
    r"^(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) INFO \[(?P<service>[^/\]]+)/(?P<worker>\d+)\] "
    r"(?P<client>\S+) \"(?P<method>\S+) (?P<path>(?:[^\"\\ ]|\\.)+) (?P<version>\S+)\" "
    r"(?P<status>\d{3}) (?P<bytes>\d+) (?P<ms>\d+\.\d{3})ms id=(?P<rid>\S+)$"
)
LOG_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (?P<level>[A-Z]+) \[(?P<origin>[^\]]+)\] (?P<msg>.*)$")
ACCESS_KEYS = {"time", "client", "method", "path", "version", "status", "bytes", "duration_ms", "request_id",
               "worker", "service"}
LOG_KEYS = {"time", "level", "service", "worker", "message"}
HEX16 = re.compile(r"^[0-9a-f]{16}$")


def access_lines(srv: Server) -> list[dict]:
    out = []
    for line in srv.log().splitlines():
        m = ACCESS_RE.match(line)
        if m:
            d = m.groupdict()
            d.update(worker=int(d["worker"]), status=int(d["status"]), bytes=int(d["bytes"]), ms=float(d["ms"]))
            out.append(d)
    return out


def access_line(srv: Server, rid: str) -> dict:
    """The access line of the request whose response said ``x-request-id: rid`` (written by
    the I/O thread's writer a moment after the response)."""
    found = wait_for(lambda: [d for d in access_lines(srv) if d["rid"] == rid], 10, what=f"access line {rid}")
    assert len(found) == 1, found
    return found[0]


def raw(srv: Server, data: bytes):
    with srv.conn() as c:
        c.send(data)
        return c.read_response(head=data.startswith(b"HEAD "))


@pytest.fixture(scope="module")
def srv(module_server_factory) -> Server:
    return module_server_factory(SVC)


def test_json_api_call(srv):
    t0 = time.monotonic()
    r = srv.post("/hello", {"name": "Ada"})
    elapsed_ms = (time.monotonic() - t0) * 1000
    assert r.status_code == 200 and r.json() == {"message": "Hello, Ada!"}
    rid = r.headers["x-request-id"]
    assert HEX16.match(rid), rid
    d = access_line(srv, rid)
    assert (d["method"], d["path"], d["version"], d["status"]) == ("POST", "/hello", "HTTP/1.1", 200)
    assert d["bytes"] == len(r.content)
    assert 0 < d["ms"] <= elapsed_ms + 1
    assert d["service"] == "LogsSvc" and d["worker"] in (1, 2)
    assert re.match(r"^127\.0\.0\.1:\d+$", d["client"]), d
    when = datetime.strptime(d["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    assert abs((datetime.now(timezone.utc) - when).total_seconds()) < 60


def test_duration_counts_from_the_first_byte(srv):
    with srv.conn() as c:
        body = b'{"seconds": 0.3}'
        head = raw_request("POST", "/nap", body)
        c.send(head[:10])  # the request trickles in: its time counts
        time.sleep(0.2)
        c.send(head[10:])
        r = c.read_response()
    assert r.status == 200
    d = access_line(srv, r.headers["x-request-id"])
    # 0.2 s of trickle + 0.3 s of nap; the first byte is stamped when the I/O thread
    # reads it, which on a busy machine may be a few ms after it arrived. Without the
    # trickle counted it would be ~300 ms.
    assert 480 <= d["ms"] < 5000, d


def test_stream(srv):
    r = srv.post("/ticks", {"n": 5})
    assert r.status_code == 200 and r.text == "".join(f"tick {i}\n" for i in range(5))
    d = access_line(srv, r.headers["x-request-id"])
    assert (d["method"], d["path"], d["status"]) == ("POST", "/ticks", 200)
    assert d["bytes"] == len(r.content)  # the body, not the chunked framing


def test_404_livez_and_head(srv):
    r = srv.get("/no/such/route?x=1")
    assert r.status_code == 404
    d = access_line(srv, r.headers["x-request-id"])
    assert (d["method"], d["path"], d["status"], d["bytes"]) == ("GET", "/no/such/route?x=1", 404, len(r.content))

    r = srv.get("/livez")
    d = access_line(srv, r.headers["x-request-id"])
    assert (d["method"], d["path"], d["status"], d["bytes"]) == ("GET", "/livez", 200, len(r.content))

    r = raw(srv, b"HEAD /livez HTTP/1.0\r\n\r\n")
    d = access_line(srv, r.headers["x-request-id"])
    assert (d["method"], d["version"], d["status"], d["bytes"]) == ("HEAD", "HTTP/1.0", 200, 0)


def test_malformed_http_400(srv):
    r = raw(srv, b"GARBAGE\r\n\r\n")
    assert r.status == 400
    d = access_line(srv, r.headers["x-request-id"])
    assert (d["method"], d["path"], d["version"], d["status"], d["bytes"]) == ("-", "-", "-", 400, len(r.body))


def test_413(srv):
    r = raw(srv, b"POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999999\r\n\r\n")
    assert r.status == 413
    d = access_line(srv, r.headers["x-request-id"])
    assert (d["method"], d["path"], d["version"], d["status"], d["bytes"]) == ("POST", "/hello", "HTTP/1.1", 413,
                                                                           len(r.body))


def test_paths_are_escaped(srv):
    r = raw(srv, b'GET /p"q\\r HTTP/1.1\r\nHost: x\r\n\r\n')
    assert r.status == 404
    d = access_line(srv, r.headers["x-request-id"])
    assert d["path"] == r'/p\"q\\r'
    # control characters never reach the log raw: llhttp refuses them, the line stays one line
    r = raw(srv, b"GET /a\x1b[31mred\x07 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert r.status == 400
    access_line(srv, r.headers["x-request-id"])
    assert "\x1b" not in srv.log() and "\x07" not in srv.log()


def test_client_request_id_is_kept(srv):
    rid = "trace-ABC.123_x:y"
    r = srv.post("/rid", {}, headers={"X-Request-ID": rid})
    assert r.headers["x-request-id"] == rid
    assert r.json() == {"id": rid, "all": [rid]}
    assert access_line(srv, rid)["path"] == "/rid"
    # a generated id reaches Python first in the headers, the client's refused one after it
    for bad in ("x" * 65, "has space", 'quo"te', ""):
        r = srv.post("/rid", {}, headers={"X-Request-ID": bad})
        made = r.headers["x-request-id"]
        assert HEX16.match(made), (bad, made)
        assert r.json()["id"] == made and r.json()["all"][0] == made
        access_line(srv, made)
    # two id lines are ambiguous: replaced too
    r = raw(srv, raw_request("POST", "/hello", b"{}", {"X-Request-ID": "one", "x-request-id": "two"}))
    assert HEX16.match(r.headers["x-request-id"])
    # a trailer of a chunked body does not change the head's id
    body = b"{}"
    chunked = (b"POST /rid HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\nX-Request-ID: trailer\r\n\r\n"
               % (len(body), body))
    r = raw(srv, chunked)
    assert r.status == 200 and HEX16.match(r.headers["x-request-id"])
    assert r.json()["id"] == r.headers["x-request-id"]
    # Python's own x-request-id wins over ours (no second header)
    r = raw(srv, raw_request("POST", "/own_rid", b"{}"))
    assert r.header_values("x-request-id") == ["set-by-python"]


def test_generated_ids_are_unique(srv):
    def burst(_):
        with requests.Session() as s:
            return [s.get(srv.url + "/livez", timeout=10).headers["x-request-id"] for _ in range(250)]

    with ThreadPoolExecutor(4) as ex:
        ids = [i for chunk in ex.map(burst, range(4)) for i in chunk]
    assert len(ids) == 1000 and len(set(ids)) == 1000
    assert all(HEX16.match(i) for i in ids)
    wait_for(lambda: len({d["rid"] for d in access_lines(srv)} & set(ids)) == 1000, 10, what="1000 access lines")


def test_python_log_lines_carry_the_worker(srv):
    r = srv.post("/warn", {"text": "hi-there"})
    worker = access_line(srv, r.headers["x-request-id"])["worker"]
    lines = [LOG_RE.match(line) for line in srv.log().splitlines()]
    user = [m for m in lines if m and m["msg"] == "user says hi-there"]
    own = [m for m in lines if m and m["msg"] == "bentohost says hi-there"]
    assert len(user) == 1 and user[0]["level"] == "WARNING" and user[0]["origin"] == f"LogsSvc/{worker}"
    assert len(own) == 1 and own[0]["level"] == "INFO" and own[0]["origin"] == f"LogsSvc/{worker}"
    # the C host's own lines in the same format
    assert any(m and m["origin"] == "supervisor" and m["msg"].startswith("worker 1 (pid") for m in lines)


def test_json_format(server_factory):
    srv = server_factory(SVC, "--log-format", "json", "--workers", "1")
    rids = [srv.post("/hello", {"name": "J"}).headers["x-request-id"]]
    rids.append(raw(srv, b'GET /p"q\\ HTTP/1.1\r\nHost: x\r\n\r\n').headers["x-request-id"])
    rids.append(raw(srv, b"GARBAGE\r\n\r\n").headers["x-request-id"])
    srv.post("/warn", {"text": "json"})

    def parsed():
        objs = [json.loads(line) for line in srv.log().splitlines()]  # every line is JSON
        return objs if {o.get("request_id") for o in objs} >= set(rids) else None

    objs = wait_for(parsed, 10, what="JSON access lines")
    access = {o["request_id"]: o for o in objs if "request_id" in o}
    for o in access.values():
        assert set(o) == ACCESS_KEYS, o
        assert o["service"] == "LogsSvc" and o["worker"] == 1 and isinstance(o["duration_ms"], float)
    assert (access[rids[0]]["path"], access[rids[0]]["status"], access[rids[0]]["version"]) == ("/hello", 200,
                                                                                              "HTTP/1.1")
    assert access[rids[1]]["path"] == '/p"q\\' and access[rids[1]]["status"] == 404
    assert (access[rids[2]]["method"], access[rids[2]]["status"]) == ("-", 400)
    logs = [o for o in objs if "message" in o]
    assert all(set(o) == LOG_KEYS for o in logs), logs
    assert any(o["service"] == "supervisor" and o["worker"] == 0 and o["level"] == "INFO" for o in logs)
    user = [o for o in logs if o["message"] == "user says json"]
    assert user and user[0]["level"] == "WARNING" and (user[0]["service"], user[0]["worker"]) == ("LogsSvc", 1)


def test_no_access_log(server_factory):
    srv = server_factory(SVC, "--no-access-log", "--workers", "1")
    r = srv.post("/hello", {})
    assert HEX16.match(r.headers["x-request-id"])  # ids still on every response
    srv.get("/nope")
    raw(srv, b"GARBAGE\r\n\r\n")
    time.sleep(1.0)
    assert access_lines(srv) == [] and r.headers["x-request-id"] not in srv.log()
    assert "listening on" in srv.log()


def _server_on_pipe(tmp_path, *args: str) -> tuple[subprocess.Popen, int, object]:
    """A server whose stdout is a pipe (as under a terminal or a container's log driver)."""
    from conftest import SERVICES, free_port

    port = free_port()
    err = open(tmp_path / "stderr.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bentohost", "serve", f"{SERVICES / 'logs_svc.py'}:LogsSvc", "--host", "127.0.0.1",
         "--port", str(port), *args],
        stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, env=base_env(), start_new_session=True,
    )

    def ready():
        return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200

    try:
        wait_for(ready, 30, what="/readyz")
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    return proc, port, err


def _stop(proc: subprocess.Popen, err) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(10)
    err.close()


def test_concurrent_prints_stay_whole(tmp_path):
    proc, port, err = _server_on_pipe(tmp_path, "--workers", "3")
    out: list[bytes] = []
    reader = threading.Thread(target=lambda: out.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        def shout(i: int) -> int:
            body = {"tag": f"t{i}", "lines": 40, "width": 3000, "threads": 3}
            return requests.post(f"http://127.0.0.1:{port}/shout", json=body, timeout=60).json()

        with ThreadPoolExecutor(6) as ex:
            total = sum(ex.map(shout, range(12)))

        line_re = re.compile(rb"^<t\d+:\d:\d:\d+:x+>\n$")
        wait_for(lambda: sum(1 for line in out if line.startswith(b"<")) >= total, 20, what="every printed line")
        printed = [line for line in out if b"<" in line]
        bad = [line[:80] for line in printed if not line_re.match(line) or len(line) != 3000]
        assert not bad, bad[:5]
        assert len(printed) == total == 12 * 40 * 3
        assert len(set(printed)) == total  # none lost, none twice
        others = [line for line in out if b"<" not in line]
        assert others and all(ACCESS_RE.match(line.decode().rstrip("\n")) for line in others), others[:3]
    finally:
        _stop(proc, err)


def test_a_stalled_output_never_blocks_serving(tmp_path):
    """Nobody reads the pipe: its 64 KiB fill up, the writer waits, the I/O thread does not."""
    proc, port, err = _server_on_pipe(tmp_path, "--workers", "1")
    try:
        t0 = time.monotonic()
        with requests.Session() as s:
            ids = [s.get(f"http://127.0.0.1:{port}/livez", timeout=5).headers["x-request-id"] for _ in range(3000)]
        assert time.monotonic() - t0 < 60
        seen = b""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and seen.count(b"\n") < 3000:
            seen += os.read(proc.stdout.fileno(), 1 << 20)
        lines = seen.decode().splitlines()
        assert {m["rid"] for m in map(ACCESS_RE.match, lines) if m} >= set(ids)  # buffered, not lost
    finally:
        _stop(proc, err)


# --------------------------------------------------------------------------- units


def test_flags_reach_the_host():
    from bentohost import cli

    def argv(*extra: str) -> list[str]:
        return cli.build_host_argv("host", cli._parser().parse_args(["serve", "svc.py:Svc", *extra]))

    assert "--no-access-log" not in argv() and "--log-format" not in argv()
    assert "--no-access-log" in argv("--no-access-log")
    assert "--no-access-log" not in argv("--no-access-log", "--access-log")
    got = argv("--log-format", "json")
    assert got[got.index("--log-format") + 1] == "json"
    with pytest.raises(SystemExit):
        argv("--log-format", "xml")


def test_line_writer_keeps_each_threads_lines_whole():
    from bentohost._logs import LineWriter

    rd, wr = os.pipe()
    original = open(wr, "w", encoding="utf-8", closefd=True)
    w = LineWriter(original)
    start = threading.Barrier(4)

    def run(t: int) -> None:
        start.wait()
        for i in range(200):
            print(f"[{t}:{i}", "y" * 500, "]", sep=" ", file=w)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(4)]
    data = b""
    for th in threads:
        th.start()
    w.write("no newline yet")
    while data.count(b"\n") < 800:
        data += os.read(rd, 1 << 16)
    for th in threads:
        th.join()
    w.flush()  # this thread's unfinished line
    data += os.read(rd, 1 << 16)
    lines = data.split(b"\n")
    assert lines[-1] == b"no newline yet"
    assert sorted(lines[:-1]) == sorted(f"[{t}:{i} {'y' * 500} ]".encode() for t in range(4) for i in range(200))
    assert w.fileno() == wr and w.encoding == "utf-8"
    original.close()
    os.close(rd)
