#!/usr/bin/env python3
"""Side-by-side benchmark: bentohost against `bentoml serve`, same service.py.

    python bench/run.py                      # full comparison (also: make bench)
    python bench/run.py --only bentohost --duration 3 --runs 1   # quick iteration

What it does (see bench/README.md for the method and how to read the numbers):
  * creates .bench/bentoml-venv with `bentoml>=1.4,<1.5` if it is missing;
  * serves examples/hello/service.py:Hello with each server, ONE AT A TIME, the
    server pinned to one CPU (taskset) and wrk pinned to the other;
  * per server: exec-to-first-200 on /readyz, a strict warm-up (every response
    checked), N measured wrk runs (POST JSON to /hello), CPU seconds per 1,000
    requests of the whole server process tree, RSS/PSS of each process, and a
    GET /livez run (for bentohost: the C-only ceiling);
  * `python -c 'import service'` cold times as the start-up floor;
  * prints a table and the ratios, writes bench/results/latest.json and .md.

Only the standard library is used. Every server process group it starts is
killed on exit, error or Ctrl-C. Exit status: 0 ok, 1 a server answered non-2xx
or had socket errors (results are still written), 2 setup failure.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
HELLO_DIR = ROOT / "examples" / "hello"
TARGET_FILE = "examples/hello/service.py:Hello"
WRK_LUA = BENCH / "wrk.lua"
STATE = ROOT / ".bench"
DEFAULT_VENV = STATE / "bentoml-venv"
FASTDEPS = STATE / "bentoml-fastdeps"  # pip install --target: uvloop, httptools (bentoml-lean only)
LOGS = STATE / "logs"
RESULTS = BENCH / "results"
BENTOML_SPEC = "bentoml>=1.4,<1.5"
# what bench/services/*.py import beside BentoML (payload.py: PIL)
SERVICE_DEPS = ["pillow"]
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024

SERVERS = ("bentohost", "bentoml", "bentoml-lean")
# "bentoml-lean" is BentoML's best case: access log and Prometheus metrics off (each is
# on by default and costs per request) and uvloop + httptools importable (uvicorn's "auto"
# picks them; `pip install bentoml` does not bring them). Ratios are quoted against both.
LEAN_OPTIONS = "services.Hello.logging.access.enabled=false services.Hello.metrics.enabled=false"
ENDPOINTS = {
    # name: (path, body, expected substring of the response body)
    "hello": ("/hello", '{"name":"bench"}', "Hello, bench!"),
    "hello_async": ("/hello_async", '{"name":"bench"}', "Hello, bench!"),
    "ping": ("/ping", "{}", "pong"),
}


def log(msg: str = "") -> None:
    print(msg, flush=True)


class BenchError(RuntimeError):
    pass


# --------------------------------------------------------------------- processes

_started: list[subprocess.Popen] = []  # server process groups we own


def _descendants(root: int) -> list[int]:
    """root and all its live descendants, parents before children."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                stat = f.read().decode("ascii", "replace")
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        pid = todo.pop(0)
        if pid != root and not os.path.exists(f"/proc/{pid}"):
            continue
        out.append(pid)
        todo.extend(sorted(children.get(pid, [])))
    return out if os.path.exists(f"/proc/{root}") else out[1:]


def _tree_children(pids: list[int]) -> dict[int, int]:
    """pid -> ppid for the given pids."""
    out = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read().decode("ascii", "replace")
            out[pid] = int(stat[stat.rindex(")") + 2 :].split()[1])
        except OSError:
            pass
    return out


