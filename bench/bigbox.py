"""Helpers for the benches meant for a big machine (bench/scaling.py, bench/gpu_batch.py).

run.py and common.py pin one server to one CPU and one wrk thread to the other (the 2-core
box). Here the server gets a set of CPUs and wrk several threads on the rest, the worker
count varies, BentoML may come from any interpreter (`--bentoml-python`: on the GPU machine it
is a wrapper script that sets PYTHONPATH to carried wheels, since there is no venv there), and
the machine's whole CPU time is accounted for (other processes' use is reported, not guessed
from one CPU). Process handling, /proc readers and HTTP come from run.py.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as R  # noqa: E402

ROOT = R.ROOT
SERVICES = ROOT / "bench" / "services"
WRK_BODIES_LUA = ROOT / "bench" / "wrk_bodies.lua"
BLAS_ENV = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
CLK_TCK = os.sysconf("SC_CLK_TCK")
log = R.log
BenchError = R.BenchError


# --------------------------------------------------------------------- CPUs


def parse_cpus(spec: str) -> list[int]:
    """'0-3,8' -> [0, 1, 2, 3, 8]."""
    out: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return sorted(set(out))


def cpu_list(cpus: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2,5' (taskset's and the report's form)."""
    out, i = [], 0
    while i < len(cpus):
        j = i
        while j + 1 < len(cpus) and cpus[j + 1] == cpus[j] + 1:
            j += 1
        out.append(str(cpus[i]) if i == j else f"{cpus[i]}-{cpus[j]}")
        i = j + 1
    return ",".join(out)


def split_cpus(server: str | None, client: str | None) -> tuple[list[int], list[int]]:
    """(server CPUs, client CPUs). Default: wrk gets the last quarter of the CPUs this process may
    use (at least one), the server the rest; a single CPU is shared."""
    allowed = sorted(os.sched_getaffinity(0))
    if server and client:
        return parse_cpus(server), parse_cpus(client)
    n_client = max(1, len(allowed) // 4)
    cl = parse_cpus(client) if client else allowed[-n_client:]
    sv = parse_cpus(server) if server else ([c for c in allowed if c not in cl] or allowed)
    return sv, cl


def pinned(cmd: list[str], cpus: list[int] | None) -> tuple[list[str], object]:
    """(command, preexec_fn) that runs cmd on cpus: taskset where it exists, else sched_setaffinity."""
    if not cpus:
        return cmd, None
    if shutil.which("taskset"):
        return ["taskset", "-c", cpu_list(cpus)] + cmd, None
    return cmd, lambda: os.sched_setaffinity(0, set(cpus))


# --------------------------------------------------------------------- machine-wide CPU time


def machine_cpu_s() -> float:
    """CPU seconds spent in tasks (user + nice + system) on all CPUs since boot."""
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:4]]
    return sum(vals) / CLK_TCK


# --------------------------------------------------------------------- BentoML's interpreter


def bentoml_python(path: Path | None, disabled: bool) -> tuple[str | None, str]:
    """(interpreter that can `-m bentoml`, a line for the report). None when BentoML is skipped."""
    if disabled:
        return None, "bentoml: skipped (--no-bentoml)"
    cand = path or (R.DEFAULT_VENV / "bin" / "python")
    if not Path(cand).exists():
        return None, f"bentoml: skipped, no interpreter at {cand} (give --bentoml-python PATH)"
    p = subprocess.run([str(cand), "-c", "import bentoml; print(bentoml.__version__)"], capture_output=True,
                       text=True, timeout=180, cwd=SERVICES)
    if p.returncode != 0:
        return None, f"bentoml: skipped, `{cand} -c 'import bentoml'` failed: {p.stderr.strip()[-300:]}"
    return str(cand), f"bentoml {p.stdout.strip()} from {cand}"


