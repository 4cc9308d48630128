#!/usr/bin/env python3
"""bentohost beside the fastest Python-calling servers, on the same Python work, in one run (issue 12).

    python bench/peers.py                                  # all servers, 3 rounds x 5 s, c=64 and 16 (~10 min)
    python bench/peers.py --only bentohost,granian --rounds 1 --duration 3 --no-save   # quick iteration

The work (bench/services/peers_work.py): a nested pydantic v2 input validated from the JSON body,
a small computation (sum of prices, counts) and a JSON answer. Servers, one worker each, every
process of each pinned to the same CPU (--server-cpu, 0) with taskset; wrk -t1 on --client-cpu (1):

  bentohost   python -m bentohost serve bench/services/peers_svc.py:Peers --workers 1 --no-access-log
  granian     granian --interface rsgi, 1 worker, 1 runtime thread, HTTP/1, uvloop: a bare RSGI app
  fastapi     uvicorn --loop uvloop --http httptools --workers 1 --no-access-log, FastAPI app
  litserve    LitServe: one API server (uvicorn, uvloop, httptools, no access log), one inference
              worker, ZeroMQ queue (fast_queue)
  ray         Ray Serve: one replica, plain __call__, ray.init(num_cpus=1), no dashboard
  bentoml     bentoml serve bench/services/peers_svc.py:Peers as `pip install bentoml` gives it

The ceilings, measured in the same run on the same CPU:
  t_python  peers_work.work(BODY) (validate + compute + encode) in a loop in one process, µs/call
  t_http    1 / (bentohost's GET /livez rate), C only, wrk at the same connections, µs/request
  limit     1 / (t_python + t_http): what a server would reach if it added nothing but the C HTTP
            path to the user's function.

Rounds alternate the server order (reversed every other round); each server keeps its best round
(highest req/s, with that run's latency and CPU) for each connection count, because this 2-core
machine is shared. The peers are installed in .bench/peers-venv and .bench/ray-venv (git-ignored;
created on first use), BentoML in .bench/bentoml-venv (bench/run.py's helper).
Writes bench/results/peers.json and peers.md. Exit status: 0 ok, 1 errors, 2 setup failure.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as _run  # noqa: E402
from run import (  # noqa: E402
    ROOT, STATE, LOGS, RESULTS, BenchError, log, stop_server, stop_all, wait_quiet, cpu_stat, cpu_stat_delta,
    tree_cpu, cpu_delta_s, free_port, http, wait_ready, _tail, _started, ClientCpu, machine_info, _on_signal,
    proc_mem, run_wrk, ensure_bentoml_venv, disturbed,
)

SERVICES = ROOT / "bench" / "services"
sys.path.insert(0, str(SERVICES))
from peers_work import BODY, EXPECT  # noqa: E402
from common import post  # noqa: E402

PEERS_VENV = STATE / "peers-venv"
RAY_VENV = STATE / "ray-venv"
PEERS_PKGS = ["granian", "uvicorn", "uvloop", "httptools", "fastapi", "litserve", "pydantic"]
RAY_PKGS = ["ray[serve]"]
SERVERS = ("bentohost", "granian", "fastapi", "litserve", "ray", "bentoml")
LABELS = {
    "bentohost": "bentohost (1 worker, access log off)",
    "granian": "Granian RSGI, bare app (1 worker, 1 runtime thread)",
    "fastapi": "FastAPI on uvicorn (uvloop, httptools, access log off)",
    "litserve": "LitServe (1 API server, 1 worker, fast_queue)",
    "ray": "Ray Serve (1 replica, plain `__call__`)",
    "bentoml": "`bentoml serve` (defaults)",
}
BLAS_ENV = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


# --------------------------------------------------------------------- environments

def _pip_install(venv: Path, pkgs: list[str], timeout: float) -> dict:
    info: dict = {"path": str(venv)}
    py = venv / "bin" / "python"
    if not py.exists():
        log(f"creating {venv.relative_to(ROOT)}: pip install {' '.join(pkgs)} (once) ...")
        t = time.monotonic()
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        try:
            p = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *pkgs], capture_output=True, text=True,
                               timeout=timeout)
        except subprocess.TimeoutExpired:
            info["error"] = f"pip install {' '.join(pkgs)} took over {timeout:.0f} s"
            return info
        if p.returncode != 0:
            info["error"] = f"pip install {' '.join(pkgs)} failed: {p.stderr.strip()[-1500:]}"
            return info
        info["install_s"] = round(time.monotonic() - t, 1)
    return info


def _versions(py: Path, dists: list[str]) -> str:
    code = ("import importlib.metadata as m\nout=[]\nfor d in %r:\n try: out.append(f'{d}={m.version(d)}')\n"
            " except Exception: pass\nprint(' '.join(out))" % (dists,))
    p = subprocess.run([str(py), "-c", code], capture_output=True, text=True)
    return p.stdout.strip()


def _du_mb(path: Path) -> float | None:
    p = subprocess.run(["du", "-sm", str(path)], capture_output=True, text=True)
    try:
        return float(p.stdout.split()[0])
    except (IndexError, ValueError):
        return None


def ensure_envs(args) -> dict:
    envs: dict = {"bentohost": {"python": sys.executable,
                                "versions": _versions(Path(sys.executable), ["pydantic", "pydantic_core"])}}
    if any(s in args.servers for s in ("granian", "fastapi", "litserve")):
        info = _pip_install(PEERS_VENV, PEERS_PKGS, args.install_timeout)
        info["versions"] = _versions(PEERS_VENV / "bin" / "python", [
            "granian", "uvicorn", "uvloop", "httptools", "fastapi", "starlette", "litserve", "pyzmq", "pydantic",
            "pydantic_core"])
        info["disk_mb"] = _du_mb(PEERS_VENV)
        envs["peers"] = info
    if "ray" in args.servers:
        info = _pip_install(RAY_VENV, RAY_PKGS, args.install_timeout)
        if "error" not in info:
            info["versions"] = _versions(RAY_VENV / "bin" / "python", ["ray", "fastapi", "starlette", "uvicorn",
                                                                       "pydantic", "pydantic_core"])
            info["disk_mb"] = _du_mb(RAY_VENV)
        envs["ray"] = info
    if "bentoml" in args.servers:
        envs["bentoml"] = ensure_bentoml_venv(args.bentoml_venv, False)
    return envs


# --------------------------------------------------------------------- servers


def server_spec(server: str, args, port: int) -> dict:
    """cmd, cwd, env, readiness path, and a check that the right server answers."""
    env = dict(os.environ, **BLAS_ENV)
    for k in ("BENTOML_CONFIG_OPTIONS", "PYTHONPATH"):
        env.pop(k, None)
    pv = PEERS_VENV / "bin"
    host = ["--host", "127.0.0.1", "--port", str(port)]
    ready = "/readyz"
    if server == "bentohost":
        cmd = [sys.executable, "-m", "bentohost", "serve", "bench/services/peers_svc.py:Peers", "--workers", "1",
               *host, *args.bentohost_arg]
        cwd = ROOT
        env["PYTHONPATH"] = str(ROOT)
    elif server == "granian":
        cmd = [str(pv / "granian"), "--interface", "rsgi", "--workers", "1", "--runtime-threads", "1",
               "--http", "1", "--loop", "uvloop", "--no-ws", "--log-level", "warning", *host, "peers_apps:rsgi_app"]
        cwd = SERVICES
    elif server == "fastapi":
        cmd = [str(pv / "uvicorn"), "--loop", "uvloop", "--http", "httptools", "--workers", "1", "--no-access-log",
               "--log-level", "warning", *host, "peers_apps:fastapi_app"]
        cwd = SERVICES
    elif server == "litserve":
        cmd = [str(pv / "python"), "peers_lit.py", "--port", str(port)]
        cwd = SERVICES
        ready = "/health"
    elif server == "ray":
        cmd = [str(RAY_VENV / "bin" / "python"), "peers_apps.py", "ray", "--port", str(port)]
        cwd = SERVICES
        env["RAY_USAGE_STATS_ENABLED"] = "0"
        env["RAY_DEDUP_LOGS"] = "0"
    elif server == "bentoml":
        # cwd = bench/services: the repo's bentohost/ is not importable, peers_svc falls back to bentoml.
        cmd = [str(args.bentoml_venv / "bin" / "bentoml"), "serve", "peers_svc:Peers", *host]
        cwd = SERVICES
        env["BENTOML_DO_NOT_TRACK"] = "True"
        env["BENTOML_HOME"] = str(STATE / "bentoml-home")
    else:
        raise ValueError(server)
    if args.server_cpu is not None:
        cmd = ["taskset", "-c", str(args.server_cpu)] + cmd
    return {"cmd": cmd, "cwd": cwd, "env": env, "ready": ready}


def _cmdlines(root: int) -> list[str]:
    out = []
    for pid in _run._descendants(root):
        try:
            out.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            pass
    return out


def check_identity(server: str, headers: dict, root: int) -> str | None:
    """None when the answer came from the server we meant to measure, else why not."""
    sh = headers.get("server", "")
    cmds = " | ".join(_cmdlines(root))
    want = {
        "bentohost": lambda: "bentohost" in cmds and not sh.startswith(("BentoML", "uvicorn", "granian")),
        "granian": lambda: sh == "granian",
        "fastapi": lambda: sh == "uvicorn" and "peers_apps:fastapi_app" in cmds,
        "litserve": lambda: sh == "uvicorn" and "peers_lit.py" in cmds,
        "ray": lambda: "ray::ProxyActor" in cmds,
        "bentoml": lambda: sh.startswith("BentoML") and "_bentoml_impl" in cmds,
    }[server]
    return None if want() else f"unexpected server (Server: {sh!r}; processes: {cmds[:300]})"


def start(server: str, args, logfile: Path):
    port = free_port()
    spec = server_spec(server, args, port)
    with open(logfile, "ab") as lf:
        lf.write(f"\n==== {time.ctime()}: {' '.join(spec['cmd'])}\n".encode())
        lf.flush()
        t0 = time.monotonic()
        proc = subprocess.Popen(spec["cmd"], cwd=spec["cwd"], env=spec["env"], stdin=subprocess.DEVNULL, stdout=lf,
                                stderr=subprocess.STDOUT, start_new_session=True)
    _started.append(proc)
    try:
        ready_s = _wait_ready_path(proc, port, spec["ready"], t0, args.ready_timeout, logfile)
    except BaseException:
        stop_server(proc)
        raise
    return proc, port, spec, ready_s


def _wait_ready_path(proc, port, path, t0, timeout, logfile) -> float:
    if path == "/readyz":
        return wait_ready(proc, port, t0, timeout, logfile)
    deadline = t0 + timeout
    while True:
        if proc.poll() is not None:
            raise BenchError(f"server exited with status {proc.returncode} before {path}\n{_tail(logfile)}")
        try:
            status, _, _ = http(port, "GET", path, timeout=1.0)
            if status == 200:
                return time.monotonic() - t0
        except (OSError, ValueError, IndexError):
            pass
        if time.monotonic() > deadline:
            raise BenchError(f"no 200 on {path} within {timeout:.0f}s\n{_tail(logfile)}")
        time.sleep(0.005)


def tree_memory(root: int) -> dict:
    pids = _run._descendants(root)
    mems = [proc_mem(p) for p in pids]
    mems = [m for m in mems if m.get("rss_mb")]
    return {"processes": len(mems), "rss_mb": round(sum(m["rss_mb"] for m in mems), 1),
            "pss_mb": round(sum(m["pss_mb"] or 0 for m in mems), 1),
            "largest_rss_mb": max((m["rss_mb"] for m in mems), default=None),
            "each": [{k: m[k] for k in ("pid", "rss_mb", "pss_mb", "threads", "cmd")} for m in mems]}


def measure(args, proc, port, path, method, body, connections: int) -> dict:
    """One wrk run (after the quiet wait), with the server tree's CPU and the foreign CPU; redone
    when disturbed (run.py's rule), up to --retries times."""
    rejected = []
    for attempt in range(args.retries + 1):
        wait_quiet(args)
        args.connections = connections  # run_wrk reads it; the list stays in args.conns
        before = tree_cpu(proc.pid)
        st0 = cpu_stat()
        with ClientCpu() as cc:
            r = run_wrk(args, port, path, method, body, args.duration)
        st1 = cpu_stat()
        after = tree_cpu(proc.pid)
        cpu = cpu_delta_s(before, after)
        secs = r["duration_us"] / 1e6
        d = cpu_stat_delta(st0, st1)
        mine = {str(args.server_cpu): cpu / cc.wall, str(args.client_cpu): cc.cpu / cc.wall} \
            if args.server_cpu is not None else {}
        r["foreign_util"] = {c: max(0.0, v["task"] - mine.get(c, 0.0)) for c, v in d.items()} if mine else {}
        r["server_cpu_s"] = cpu
        r["server_cpu_util"] = cpu / secs
        r["cpu_ms_per_1k"] = cpu * 1e6 / r["requests"] if r["requests"] else None
        r["client_cpu_util"] = cc.cpu / secs
        r["connections"] = connections
        why = disturbed(args, r)
        r["disturbed"] = why
        if why is None or attempt == args.retries or r["errors"]:
            r["rejected"] = rejected
            return r
        log(f"    {path} c={connections}: {r['rps']:,.0f} req/s with {why}: redoing")
        rejected.append({k: r[k] for k in ("rps", "p50_us", "p99_us", "disturbed")})
    return r


def _short(r: dict) -> str:
    return (f"{r['rps']:>9,.0f} req/s  p50 {r['p50_us'] / 1000:6.2f} ms  p99 {r['p99_us'] / 1000:6.2f} ms  "
            f"{(r['cpu_ms_per_1k'] or 0):6.1f} CPU-ms/1k  server CPU {r['server_cpu_util']:.0%}  "
            f"wrk CPU {r['client_cpu_util']:.0%}  errors {r['errors']}"
            + (f"  [kept though disturbed: {r['disturbed']}]" if r.get("disturbed") else ""))


def bench_round(server: str, args, rnd: int) -> dict:
    LOGS.mkdir(parents=True, exist_ok=True)
    logfile = LOGS / f"peers-{server}.log"
    res: dict = {"server": server, "round": rnd, "ok": False}
    proc, port, spec, ready_s = start(server, args, logfile)
    res["command"] = " ".join(spec["cmd"])
    res["ready_s"] = ready_s
    try:
        log(f"\n== round {rnd}: {server}: {' '.join(spec['cmd'])}  (ready in {ready_s:.2f} s)")
        status, headers, rbody = post(port, "/predict", BODY)
        if status != 200 or EXPECT.encode() not in rbody:
            raise BenchError(f"POST /predict answered {status} {rbody[:200]!r}\n{_tail(logfile)}")
        why = check_identity(server, headers, proc.pid)
        if why:
            raise BenchError(why)
        res["server_header"] = headers.get("server", "")
        res["answer"] = rbody.decode(errors="replace")
        res["memory_idle"] = tree_memory(proc.pid)
        if args.warmup > 0:
            args.connections = max(args.conns)
            w = run_wrk(args, port, "/predict", "POST", BODY.decode(), args.warmup, strict_expect=EXPECT)
            res["warmup"] = {k: w[k] for k in ("requests", "rps", "errors", "strict_checked", "strict_bad_status",
                                               "strict_bad_body")}
            log(f"  warm-up {args.warmup:.0f}s c={args.connections}: {w['rps']:,.0f} req/s, "
                f"{w['strict_checked']:,} answers checked, {w['errors']} errors")
        res["predict"] = {}
        for c in args.conns:
            r = measure(args, proc, port, "/predict", "POST", BODY.decode(), c)
            res["predict"][str(c)] = r
            log(f"  POST /predict c={c:<3d} {_short(r)}")
        res["memory_loaded"] = tree_memory(proc.pid)
        if server == "bentohost":
            res["livez"] = {}
            for c in args.conns:
                r = measure(args, proc, port, "/livez", "GET", "", c)
                res["livez"][str(c)] = r
                log(f"  GET /livez    c={c:<3d} {_short(r)}" + ("  (wrk-bound)" if r["client_cpu_util"] >= 0.9
                                                                  else ""))
        m = res["memory_loaded"]
        log(f"  memory after load: {m['processes']} process(es), RSS {m['rss_mb']:.0f} MB in all "
            f"(PSS {m['pss_mb']:.0f} MB; largest process {m['largest_rss_mb']:.0f} MB)")
        errors = sum(r["errors"] for r in res["predict"].values()) + sum(
            r["errors"] for r in res.get("livez", {}).values()) + res.get("warmup", {}).get("errors", 0)
        res["errors_total"] = errors
        res["ok"] = errors == 0
        if proc.poll() is not None:
            raise BenchError(f"{server} exited during the benchmark\n{_tail(logfile)}")
    finally:
        t = time.monotonic()
        stop_server(proc)
        res["stop_s"] = round(time.monotonic() - t, 2)
    return res


# --------------------------------------------------------------------- t_python


def python_ceiling(args, py: str) -> dict:
    """peers_work.py's loop in a fresh process pinned to the server's CPU -> µs per call."""
    wait_quiet(args)
    pin = ["taskset", "-c", str(args.server_cpu)] if args.server_cpu is not None else []
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    st0 = cpu_stat()
    t = time.monotonic()
    p = subprocess.run(pin + [py, "peers_work.py", str(args.python_seconds)], cwd=SERVICES, env=env,
                       capture_output=True, text=True, timeout=120)
    wall = time.monotonic() - t
    d = cpu_stat_delta(st0, cpu_stat())
    if p.returncode != 0:
        raise BenchError(f"{py} peers_work.py failed:\n{p.stderr[-2000:]}")
    r = json.loads(p.stdout.strip().splitlines()[-1])
    r["interpreter"] = py
    r["wall_s"] = round(wall, 2)
    if args.server_cpu is not None:  # ~100% when the loop had the CPU; irq/steal show a neighbour's load
        r["server_cpu_stat"] = d[str(args.server_cpu)]
    return r


# --------------------------------------------------------------------- report


def best_of(rounds: list[dict], kind: str, c: str) -> dict | None:
    runs = [r[kind][c] for r in rounds if r.get(kind) and c in r[kind]]
    return max(runs, key=lambda x: x["rps"]) if runs else None


def summarize(args, results: dict, tpy: dict) -> dict:
    s: dict = {"servers": {}, "ceilings": {}}
    for name, rounds in results.items():
        ok = [r for r in rounds if r.get("predict")]
        if not ok:
            s["servers"][name] = {"skipped": next((r.get("error") for r in rounds if r.get("error")), "no result")}
            continue
        out: dict = {"rounds": len(ok), "best": {}, "ready_s": statistics.median(r["ready_s"] for r in ok)}
        for c in map(str, args.conns):
            b = best_of(ok, "predict", c)
            if b:
                all_rps = [r["predict"][c]["rps"] for r in ok if c in r["predict"]]
                out["best"][c] = {"rps": b["rps"], "p50_ms": b["p50_us"] / 1e3, "p90_ms": b["p90_us"] / 1e3,
                                  "p99_ms": b["p99_us"] / 1e3, "p99_9_ms": b["p99_9_us"] / 1e3,
                                  "cpu_ms_per_1k": b["cpu_ms_per_1k"], "server_cpu_util": b["server_cpu_util"],
                                  "client_cpu_util": b["client_cpu_util"], "errors": b["errors"],
                                  "disturbed": b.get("disturbed"), "rps_all_rounds": all_rps,
                                  "us_per_request": 1e6 / b["rps"]}
        best64 = max(ok, key=lambda r: r["predict"].get(str(max(args.conns)), {}).get("rps", 0))
        out["memory_loaded"] = {k: best64["memory_loaded"][k] for k in ("processes", "rss_mb", "pss_mb",
                                                                         "largest_rss_mb")}
        out["memory_idle"] = {k: best64["memory_idle"][k] for k in ("processes", "rss_mb", "pss_mb",
                                                                     "largest_rss_mb")}
        out["rss_max_mb"] = max(r["memory_loaded"]["rss_mb"] for r in ok)
        out["errors_total"] = sum(r.get("errors_total", 0) for r in rounds)
        out["failed_rounds"] = [r.get("error") for r in rounds if r.get("error")]
        if name == "bentohost":
            out["livez"] = {}
            for c in map(str, args.conns):
                b = best_of(ok, "livez", c)
                if b:
                    out["livez"][c] = {"rps": b["rps"], "p50_ms": b["p50_us"] / 1e3, "p99_ms": b["p99_us"] / 1e3,
                                       "cpu_ms_per_1k": b["cpu_ms_per_1k"], "client_cpu_util": b["client_cpu_util"],
                                       "wrk_bound": b["client_cpu_util"] >= 0.9}
        s["servers"][name] = out
    # ceilings
    main = [r for r in tpy.get("bentohost", [])]
    if main:
        t_python = min(r["us_per_call"] for r in main)
        s["ceilings"]["t_python_us"] = t_python
        s["ceilings"]["t_python_all_rounds_us"] = [r["us_per_call"] for r in main]
        s["ceilings"]["python_calls_per_s"] = 1e6 / t_python
    if tpy.get("peers"):
        s["ceilings"]["t_python_peers_venv_us"] = min(r["us_per_call"] for r in tpy["peers"])
    bh = s["servers"].get("bentohost", {})
    for c in map(str, args.conns):
        lz = bh.get("livez", {}).get(c)
        if not (lz and "t_python_us" in s["ceilings"]):
            continue
        t_http = 1e6 / lz["rps"]
        limit = 1e6 / (s["ceilings"]["t_python_us"] + t_http)
        s["ceilings"][c] = {"t_http_us": t_http, "livez_rps": lz["rps"], "livez_wrk_bound": lz["wrk_bound"],
                            "limit_rps": limit}
        for name, o in s["servers"].items():
            b = o.get("best", {}).get(c)
            if b:
                b["fraction_of_limit"] = b["rps"] / limit
                b["server_us_per_request"] = 1e6 / b["rps"] - s["ceilings"]["t_python_us"]
    # ratios and targets
    g = s["servers"].get("granian", {}).get("best", {})
    b = bh.get("best", {}) if bh else {}
    s["ratios"] = {}
    for c in map(str, args.conns):
        if c in g and c in b:
            s["ratios"][c] = {"rps_vs_granian": b[c]["rps"] / g[c]["rps"],
                              "p99_vs_granian": b[c]["p99_ms"] / g[c]["p99_ms"],
                              "p50_vs_granian": b[c]["p50_ms"] / g[c]["p50_ms"],
                              "cpu_per_1k_vs_granian": (b[c]["cpu_ms_per_1k"] / g[c]["cpu_ms_per_1k"])
                              if g[c]["cpu_ms_per_1k"] else None}
    c64 = str(max(args.conns))
    r = s["ratios"].get(c64)
    s["targets"] = {}
    if r:
        s["targets"]["throughput_3x_granian"] = {"target": ">= 3x Granian RSGI req/s at c=%s" % c64,
                                                 "value": r["rps_vs_granian"], "met": r["rps_vs_granian"] >= 3.0}
        s["targets"]["p99_half_granian"] = {"target": "p99 <= 1/2 of Granian RSGI's at c=%s" % c64,
                                            "value": r["p99_vs_granian"], "met": r["p99_vs_granian"] <= 0.5}
    return s


def f(v, spec="{:,.0f}"):
    if v is None:
        return "–"
    try:
        return spec.format(v)
    except (ValueError, TypeError):
        return str(v)


def render(args, s: dict) -> str:
    cs = [str(c) for c in args.conns]
    lines = []
    hdr = "| server |"
    sep = "|---|"
    for c in cs:
        hdr += f" req/s c={c} | p50 / p99 ms c={c} | CPU-ms/1k c={c} | of limit c={c} |"
        sep += "---:|---:|---:|---:|"
    hdr += " server µs/req c=%s | RSS MB (procs) | ready s |" % cs[0]
    sep += "---:|---:|---:|"
    lines += [hdr, sep]
    for name in SERVERS:
        o = s["servers"].get(name)
        if o is None:
            continue
        if "skipped" in o:
            lines.append(f"| {LABELS[name]} | skipped: {o['skipped'].splitlines()[0][:160]} |" + " |" * (
                4 * len(cs) + 2))
            continue
        row = f"| {LABELS[name]} |"
        for c in cs:
            b = o["best"].get(c)
            if not b:
                row += " – | – | – | – |"
                continue
            row += (f" {f(b['rps'])} | {f(b['p50_ms'], '{:.2f}')} / {f(b['p99_ms'], '{:.2f}')} |"
                    f" {f(b['cpu_ms_per_1k'], '{:.1f}')} | {f(b.get('fraction_of_limit'), '{:.0%}')} |")
        b0 = o["best"].get(cs[0], {})
        m = o["memory_loaded"]
        row += (f" {f(b0.get('server_us_per_request'), '{:.1f}')} | {f(m['rss_mb'], '{:.0f}')} ({m['processes']}) |"
                f" {f(o['ready_s'], '{:.2f}')} |")
        lines.append(row)
    ce = s["ceilings"]
    lines.append("")
    lines.append("| ceiling (same run, same CPU) | " + " | ".join(f"c={c}" for c in cs) + " |")
    lines.append("|---|" + "---:|" * len(cs))
    if "t_python_us" in ce:
        lines.append(f"| t_python: validate + compute + encode in a loop (µs/call) | "
                     + " | ".join(f(ce['t_python_us'], '{:.2f}') for _ in cs) + " |")
    lines.append("| t_http: bentohost GET /livez, C only (req/s → µs/req) | " + " | ".join(
        (f"{f(ce[c]['livez_rps'])} → {f(ce[c]['t_http_us'], '{:.2f}')}" + (" (wrk-bound)" if ce[c]["livez_wrk_bound"]
                                                                          else "")) if c in ce else "–"
        for c in cs) + " |")
    lines.append("| bentohost server CPU per GET /livez (µs, does not depend on wrk) | " + " | ".join(
        f(s["servers"]["bentohost"]["livez"][c]["cpu_ms_per_1k"], "{:.2f}")
        if c in s["servers"].get("bentohost", {}).get("livez", {}) else "–" for c in cs) + " |")
    lines.append("| composite limit 1/(t_python + t_http) (req/s) | " + " | ".join(
        f(ce[c]["limit_rps"]) if c in ce else "–" for c in cs) + " |")
    return "\n".join(lines)


def render_targets(args, s: dict) -> list[str]:
    out = []
    for c, r in s["ratios"].items():
        out.append(f"c={c}: bentohost ÷ Granian RSGI: req/s {r['rps_vs_granian']:.2f}x, p50 {r['p50_vs_granian']:.2f}, "
                   f"p99 {r['p99_vs_granian']:.2f}, CPU/1k {f(r['cpu_per_1k_vs_granian'], '{:.2f}')}")
    for t in s["targets"].values():
        out.append(f"target {t['target']}: {t['value']:.2f} → **{'met' if t['met'] else 'MISSED'}**")
    return out


# --------------------------------------------------------------------- main


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per measured wrk run (5)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds; each server keeps its best (3)")
    ap.add_argument("--connections", default="64,16", help="wrk connection counts (64,16)")
    ap.add_argument("--warmup", type=float, default=2.0, help="checked warm-up seconds per round (2)")
    ap.add_argument("--only", action="append", default=None, help=f"{' | '.join(SERVERS)} (repeatable or comma list)")
    ap.add_argument("--python-seconds", type=float, default=2.0, help="seconds of the t_python loop per round (2)")
    ap.add_argument("--server-cpu", default="0")
    ap.add_argument("--client-cpu", default="1")
    ap.add_argument("--ready-timeout", type=float, default=180.0)
    ap.add_argument("--install-timeout", type=float, default=900.0)
    ap.add_argument("--retries", type=int, default=2)
    ap.add_argument("--quiet-wait", type=float, default=20.0)
    ap.add_argument("--wrk-timeout", type=float, default=5.0)
    ap.add_argument("--bentoml-venv", type=Path, default=STATE / "bentoml-venv")
    ap.add_argument("--wrk", default="/usr/bin/wrk")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--no-save", action="store_true")
    ap.add_argument("--rerender", type=Path, metavar="JSON",
                    help="measure nothing: recompute the summary and rewrite peers.json/.md from a saved peers.json")
    ap.add_argument("--bentohost-arg", action="append", default=None, metavar="ARG",
                    help="arguments for bentohost serve (default: --no-access-log, as the peers)")
    args = ap.parse_args(argv)
    sel = []
    for item in args.only or [",".join(SERVERS)]:
        for x in item.split(","):
            if x.strip():
                if x.strip() not in SERVERS:
                    ap.error(f"--only: unknown server {x!r}")
                sel.append(x.strip())
    args.servers = [x for x in SERVERS if x in sel]
    args.conns = [int(c) for c in args.connections.split(",") if c.strip()]
    args.server_cpu = args.server_cpu or None
    args.client_cpu = args.client_cpu or None
    args.bentoml_venv = args.bentoml_venv.resolve()
    args.threads = 1
    args.bentohost_arg = args.bentohost_arg if args.bentohost_arg is not None else ["--no-access-log"]
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    import signal
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    if args.client_cpu is not None:
        os.sched_setaffinity(0, {int(c) for c in str(args.client_cpu).split(",")})
    if args.rerender:
        doc = json.loads(args.rerender.read_text())
        for k in ("duration", "rounds", "warmup", "server_cpu", "client_cpu"):
            setattr(args, k, doc["settings"][k])
        args.conns = doc["settings"]["conns"]
        args.saved_settings = dict(doc["settings"], connections=",".join(map(str, args.conns)))
        return report(args, doc["machine"], doc["envs"], doc["rounds"], doc["t_python_runs"], doc["wall_s"])
    info = machine_info(args)
    log(f"peers: {info['cpu']} ({info['ncpu']} CPUs), Python {info['python']}, {info['wrk']}; "
        f"servers {', '.join(args.servers)}; {args.rounds} round(s) x {args.duration:g} s at c={args.connections}")
    t_start = time.monotonic()
    results: dict = {s: [] for s in args.servers}
    tpy: dict = {"bentohost": [], "peers": []}
    try:
        envs = ensure_envs(args)
        for k, v in envs.items():
            log(f"  env {k}: {v.get('versions', '')}" + (f"  ERROR: {v['error'][:300]}" if v.get("error") else ""))
        for rnd in range(1, args.rounds + 1):
            order = list(args.servers) if rnd % 2 else list(reversed(args.servers))
            log(f"\n==== round {rnd}/{args.rounds}: {', '.join(order)}")
            r = python_ceiling(args, sys.executable)
            tpy["bentohost"].append(r)
            log(f"  t_python ({sys.executable}): {r['us_per_call']:.2f} µs/call (best of {len(r['us_all'])}: "
                + ", ".join(f"{x:.2f}" for x in r["us_all"]) + ")")
            if "peers" in envs and not envs["peers"].get("error"):
                r = python_ceiling(args, str(PEERS_VENV / "bin" / "python"))
                tpy["peers"].append(r)
                log(f"  t_python (peers-venv): {r['us_per_call']:.2f} µs/call")
            for server in order:
                env_key = {"granian": "peers", "fastapi": "peers", "litserve": "peers", "ray": "ray",
                           "bentoml": "bentoml"}.get(server)
                if env_key and envs.get(env_key, {}).get("error"):
                    results[server].append({"server": server, "round": rnd, "ok": False,
                                            "error": f"not installed: {envs[env_key]['error']}"})
                    continue
                try:
                    results[server].append(bench_round(server, args, rnd))
                except BenchError as e:
                    log(f"  !!! {server} round {rnd} FAILED: {str(e)[:2000]}")
                    results[server].append({"server": server, "round": rnd, "ok": False, "error": str(e)})
    except KeyboardInterrupt:
        log("\ninterrupted: stopping servers")
        stop_all()
        return 130
    except BenchError as e:
        log(f"setup failed: {e}")
        return 2
    finally:
        stop_all()
    return report(args, info, envs, results, tpy, time.monotonic() - t_start)


def report(args, info, envs, results, tpy, wall) -> int:
    """Summary, table, targets; writes peers.json and peers.md (unless --no-save)."""
    s = summarize(args, results, tpy)
    table = render(args, s)
    targets = render_targets(args, s)
    log("\n" + table + "\n")
    for t in targets:
        log(t)
    failed = any(not r.get("ok") for rounds in results.values() for r in rounds)
    if not args.no_save:
        args.out.mkdir(parents=True, exist_ok=True)
        setup = (f"one worker each, every process of each server pinned to CPU {args.server_cpu} (taskset), "
                 f"wrk -t1 on CPU {args.client_cpu}, keep-alive, POST /predict with a {len(BODY)}-byte nested "
                 f"JSON body (bench/services/peers_work.py); {args.rounds} rounds, server order reversed every "
                 f"other round, {args.warmup:g} s checked warm-up then {args.duration:g} s per connection count "
                 f"({','.join(map(str, args.conns))}); each server's best round (highest req/s) is reported")
        settings = getattr(args, "saved_settings", None) or {
            k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        doc = {"machine": info, "settings": settings, "setup": setup, "envs": envs, "wall_s": round(wall), "summary": s, "t_python_runs": tpy,
               "rounds": results}
        (args.out / "peers.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
        vers = "; ".join(f"{k}: {v.get('versions', '')}" for k, v in envs.items())
        notes = _notes(args, s)
        md = (f"# bentohost beside the fastest Python servers, same Python work (issue 12)\n\n"
              f"{info['date']} · {info['cpu']} · {info['ncpu']} CPUs · Python {info['python']} · "
              f"bentohost {info['git_commit'] or '(uncommitted)'}{' (dirty)' if info['git_dirty'] else ''} · "
              f"{info['wrk']}\n\nVersions: {vers}\n\nSetup: {setup}. Produced by `python bench/peers.py` "
              f"in {wall / 60:.0f} min.\n\n{table}\n\n" + "\n".join(f"- {t}" for t in targets) + "\n\n"
              + "\n".join(f"- {n}" for n in notes) + "\n")
        (args.out / "peers.md").write_text(md)
        log(f"\nwrote {(args.out / 'peers.json').relative_to(ROOT)} and {(args.out / 'peers.md').relative_to(ROOT)}")
    if failed:
        log("\nsome rounds failed or had errors (see above and the JSON)")
        return 1
    return 0


def _notes(args, s: dict) -> list[str]:
    n = ["**server µs/req** = 1/req/s − t_python: the time per request the server spends around the user's "
         "function on the one CPU (HTTP, framework, queues), at the first connection count.",
         "**of limit** = req/s ÷ 1/(t_python + t_http): 100% would be a server that adds only bentohost's own "
         "C-only HTTP path to the function. When /livez is wrk-bound, t_http is an upper bound, the limit a "
         "lower bound, and the fractions overstate.",
         "CPU-ms/1k counts every process of the server (utime+stime from /proc, before and after the run). "
         "RSS is the sum over all of its processes after load, in the best round at the highest c (process "
         "count in brackets).",
         "Access logs are off for every server except `bentoml serve` (its default is on).",
         "This 2-vCPU VM is shared with other builds and tests: runs disturbed by foreign CPU (> 5% of a CPU) "
         "are redone up to --retries times, and each server keeps its best round; figures move by ±15% from run "
         "to run, so compare within one run. wrk is closed-loop: p99 understates stalls."]
    for name, o in s["servers"].items():
        if "skipped" in o:
            n.append(f"{name} skipped: {o['skipped'][:400]}")
        elif o.get("failed_rounds"):
            n.append(f"{name}: {len(o['failed_rounds'])} round(s) failed: {o['failed_rounds'][0][:300]}")
    return n


if __name__ == "__main__":
    sys.exit(main())