def stop_server(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM the server's process group (and any descendant that left it), then SIGKILL."""
    if proc.poll() is None:
        pids = _descendants(proc.pid)
    else:
        pids = []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        for pid in pids:  # descendants that called setsid() themselves
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + (grace if sig == signal.SIGTERM else 3.0)
        while time.monotonic() < deadline:
            proc.poll()
            alive = [p for p in pids if os.path.exists(f"/proc/{p}") and not _is_zombie(p)]
            if proc.returncode is not None and not alive:
                break
            time.sleep(0.05)
        else:
            if sig == signal.SIGTERM:
                log(f"  (server pid {proc.pid} still alive {grace:.0f}s after SIGTERM: SIGKILL)")
            continue
        break
    try:
        proc.wait(timeout=3)
    except subprocess.TimeoutExpired:
        pass
    if proc in _started:
        _started.remove(proc)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
        return stat[stat.rindex(")") + 2] == "Z"
    except OSError:
        return True


def stop_all() -> None:
    for proc in list(_started):
        stop_server(proc, grace=5.0)


def _on_signal(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


# --------------------------------------------------------------------- /proc readers


def proc_cpu_ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
    except OSError:
        return 0
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15)


def cpu_stat() -> dict[str, dict[str, int]]:
    """Ticks per CPU from /proc/stat: task time (user+nice+system), irq+softirq, steal, total."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                name, *vals = line.split()
                v = [int(x) for x in vals[:8]]
                out[name[3:]] = {"task": v[0] + v[1] + v[2], "irq": v[5] + v[6], "steal": v[7], "total": sum(v)}
    return out


def cpu_stat_delta(a, b) -> dict[str, dict[str, float]]:
    out = {}
    for c in a:
        tot = max(1, b[c]["total"] - a[c]["total"])
        out[c] = {k: (b[c][k] - a[c][k]) / tot for k in ("task", "irq", "steal")}
    return out


def wait_quiet(args) -> None:
    """Wait (up to --quiet-wait s) until no CPU is more than 10% busy: other people's builds
    or tests on a shared 2-core box skew every number."""
    if args.quiet_wait <= 0:
        return
    deadline = time.monotonic() + args.quiet_wait
    said = False
    while True:
        a = cpu_stat()
        time.sleep(1.0)
        d = cpu_stat_delta(a, cpu_stat())
        busy = {c: v["task"] + v["irq"] + v["steal"] for c, v in d.items()}
        if max(busy.values()) <= 0.10:
            if said:
                log("  machine quiet again")
            return
        if time.monotonic() > deadline:
            log("  WARNING: the machine stayed busy (" + ", ".join(f"CPU{c} {u:.0%}" for c, u in busy.items())
                + f") for {args.quiet_wait:.0f}s: measuring anyway")
            return
        if not said:
            log("  waiting for the machine to be quiet (" + ", ".join(f"CPU{c} {u:.0%}" for c, u in busy.items())
                + " busy before we start) ...")
            said = True


def tree_cpu(root: int) -> dict[int, int]:
    return {pid: proc_cpu_ticks(pid) for pid in _descendants(root)}


def cpu_delta_s(before: dict[int, int], after: dict[int, int]) -> float:
    """CPU seconds spent between two snapshots; processes that appeared count from 0."""
    ticks = sum(t - before.get(pid, 0) for pid, t in after.items())
    return ticks / CLK_TCK


def proc_mem(pid: int) -> dict:
    out: dict = {"pid": pid}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:", "Threads:")):
                    k, v = line.split(":", 1)
                    out[k] = int(v.split()[0])
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            out["cmd"] = f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()[:200]
    except OSError:
        return out
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    out["Pss"] = int(line.split()[1])
    except OSError:
        pass
    return {
        "pid": pid,
        "cmd": out.get("cmd", ""),
        "rss_mb": round(out.get("VmRSS", 0) / 1024, 1),
        "pss_mb": round(out["Pss"] / 1024, 1) if "Pss" in out else None,
        "hwm_mb": round(out.get("VmHWM", 0) / 1024, 1),
        "threads": out.get("Threads"),
    }


def classify_tree(server: str, root: int) -> tuple[list[dict], list[dict]]:
    """(workers, others) with memory figures.

    BentoML: workers run `python -m _bentoml_impl.worker.service`, the rest is the
    circus arbiter. bentohost: workers are the leaves of the process tree (forked by
    the C supervisor); the rest is the supervisor (and the launcher, if it did not exec).
    """
    pids = _descendants(root)
    ppids = _tree_children(pids)
    mems = [proc_mem(p) for p in pids]
    if server.startswith("bentoml"):
        is_worker = lambda m: "_bentoml_impl.worker.service" in m["cmd"]  # noqa: E731
    else:
        parents = set(ppids.values())
        is_worker = lambda m: m["pid"] != root and m["pid"] not in parents  # noqa: E731
    workers = [m for m in mems if is_worker(m)]
    others = [m for m in mems if not is_worker(m)]
    return workers, others


# --------------------------------------------------------------------- HTTP helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(port: int, method: str, path: str, body: str | None = None, timeout: float = 2.0):
    """Minimal HTTP/1.1 request with Connection: close -> (status, headers, body)."""
    data = body.encode() if body is not None else b""
    req = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
    if body is not None:
        req += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
    req = req.encode() + b"\r\n" + data
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(req)
        raw = b""
        while b"\r\n\r\n" not in raw:
            c = s.recv(65536)
            if not c:
                raise OSError("connection closed before the response headers")
            raw += c
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        # Content-Length if given (do not rely on the server closing), else read to EOF.
        want = int(headers["content-length"]) if "content-length" in headers else None
        while want is None or len(rest) < want:
            c = s.recv(65536)
            if not c:
                break
            rest += c
    return status, headers, rest


def wait_ready(proc: subprocess.Popen, port: int, t0: float, timeout: float, logfile: Path) -> float:
    """Seconds from t0 (just before exec) to the first 200 on GET /readyz."""
    deadline = t0 + timeout
    while True:
        if proc.poll() is not None:
            raise BenchError(f"server exited with status {proc.returncode} before /readyz\n{_tail(logfile)}")
        try:
            status, _, _ = http(port, "GET", "/readyz", timeout=1.0)
            if status == 200:
                return time.monotonic() - t0
        except (OSError, ValueError, IndexError):
            pass
        if time.monotonic() > deadline:
            raise BenchError(f"no 200 on /readyz within {timeout:.0f}s\n{_tail(logfile)}")
        time.sleep(0.002)


def _tail(path: Path, n: int = 25) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()[-n:]
    except OSError:
        return ""
    return "  | " + "\n  | ".join(lines) + f"\n  (full log: {path})"


# --------------------------------------------------------------------- wrk


def run_wrk(args, port: int, path: str, method: str, body: str, duration: float,
            strict_expect: str | None = None) -> dict:
    env = dict(os.environ, BENCH_METHOD=method, BENCH_BODY=body)
    if strict_expect is not None:
        env.update(BENCH_STRICT="1", BENCH_EXPECT=strict_expect)
    cmd = [args.wrk, f"-t{args.threads}", f"-c{args.connections}", f"-d{max(1, round(duration))}s",
           "--timeout", f"{max(1, round(args.wrk_timeout))}s", "-s", str(WRK_LUA), f"http://127.0.0.1:{port}{path}"]
    if args.client_cpu is not None:
        cmd = ["taskset", "-c", str(args.client_cpu)] + cmd
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    try:
        out, _ = p.communicate(timeout=duration + 60)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        raise BenchError(f"wrk did not finish within {duration + 60:.0f}s") from None
    except BaseException:  # Ctrl-C, SIGTERM: do not leave wrk running
        p.kill()
        p.wait()
        raise
    if p.returncode != 0:
        raise BenchError(f"wrk failed ({p.returncode}):\n{out}")
    line = next((ln for ln in out.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if line is None:
        raise BenchError(f"wrk printed no BENCH_JSON line:\n{out}")
    r = json.loads(line[len("BENCH_JSON "):])
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    r["errors"] = sum(r[k] for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout"))
    r["errors"] += r["strict_bad_status"] + r["strict_bad_body"]
    return r


class ClientCpu:
    """CPU time of wrk (children of this process), to flag a saturated load generator."""

    def __enter__(self):
        self.r0 = os.times()
        self.t0 = time.monotonic()
        return self

    def __exit__(self, *exc):
        r1 = os.times()
        self.wall = time.monotonic() - self.t0
        self.cpu = (r1.children_user - self.r0.children_user) + (r1.children_system - self.r0.children_system)
        return False


# --------------------------------------------------------------------- servers


def server_command(server: str, args, port: int) -> tuple[list[str], Path, dict]:
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[k] = "1"
    env.pop("BENTOML_CONFIG_OPTIONS", None)
    if server == "bentohost":
        # The current interpreter, its real path (a pyenv shim adds ~240 ms to start-up).
        cmd = [sys.executable, "-m", "bentohost", "serve", TARGET_FILE, "--workers", "1",
               "--port", str(port), "--host", "127.0.0.1", *getattr(args, "bentohost_arg", [])]
        cwd = ROOT
        env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    else:
        # cwd = examples/hello, so that neither the arbiter nor the workers (`python -m ...`
        # puts the cwd on sys.path) can import the repo's bentohost/ package: the service
        # file's `import bentohost` must fail there and fall back to bentoml.
        cmd = [str(args.bentoml_venv / "bin" / "bentoml"), "serve", "service:Hello",
               "--port", str(port), "--host", "127.0.0.1"]
        cwd = HELLO_DIR
        env.pop("PYTHONPATH", None)
        env["BENTOML_DO_NOT_TRACK"] = "True"
        env["BENTOML_HOME"] = str(STATE / "bentoml-home")
        if server == "bentoml-lean":
            env["BENTOML_CONFIG_OPTIONS"] = LEAN_OPTIONS
            env["PYTHONPATH"] = str(FASTDEPS)
    if args.server_cpu is not None:
        cmd = ["taskset", "-c", str(args.server_cpu)] + cmd
    return cmd, cwd, env


def start_server(server: str, args, logfile: Path):
    port = free_port()
    cmd, cwd, env = server_command(server, args, port)
    with open(logfile, "ab") as lf:
        lf.write(f"\n==== {time.ctime()}: {' '.join(cmd)}\n".encode())
        lf.flush()
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=lf,
                                stderr=subprocess.STDOUT, start_new_session=True)
    _started.append(proc)
    return proc, port, cmd, cwd, t0


def bench_server(server: str, args) -> dict:
    path, body, expect = ENDPOINTS[args.endpoint]
    LOGS.mkdir(parents=True, exist_ok=True)
    logfile = LOGS / f"{server}.log"
    logfile.write_bytes(b"")
    ready = []
    # Start-up: the first (args.starts - 1) servers are only timed, the last one is benchmarked.
    for i in range(args.starts):
        proc, port, cmd, cwd, t0 = start_server(server, args, logfile)
        if i == 0:
            log(f"\n== {server}: {' '.join(cmd)}  (cwd {cwd.relative_to(ROOT) if cwd != ROOT else '.'})")
        try:
            ready.append(wait_ready(proc, port, t0, args.ready_timeout, logfile))
        except BaseException:
            stop_server(proc)
            raise
        if i < args.starts - 1:
            stop_server(proc)
    res: dict = {"server": server, "command": " ".join(cmd), "cwd": str(cwd), "endpoint": path, "ok": False,
                 "ready_s": statistics.median(ready), "ready_all_s": ready}
    try:
        log(f"  ready (exec to first 200 on /readyz): median {res['ready_s']:.3f} s over {len(ready)} "
            f"start(s): " + ", ".join(f"{t:.3f}" for t in ready))

        # Sanity: the right server, the right answer.
        status, headers, rbody = http(port, "POST", path, body)
        res["server_header"] = headers.get("server", "")
        if status != 200 or expect.encode() not in rbody:
            raise BenchError(f"POST {path} answered {status} {rbody[:200]!r}\n{_tail(logfile)}")
        is_bentoml = res["server_header"].startswith("BentoML")
        if is_bentoml != server.startswith("bentoml"):
            raise BenchError(f"{server}: unexpected Server header {res['server_header']!r}: "
                             "is the right server answering?")

        workers, others = classify_tree(server, proc.pid)
        res["idle"] = {"workers": workers, "others": others}
        res["worker_rss_idle_mb"] = round(statistics.mean(w["rss_mb"] for w in workers), 1) if workers else None
        if server.startswith("bentoml") and workers:
            try:
                maps = Path(f"/proc/{workers[0]['pid']}/maps").read_text()
            except OSError:
                maps = ""
            res["uvloop_loaded"] = "uvloop" in maps
            res["httptools_loaded"] = "httptools" in maps
            log(f"  worker has uvloop: {res['uvloop_loaded']}, httptools: {res['httptools_loaded']}")

        # Warm-up: every response is checked (status 2xx and body).
        if args.warmup > 0:
            w = run_wrk(args, port, path, "POST", body, args.warmup, strict_expect=expect)
            res["warmup"] = {k: w[k] for k in ("requests", "rps", "errors", "strict_checked",
                                               "strict_bad_status", "strict_bad_body")}
            log(f"  warm-up {args.warmup:.0f}s: {w['rps']:,.0f} req/s, {w['strict_checked']:,} responses "
                f"checked, {w['strict_bad_status']} non-2xx, {w['strict_bad_body']} wrong bodies, "
                f"{w['errors'] - w['strict_bad_status'] - w['strict_bad_body']} socket errors")

        runs = []
        rejected = []
        for i in range(args.runs):
            r = measure_clean(args, proc, port, path, "POST", body, rejected, f"run {i + 1}/{args.runs}")
            runs.append(r)
            log(f"  run {i + 1}/{args.runs}: {r['rps']:,.0f} req/s  p50 {r['p50_us'] / 1000:.2f} ms  "
                f"p99 {r['p99_us'] / 1000:.2f} ms  errors {r['errors']}  "
                f"server CPU {r['server_cpu_s']:.2f} s ({r['server_cpu_util']:.0%} of a core)  "
                f"{r['cpu_ms_per_1k']:.1f} CPU-ms/1k  wrk CPU {r['client_cpu_util']:.0%}{wrk_bound(r)}")
        res["runs"] = runs
        res["rejected_runs"] = rejected
        res["hello"] = summarize(runs)
        if res["hello"]["rps_cv"] > 0.05:
            log(f"  note: req/s varies by {res['hello']['rps_cv']:.0%} (CV) between runs; above 5% "
                "the set is noisy: use more --runs or a longer --duration")

        workers, others = classify_tree(server, proc.pid)
        res["loaded"] = {"workers": workers, "others": others}
        res["worker_rss_mb"] = workers[0]["rss_mb"] if len(workers) == 1 else (
            round(statistics.mean(w["rss_mb"] for w in workers), 1) if workers else None)
        res["worker_pss_mb"] = workers[0]["pss_mb"] if len(workers) == 1 else None
        res["nworkers"] = len(workers)
        res["other_rss_mb"] = round(sum(o["rss_mb"] for o in others), 1)
        res["total_rss_mb"] = round(sum(m["rss_mb"] for m in workers + others), 1)
        log(f"  memory after load: {len(workers)} worker(s) RSS "
            + ", ".join(f"{w['rss_mb']:.1f} MB (PSS {w['pss_mb']})" for w in workers)
            + f"; {'arbiter' if server.startswith('bentoml') else 'supervisor/launcher'} "
            + ", ".join(f"{o['rss_mb']:.1f} MB" for o in others)
            + f" (idle worker RSS was {res['worker_rss_idle_mb']} MB; "
            f"{res['hello']['requests'] + res.get('warmup', {}).get('requests', 0):,} requests served since)")

        if not args.no_livez:
            r = measure_clean(args, proc, port, "/livez", "GET", "", rejected, "GET /livez")
            res["livez"] = r
            log(f"  GET /livez: {r['rps']:,.0f} req/s  p50 {r['p50_us'] / 1000:.2f} ms  "
                f"p99 {r['p99_us'] / 1000:.2f} ms  errors {r['errors']}  "
                f"{r['cpu_ms_per_1k']:.1f} CPU-ms/1k  wrk CPU {r['client_cpu_util']:.0%}{wrk_bound(r)}")

        errors = sum(r["errors"] for r in runs) + res.get("livez", {}).get("errors", 0) \
            + res.get("warmup", {}).get("errors", 0)
        res["errors_total"] = errors
        res["ok"] = errors == 0
        if errors:
            log(f"  !!! {server}: {errors} non-2xx responses or socket errors: see runs[] in the JSON")
        if proc.poll() is not None:
            raise BenchError(f"{server} exited during the benchmark\n{_tail(logfile)}")
    finally:
        t = time.monotonic()
        stop_server(proc)
        res["stop_s"] = round(time.monotonic() - t, 3)
    return res


def wrk_bound(r) -> str:
    """A note when the load generator, not the server, was the limit."""
    return " (wrk saturated: req/s is a lower bound)" if r["client_cpu_util"] >= 0.9 else ""


def disturbed(args, r) -> str | None:
    """Why a run is not clean, or None. Other processes on the server's CPU always count (over
    5%); on wrk's CPU they count when wrk itself is busy (over 30% of its CPU), since a nearly
    idle wrk (BentoML at ~1k req/s) is not slowed by a neighbour."""
    f = r.get("foreign_util") or {}
    if not f:
        return None
    srv, cli = str(args.server_cpu), str(args.client_cpu)
    if f.get(srv, 0.0) > 0.05:
        return f"{f[srv]:.0%} foreign CPU on the server's CPU {srv}"
    if f.get(cli, 0.0) > (0.05 if r["client_cpu_util"] > 0.3 else 0.5):
        return f"{f[cli]:.0%} foreign CPU on wrk's CPU {cli} (wrk at {r['client_cpu_util']:.0%})"
    return None


def measure_clean(args, proc, port, path, method, body, rejected: list, label: str) -> dict:
    """measure(), redone (up to --retries times) when other processes disturbed it."""
    for attempt in range(args.retries + 1):
        r = measure(args, proc, port, path, method, body)
        why = disturbed(args, r)
        r["disturbed"] = why
        if why is None or attempt == args.retries or r["errors"]:
            if why:
                log(f"  WARNING: {label} kept although disturbed ({why}): out of --retries")
            return r
        log(f"  {label}: {r['rps']:,.0f} req/s measured with {why}: rejected, redoing")
        r["label"] = label
        rejected.append(r)
    return r


def measure(args, proc, port, path, method, body) -> dict:
    wait_quiet(args)
    before = tree_cpu(proc.pid)
    st0 = cpu_stat()
    with ClientCpu() as cc:
        r = run_wrk(args, port, path, method, body, args.duration)
    st1 = cpu_stat()
    after = tree_cpu(proc.pid)
    cpu = cpu_delta_s(before, after)
    # Per-CPU picture of the run: task time not ours is a noisy neighbour (skews every
    # number); irq is mostly the loopback softirq work of the two ends; steal is the hypervisor.
    d = cpu_stat_delta(st0, st1)
    r["cpu_stat"] = d
    mine = {str(args.server_cpu): cpu / cc.wall, str(args.client_cpu): cc.cpu / cc.wall} \
        if args.server_cpu is not None else {}
    foreign = {c: max(0.0, v["task"] - mine.get(c, 0.0)) for c, v in d.items()} if mine else {}
    r["foreign_util"] = foreign
    r["server_cpu_s"] = cpu
    r["server_cpu_util"] = cpu / (r["duration_us"] / 1e6)
    r["cpu_ms_per_1k"] = cpu * 1e3 / r["requests"] * 1000 if r["requests"] else float("nan")
    r["client_cpu_util"] = cc.cpu / (r["duration_us"] / 1e6)
    r["server_processes"] = len(after)
    return r


def summarize(runs: list[dict]) -> dict:
    def med(k):
        return statistics.median(r[k] for r in runs)

    rps = [r["rps"] for r in runs]
    out = {
        "rps": med("rps"), "rps_min": min(rps), "rps_max": max(rps),
        "rps_cv": (statistics.stdev(rps) / statistics.mean(rps)) if len(rps) > 1 else 0.0,
        "p50_ms": med("p50_us") / 1000, "p90_ms": med("p90_us") / 1000,
        "p99_ms": med("p99_us") / 1000, "p99_9_ms": med("p99_9_us") / 1000,
        "max_ms": max(r["lat_max_us"] for r in runs) / 1000,
        "cpu_ms_per_1k": med("cpu_ms_per_1k"), "server_cpu_util": med("server_cpu_util"),
        "client_cpu_util": med("client_cpu_util"),
        "foreign_util_max": max((max(r["foreign_util"].values()) if r.get("foreign_util") else 0.0)
                                for r in runs),
        "requests": sum(r["requests"] for r in runs),
        "non2xx": sum(r["err_status"] + r["strict_bad_status"] for r in runs),
        "socket_errors": sum(r["err_connect"] + r["err_read"] + r["err_write"] + r["err_timeout"]
                             for r in runs),
    }
    return out


# --------------------------------------------------------------------- import floor


def import_times(args) -> dict:
    """`python -c 'import service'` in examples/hello, cold process each time, pinned like the servers."""
    out = {}
    pin = ["taskset", "-c", str(args.server_cpu)] if args.server_cpu is not None else []
    envs = {
        "bentohost": (sys.executable, dict(os.environ, PYTHONPATH=str(ROOT))),
        "bentoml": (str(args.bentoml_venv / "bin" / "python"),
                    {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}),
    }
    for name, (py, env) in envs.items():
        if name == "bentoml" and not Path(py).exists():
            continue
        if name == "bentohost" and "bentohost" not in args.servers:
            continue
        if name == "bentoml" and not any(s.startswith("bentoml") for s in args.servers):
            continue
        res = {}
        for label, code in (("python_pass", "pass"), ("import_service", "import service")):
            ts = []
            for _ in range(args.import_runs):
                t = time.monotonic()
                p = subprocess.run(pin + [py, "-c", code], cwd=HELLO_DIR, env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                ts.append(time.monotonic() - t)
                if p.returncode != 0:
                    res[label + "_error"] = p.stderr.decode(errors="replace").strip().splitlines()[-1:]
                    ts = []
                    break
            if ts:
                res[label + "_s"] = statistics.median(ts)
                res[label + "_min_s"] = min(ts)
        # which module did `import service` bind to?
        p = subprocess.run([py, "-c", "import service; print(service.bentoml.__name__)"], cwd=HELLO_DIR,
                           env=env, capture_output=True, text=True)
        res["service_imports"] = p.stdout.strip() or None
        out[name] = res
        log(f"  {name:9s} ({py}): python -c pass {res.get('python_pass_s', float('nan')) * 1e3:.0f} ms, "
            f"import service {res.get('import_service_s', float('nan')) * 1e3:.0f} ms "
            f"(-> {res['service_imports']})" + (f"  ERROR {res['import_service_error']}"
                                                 if "import_service_error" in res else ""))
    return out


# --------------------------------------------------------------------- setup


def ensure_bentoml_venv(venv: Path, fastdeps: bool) -> dict:
    bentoml = venv / "bin" / "bentoml"
    info: dict = {"path": str(venv)}
    if not bentoml.exists():
        log(f"creating {venv} and installing '{BENTOML_SPEC}' (once; ~30 s with a warm pip cache) ...")
        t = time.monotonic()
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        p = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", BENTOML_SPEC, *SERVICE_DEPS],
                           capture_output=True, text=True)
        if p.returncode != 0:
            raise BenchError(f"pip install {BENTOML_SPEC} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
        info["install_s"] = round(time.monotonic() - t, 1)
        log(f"  installed in {info['install_s']} s")
    elif subprocess.run([str(venv / "bin" / "python"), "-c", "import PIL"], capture_output=True).returncode != 0:
        log(f"installing {' '.join(SERVICE_DEPS)} into {venv} (the bench services import them) ...")
        p = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *SERVICE_DEPS], capture_output=True, text=True)
        if p.returncode != 0:
            raise BenchError(f"pip install {SERVICE_DEPS} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    if fastdeps and not ((FASTDEPS / "uvloop").exists() and (FASTDEPS / "httptools").exists()):
        log(f"installing uvloop + httptools into {FASTDEPS.relative_to(ROOT)} (for bentoml-lean) ...")
        p = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--target", str(FASTDEPS),
                            "uvloop", "httptools"], capture_output=True, text=True)
        if p.returncode != 0:
            raise BenchError(f"pip install uvloop httptools failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    p = subprocess.run([str(venv / "bin" / "python"), "-c",
                        "import importlib.metadata as m;"
                        "print(' '.join(f'{d}={m.version(d)}' for d in "
                        "('bentoml','uvicorn','starlette','pydantic')))"],
                       capture_output=True, text=True)
    info["versions"] = p.stdout.strip()
    p = subprocess.run([str(venv / "bin" / "python"), "-c", "import uvloop"], capture_output=True)
    info["uvloop_in_venv"] = p.returncode == 0
    p = subprocess.run([str(venv / "bin" / "python"), "-c", "import httptools"], capture_output=True)
    info["httptools_in_venv"] = p.returncode == 0
    return info


def machine_info(args) -> dict:
    cpu = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    wrk_v = subprocess.run([args.wrk, "-v"], capture_output=True, text=True)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or None
    dirty = bool(subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain"], capture_output=True,
                                text=True).stdout.strip())
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu, "ncpu": os.cpu_count(), "kernel": platform.release(),
        "python": sys.version.split()[0], "python_executable": sys.executable,
        "wrk": (wrk_v.stdout + wrk_v.stderr).strip().splitlines()[0] if (wrk_v.stdout + wrk_v.stderr) else "",
        "git_commit": commit, "git_dirty": dirty,
    }


# --------------------------------------------------------------------- report


def ratio(a, b):
    try:
        return a / b if (a is not None and b) else None
    except TypeError:
        return None


def compute_ratios(results: dict) -> dict:
    out = {}
    bh = results.get("bentohost")
    if bh and bh.get("hello") and bh.get("livez"):
        out["bentohost_hello_over_livez_rps"] = ratio(bh["hello"]["rps"], bh["livez"]["rps"])
    for base in ("bentoml", "bentoml-lean"):
        bm = results.get(base)
        if not (bh and bm and bh.get("hello") and bm.get("hello")):
            continue
        out[f"vs_{base}"] = {
            "throughput_x": ratio(bh["hello"]["rps"], bm["hello"]["rps"]),
            "p50_ratio": ratio(bh["hello"]["p50_ms"], bm["hello"]["p50_ms"]),
            "p99_ratio": ratio(bh["hello"]["p99_ms"], bm["hello"]["p99_ms"]),
            "cpu_per_1k_ratio": ratio(bh["hello"]["cpu_ms_per_1k"], bm["hello"]["cpu_ms_per_1k"]),
            "worker_rss_ratio": ratio(bh.get("worker_rss_mb"), bm.get("worker_rss_mb")),
            "worker_rss_idle_ratio": ratio(bh.get("worker_rss_idle_mb"), bm.get("worker_rss_idle_mb")),
            "total_rss_ratio": ratio(bh.get("total_rss_mb"), bm.get("total_rss_mb")),
            "ready_time_ratio": ratio(bh.get("ready_s"), bm.get("ready_s")),
        }
    return out


def fmt(v, spec="{:,.0f}", none="–"):
    if v is None:
        return none
    try:
        return spec.format(v)
    except (ValueError, TypeError):
        return str(v)


def render_table(results: dict, imports: dict, args) -> str:
    names = [s for s in args.servers if s in results and results[s].get("hello")]
    if not names:
        return "(no server produced results)"
    rows = [
        (f"{args.endpoint} req/s (median of {args.runs})", lambda r: fmt(r["hello"]["rps"])),
        ("req/s min–max (CV)", lambda r: f"{fmt(r['hello']['rps_min'])}–{fmt(r['hello']['rps_max'])} "
                                         f"({r['hello']['rps_cv']:.0%})"),
        ("p50 latency (ms)", lambda r: fmt(r["hello"]["p50_ms"], "{:.2f}")),
        ("p99 latency (ms)", lambda r: fmt(r["hello"]["p99_ms"], "{:.2f}")),
        ("non-2xx / socket errors", lambda r: f"{r['hello']['non2xx']} / {r['hello']['socket_errors']}"),
        ("server CPU-ms per 1k req", lambda r: fmt(r["hello"]["cpu_ms_per_1k"], "{:.1f}")),
        ("server CPU use (1 core = 100%)", lambda r: fmt(r["hello"]["server_cpu_util"], "{:.0%}")),
        ("wrk CPU use", lambda r: fmt(r["hello"]["client_cpu_util"], "{:.0%}")),
        ("runs redone / kept though disturbed", lambda r: f"{len(r.get('rejected_runs', []))} / "
                                                         f"{sum(1 for x in r['runs'] if x.get('disturbed'))}"),
        ("RSS per worker, idle (MB)", lambda r: fmt(r.get("worker_rss_idle_mb"), "{:.1f}")),
        ("RSS per worker, after load (MB)", lambda r: fmt(r.get("worker_rss_mb"), "{:.1f}")),
        ("PSS per worker (MB)", lambda r: fmt(r.get("worker_pss_mb"), "{:.1f}")),
        ("arbiter/supervisor RSS (MB)", lambda r: fmt(r.get("other_rss_mb"), "{:.1f}")),
        ("exec → first 200 /readyz (s)", lambda r: fmt(r.get("ready_s"), "{:.3f}")),
        ("GET /livez req/s", lambda r: fmt(r.get("livez", {}).get("rps")) + (
            " (wrk-bound)" if r.get("livez") and r["livez"]["client_cpu_util"] >= 0.9 else "")),
        ("GET /livez p99 (ms)", lambda r: fmt(r.get("livez", {}).get("p99_us", 0) / 1000 if r.get("livez") else None,
                                              "{:.2f}")),
    ]
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for label, f in rows:
        lines.append(f"| {label} | " + " | ".join(f(results[n]) for n in names) + " |")
    for env, r in imports.items():
        lines.append(f"| `python -c 'import service'` ({env} env, s) | " + " | ".join(
            fmt(r.get("import_service_s"), "{:.3f}") if (n.startswith(env) or n == env) else ""
            for n in names) + " |")
    return "\n".join(lines)


def render_ratios(ratios: dict, endpoint: str = "hello") -> str:
    lines = []
    for base in ("bentoml", "bentoml-lean"):
        r = ratios.get(f"vs_{base}")
        if not r:
            continue
        lines.append(f"bentohost ÷ {base}: throughput {fmt(r['throughput_x'], '{:.1f}')}x, "
                     f"p50 {fmt(r['p50_ratio'], '{:.3f}')}, p99 {fmt(r['p99_ratio'], '{:.3f}')}, "
                     f"CPU/1k {fmt(r['cpu_per_1k_ratio'], '{:.3f}')}, "
                     f"worker RSS {fmt(r['worker_rss_idle_ratio'], '{:.2f}')} idle / "
                     f"{fmt(r['worker_rss_ratio'], '{:.2f}')} after load, "
                     f"total RSS {fmt(r['total_rss_ratio'], '{:.2f}')}, "
                     f"ready time {fmt(r['ready_time_ratio'], '{:.3f}')}")
    if ratios.get("bentohost_hello_over_livez_rps") is not None:
        lines.append(f"bentohost {endpoint} ÷ /livez throughput: {ratios['bentohost_hello_over_livez_rps']:.2f} "
                     "(how close the Python path is to the C-only ceiling)")
    return "\n".join(lines)


def setup_text(args) -> str:
    return (f"server pinned to CPU {args.server_cpu}, wrk pinned to CPU {args.client_cpu}; "
            f"wrk -t{args.threads} -c{args.connections} -d{args.duration:.0f}s, keep-alive, "
            f"POST {ENDPOINTS[args.endpoint][0]} body {ENDPOINTS[args.endpoint][1]}; "
            f"{args.warmup:.0f}s checked warm-up; {args.runs} measured run(s), median reported; "
            "servers run one at a time, 1 worker each")


# --------------------------------------------------------------------- main


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=10, help="seconds per measured wrk run (10)")
    ap.add_argument("--connections", "-c", type=int, default=64, help="wrk connections (64)")
    ap.add_argument("--threads", "-t", type=int, default=1, help="wrk threads (1)")
    ap.add_argument("--runs", type=int, default=3, help="measured runs per server; median reported (3)")
    ap.add_argument("--warmup", type=float, default=3, help="checked warm-up seconds (3; 0 = none)")
    ap.add_argument("--starts", type=int, default=3,
                    help="start-ups timed per server (exec to first 200 on /readyz); median reported (3)")
    ap.add_argument("--only", action="append", default=None,
                    help="bentohost | bentoml | bentoml-lean (repeatable or comma list; "
                         "'bentoml' alone also runs bentoml-lean unless --no-lean)")
    ap.add_argument("--no-lean", action="store_true", help="skip the bentoml-lean variant")
    ap.add_argument("--endpoint", choices=sorted(ENDPOINTS), default="hello")
    ap.add_argument("--no-livez", action="store_true", help="skip the GET /livez run")
    ap.add_argument("--server-cpu", default="0", help="CPU for the server ('' = no pinning)")
    ap.add_argument("--client-cpu", default="1", help="CPU for wrk ('' = no pinning)")
    ap.add_argument("--ready-timeout", type=float, default=120.0)
    ap.add_argument("--retries", type=int, default=2,
                    help="redo a run disturbed by other processes (over 5%% of the server's CPU, or of "
                         "wrk's CPU when wrk is busy), up to this many times (2)")
    ap.add_argument("--quiet-wait", type=float, default=30.0,
                    help="before each measured run, wait up to this many seconds for both CPUs "
                         "to be idle (other builds/tests skew the numbers); 0 = do not wait (30)")
    ap.add_argument("--wrk-timeout", type=float, default=5.0, help="wrk per-request timeout, seconds")
    ap.add_argument("--import-runs", type=int, default=10, help="runs of python -c 'import service'")
    ap.add_argument("--bentoml-venv", type=Path, default=DEFAULT_VENV)
    ap.add_argument("--wrk", default=shutil.which("wrk") or "/usr/bin/wrk")
    ap.add_argument("--out", type=Path, default=RESULTS, help="results folder (bench/results)")
    ap.add_argument("--no-save", action="store_true", help="do not write the results files")
    ap.add_argument("--bentohost-arg", action="append", default=[], metavar="ARG",
                    help="one more argument for bentohost serve, repeatable (e.g. --bentohost-arg=--no-access-log)")
    args = ap.parse_args(argv)
    sel = []
    for item in args.only or ["bentohost,bentoml"]:
        for s in item.split(","):
            s = s.strip()
            if s not in SERVERS:
                ap.error(f"--only: unknown server {s!r} (choose from {', '.join(SERVERS)})")
            sel.append(s)
    if "bentoml" in sel and not args.no_lean and "bentoml-lean" not in sel:
        sel.append("bentoml-lean")
    if args.no_lean and "bentoml-lean" in sel:
        sel.remove("bentoml-lean")
    args.servers = [s for s in SERVERS if s in sel]
    args.server_cpu = args.server_cpu if args.server_cpu != "" else None
    args.client_cpu = args.client_cpu if args.client_cpu != "" else None
    args.bentoml_venv = args.bentoml_venv.resolve()
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    if not Path(args.wrk).exists():
        log(f"wrk not found ({args.wrk}): apt-get install wrk")
        return 2
    ncpu = len(os.sched_getaffinity(0))
    if ncpu < 2 and (args.server_cpu is not None or args.client_cpu is not None):
        log(f"only {ncpu} CPU available: running without pinning (numbers are not comparable)")
        args.server_cpu = args.client_cpu = None
    if args.client_cpu is not None:
        # This orchestrator (readiness polling, /proc reads) stays off the server's CPU.
        os.sched_setaffinity(0, {int(c) for c in str(args.client_cpu).split(",")})

    info = machine_info(args)
    log(f"bench: {info['cpu']} ({info['ncpu']} CPUs), Linux {info['kernel']}, Python {info['python']}, "
        f"{info['wrk']}")
    log(f"setup: {setup_text(args)}")
    results: dict = {}
    imports: dict = {}
    failed = False
    try:
        if any(s.startswith("bentoml") for s in args.servers):
            info["bentoml_venv"] = ensure_bentoml_venv(args.bentoml_venv, "bentoml-lean" in args.servers)
            log(f"bentoml venv: {info['bentoml_venv']['versions']} (uvloop: {info['bentoml_venv']['uvloop_in_venv']}, "
                f"httptools: {info['bentoml_venv']['httptools_in_venv']}; bentoml-lean adds both)")
        log("\n== start-up floor: python -c 'import service' (examples/hello, cold process, median)")
        imports = import_times(args)
        for server in args.servers:
            try:
                results[server] = bench_server(server, args)
                failed |= not results[server]["ok"]
            except BenchError as e:
                log(f"  !!! {server} FAILED: {e}")
                results[server] = {"server": server, "ok": False, "error": str(e)}
                failed = True
    except KeyboardInterrupt:
        log("\ninterrupted: stopping servers")
        stop_all()
        return 130
    except BenchError as e:
        log(f"setup failed: {e}")
        return 2
    finally:
        stop_all()

    ratios = compute_ratios(results)
    table = render_table(results, imports, args)
    ratio_text = render_ratios(ratios, args.endpoint)
    log("\n" + table + "\n")
    if ratio_text:
        log(ratio_text)
    if not args.no_save:
        args.out.mkdir(parents=True, exist_ok=True)
        doc = {"machine": info, "settings": {k: (str(v) if isinstance(v, Path) else v)
                                             for k, v in vars(args).items()},
               "setup": setup_text(args), "import_times": imports, "servers": results, "ratios": ratios}
        (args.out / "latest.json").write_text(json.dumps(doc, indent=2) + "\n")
        md = (f"# bentohost vs BentoML: `{args.endpoint}` (hello-JSON), 1 worker\n\n"
              f"{info['date']} · {info['cpu']} · {info['ncpu']} CPUs · Linux {info['kernel']} · "
              f"Python {info['python']} · {info.get('bentoml_venv', {}).get('versions', '')} · "
              f"bentohost {info['git_commit'] or '(uncommitted)'}{' (dirty)' if info['git_dirty'] else ''}\n\n"
              f"Setup: {setup_text(args)}.\n\n{table}\n\n"
              + ("\n".join(f"- {ln}" for ln in ratio_text.splitlines()) + "\n" if ratio_text else "")
              + "\nRatios are bentohost ÷ BentoML: above 1 is better for throughput, below 1 is better "
                "for latency, CPU, memory and start-up. `bentoml` is `pip install bentoml` with its "
                "defaults; `bentoml-lean` is its best case: access log and Prometheus metrics off, "
                "uvloop and httptools installed. Produced by `python bench/run.py`.\n")
        (args.out / "latest.md").write_text(md)
        log(f"\nwrote {(args.out / 'latest.json').relative_to(ROOT)} and {(args.out / 'latest.md').relative_to(ROOT)}")
    if failed:
        log("\nFAILED: a server had non-2xx responses, socket errors, or did not start (see above)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
