#!/usr/bin/env python3
"""Adaptive batching on a GPU: bentohost vs `bentoml serve` on bench/services/gpu_mlp.py.

    python bench/gpu_batch.py                        # both servers, ~1.5 min on the H200 machine
    python bench/gpu_batch.py --no-bentoml --duration 5

A bf16 torch MLP made up locally (1024 -> 4096 -> 4096 -> 4096 -> 1024, seed 0, on cuda:0, no
download) as a batchable API (max_batch_size 64, max_latency_ms 10: BENCH_MAX_BATCH and
BENCH_MAX_LATENCY_MS, the same for both servers), one worker with resources={"gpu": 1}.
wrk (several threads, bench/wrk_bodies.lua: each request a different one-row body
{"x": [[1024 floats]]} from a pool of 256) with --connections clients. Reported per server:
goodput (req/s finished within --slo-ms), req/s, p50/p99, the batch sizes formed (from
/metrics), server CPU-us per request, RSS, and the GPU's utilisation sampled every 100 ms
during the measured run (pynvml where importable, else `nvidia-smi -lms`). The in-process
ceiling is the model alone on the GPU at those batch sizes, with and without the copies to
and from the host. Without torch or a CUDA device it says so and exits 0 (writing the reason
to gpu_batch.json unless --no-save). Writes bench/results/gpu_batch.{json,md} (or --out).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bigbox as B  # noqa: E402
import common as C  # noqa: E402
import run as R  # noqa: E402
from batching import hist_delta  # noqa: E402

TARGET = "gpu_mlp.py:GpuMLP"
PATH = "/predict"
DIM = 1024


def gpu_missing(device: str) -> str | None:
    """Why this machine cannot run the bench, or None."""
    try:
        import torch
    except ImportError as e:
        return f"torch is not importable ({e})"
    if device == "cuda" and not torch.cuda.is_available():
        return "torch.cuda.is_available() is False"
    return None


def make_bodies(n: int = 256) -> Path:
    rnd = random.Random(1)
    R.STATE.mkdir(exist_ok=True)
    path = R.STATE / "gpu_mlp_bodies.jsonl"
    with open(path, "w") as f:
        for _ in range(n):
            f.write(json.dumps({"x": [[round(rnd.gauss(0, 1), 4) for _ in range(DIM)]]}) + "\n")
    return path


# --------------------------------------------------------------------- GPU utilisation


class GpuSampler:
    """Samples every GPU's utilisation (%) and memory used (MiB) every `interval` s on a thread."""

    def __init__(self, interval: float = 0.1):
        self.interval = interval
        self.samples: list[list[tuple[float, float]]] = []
        self.source = "none"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._read = self._reader()

    def _reader(self):
        try:
            import pynvml
            pynvml.nvmlInit()
            handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
            self.source = "pynvml"
            return lambda: [(float(pynvml.nvmlDeviceGetUtilizationRates(h).gpu),
                             pynvml.nvmlDeviceGetMemoryInfo(h).used / 2**20) for h in handles]
        except Exception:  # noqa: BLE001 - no NVML binding or no driver: try the tool
            pass
        if shutil.which("nvidia-smi"):
            self.source = "nvidia-smi"
            return self._smi
        return None

    @staticmethod
    def _smi() -> list[tuple[float, float]]:
        out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10).stdout
        return [tuple(float(v) for v in line.split(",")) for line in out.strip().splitlines()]

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(self._read())
            except Exception:  # noqa: BLE001 - a failed read is a missing sample, not a failed bench
                pass
            self._stop.wait(self.interval)

    def __enter__(self) -> "GpuSampler":
        if self._read is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def summary(self) -> dict:
        if not self.samples:
            return {"source": self.source, "samples": 0}
        per_gpu = list(zip(*self.samples))
        util = [[s[0] for s in g] for g in per_gpu]
        mem = [[s[1] for s in g] for g in per_gpu]
        busiest = max(range(len(util)), key=lambda i: sum(util[i]))
        return {"source": self.source, "samples": len(self.samples), "gpu": busiest,
                "util_mean": sum(util[busiest]) / len(util[busiest]), "util_max": max(util[busiest]),
                "mem_used_mib_max": max(mem[busiest]), "per_gpu_util_mean": [sum(u) / len(u) for u in util]}


# --------------------------------------------------------------------- in-process ceiling


