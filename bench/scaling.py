#!/usr/bin/env python3
"""Worker scaling: bentohost (--cpu-affinity) vs `bentoml serve` at 1, 2, 4, 8 and 12 workers.

    python bench/scaling.py                                         # both servers, ~10 min on 16 cores
    python bench/scaling.py --workers 1,2 --duration 3 --no-bentoml --no-save   # quick, on 2 cores

bench/services/scaling.py, the same file under both servers, has two sync APIs:
  hello  {"name": "bench"} -> {"message": ...}: the server's own cost per request;
  work   {"seed": n} -> {"value": ...}: two 256x256 float64 products with numpy (BLAS on one
         thread): ~1-2 ms of CPU per request, so N workers should give N times the req/s.
For each worker count N, each server is started afresh with N workers (BENCH_WORKERS=N for
both; bentohost also gets --workers N and --cpu-affinity, which pins worker i to its own
CPUs) on --server-cpus (default: all but the last quarter), wrk runs on --client-cpus with one
thread per CPU and max(--min-connections, --connections-per-worker x N) connections. Per
server, API and N: req/s, p50/p99, scaling efficiency rps_N / (N x rps_1), server CPU-us per
request (all its processes), RSS of its workers and of all its processes after the load,
wrk's CPU (near its CPUs' count, the client is the limit: "wrk-bound", a lower bound). The
in-process ceiling of /work is work() timed in a loop on one server CPU; N x that is the ideal.
Rounds alternate the server order; each cell is its best round by req/s. The target recorded
in the output: efficiency >= 0.8 from 1 to 8 workers for bentohost's /work.
Writes bench/results/scaling.{json,md} (or --out). Exit 0 ok; 1 a server failed or answered
non-2xx; 2 setup failure.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bigbox as B  # noqa: E402
import run as R  # noqa: E402

TARGET = "scaling.py:Scaling"
APIS = {  # name: (path, body, expected substring of the answer)
    "hello": ("/hello", '{"name":"bench"}', "Hello, bench!"),
    "work": ("/work", None, '"value"'),  # a pool of seeds, see bodies()
}
TARGET_EFFICIENCY = 0.8
TARGET_MAX_WORKERS = 8


def bodies(api: str) -> Path:
    """One body per line for wrk_bodies.lua: the hello body, or 256 different seeds."""
    R.STATE.mkdir(exist_ok=True)
    path = R.STATE / f"scaling_{api}.jsonl"
    lines = [APIS[api][1]] if APIS[api][1] else [json.dumps({"seed": s}) for s in range(256)]
    path.write_text("\n".join(lines) + "\n")
    return path


def sanity(run: B.Running, api: str) -> None:
    path, body, expect = APIS[api]
    st, data = B.post(run, path, body or '{"seed": 7}')
    if st != 200 or expect.encode() not in data:
        raise B.BenchError(f"{run.server}: POST {path} -> {st} {data[:200]!r}")


def connections(args: argparse.Namespace, n: int) -> int:
    return max(args.min_connections, args.connections_per_worker * n)


def bench_one(server: str, n: int, args: argparse.Namespace) -> dict:
    """Start `server` with n workers, measure each API, stop it."""
    extra = ["--cpu-affinity"] if args.cpu_affinity else []
    run = B.start(server, TARGET, n, args.server_cpus, bentohost_args=extra, bentoml_py=args.bentoml_py)
    out: dict = {"server": server, "workers": n, "ready_s": run.ready_s, "idle": B.memory(run), "apis": {}}
    try:
        for api in args.apis:
            sanity(run, api)
            c = connections(args, n)
            if args.warmup:
                w = B.wrk(args, run, APIS[api][0], bodies(api), c, args.warmup)
                B.log(f"  warm-up {api}: {w['rps']:,.0f} req/s, non-2xx {w['non2xx']}, errors {w['errors']}")
            r = B.clean(args, lambda: B.wrk(args, run, APIS[api][0], bodies(api), c, args.duration), f"{api} N={n}")
            B.log(f"  {api:5s} N={n:2d} c={c:3d}: {r['rps']:10,.0f} req/s  p50 {r['p50_us'] / 1e3:7.2f} ms  "
                  f"p99 {r['p99_us'] / 1e3:7.2f} ms  {B.fmt(r['cpu_us_per_req'], '{:,.0f}')} CPU-us/req  "
                  f"server {r['server_cores']:.1f} cores  wrk {r['client_cores']:.1f} cores"
                  f"{'  (wrk-bound)' if r['wrk_bound'] else ''}  non-2xx {r['non2xx']}  errors {r['errors']}")
            out["apis"][api] = r
        out["loaded"] = B.memory(run)
        if run.proc.poll() is not None:
            raise B.BenchError(f"{server} exited during the run\n{R._tail(run.logfile)}")
    finally:
        R.stop_server(run.proc)
    out["ok"] = all(r["errors"] == 0 and r["non2xx"] == 0 for r in out["apis"].values())
    return out


def bench_safe(server: str, n: int, args: argparse.Namespace) -> dict:
    try:
        return bench_one(server, n, args)
    except (B.BenchError, OSError, ValueError, subprocess.TimeoutExpired) as e:  # one cell, not the whole run
        B.log(f"  !!! {server} N={n} FAILED: {e!r}")
        return {"server": server, "workers": n, "ok": False, "error": str(e), "apis": {}}


# --------------------------------------------------------------------- the in-process ceiling


def ceiling_worker(seconds: float) -> None:
    """In a child pinned to one server CPU, BLAS on one thread: microseconds per work() call."""
    sys.path.insert(0, str(B.SERVICES))
    import scaling as svc  # noqa: E402  (bench/services/scaling.py: only its work() is used)
    for i in range(20):
        svc.work(i)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        svc.work(n)
        n += 1
    print(json.dumps({"us_per_call": (time.perf_counter() - t0) * 1e6 / n, "calls": n}))


def ceiling(args: argparse.Namespace) -> dict | None:
    env = dict(os.environ, **B.BLAS_ENV, PYTHONPATH=B.repo_pythonpath())
    cmd, preexec = B.pinned([sys.executable, __file__, "--ceiling-worker"], args.server_cpus[:1])
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, preexec_fn=preexec)
    if p.returncode != 0:
        B.log(f"  ceiling failed: {p.stderr[-500:]}")
        return None
    return json.loads(p.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------- best of the rounds, report


def best(runs: list[dict], server: str, n: int, api: str) -> dict | None:
    cells = [r["apis"][api] for r in runs if r["server"] == server and r["workers"] == n and api in r["apis"]]
    if not cells:
        return None
    b = dict(max(cells, key=lambda x: x["rps"]))
    b["rounds_rps"] = [x["rps"] for x in cells]
    return b


def summarize(runs: list[dict], args: argparse.Namespace, ceil: dict | None) -> dict:
    s: dict = {}
    for server in args.servers:
        for api in args.apis:
            cells = {n: best(runs, server, n, api) for n in args.workers}
            base = cells.get(1) or cells.get(min(args.workers))
            n0 = 1 if cells.get(1) else min(args.workers)
            for n, c in cells.items():
                if c is None:
                    continue
                c["efficiency"] = c["rps"] / (n / n0 * base["rps"]) if base else None
                if api == "work" and ceil:
                    c["of_ideal"] = c["rps"] / (min(n, len(args.server_cpus)) * 1e6 / ceil["us_per_call"])
                mem = [r.get("loaded") for r in runs if r["server"] == server and r["workers"] == n and r.get("loaded")]
                c["memory"] = mem[-1] if mem else None
            s.setdefault(server, {})[api] = cells
    return s


def targets(s: dict, args: argparse.Namespace) -> list[str]:
    notes = []
    cells = s.get("bentohost", {}).get("work", {})
    checked = [n for n in args.workers if 1 < n <= TARGET_MAX_WORKERS and cells.get(n)]
    for n in checked:
        e = cells[n]["efficiency"]
        short = n > len(args.server_cpus)
        notes.append(f"target: bentohost /work efficiency ≥ {TARGET_EFFICIENCY} at N={n}: {e:.2f}: "
                     + ("met" if e >= TARGET_EFFICIENCY else "MISSED")
                     + (f" (N > the {len(args.server_cpus)} server CPUs: not meaningful here)" if short else ""))
    if not checked:
        notes.append(f"target: bentohost /work efficiency ≥ {TARGET_EFFICIENCY} from 1 to {TARGET_MAX_WORKERS} "
                     "workers: not measured (no N in 2..8)")
    return notes


def row(api: str, n: int, s: dict, servers: list[str]) -> str:
    cells = [s.get(x, {}).get(api, {}).get(n) for x in servers]
    out = f"| {api} | {n} |"
    for c in cells:
        out += (f" {c['rps']:,.0f}{' (wrk-bound)' if c['wrk_bound'] else ''} | {B.fmt(c.get('efficiency'), '{:.2f}')} |"
                f" {c['p50_us'] / 1e3:.2f} / {c['p99_us'] / 1e3:.2f} | {B.fmt(c['cpu_us_per_req'], '{:,.0f}')} |"
                f" {B.fmt((c.get('memory') or {}).get('total_rss_mb'), '{:,.0f}')} |") if c else " failed | | | | |"
    if len(cells) == 2 and all(cells):
        out += f" **{cells[0]['rps'] / cells[1]['rps']:.1f}×** |"
    elif len(servers) == 2:
        out += " — |"
    return out


def render(s: dict, args: argparse.Namespace) -> str:
    servers = args.servers
    head = "| API | workers |" + "".join(f" {x} req/s | {x} efficiency | {x} p50 / p99 (ms) | {x} CPU-µs/req |"
                                         f" {x} RSS, all processes (MB) |" for x in servers)
    head += " bentohost ÷ bentoml req/s |" if len(servers) == 2 else ""
    sep = "|---|---:|" + "---:|" * (5 * len(servers) + (1 if len(servers) == 2 else 0))
    lines = [head, sep] + [row(api, n, s, servers) for api in args.apis for n in args.workers]
    return "\n".join(lines)


def setup_text(args: argparse.Namespace, ceil: dict | None) -> str:
    return (f"bench/services/scaling.py:Scaling, sync APIs; server on CPUs {B.cpu_list(args.server_cpus)}"
            f" ({len(args.server_cpus)}), wrk -t{args.wrk_threads} on CPUs {B.cpu_list(args.client_cpus)}, "
            f"c = max({args.min_connections}, {args.connections_per_worker} × N), keep-alive; bentohost with "
            f"{'--cpu-affinity' if args.cpu_affinity else 'NO --cpu-affinity (this checkout lacks it)'}; BLAS on one "
            f"thread in both; {args.warmup:g} s warm-up + {args.duration:g} s measured per cell, {args.rounds} round(s) "
            f"alternating the server order, best round per cell. /work in-process: "
            f"{B.fmt((ceil or {}).get('us_per_call'), '{:,.0f}')} µs per call on one server CPU. "
            "Produced by `python bench/scaling.py`.")


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    B.add_args(ap, duration=5.0, warmup=2.0)
    ap.add_argument("--workers", default="1,2,4,8,12", help="worker counts (1,2,4,8,12)")
    ap.add_argument("--apis", default="hello,work", help="hello,work")
    ap.add_argument("--rounds", type=int, default=1, help="rounds, alternating the server order (1)")
    ap.add_argument("--min-connections", type=int, default=64)
    ap.add_argument("--connections-per-worker", type=int, default=32)
    ap.add_argument("--ceiling-seconds", type=float, default=1.0)
    ap.add_argument("--ceiling-worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.ceiling_worker:
        return args
    args.workers = sorted({int(x) for x in args.workers.split(",") if x})
    args.apis = [a for a in args.apis.split(",") if a]
    for a in args.apis:
        if a not in APIS:
            ap.error(f"--apis: unknown API {a!r}")
    return B.finish_args(args)


def report(runs: list[dict], args: argparse.Namespace, ceil: dict | None, info: dict, bentoml_line: str,
           show: bool = True, interrupted: bool = False) -> bool:
    """Render and write the results so far; True when a cell failed."""
    s = summarize(runs, args, ceil)
    table = render(s, args)
    notes = targets(s, args) + [bentoml_line,
                                "efficiency = rps_N ÷ (N × rps_1), each server against its own 1-worker figure; "
                                "(wrk-bound): wrk used ≥ 90% of its CPUs, so that req/s is a lower bound."]
    if ceil:
        notes.append(f"/work in-process: {ceil['us_per_call']:,.0f} µs per call on one CPU, so the ideal is "
                     f"N × {1e6 / ceil['us_per_call']:,.0f} req/s (up to the {len(args.server_cpus)} server CPUs)")
    failed = [f"{r['server']} N={r['workers']} (round {r['round']}): {r.get('error', 'non-2xx or socket errors')}"
              for r in runs if not r["ok"]]
    if failed:
        notes.append("FAILED: " + "; ".join(failed))
    if interrupted:
        notes.append("INTERRUPTED: the cells not in the table were not measured")
    md = (f"# Worker scaling: bentohost vs BentoML\n\n{info['date']} · {info['cpu']} · {info['ncpu']} CPUs · "
          f"Python {info['python']} · bentohost {info['git_commit']}{' (dirty)' if info['git_dirty'] else ''}\n\n"
          f"Setup: {setup_text(args, ceil)}\n\n{table}\n\n" + "\n".join(f"- {n}" for n in notes) + "\n")
    if show:
        B.log("\n" + table + "\n\n" + "\n".join(f"- {n}" for n in notes))
    # written after every cell too: a run cut short by a time limit keeps what it measured
    B.write(args, "scaling", md, {"machine": info, "setup": setup_text(args, ceil), "bentoml": bentoml_line,
                                  "ceiling": ceil, "summary": s, "runs": runs, "notes": notes}, quiet=not show)
    return bool(failed)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.ceiling_worker:
        ceiling_worker(float(os.environ.get("BENCH_CEILING_SECONDS", "1")))
        return 0
    args.bentoml_py, bentoml_line = B.bentoml_python(args.bentoml_python, args.no_bentoml)
    args.servers = ["bentohost"] + (["bentoml"] if args.bentoml_py else [])
    args.cpu_affinity = B.bentohost_supports("--cpu-affinity")
    info = B.machine(args)
    B.log(f"bench: {info['cpu']} ({info['ncpu']} CPUs), Python {info['python']}, {info['wrk']}")
    B.log(f"server CPUs {info['server_cpus']}, wrk -t{args.wrk_threads} on CPUs {info['client_cpus']}; {bentoml_line}")
    if not args.cpu_affinity:
        B.log("WARNING: this checkout's bentohost has no --cpu-affinity: its workers are not pinned")
    runs: list[dict] = []
    ceil = None
    interrupted = False
    try:
        if "work" in args.apis:  # first: it takes a second and every later report can use it
            os.environ["BENCH_CEILING_SECONDS"] = str(args.ceiling_seconds)
            ceil = ceiling(args)
        for i in range(args.rounds):
            order = args.servers if i % 2 == 0 else list(reversed(args.servers))
            for server in order:
                for n in args.workers:
                    runs.append(dict(bench_safe(server, n, args), round=i + 1))
                    report(runs, args, ceil, info, bentoml_line, show=False)
    except KeyboardInterrupt:
        B.log("\ninterrupted: stopping servers, writing what was measured")
        interrupted = True
    finally:
        R.stop_all()
    failed = report(runs, args, ceil, info, bentoml_line, interrupted=interrupted)
    return 130 if interrupted else (1 if failed else 0)


if __name__ == "__main__":
    sys.exit(main())