def bentohost_supports(flag: str) -> bool:
    """Whether this checkout's `bentohost serve` has flag (the benches also run on older trees)."""
    p = subprocess.run([sys.executable, "-m", "bentohost", "serve", "--help"], capture_output=True, text=True,
                       cwd=ROOT, env=dict(os.environ, PYTHONPATH=repo_pythonpath()), timeout=60)
    return flag in p.stdout


def repo_pythonpath() -> str:
    """The repo first, then whatever PYTHONPATH says (on the GPU machine: the carried wheels)."""
    rest = os.environ.get("PYTHONPATH", "")
    return str(ROOT) + (os.pathsep + rest if rest else "")


# --------------------------------------------------------------------- servers


@dataclass
class Running:
    server: str
    proc: subprocess.Popen
    port: int
    logfile: Path
    cmd: list[str]
    ready_s: float
    workers: list[dict] = field(default_factory=list)


def server_cmd(server: str, target: str, workers: int, port: int, bentohost_args: list[str],
               bentoml_py: str | None) -> tuple[list[str], Path, dict]:
    """(command, cwd, env) for `target` ('file.py:Class' in bench/services) served by either server."""
    fname, cls = target.split(":")
    env = dict(os.environ, **BLAS_ENV, BENCH_WORKERS=str(workers), PYTHONUNBUFFERED="1")
    env.pop("BENTOML_CONFIG_OPTIONS", None)
    if server == "bentohost":
        cmd = [sys.executable, "-m", "bentohost", "serve", f"bench/services/{fname}:{cls}", "--workers",
               str(workers), "--port", str(port), "--host", "127.0.0.1", *bentohost_args]
        env["PYTHONPATH"] = repo_pythonpath()
        return cmd, ROOT, env
    if bentoml_py is None:
        raise BenchError("bentoml: no interpreter")
    # cwd bench/services: the repo's bentohost/ is not importable, the file falls back to bentoml.
    # PYTHONPATH is dropped: a venv needs none, and the GPU machine's wrapper sets its own.
    env.pop("PYTHONPATH", None)
    env.update(BENTOML_DO_NOT_TRACK="True", BENTOML_HOME=str(R.STATE / "bentoml-home"))
    cmd = [bentoml_py, "-m", "bentoml", "serve", f"{fname[:-3]}:{cls}", "--port", str(port), "--host", "127.0.0.1"]
    return cmd, SERVICES, env


def start(server: str, target: str, workers: int, cpus: list[int] | None, *, bentohost_args: list[str] = (),
          bentoml_py: str | None = None, ready_timeout: float = 180.0, extra_env: dict | None = None) -> Running:
    """Start a server, wait for /readyz and for all its worker processes; check who answers."""
    port = R.free_port()
    cmd, cwd, env = server_cmd(server, target, workers, port, list(bentohost_args), bentoml_py)
    env.update(extra_env or {})
    cmd, preexec = pinned(cmd, cpus)
    R.LOGS.mkdir(parents=True, exist_ok=True)
    logfile = R.LOGS / f"{target.split('.')[0]}-{server}-w{workers}.log"
    with open(logfile, "ab") as lf:
        lf.write(f"\n==== {time.ctime()}: {' '.join(cmd)}\n".encode())
        lf.flush()
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=lf, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=preexec)
    R._started.append(proc)
    try:
        ready = R.wait_ready(proc, port, t0, ready_timeout, logfile)
        run = Running(server, proc, port, logfile, cmd, ready)
        wait_workers(run, workers, t0 + ready_timeout)
        check_identity(run)
    except BaseException:
        R.stop_server(proc)
        raise
    log(f"\n== {server}, {workers} worker(s): {' '.join(cmd)}  (ready in {ready:.1f} s)")
    return run


def wait_workers(run: Running, n: int, deadline: float) -> None:
    """/readyz answers once one worker is up: wait until n worker processes exist."""
    while True:
        workers, _ = R.classify_tree(run.server, run.proc.pid)
        if len(workers) >= n:
            run.workers = workers
            return
        if run.proc.poll() is not None or time.monotonic() > deadline:
            raise BenchError(f"{run.server}: {len(workers)} of {n} worker processes\n{R._tail(run.logfile)}")
        time.sleep(0.1)


