"""Shared helpers for the bench/ scripts other than run.py (batching, overload, io, streaming).

Reuses run.py's process handling, quiet-wait and /proc readers; adds: serving any
bench/services/<file>.py:<Class> with either server, a wrk run with a per-request body
pool and a latency SLO (wrk_bodies.lua), /metrics parsing, and result-file writing.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as _run  # noqa: E402
from run import (  # noqa: E402,F401
    ROOT, STATE, LOGS, RESULTS, BenchError, log, stop_server, stop_all, wait_quiet, cpu_stat,
    cpu_stat_delta, tree_cpu, cpu_delta_s, free_port, http, wait_ready, _tail, _started,
    ClientCpu, machine_info, _on_signal,
)

SERVICES = ROOT / "bench" / "services"
WRK_BODIES_LUA = ROOT / "bench" / "wrk_bodies.lua"
PYCLIENT = ROOT / "bench" / "pyclient.py"
FASTDEPS = STATE / "bentoml-fastdeps"
SERVERS = ("bentohost", "bentoml")
BLAS_ENV = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


def add_common_args(ap, duration: float = 10.0) -> None:
    ap.add_argument("--duration", type=float, default=duration, help=f"seconds per measured run ({duration:g})")
    ap.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds (2)")
    ap.add_argument("--only", default="bentohost,bentoml", help="bentohost,bentoml (comma list)")
    ap.add_argument("--server-cpu", default="0")
    ap.add_argument("--client-cpu", default="1")
    ap.add_argument("--quiet-wait", type=float, default=30.0)
    ap.add_argument("--retries", type=int, default=2)
    ap.add_argument("--bentoml-venv", type=Path, default=STATE / "bentoml-venv")
    ap.add_argument("--wrk", default=shutil.which("wrk") or "/usr/bin/wrk")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--no-save", action="store_true")


def finish_args(args):
    args.servers = [s.strip() for s in args.only.split(",") if s.strip()]
    for s in args.servers:
        if s not in SERVERS:
            raise SystemExit(f"--only: unknown server {s!r}")
    args.server_cpu = args.server_cpu or None
    args.client_cpu = args.client_cpu or None
    args.bentoml_venv = args.bentoml_venv.resolve()
    if "bentoml" in args.servers:
        _run.ensure_bentoml_venv(args.bentoml_venv, False)
    args.threads = 1
    if args.client_cpu is not None:
        os.sched_setaffinity(0, {int(c) for c in str(args.client_cpu).split(",")})
    import signal
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _on_signal)
    return args


def start(server: str, target: str, args, extra_env: dict | None = None, bentoml_options: str | None = None,
          workers: int = 1):
    """Serve bench/services/<target> ('file.py:Class') with one worker (bentohost: `workers`;
    BentoML: as the service's decorator says) -> (proc, port, cmd)."""
    fname, cls = target.split(":")
    port = free_port()
    env = dict(os.environ, **BLAS_ENV)
    env.pop("BENTOML_CONFIG_OPTIONS", None)
    if server == "bentohost":
        cmd = [sys.executable, "-m", "bentohost", "serve", f"bench/services/{fname}:{cls}", "--workers", str(workers),
               "--port", str(port), "--host", "127.0.0.1"]
        cwd = ROOT
        env["PYTHONPATH"] = str(ROOT)
    else:
        # cwd = bench/services: the repo's bentohost/ is not importable, the service falls back to bentoml.
        cmd = [str(args.bentoml_venv / "bin" / "bentoml"), "serve", f"{fname[:-3]}:{cls}",
               "--port", str(port), "--host", "127.0.0.1"]
        cwd = SERVICES
        env.pop("PYTHONPATH", None)
        env["BENTOML_DO_NOT_TRACK"] = "True"
        env["BENTOML_HOME"] = str(STATE / "bentoml-home")
        if bentoml_options:
            env["BENTOML_CONFIG_OPTIONS"] = bentoml_options
    if extra_env:
        env.update(extra_env)
    if args.server_cpu is not None:
        cmd = ["taskset", "-c", str(args.server_cpu)] + cmd
    LOGS.mkdir(parents=True, exist_ok=True)
    logfile = LOGS / f"{fname[:-3]}-{server}.log"
    with open(logfile, "ab") as lf:
        lf.write(f"\n==== {time.ctime()}: {' '.join(cmd)}\n".encode())
        lf.flush()
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=lf,
                                stderr=subprocess.STDOUT, start_new_session=True)
    _started.append(proc)
    try:
        wait_ready(proc, port, t0, 120.0, logfile)
    except BaseException:
        stop_server(proc)
        raise
    status, headers, _ = http(port, "GET", "/readyz")
    is_bentoml = headers.get("server", "").startswith("BentoML") or _bentoml_tree(proc.pid)
    if is_bentoml != (server == "bentoml"):
        stop_server(proc)
        raise BenchError(f"{server}: the wrong server answers (Server: {headers.get('server')!r})")
    log(f"\n== {server}: {' '.join(cmd)}")
    return proc, port, logfile


