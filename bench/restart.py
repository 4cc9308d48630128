#!/usr/bin/env python3
"""Rolling restart under load: SIGHUP to the server while wrk keeps 64 connections busy.

    python bench/restart.py                          # both servers when .bench/bentoml-venv exists
    python bench/restart.py --duration 6 --only bentohost --no-save

bench/services/restart.py:Hello (a sync hello, 2 workers). For each server: a steady run of
--duration s (wrk -t1 -c64, keep-alive, bench/wrk.lua), then a run of the same length with a
SIGHUP to the server 1 s in. Reported for both runs: req/s, p50/p99/max latency, socket errors
and non-2xx (target: 0 during the restart), and for the restart run the time the restart took
(bentohost: from SIGHUP to its "restart ... done" line, checked to end inside the wrk run) and
whether every worker pid was replaced. BentoML's `bentoml serve` is a circus arbiter, whose
SIGHUP handler does circus's graceful reload (spawn new workers, then stop the old ones,
without waiting for them to be ready); it has no log line for the end, so its restart window
is the whole run.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402
import run as R  # noqa: E402

TARGET = "restart.py:Hello"
BODY = '{"name":"bench"}'


def _leaves(root: int) -> set[int]:
    """The worker processes: descendants without children of their own."""
    pids = R._descendants(root)
    parents = set(R._tree_children(pids).values())
    return {p for p in pids if p not in parents}


def _wrk(args, port: int, out: dict) -> None:
    try:
        out["r"] = R.run_wrk(args, port, "/hello", "POST", BODY, args.duration)
    except Exception as exc:  # noqa: BLE001 - reported by the caller
        out["error"] = exc


def bench(server: str, args) -> dict:
    proc, port, logfile = C.start(server, TARGET, args, workers=2)
    res: dict = {"server": server}
    try:
        if args.warmup:
            R.run_wrk(args, port, "/hello", "POST", BODY, args.warmup, strict_expect="Hello, bench!")
        C.wait_quiet(args)
        res["steady"] = R.run_wrk(args, port, "/hello", "POST", BODY, args.duration)
        time.sleep(1.0)
        before = _leaves(proc.pid)
        marker = "restart (SIGHUP) done"
        seen = logfile.read_text(errors="replace").count(marker)
        C.wait_quiet(args)
        out: dict = {}
        t = threading.Thread(target=_wrk, args=(args, port, out), daemon=True)
        t.start()
        time.sleep(1.0)
        t_hup = time.monotonic()
        os.kill(proc.pid, signal.SIGHUP)
        took = None
        while t.is_alive() and took is None:
            if server == "bentohost" and logfile.read_text(errors="replace").count(marker) > seen:
                took = time.monotonic() - t_hup
            time.sleep(0.02)
        t.join(args.duration + 120)
        if "error" in out:
            raise out["error"]
        r = out["r"]
        r["restart_s"] = took
        r["restart_inside_run"] = took is not None if server == "bentohost" else None
        time.sleep(2.0)
        after = _leaves(proc.pid)
        r["workers_before"], r["workers_after"] = sorted(before), sorted(after)
        r["all_replaced"] = bool(after) and before.isdisjoint(after)
        res["restart"] = r
        s = res["steady"]
        C.log(f"  steady:  {s['rps']:,.0f} req/s p50 {s['p50_us'] / 1000:.2f} ms p99 {s['p99_us'] / 1000:.2f} ms "
              f"errors {s['errors']}")
        C.log(f"  restart: {r['rps']:,.0f} req/s p50 {r['p50_us'] / 1000:.2f} ms p99 {r['p99_us'] / 1000:.2f} ms "
              f"max {r['lat_max_us'] / 1000:.1f} ms errors {r['errors']} (non-2xx {r['err_status']}), restart "
              f"{C.fmt(took, '{:.2f}')} s, all workers replaced: {r['all_replaced']}")
        res["ok"] = r["errors"] == 0 and s["errors"] == 0 and r["all_replaced"] and (
            server != "bentohost" or r["restart_inside_run"])
    finally:
        C.stop_server(proc)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    C.add_common_args(ap, duration=10.0)
    ap.add_argument("--connections", "-c", type=int, default=64)
    ap.add_argument("--wrk-timeout", type=float, default=10.0)
    args = C.finish_args(ap.parse_args(argv))
    notes = []
    if "bentoml" in args.servers and not (args.bentoml_venv / "bin" / "bentoml").exists():
        args.servers.remove("bentoml")
        notes.append(f"bentoml not measured: {args.bentoml_venv} does not exist (python bench/run.py creates it)")
        C.log(notes[-1])
    results = C.run_each(args, bench)
    if results is None:
        return 130
    names = list(results)
    ms = "{:.2f}"

    def cell(run, key, spec=ms, scale=1000.0):
        return lambda r: C.fmt(r[run][key] / scale if r[run].get(key) is not None else None, spec)

    rows = [
        ("steady req/s", cell("steady", "rps", "{:,.0f}", 1.0)),
        ("steady p50 / p99 (ms)", lambda r: f"{cell('steady', 'p50_us')(r)} / {cell('steady', 'p99_us')(r)}"),
        ("restart run req/s", cell("restart", "rps", "{:,.0f}", 1.0)),
        ("restart run p50 / p99 / max (ms)", lambda r: f"{cell('restart', 'p50_us')(r)} / "
                                                      f"{cell('restart', 'p99_us')(r)} / "
                                                      f"{cell('restart', 'lat_max_us', '{:.1f}')(r)}"),
        ("failed requests during the restart (socket errors + non-2xx)", lambda r: str(r["restart"]["errors"])),
        ("restart took (s)", lambda r: C.fmt(r["restart"]["restart_s"], "{:.2f}")),
        ("every worker pid replaced", lambda r: str(r["restart"]["all_replaced"])),
    ]
    table = "\n".join(["| metric | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
                      + [f"| {lab} | " + " | ".join(f(results[n]) for n in names) + " |" for lab, f in rows])
    notes.append("target: 0 failed requests; the restart run's p99 covers the whole run, restart included.")
    C.log("\n" + table + "\n\n" + "\n".join(notes))
    setup = (f"bench/services/restart.py:Hello (sync, 2 workers), server on CPU {args.server_cpu}; wrk -t1 "
             f"-c{args.connections} keep-alive on CPU {args.client_cpu}, {args.duration:g} s steady, then "
             f"{args.duration:g} s with SIGHUP 1 s in. Produced by `python bench/restart.py`.")
    C.save(args, "restart", "Rolling restart (SIGHUP) under load, 2 workers", setup, table, notes,
           {"servers": results})
    return 0 if results and all(r.get("ok") for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