def check_identity(run: Running) -> None:
    _, headers, _ = R.http(run.port, "GET", "/readyz")
    is_bentoml = headers.get("server", "").startswith("BentoML") or any(
        "_bentoml_impl" in w["cmd"] for w in run.workers)
    if is_bentoml != (run.server == "bentoml"):
        raise BenchError(f"{run.server}: the wrong server answers (Server: {headers.get('server')!r})")


def post(run: Running, path: str, body: str, timeout: float = 60.0) -> tuple[int, bytes]:
    status, _, data = R.http(run.port, "POST", path, body, timeout=timeout)
    return status, data


def memory(run: Running) -> dict:
    """RSS of the worker processes and of all of the server's processes (MB)."""
    workers, others = R.classify_tree(run.server, run.proc.pid)
    w = [m["rss_mb"] for m in workers]
    return {"nworkers": len(workers), "worker_rss_mb": round(sum(w), 1),
            "worker_rss_mean_mb": round(sum(w) / len(w), 1) if w else None,
            "total_rss_mb": round(sum(m["rss_mb"] for m in workers + others), 1)}


# --------------------------------------------------------------------- wrk


def wrk(args: argparse.Namespace, run: Running, path: str, body_file: Path, connections: int, duration: float,
        slo_ms: float = 1000.0, ctype: str = "application/json") -> dict:
    """One wrk run (bench/wrk_bodies.lua: bodies cycled from body_file) with the server's CPU time,
    wrk's and the rest of the machine's over the same interval."""
    threads = max(1, min(args.wrk_threads, connections))
    env = dict(os.environ, BENCH_BODY_FILE=str(body_file), BENCH_CTYPE=ctype, BENCH_SLO_US=str(int(slo_ms * 1000)))
    cmd, preexec = pinned([args.wrk, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s",
                           "--timeout", "10s", "-s", str(WRK_BODIES_LUA), f"http://127.0.0.1:{run.port}{path}"],
                          args.client_cpus)
    before, m0 = R.tree_cpu(run.proc.pid), machine_cpu_s()
    with R.ClientCpu() as cc:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=duration + 120, preexec_fn=preexec)
    after, m1 = R.tree_cpu(run.proc.pid), machine_cpu_s()
    line = next((ln for ln in (p.stdout + p.stderr).splitlines() if ln.startswith("BENCH_JSON ")), None)
    if p.returncode != 0 or line is None:
        raise BenchError(f"wrk failed ({p.returncode}):\n{(p.stdout + p.stderr)[-3000:]}")
    r = json.loads(line[len("BENCH_JSON "):])
    secs = r["duration_us"] / 1e6
    server_cpu = R.cpu_delta_s(before, after)
    r.update(threads=threads, connections=connections, rps=r["requests"] / secs,
             errors=sum(r[k] for k in ("err_connect", "err_read", "err_write", "err_timeout")),
             non2xx=r["err_status"], server_cpu_s=server_cpu, server_cores=server_cpu / secs,
             cpu_us_per_req=server_cpu * 1e6 / r["requests"] if r["requests"] else None,
             client_cores=cc.cpu / secs,
             # other processes: the machine's task time less the server's and wrk's (this script ~0)
             foreign_cores=max(0.0, (m1 - m0) - server_cpu - cc.cpu) / cc.wall)
    # wrk's histogram counts every finished request, non-2xx too: those (503s from a batching queue
    # shedding load, which answer at once) are taken out, so goodput is 2xx within the SLO, a lower bound.
    within = r["within_slo"] * r["requests"] / max(1, r["hist_total"])
    r["goodput"] = max(0.0, within - r["non2xx"]) / secs
    r["wrk_bound"] = r["client_cores"] >= 0.9 * len(args.client_cpus or [0])
    return r


def quiet(args: argparse.Namespace) -> None:
    """run.py's wait for an idle machine (every CPU under 10% busy, up to --quiet-wait s)."""
    R.wait_quiet(args)


