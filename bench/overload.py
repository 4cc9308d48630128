#!/usr/bin/env python3
"""Overload: bentohost vs `bentoml serve` on bench/services/overload.py (issue 3).

    python bench/overload.py                   # both servers, 10 s, ~1 min
    python bench/overload.py --duration 3 --only bentohost --no-save

traffic max_concurrency=8 on an async API that sleeps 50 ms; 80 concurrent keep-alive
clients (bench/pyclient.py, closed loop, uvloop) for 10 s; after a non-2xx answer a client
waits --backoff-ms (10) before its next request. Reported: 200s and 429s per second, the
p50/p99 time to a 429 and to a 200, the peak in-flight count seen by the API itself (its
own counter, read from /stats after the run) and the peak of
bentoml_service_request_in_progress sampled from /metrics every 20 ms during the run.
Ideal: 8 in flight at most, 8 / 50 ms = 160 OK/s, 429s in well under a millisecond.
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402

TARGET = "overload.py:Overload"


def sample_inflight(port: int, stop: threading.Event, out: list) -> None:
    while not stop.is_set():
        t = C.metrics(port)
        v = sum(val for labels, val in C.metric_samples(t, "bentoml_service_request_in_progress")
                if labels.get("endpoint", "/work") == "/work")
        out.append(v)
        stop.wait(0.02)


def bench(server: str, args) -> dict:
    proc, port, _ = C.start(server, TARGET, args)
    res = {"server": server}
    try:
        st, _, b = C.post(port, "/work", b"{}")
        if st != 200:
            raise C.BenchError(f"{server}: /work -> {st} {b[:200]!r}")
        spec = {"mode": "overload", "port": port, "path": "/work", "body": "{}", "connections": args.connections,
                "duration": args.duration, "backoff_ms": args.backoff_ms}
        if args.warmup:
            C.run_pyclient(args, proc, dict(spec, duration=args.warmup), quiet=False)

        def one():
            C.post(port, "/stats", b'{"reset": true}')
            samples: list = []
            stop = threading.Event()
            th = threading.Thread(target=sample_inflight, args=(port, stop, samples), daemon=True)
            C.wait_quiet(args)
            th.start()
            try:
                r = C.run_pyclient(args, proc, spec, quiet=False)
            finally:
                stop.set()
                th.join()
            st, _, body = C.post(port, "/stats", b'{"reset": false}')
            r["api_stats"] = json.loads(body) if st == 200 else {"status": st}
            r["metrics_inflight_peak"] = max(samples) if samples else None
            r["metrics_samples"] = len(samples)
            return r

        r = C.clean(args, one, "measured run")
        res.update(r)
        ok, rej = r["by_status"].get("200", {}), r["by_status"].get("429", {})
        other = {k: v["count"] for k, v in r["by_status"].items() if k not in ("200", "429")}
        C.log(f"  200: {ok.get('rps', 0):,.0f}/s p50 {C.fmt(ok.get('p50_ms'), '{:.1f}')} ms p99 "
              f"{C.fmt(ok.get('p99_ms'), '{:.1f}')} ms | 429: {rej.get('rps', 0):,.0f}/s p50 "
              f"{C.fmt(rej.get('p50_ms'), '{:.2f}')} ms p99 {C.fmt(rej.get('p99_ms'), '{:.2f}')} ms | other {other} "
              f"errors {r['errors']} | peak in flight: API {r['api_stats'].get('peak')}, /metrics "
              f"{r['metrics_inflight_peak']} | server CPU {r['server_cpu_util']:.0%} client CPU {r['client_cpu_util']:.0%}")
        res["ok"] = r["errors"] == 0
    finally:
        C.stop_server(proc)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    C.add_common_args(ap)
    ap.add_argument("--connections", "-c", type=int, default=80)
    ap.add_argument("--backoff-ms", type=float, default=10.0)
    args = C.finish_args(ap.parse_args(argv))
    results = {}
    try:
        for s in args.servers:
            results[s] = bench(s, args)
    except KeyboardInterrupt:
        return 130
    finally:
        C.stop_all()
    names = list(results)

    def g(r, st, k, spec="{:.2f}"):
        return C.fmt(r["by_status"].get(st, {}).get(k), spec)

    rows = [
        ("200 OK per s", lambda r: g(r, "200", "rps", "{:,.0f}")),
        ("429 per s", lambda r: g(r, "429", "rps", "{:,.0f}")),
        ("other statuses (count)", lambda r: ", ".join(f"{k}: {v['count']}" for k, v in r["by_status"].items()
                                                       if k not in ("200", "429")) or "none"),
        ("time to a 429: p50 / p99 / max (ms)", lambda r: f"{g(r, '429', 'p50_ms')} / {g(r, '429', 'p99_ms')} / "
                                                         f"{g(r, '429', 'max_ms')}"),
        ("time to a 200: p50 / p99 (ms)", lambda r: f"{g(r, '200', 'p50_ms', '{:.1f}')} / {g(r, '200', 'p99_ms', '{:.1f}')}"),
        ("peak in flight (API's own counter)", lambda r: str(r["api_stats"].get("peak"))),
        ("peak bentoml_service_request_in_progress (sampled)", lambda r: C.fmt(r.get("metrics_inflight_peak"), "{:g}")),
        ("socket errors", lambda r: str(r["errors"])),
        ("server CPU (1 core = 100%)", lambda r: f"{r['server_cpu_util']:.0%}"),
        ("client CPU (pyclient, uvloop)", lambda r: f"{r['client_cpu_util']:.0%}"),
    ]
    table = "\n".join(["| metric | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
                      + [f"| {lab} | " + " | ".join(f(results[n]) for n in names) + " |" for lab, f in rows])
    notes = ["ideal: 8 in flight at most, 8 / 50 ms = 160 OK/s; every other request a fast 429."]
    if "bentohost" in results and "bentoml" in results:
        a = results["bentohost"]["by_status"].get("429", {}).get("p99_ms")
        b = results["bentoml"]["by_status"].get("429", {}).get("p99_ms")
        if a and b:
            notes.append(f"p99 time to a 429: bentohost {a:.2f} ms vs bentoml {b:.2f} ms ({b / a:.0f}x faster)")
    C.log("\n" + table + "\n\n" + "\n".join(notes))
    setup = (f"bench/services/overload.py:Overload (traffic max_concurrency=8, async API sleeping 50 ms), 1 worker, "
             f"server on CPU {args.server_cpu}; {args.connections} closed-loop keep-alive clients (bench/pyclient.py) on "
             f"CPU {args.client_cpu} for {args.duration:g} s, {args.backoff_ms:g} ms pause after a non-2xx. "
             "Produced by `python bench/overload.py`.")
    C.save(args, "overload", "Overload: max_concurrency=8, 80 clients, 50 ms async API", setup, table, notes,
           {"servers": results})
    return 0 if all(r.get("ok") for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
