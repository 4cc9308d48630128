#!/usr/bin/env python3
"""Adaptive batching: bentohost vs `bentoml serve` on bench/services/mlp.py (issue 3).

    python bench/batching.py                    # both servers, 10 s measured, ~1.5 min
    python bench/batching.py --duration 3 --only bentohost --no-save   # quick

A numpy MLP relu(x @ W1) @ W2 (256x256 float32, seed 0) as a batchable API
(max_batch_size=32, max_latency_ms=50), one worker, 32 concurrent clients (wrk -t1 -c32 with
bench/wrk_bodies.lua: each request's body is a different 256-float row from a pool of 256).
Reported per server: goodput (requests/s finished within 50 ms), req/s, latency
percentiles, the batch-size histogram from /metrics (bentoml_service_adaptive_batch_size,
delta over the measured run), server and wrk CPU. The in-process ceiling is the same
mlp() called in a tight loop (same CPU, same BLAS settings) at the mean batch size each
server actually formed, in rows/s; "+JSON" adds json.loads of the request body and
json.dumps of the answer per row (the minimum any JSON server must do per request).
OPENBLAS_NUM_THREADS=OMP_NUM_THREADS=MKL_NUM_THREADS=1 for both servers and the ceiling.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402

TARGET = "mlp.py:MLP"
PATH = "/predict"
BODIES = C.STATE / "mlp_bodies.jsonl"
AS_FILED = "bentohost, Python rows and answers"


def make_bodies(n=256) -> Path:
    rnd = random.Random(1)
    C.STATE.mkdir(exist_ok=True)
    with open(BODIES, "w") as f:
        for _ in range(n):
            f.write(json.dumps({"x": [[round(rnd.uniform(-1, 1), 5) for _ in range(256)]]}) + "\n")
    return BODIES


def ceiling_worker(sizes: list[int], seconds: float) -> None:
    """Runs in a child pinned to the server CPU: rows/s of mlp() at each batch size."""
    sys.path.insert(0, str(C.SERVICES))
    import numpy as np
    import mlp  # noqa: E402  (bench/services/mlp.py falls back to... the import trick; weights only)
    bodies = [ln for ln in open(BODIES).read().splitlines() if ln]
    out = {}
    for b in sizes:
        x = np.asarray([json.loads(bodies[i % len(bodies)])["x"][0] for i in range(b)], dtype=np.float32)
        res = {}
        for label, fn in (("mlp", lambda: mlp.mlp(x)), ("mlp_json", None)):
            if fn is None:
                def fn():  # per row: json.loads + asarray; the batch: stack + mlp; per row: tolist + dumps
                    rows = [np.asarray(json.loads(bodies[i])["x"], dtype=np.float32) for i in range(b)]
                    y = mlp.mlp(np.concatenate(rows))
                    for i in range(b):
                        json.dumps(y[i:i + 1].tolist())
            n, t0 = 0, time.perf_counter()
            while True:
                for _ in range(20):
                    fn()
                n += 20
                dt = time.perf_counter() - t0
                if dt >= seconds:
                    break
            res[label] = n * b / dt
        out[b] = res
    print(json.dumps(out))


def ceiling(args, sizes: list[int]) -> dict:
    env = dict(os.environ, **C.BLAS_ENV, PYTHONPATH=str(C.ROOT))
    cmd = [sys.executable, __file__, "--ceiling-worker", ",".join(map(str, sizes)), "--ceiling-seconds",
           str(args.ceiling_seconds)]
    if args.server_cpu is not None:
        cmd = ["taskset", "-c", str(args.server_cpu)] + cmd
    C.wait_quiet(args)
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode:
        raise C.BenchError(p.stderr[-2000:])
    return {int(k): v for k, v in json.loads(p.stdout.strip().splitlines()[-1]).items()}


def hist_delta(a: dict, b: dict) -> dict:
    """Cumulative buckets -> per-bucket counts over the run."""
    out, prev = {}, 0.0
    for le in sorted(b):
        cum = b[le] - a.get(le, 0.0)
        out[le] = cum - prev
        prev = cum
    return out


def bench(server: str, args, extra_env: dict | None = None) -> dict:
    proc, port, logfile = C.start(server, TARGET, args, extra_env=extra_env)
    res = {"server": server}
    try:
        body = open(BODIES).readline().strip().encode()
        st, _, rb = C.post(port, PATH, body)
        y = json.loads(rb)
        if st != 200 or len(y) != 1 or len(y[0]) != 256:
            raise C.BenchError(f"{server}: POST {PATH} -> {st} {rb[:200]!r}")
        if args.warmup:
            w = C.run_wrk_pool(args, proc, port, PATH, BODIES, "application/json", args.connections, args.warmup,
                               quiet=False)
            C.log(f"  warm-up: {w['rps']:,.0f} req/s, non-2xx {w['non2xx']}, errors {w['errors']}")

        def one():
            m0 = C.metrics(port)
            r = C.run_wrk_pool(args, proc, port, PATH, BODIES, "application/json", args.connections, args.duration,
                               slo_ms=args.slo_ms)
            m1 = C.metrics(port)
            r["batch_hist"] = hist_delta(C.batch_histogram(m0), C.batch_histogram(m1))
            s0, s1 = C.batch_stats(m0), C.batch_stats(m1)
            r["batches"] = s1["count"] - s0["count"]
            r["rows_batched"] = s1["sum"] - s0["sum"]
            r["mean_batch"] = r["rows_batched"] / r["batches"] if r["batches"] else None
            return r

        r = C.clean(args, one, "measured run")
        res.update(r)
        C.log(f"  goodput {r['goodput']:,.0f} req/s within {args.slo_ms:g} ms ({r['rps']:,.0f} req/s in all)  "
              f"p50 {r['p50_us'] / 1e3:.1f} ms  p99 {r['p99_us'] / 1e3:.1f} ms  non-2xx {r['non2xx']}  "
              f"errors {r['errors']}  server CPU {r['server_cpu_util']:.0%}  wrk CPU {r['client_cpu_util']:.0%}")
        C.log(f"  batches {r['batches']:,.0f}, mean batch {C.fmt(r['mean_batch'], '{:.1f}')}; histogram "
              + ", ".join(f"≤{le:g}: {c:,.0f}" for le, c in r["batch_hist"].items() if c))
        res["ok"] = r["errors"] == 0 and r["non2xx"] == 0
    finally:
        C.stop_server(proc)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    C.add_common_args(ap)
    ap.add_argument("--connections", "-c", type=int, default=32)
    ap.add_argument("--slo-ms", type=float, default=50.0)
    ap.add_argument("--ceiling-seconds", type=float, default=1.0)
    ap.add_argument("--ceiling-worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--python-rows", action="store_true",
                    help="also bentohost with BENTOHOST_PYTHON_ROWS=1 (Python decodes each row, as before "
                    "csrc/traffic/rows.c): the C decoder's share of the goodput")
    ap.add_argument("--python-json", action="store_true",
                    help="also bentohost with BENTOHOST_PYTHON_JSON=1 (answers encoded by json.dumps of "
                    "tolist(), as before csrc/python/json_array.c): the C writer's share of the goodput")
    ap.add_argument("--as-filed", action="store_true",
                    help="also bentohost with both (Python decodes the rows and encodes the answers, as when "
                    "issue 12 was filed): the baseline of its 3x JSON goodput target, in the same run")
    args = ap.parse_args(argv)
    if args.ceiling_worker:
        ceiling_worker([int(s) for s in args.ceiling_worker.split(",")], args.ceiling_seconds)
        return 0
    C.finish_args(args)
    make_bodies()
    results = {}
    try:
        for s in args.servers:
            results[s] = bench(s, args)
            if s == "bentohost" and args.python_rows:
                results["bentohost, Python rows"] = bench(s, args, {"BENTOHOST_PYTHON_ROWS": "1"})
            if s == "bentohost" and args.python_json:
                results["bentohost, Python JSON answers"] = bench(s, args, {"BENTOHOST_PYTHON_JSON": "1"})
            if s == "bentohost" and args.as_filed:
                results[AS_FILED] = bench(s, args, {"BENTOHOST_PYTHON_ROWS": "1", "BENTOHOST_PYTHON_JSON": "1"})
    except KeyboardInterrupt:
        return 130
    finally:
        C.stop_all()
    sizes = sorted({1, 8, 16, 32} | {max(1, round(r["mean_batch"])) for r in results.values() if r.get("mean_batch")})
    C.log(f"\n== in-process ceiling: mlp() in a tight loop at batch sizes {sizes} (CPU {args.server_cpu}, BLAS 1 thread)")
    ceil = ceiling(args, sizes)
    for b, v in ceil.items():
        C.log(f"  batch {b:3d}: {v['mlp']:,.0f} rows/s   with per-row JSON decode/encode: {v['mlp_json']:,.0f} rows/s")
    for s, r in results.items():
        if r.get("mean_batch"):
            b = max(1, round(r["mean_batch"]))
            r["ceiling_batch"] = b
            r["ceiling_rows_s"] = ceil[b]["mlp"]
            r["ceiling_json_rows_s"] = ceil[b]["mlp_json"]
            r["of_ceiling"] = r["goodput"] / ceil[b]["mlp"]
            r["of_ceiling_json"] = r["goodput"] / ceil[b]["mlp_json"]
    names = list(results)
    rows = [
        ("goodput: req/s within 50 ms", lambda r: C.fmt(r.get("goodput"))),
        ("req/s (all finished)", lambda r: C.fmt(r.get("rps"))),
        ("p50 / p99 / max latency (ms)", lambda r: f"{r['p50_us'] / 1e3:.1f} / {r['p99_us'] / 1e3:.1f} / "
                                                  f"{r['lat_max_us'] / 1e3:.0f}"),
        ("non-2xx / socket errors", lambda r: f"{r['non2xx']} / {r['errors']}"),
        ("batches; mean batch size", lambda r: f"{r['batches']:,.0f}; {C.fmt(r.get('mean_batch'), '{:.1f}')}"),
        ("batch-size histogram (≤le: batches)", lambda r: ", ".join(
            f"≤{le:g}: {c:,.0f}" for le, c in r["batch_hist"].items() if c) or "n/a"),
        ("in-process ceiling at the mean batch (rows/s)", lambda r: C.fmt(r.get("ceiling_rows_s"))),
        ("goodput ÷ ceiling", lambda r: C.fmt(r.get("of_ceiling"), "{:.0%}")),
        ("ceiling with per-row JSON (rows/s)", lambda r: C.fmt(r.get("ceiling_json_rows_s"))),
        ("goodput ÷ ceiling with JSON", lambda r: C.fmt(r.get("of_ceiling_json"), "{:.0%}")),
        ("server CPU (1 core = 100%)", lambda r: f"{r['server_cpu_util']:.0%}"),
        ("wrk CPU (client)", lambda r: f"{r['client_cpu_util']:.0%}"),
        ("runs redone (disturbed)", lambda r: str(r.get("rejected_runs", 0))),
    ]
    table = "\n".join(["| metric | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
                      + [f"| {lab} | " + " | ".join(f(results[n]) if "rps" in results[n] else "failed" for n in names)
                         + " |" for lab, f in rows])
    notes = []
    if "bentohost" in results and "bentoml" in results and results["bentoml"].get("goodput"):
        x = results["bentohost"]["goodput"] / results["bentoml"]["goodput"]
        notes.append(f"bentohost ÷ bentoml goodput: {x:.1f}x (target ≥ 2x: {'met' if x >= 2 else 'MISSED'})")
    if "bentohost" in results and results.get(AS_FILED, {}).get("goodput"):
        x = results["bentohost"]["goodput"] / results[AS_FILED]["goodput"]
        p99 = results["bentohost"]["p99_us"] <= max(results[AS_FILED]["p99_us"], args.slo_ms * 1e3)
        notes.append(f"bentohost ÷ its JSON path as issue 12 found it (Python rows and answers), same run: {x:.2f}x "
                     f"(target ≥ 3x: {'met' if x >= 3 else 'MISSED'}; p99 within the bound: {'yes' if p99 else 'no'})")
    if results.get("bentohost", {}).get("of_ceiling") is not None:
        oc = results["bentohost"]["of_ceiling"]
        notes.append(f"bentohost goodput ÷ in-process ceiling: {oc:.0%} (target ≥ 85%: {'met' if oc >= .85 else 'MISSED'});"
                     f" ÷ ceiling with per-row JSON: {results['bentohost']['of_ceiling_json']:.0%}")
    notes.append("ceiling = mlp() alone in a tight loop at the server's mean batch size, same CPU, BLAS 1 thread; "
                 "all rows: " + ", ".join(f"b={b}: {v['mlp']:,.0f} (+JSON {v['mlp_json']:,.0f})" for b, v in ceil.items()))
    notes.append("OPENBLAS_NUM_THREADS=OMP_NUM_THREADS=MKL_NUM_THREADS=1 for both servers and the ceiling.")
    C.log("\n" + table + "\n\n" + "\n".join(notes))
    setup = (f"bench/services/mlp.py:MLP, 1 worker, server on CPU {args.server_cpu}, wrk -t1 -c{args.connections} "
             f"-d{args.duration:g}s on CPU {args.client_cpu} (bench/wrk_bodies.lua: 256 different one-row bodies, "
             f"cycled), {args.warmup:g}s warm-up, SLO {args.slo_ms:g} ms. Produced by `python bench/batching.py`.")
    C.save(args, "batching", "Adaptive batching: numpy MLP, max_batch_size=32, max_latency_ms=50, 32 clients",
           setup, table, notes, {"servers": results, "ceiling": ceil})
    return 0 if all(r.get("ok") for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