def clean(args: argparse.Namespace, fn, label: str) -> dict:
    """fn() -> a wrk result; redone (up to --retries) when other processes used over
    --foreign-max cores meanwhile. The rejected runs are kept in the result."""
    rejected = []
    for attempt in range(args.retries + 1):
        quiet(args)
        r = fn()
        if r["foreign_cores"] <= args.foreign_max or attempt == args.retries:
            if r["foreign_cores"] > args.foreign_max:
                log(f"  WARNING: {label} kept although other processes used {r['foreign_cores']:.2f} cores")
            r["rejected_runs"] = rejected
            return r
        log(f"  {label}: other processes used {r['foreign_cores']:.2f} cores: redoing")
        rejected.append(r)
    return r


def add_args(ap: argparse.ArgumentParser, duration: float, warmup: float) -> None:
    ap.add_argument("--duration", type=float, default=duration, help=f"seconds per measured run ({duration:g})")
    ap.add_argument("--warmup", type=float, default=warmup, help=f"seconds of warm-up per run ({warmup:g})")
    ap.add_argument("--bentoml-python", type=Path, default=None,
                    help="interpreter that can `-m bentoml` (default: .bench/bentoml-venv/bin/python); "
                         "BentoML is skipped, and the report says so, when it cannot import bentoml")
    ap.add_argument("--no-bentoml", action="store_true", help="bentohost alone")
    ap.add_argument("--server-cpus", default=None, help="CPUs of the server (default: all but wrk's)")
    ap.add_argument("--client-cpus", default=None, help="CPUs of wrk (default: the last quarter, at least one)")
    ap.add_argument("--wrk-threads", type=int, default=None, help="wrk threads (default: one per client CPU)")
    ap.add_argument("--wrk", default=shutil.which("wrk") or "/usr/bin/wrk")
    ap.add_argument("--quiet-wait", type=float, default=10.0, help="wait up to S s for an idle machine (10)")
    ap.add_argument("--retries", type=int, default=1, help="redo a disturbed run up to N times (1)")
    ap.add_argument("--foreign-max", type=float, default=0.25,
                    help="cores other processes may use during a run before it is redone (0.25)")
    ap.add_argument("--out", type=Path, default=R.RESULTS, help="folder for the .json and .md (bench/results)")
    ap.add_argument("--no-save", action="store_true")


def finish_args(args: argparse.Namespace) -> argparse.Namespace:
    args.server_cpus, args.client_cpus = split_cpus(args.server_cpus, args.client_cpus)
    args.wrk_threads = args.wrk_threads or len(args.client_cpus)
    # run.py's helpers read these two
    args.server_cpu, args.client_cpu = cpu_list(args.server_cpus), cpu_list(args.client_cpus)
    os.sched_setaffinity(0, set(args.client_cpus))  # this script stays off the server's CPUs
    import signal
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, R._on_signal)
    if not Path(args.wrk).exists():
        raise SystemExit(f"wrk not found ({args.wrk}): apt-get install wrk, or --wrk PATH")
    return args


def machine(args: argparse.Namespace) -> dict:
    info = R.machine_info(args)
    info.update(server_cpus=cpu_list(args.server_cpus), client_cpus=cpu_list(args.client_cpus),
                wrk_threads=args.wrk_threads)
    return info


def write(args: argparse.Namespace, name: str, md: str, doc: dict, quiet: bool = False) -> None:
    if args.no_save:
        return
    args.out.mkdir(parents=True, exist_ok=True)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    (args.out / f"{name}.json").write_text(json.dumps({"settings": settings, **doc}, indent=2, default=str) + "\n")
    (args.out / f"{name}.md").write_text(md)
    if not quiet:
        log(f"\nwrote {args.out / (name + '.json')} and {args.out / (name + '.md')}")


def fmt(v, spec: str = "{:,.0f}") -> str:
    return "n/a" if v is None else spec.format(v)