def run_each(args, fn) -> dict | None:
    """{server: fn(server, args)} for each --only server; None on Ctrl-C. Every server
    process started is stopped whatever happens."""
    results = {}
    try:
        for s in args.servers:
            results[s] = fn(s, args)
    except KeyboardInterrupt:
        return None
    finally:
        stop_all()
    return results


def _bentoml_tree(root: int) -> bool:
    for pid in _run._descendants(root):
        try:
            if b"_bentoml_impl" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return True
        except OSError:
            pass
    return False


def post(port: int, path: str, body: bytes, ctype: str = "application/json", timeout: float = 10.0):
    """One POST with an arbitrary body -> (status, headers, body)."""
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("POST", path, body=body, headers={"Content-Type": ctype})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


# --------------------------------------------------------------------- wrk with a body pool


def run_wrk_pool(args, proc, port: int, path: str, body_file: Path, ctype: str, connections: int,
                 duration: float, slo_ms: float = 50.0, timeout_s: float = 10.0, quiet: bool = True) -> dict:
    """wrk -t1 with bench/wrk_bodies.lua: bodies cycled from body_file (one per line, or the whole
    file when BENCH_WHOLE=1), latency histogram, and the count of 2xx responses... within slo_ms
    (goodput counts every finished request within the SLO; non-2xx are counted apart)."""
    if quiet:
        wait_quiet(args)
    env = dict(os.environ, BENCH_BODY_FILE=str(body_file), BENCH_CTYPE=ctype, BENCH_SLO_US=str(int(slo_ms * 1000)))
    cmd = [args.wrk, "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--timeout", f"{int(timeout_s)}s",
           "-s", str(WRK_BODIES_LUA), f"http://127.0.0.1:{port}{path}"]
    if args.client_cpu is not None:
        cmd = ["taskset", "-c", str(args.client_cpu)] + cmd
    before = tree_cpu(proc.pid)
    st0 = cpu_stat()
    with ClientCpu() as cc:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=duration + 120)
    st1 = cpu_stat()
    after = tree_cpu(proc.pid)
    out = p.stdout + p.stderr
    line = next((ln for ln in out.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if p.returncode != 0 or line is None:
        raise BenchError(f"wrk failed ({p.returncode}):\n{out[-3000:]}")
    r = json.loads(line[len("BENCH_JSON "):])
    secs = r["duration_us"] / 1e6
    r["rps"] = r["requests"] / secs
    r["goodput"] = r["rps"] * r["within_slo"] / max(1, r["hist_total"])  # histogram counts -> share of finished requests
    r["errors"] = sum(r[k] for k in ("err_connect", "err_read", "err_write", "err_timeout"))
    r["non2xx"] = r["err_status"]
    cpu = cpu_delta_s(before, after)
    r["server_cpu_util"] = cpu / secs
    r["client_cpu_util"] = cc.cpu / secs
    d = cpu_stat_delta(st0, st1)
    mine = {str(args.server_cpu): cpu / cc.wall, str(args.client_cpu): cc.cpu / cc.wall}
    r["foreign_util"] = {c: max(0.0, v["task"] - mine.get(c, 0.0)) for c, v in d.items()}
    return r


def disturbed(args, r) -> str | None:
    f = r.get("foreign_util") or {}
    for c in (str(args.server_cpu), str(args.client_cpu)):
        if f.get(c, 0.0) > 0.05:
            return f"{f[c]:.0%} foreign CPU on CPU {c}"
    return None


def clean(args, fn, label: str):
    """fn() -> result dict with foreign_util; redone up to --retries times when disturbed."""
    rejected = []
    for attempt in range(args.retries + 1):
        r = fn()
        why = disturbed(args, r)
        r["disturbed"] = why
        if why is None or attempt == args.retries:
            if why:
                log(f"  WARNING: {label} kept although disturbed ({why})")
            r["rejected_runs"] = len(rejected)
            return r
        log(f"  {label}: disturbed ({why}): redoing")
        rejected.append(r)
    return r


# --------------------------------------------------------------------- python client (pyclient.py)


def run_pyclient(args, proc, spec: dict, quiet: bool = True) -> dict:
    """Run bench/pyclient.py pinned to the client CPU (uvloop from .bench/bentoml-fastdeps if there)."""
    if quiet:
        wait_quiet(args)
    env = dict(os.environ)
    if FASTDEPS.exists():
        env["PYTHONPATH"] = str(FASTDEPS)
    cmd = [sys.executable, str(PYCLIENT), json.dumps(spec)]
    if args.client_cpu is not None:
        cmd = ["taskset", "-c", str(args.client_cpu)] + cmd
    before = tree_cpu(proc.pid)
    st0 = cpu_stat()
    with ClientCpu() as cc:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=spec.get("duration", 10) + 300)
    st1 = cpu_stat()
    after = tree_cpu(proc.pid)
    if p.returncode != 0:
        raise BenchError(f"pyclient failed ({p.returncode}):\n{p.stderr[-3000:]}")
    r = json.loads(p.stdout.strip().splitlines()[-1])
    cpu = cpu_delta_s(before, after)
    r["server_cpu_util"] = cpu / cc.wall
    r["client_cpu_util"] = cc.cpu / cc.wall
    d = cpu_stat_delta(st0, st1)
    mine = {str(args.server_cpu): cpu / cc.wall, str(args.client_cpu): cc.cpu / cc.wall}
    r["foreign_util"] = {c: max(0.0, v["task"] - mine.get(c, 0.0)) for c, v in d.items()}
    return r


# --------------------------------------------------------------------- metrics


def metrics(port: int) -> str:
    try:
        status, _, body = http(port, "GET", "/metrics", timeout=5.0)
        return body.decode("utf-8", "replace") if status == 200 else ""
    except OSError:
        return ""


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([-+0-9.eEinfNa]+)')


def metric_samples(text: str, name: str) -> list[tuple[dict, float]]:
    out = []
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if not m or m.group(1) != name:
            continue
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out.append((labels, float(m.group(3))))
    return out


def batch_histogram(text: str, api: str | None = None) -> dict[float, float]:
    """Cumulative buckets of bentoml_service_adaptive_batch_size -> {le: count} (summed over labels)."""
    out: dict[float, float] = {}
    for labels, v in metric_samples(text, "bentoml_service_adaptive_batch_size_bucket"):
        if api and labels.get("method_name", labels.get("endpoint", api)) not in (api, f"/{api}"):
            continue
        le = float(labels.get("le", "inf").replace("+Inf", "inf"))
        out[le] = out.get(le, 0.0) + v
    return dict(sorted(out.items()))


def batch_stats(text: str) -> dict:
    s = sum(v for _, v in metric_samples(text, "bentoml_service_adaptive_batch_size_sum"))
    c = sum(v for _, v in metric_samples(text, "bentoml_service_adaptive_batch_size_count"))
    return {"sum": s, "count": c}


# --------------------------------------------------------------------- results


def save(args, name: str, title: str, setup: str, table: str, notes: list[str], doc: dict) -> None:
    if args.no_save:
        return
    info = machine_info(args) if hasattr(args, "servers") else {}
    args.out.mkdir(parents=True, exist_ok=True)
    doc = {"machine": info, "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
           "setup": setup, **doc}
    (args.out / f"{name}.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    md = (f"# {title}\n\n{info.get('date', _dt.datetime.now().isoformat())} · {info.get('cpu', '')} · "
          f"{info.get('ncpu', '')} CPUs · Python {info.get('python', '')} · "
          f"{info.get('bentoml_venv', {}).get('versions', '') if isinstance(info.get('bentoml_venv'), dict) else ''}"
          f" · bentohost {info.get('git_commit') or '(uncommitted)'}{' (dirty)' if info.get('git_dirty') else ''}\n\n"
          f"Setup: {setup}\n\n{table}\n\n" + "\n".join(f"- {n}" for n in notes) + "\n")
    (args.out / f"{name}.md").write_text(md)
    shown = [p.relative_to(ROOT) if p.is_relative_to(ROOT) else p
             for p in (args.out.resolve() / f"{name}.json", args.out.resolve() / f"{name}.md")]
    log(f"\nwrote {shown[0]} and {shown[1]}")


def fmt(v, spec="{:,.0f}") -> str:
    return "n/a" if v is None else spec.format(v)