def ceiling_worker(sizes: list[int], seconds: float) -> None:
    """In a child: rows/s of the model alone at each batch size (GPU only; and with the copies)."""
    sys.path.insert(0, str(B.SERVICES))
    import numpy as np
    import torch
    import gpu_mlp as svc  # noqa: E402  (bench/services/gpu_mlp.py: its model, not its service)
    model = svc.build_model()
    sync = torch.cuda.synchronize if svc.DEVICE == "cuda" else (lambda: None)
    out = {}
    for b in sizes:
        x_host = np.random.default_rng(b).standard_normal((b, DIM), dtype=np.float32)
        x_dev = torch.from_numpy(x_host).to(svc.DEVICE, torch.bfloat16)
        res = {}
        for label, fn in (("gpu", lambda: model(x_dev)), ("with_copies", lambda: svc.infer(model, x_host))):
            with torch.inference_mode():
                for _ in range(10):
                    fn()
                sync()
                n, t0 = 0, time.perf_counter()
                while time.perf_counter() - t0 < seconds:
                    for _ in range(10):
                        fn()
                    sync()
                    n += 10
            res[label] = n * b / (time.perf_counter() - t0)
        out[b] = res
    print(json.dumps(out))


def ceiling(args: argparse.Namespace, sizes: list[int]) -> dict:
    env = dict(os.environ, **B.BLAS_ENV, PYTHONPATH=B.repo_pythonpath())
    cmd, preexec = B.pinned([sys.executable, __file__, "--ceiling-worker", ",".join(map(str, sizes))],
                            args.server_cpus)
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, preexec_fn=preexec)
    if p.returncode != 0:
        B.log(f"  ceiling failed: {p.stderr[-800:]}")
        return {}
    return {int(k): v for k, v in json.loads(p.stdout.strip().splitlines()[-1]).items()}


# --------------------------------------------------------------------- one server


def check_answer(run: B.Running, body_file: Path) -> None:
    body = body_file.read_text().splitlines()[0]
    st, data = B.post(run, PATH, body, timeout=120)
    try:
        y = json.loads(data)
    except ValueError:
        y = None
    if st != 200 or not (isinstance(y, list) and len(y) == 1 and len(y[0]) == DIM):
        raise B.BenchError(f"{run.server}: POST {PATH} -> {st} {data[:300]!r}")


def measured(args: argparse.Namespace, run: B.Running, body_file: Path) -> dict:
    m0 = C.metrics(run.port)
    with GpuSampler() as gs:
        r = B.wrk(args, run, PATH, body_file, args.connections, args.duration, slo_ms=args.slo_ms)
    m1 = C.metrics(run.port)
    r["gpu"] = gs.summary()
    r["batch_hist"] = hist_delta(C.batch_histogram(m0), C.batch_histogram(m1))
    s0, s1 = C.batch_stats(m0), C.batch_stats(m1)
    r["batches"] = s1["count"] - s0["count"]
    r["mean_batch"] = (s1["sum"] - s0["sum"]) / r["batches"] if r["batches"] else None
    return r


def bench(server: str, args: argparse.Namespace, body_file: Path) -> dict:
    res: dict = {"server": server, "ok": False}
    try:
        run = B.start(server, TARGET, 1, args.server_cpus, bentoml_py=args.bentoml_py, ready_timeout=300,
                      extra_env=args.batch_env)
    except B.BenchError as e:
        B.log(f"  !!! {server} did not start: {e}")
        res["error"] = str(e)
        return res
    try:
        check_answer(run, body_file)
        res["ready_s"] = run.ready_s
        if args.warmup:
            w = B.wrk(args, run, PATH, body_file, args.connections, args.warmup, slo_ms=args.slo_ms)
            B.log(f"  warm-up: {w['rps']:,.0f} req/s, non-2xx {w['non2xx']}, errors {w['errors']}")
        r = B.clean(args, lambda: measured(args, run, body_file), "measured run")
        res.update(r, memory=B.memory(run))
        g = r["gpu"]
        B.log(f"  goodput {r['goodput']:,.0f} req/s within {args.slo_ms:g} ms ({r['rps']:,.0f} req/s)  "
              f"p50 {r['p50_us'] / 1e3:.1f} ms  p99 {r['p99_us'] / 1e3:.1f} ms  mean batch "
              f"{B.fmt(r['mean_batch'], '{:.1f}')}  GPU util {B.fmt(g.get('util_mean'), '{:.0f}')}% "
              f"(max {B.fmt(g.get('util_max'), '{:.0f}')}%, {g['source']})  server {r['server_cores']:.1f} cores  "
              f"wrk {r['client_cores']:.1f} cores  non-2xx {r['non2xx']}  errors {r['errors']}")
        # non-2xx are counted and left out of goodput, not a failure: a batching queue that cannot meet
        # max_latency_ms answers 503 (both servers do), which is what the bound means
        res["ok"] = r["errors"] == 0
    except (B.BenchError, OSError, ValueError, subprocess.TimeoutExpired) as e:  # this server, not the run
        B.log(f"  !!! {server} FAILED: {e!r}")
        res["error"] = str(e)
    finally:
        R.stop_server(run.proc)
    return res


