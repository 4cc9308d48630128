#!/usr/bin/env python3
"""Streaming: bentohost vs `bentoml serve` on bench/services/tokens.py (issue 4).

    python bench/streaming.py                   # both servers, ~1 min
    python bench/streaming.py --requests 50 --only bentohost --no-save

An endpoint yielding 1,000 str tokens of 6 bytes ("00000 ", ...), as a sync generator
(/stream) and an async generator (/stream_async). bench/pyclient.py (uvloop) POSTs
{"n": 1000} and reads the chunked response as it arrives: time to first body byte (TTFT)
and the total time per request; tokens/s = 1,000 / total time (one client, sequential
requests) and the aggregate tokens/s with --connections concurrent clients (8).
Every body is checked to be 6,000 bytes.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402

TARGET = "tokens.py:Tokens"
NTOK = 1000


def bench(server: str, args) -> dict:
    proc, port, _ = C.start(server, TARGET, args)
    out = {}
    try:
        for path in ("/stream", "/stream_async"):
            st, _, body = C.post(port, path, b'{"n": 1000}')
            if st != 200 or len(body) != NTOK * 6 or not body.startswith(b"00000 00001 "):
                raise C.BenchError(f"{server} {path}: {st} {len(body)} bytes {body[:60]!r}")
            base = {"mode": "stream", "port": port, "path": path, "body": '{"n": 1000}', "expect_bytes": NTOK * 6}
            C.run_pyclient(args, proc, dict(base, connections=1, requests=5), quiet=False)  # warm-up
            for c in (1, args.connections):
                spec = dict(base, connections=c, requests=args.requests if c == 1 else max(1, args.requests // 2),
                            duration=args.duration)
                r = C.clean(args, lambda: C.run_pyclient(args, proc, spec), f"{path} c={c}")
                r["tokens_per_s_per_stream"] = NTOK / (r["total_p50_ms"] / 1e3)
                r["tokens_per_s_total"] = r["requests"] * NTOK / r["wall_s"]
                out[f"{path[1:]}/c{c}"] = r
                C.log(f"  {path:14s} c={c}: TTFT p50 {r['ttft_p50_ms']:.2f} ms p99 {r['ttft_p99_ms']:.2f} ms  total p50 "
                      f"{r['total_p50_ms']:.1f} ms  {r['tokens_per_s_per_stream']:,.0f} tok/s per stream, "
                      f"{r['tokens_per_s_total']:,.0f} tok/s in all  ({r['requests']} req, {r['bad']} bad)  "
                      f"server CPU {r['server_cpu_util']:.0%} client CPU {r['client_cpu_util']:.0%}")
    finally:
        C.stop_server(proc)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    C.add_common_args(ap, duration=10.0)
    ap.add_argument("--requests", type=int, default=200, help="requests per run with one client (200; c>1: half)")
    ap.add_argument("--connections", "-c", type=int, default=8)
    args = C.finish_args(ap.parse_args(argv))
    results = {}
    try:
        for s in args.servers:
            results[s] = bench(s, args)
    except KeyboardInterrupt:
        return 130
    finally:
        C.stop_all()
    keys = [f"{e}/c{c}" for e in ("stream", "stream_async") for c in (1, args.connections)]
    names = list(results)
    lines = ["| endpoint | clients | " + " | ".join(f"{s} TTFT p50 / p99 (ms) | {s} tok/s per stream | {s} tok/s all"
                                                    for s in names) + " |",
             "|---|---:|" + "---:|---:|---:|" * len(names)]
    for k in keys:
        e, c = k.split("/")
        row = f"| {e} ({'sync' if e == 'stream' else 'async'} gen) | {c[1:]} |"
        for s in names:
            r = results[s].get(k)
            row += (f" {r['ttft_p50_ms']:.2f} / {r['ttft_p99_ms']:.2f} | {r['tokens_per_s_per_stream']:,.0f} | "
                    f"{r['tokens_per_s_total']:,.0f} |" if r else " — | — | — |")
        lines.append(row)
    table = "\n".join(lines)
    notes = []
    if len(names) == 2:
        for k in keys:
            a, b = results["bentohost"].get(k), results["bentoml"].get(k)
            if a and b:
                notes.append(f"{k}: TTFT p50 ÷{b['ttft_p50_ms'] / a['ttft_p50_ms']:.1f}, tokens/s in all "
                             f"{a['tokens_per_s_total'] / b['tokens_per_s_total']:.1f}x (bentohost vs bentoml)")
    notes.append("TTFT = request sent to the first body byte; tok/s per stream = 1,000 / median total time.")
    C.log("\n" + table + "\n\n" + "\n".join(notes))
    setup = (f"bench/services/tokens.py:Tokens (1,000 str tokens of 6 bytes), 1 worker, server on CPU {args.server_cpu}; "
             f"bench/pyclient.py on CPU {args.client_cpu}: 1 client x {args.requests} sequential requests, and "
             f"{args.connections} clients x {max(1, args.requests // 2)} requests. Produced by `python bench/streaming.py`.")
    C.save(args, "streaming", "Streaming: 1,000 tokens, sync and async generators", setup, table, notes,
           {"servers": results})
    return 0 if all(r.get("bad", 0) == 0 for s in results.values() for r in s.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