# --------------------------------------------------------------------- report


ROWS = [
    ("goodput: req/s within the SLO", lambda r, a: B.fmt(r.get("goodput"))),
    ("req/s (all finished)", lambda r, a: B.fmt(r.get("rps"))),
    ("p50 / p99 / max latency (ms)", lambda r, a: f"{r['p50_us'] / 1e3:.1f} / {r['p99_us'] / 1e3:.1f} / "
                                                  f"{r['lat_max_us'] / 1e3:.0f}"),
    ("non-2xx (shed: 503) / socket errors", lambda r, a: f"{r['non2xx']:,} ({r['non2xx'] / max(1, r['requests']):.1%})"
                                                         f" / {r['errors']}"),
    ("batches; mean batch size", lambda r, a: f"{r['batches']:,.0f}; {B.fmt(r.get('mean_batch'), '{:.1f}')}"),
    ("batch sizes (≤le: batches)", lambda r, a: ", ".join(f"≤{le:g}: {c:,.0f}" for le, c in r["batch_hist"].items()
                                                           if c) or "n/a"),
    ("GPU utilisation mean / max (%)", lambda r, a: f"{B.fmt(r['gpu'].get('util_mean'), '{:.0f}')} / "
                                                    f"{B.fmt(r['gpu'].get('util_max'), '{:.0f}')}"),
    ("GPU memory used, max (MiB)", lambda r, a: B.fmt(r["gpu"].get("mem_used_mib_max"))),
    ("ceiling at the mean batch, GPU only / with copies (rows/s)",
     lambda r, a: f"{B.fmt(r.get('ceiling_gpu'))} / {B.fmt(r.get('ceiling_copies'))}"),
    ("goodput ÷ ceiling with copies", lambda r, a: B.fmt(r.get("of_ceiling"), "{:.0%}")),
    ("server CPU-µs per request", lambda r, a: B.fmt(r.get("cpu_us_per_req"))),
    ("server / wrk CPU (cores)", lambda r, a: f"{r['server_cores']:.1f} / {r['client_cores']:.1f}"
                                              + (" (wrk-bound)" if r["wrk_bound"] else "")),
    ("RSS: worker / all processes (MB)", lambda r, a: f"{B.fmt(r['memory']['worker_rss_mb'])} / "
                                                      f"{B.fmt(r['memory']['total_rss_mb'])}"),
]


def attach_ceiling(results: dict, ceil: dict) -> None:
    for r in results.values():
        if r.get("mean_batch") and ceil:
            b = min(ceil, key=lambda k: abs(k - r["mean_batch"]))
            r.update(ceiling_batch=b, ceiling_gpu=ceil[b]["gpu"], ceiling_copies=ceil[b]["with_copies"],
                     of_ceiling=r["goodput"] / ceil[b]["with_copies"])


def render(results: dict, args: argparse.Namespace) -> str:
    names = list(results)
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for label, fn in ROWS:
        lines.append(f"| {label} | " + " | ".join(fn(results[n], args) if "rps" in results[n] else "failed"
                                                  for n in names) + " |")
    return "\n".join(lines)


def setup_text(args: argparse.Namespace) -> str:
    return (f"bench/services/gpu_mlp.py:GpuMLP (bf16 MLP {os.environ.get('BENCH_MLP_DIMS', '1024,4096,4096,4096,1024')}"
            f", seed 0, {args.device}), batchable, max_batch_size {args.max_batch}, max_latency_ms {args.max_latency_ms}, "
            f"1 worker, resources gpu=1; server on CPUs {B.cpu_list(args.server_cpus)}, wrk -t{args.wrk_threads} "
            f"-c{args.connections} on CPUs {B.cpu_list(args.client_cpus)} (256 different one-row JSON bodies), "
            f"{args.warmup:g} s warm-up + {args.duration:g} s measured, SLO {args.slo_ms:g} ms. "
            "Produced by `python bench/gpu_batch.py`.")


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    B.add_args(ap, duration=10.0, warmup=3.0)
    ap.add_argument("--connections", "-c", type=int, default=128, help="wrk connections (128: 2 x max batch)")
    ap.add_argument("--slo-ms", type=float, default=50.0, help="latency bound for goodput, 2xx only (50)")
    ap.add_argument("--max-batch", type=int, default=64)
    ap.add_argument("--max-latency-ms", type=int, default=10)
    ap.add_argument("--ceiling-seconds", type=float, default=0.5)
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                    help="cpu: check this script where there is no GPU (the numbers mean nothing)")
    ap.add_argument("--ceiling-worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.ceiling_worker:
        return args
    args.batch_env = {"BENCH_MAX_BATCH": str(args.max_batch), "BENCH_MAX_LATENCY_MS": str(args.max_latency_ms),
                      "BENCH_DEVICE": args.device}
    os.environ["BENCH_DEVICE"] = args.device  # the ceiling's child too
    return B.finish_args(args)


def skip(args: argparse.Namespace, why: str) -> int:
    B.log(f"SKIP: bench/gpu_batch.py needs a CUDA GPU: {why}")
    B.write(args, "gpu_batch", f"# Adaptive batching on a GPU\n\nSkipped: {why}.\n", {"skipped": why})
    return 0


def report(results: dict, ceil: dict, args: argparse.Namespace, info: dict, bentoml_line: str,
           interrupted: bool) -> bool:
    """Print and write the results; True when a server failed."""
    attach_ceiling(results, ceil)
    table = render(results, args)
    notes = [bentoml_line]
    if all(results.get(s, {}).get("goodput") for s in ("bentohost", "bentoml")):
        notes.append(f"bentohost ÷ bentoml goodput: {results['bentohost']['goodput'] / results['bentoml']['goodput']:.1f}×")
    notes.append("goodput: 2xx answers within the SLO per second (non-2xx, which answer at once, are taken out of "
                 "wrk's count within the SLO: a lower bound)")
    notes.append("ceiling: the model alone in a loop at the batch size nearest each server's mean batch; 'with copies' "
                 "adds numpy → device → numpy, as the API does: " + ", ".join(
                     f"b={b}: {v['gpu']:,.0f} / {v['with_copies']:,.0f}" for b, v in ceil.items()))
    failed = [f"{s}: {r.get('error', 'socket errors')}" for s, r in results.items() if not r["ok"]]
    if failed:
        notes.append("FAILED: " + "; ".join(failed))
    if interrupted:
        notes.append("INTERRUPTED: what is missing was not measured")
    B.log("\n" + table + "\n\n" + "\n".join(f"- {n}" for n in notes))
    md = (f"# Adaptive batching on a GPU: bf16 MLP, bentohost vs BentoML\n\n{info['date']} · {info['cpu']} · "
          f"{info['ncpu']} CPUs · bentohost {info['git_commit']}\n\nSetup: {setup_text(args)}\n\n{table}\n\n"
          + "\n".join(f"- {n}" for n in notes) + "\n")
    B.write(args, "gpu_batch", md, {"machine": info, "setup": setup_text(args), "servers": results, "ceiling": ceil,
                                    "notes": notes})
    return bool(failed)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.ceiling_worker:
        ceiling_worker([int(s) for s in args.ceiling_worker.split(",")], args.ceiling_seconds)
        return 0
    why = gpu_missing(args.device)
    if why:
        return skip(args, why)
    args.bentoml_py, bentoml_line = B.bentoml_python(args.bentoml_python, args.no_bentoml)
    servers = ["bentohost"] + (["bentoml"] if args.bentoml_py else [])
    info = B.machine(args)
    B.log(f"bench: {info['cpu']} ({info['ncpu']} CPUs), {info['wrk']}; {bentoml_line}")
    body_file = make_bodies()
    results: dict = {}
    ceil: dict = {}
    interrupted = False
    try:
        for server in servers:
            results[server] = bench(server, args, body_file)
        sizes = sorted({1, 8, 32, args.max_batch} | {max(1, round(r["mean_batch"])) for r in results.values()
                                                     if r.get("mean_batch")})
        B.log(f"\n== in-process ceiling: the model alone at batch sizes {sizes}")
        ceil = ceiling(args, sizes)
        for b, v in ceil.items():
            B.log(f"  batch {b:3d}: {v['gpu']:,.0f} rows/s on the device, {v['with_copies']:,.0f} with the copies")
    except KeyboardInterrupt:
        B.log("\ninterrupted: stopping servers, writing what was measured")
        interrupted = True
    finally:
        R.stop_all()
    failed = report(results, ceil, args, info, bentoml_line, interrupted)
    return 130 if interrupted else (1 if failed else 0)


if __name__ == "__main__":
    sys.exit(main())
