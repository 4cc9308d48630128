#!/usr/bin/env python3
"""HTTPS: bentohost (TLS in C on the I/O thread) vs `bentoml serve --ssl-certfile/--ssl-keyfile`
(uvicorn's TLS), and bentohost's own plaintext, on examples/hello/service.py:Hello.

    python bench/tls.py                                   # 2 rounds, ~4 min
    python bench/tls.py --duration 3 --rounds 1 --no-save  # quick

One worker each, every server process pinned to --server-cpu (0); wrk and `openssl s_time` on
--client-cpu (1). A self-signed P-256 certificate is made for the run. Per round, in alternating
server order, each server is started afresh and measured:
  * keep-alive HTTPS throughput: wrk -t1 -c64 POST JSON /hello (a TLS session per connection,
    handshakes only at the start): req/s, p50/p99, server CPU-ms per 1,000 requests;
  * new handshakes per second: `openssl s_time -new` (a full TLS 1.3 handshake and one GET
    /livez per connection), and resumed ones: `openssl s_time -reuse`. s_time is one process
    doing the client half of every handshake: where the server is faster than it, the figure
    is the client's limit (the server's CPU share is printed beside it to tell).
bentohost plaintext (same wrk run over http) gives the TLS cost. Each cell keeps its best round.
Targets (issue 9): HTTPS >= 20x BentoML, and >= 0.7x bentohost's own plaintext throughput.
Writes bench/results/tls.{md,json}.
"""
from __future__ import annotations

import argparse
import os
import re
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402
import run as R  # noqa: E402

CASES = ("bentohost-http", "bentohost-https", "bentoml-https")


def make_cert(folder: Path) -> tuple[Path, Path]:
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


def start(case: str, args, cert: Path, key: Path):
    server = "bentohost" if case.startswith("bentohost") else "bentoml"
    port = R.free_port()
    cmd, cwd, env = R.server_command(server, args, port)
    if case.endswith("https"):
        cmd += ["--ssl-certfile", str(cert), "--ssl-keyfile", str(key)]
    R.LOGS.mkdir(parents=True, exist_ok=True)
    logfile = R.LOGS / f"tls-{case}.log"
    with open(logfile, "ab") as lf:
        lf.write(f"\n==== {time.ctime()}: {' '.join(cmd)}\n".encode())
        lf.flush()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=lf,
                                stderr=subprocess.STDOUT, start_new_session=True)
    R._started.append(proc)
    ctx = ssl.create_default_context(cafile=str(cert)) if case.endswith("https") else None
    deadline = time.monotonic() + 120
    import http.client
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise R.BenchError(f"{case} exited early:\n{R._tail(logfile)}")
        try:
            c = (http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=2) if ctx
                 else http.client.HTTPConnection("127.0.0.1", port, timeout=2))
            c.request("GET", "/readyz")
            if c.getresponse().status == 200:
                return proc, port
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.1)
    R.stop_server(proc)
    raise R.BenchError(f"{case} not ready in 120 s:\n{R._tail(logfile)}")


def wrk(args, port: int, https: bool) -> dict:
    env = dict(os.environ, BENCH_METHOD="POST", BENCH_BODY='{"name":"bench"}')
    scheme = "https" if https else "http"
    cmd = ["taskset", "-c", str(args.client_cpu), args.wrk, "-t1", f"-c{args.connections}",
           f"-d{max(1, round(args.duration))}s", "--timeout", "10s", "-s", str(R.WRK_LUA),
           f"{scheme}://127.0.0.1:{port}/hello"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.duration + 60).stdout
    line = next((ln for ln in out.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if line is None:
        raise R.BenchError(f"wrk printed no summary:\n{out}")
    import json
    r = json.loads(line[len("BENCH_JSON "):])
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    r["errors"] = sum(r[k] for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout"))
    return r


def s_time(args, port: int, mode: str) -> float:
    """Connections per second of `openssl s_time -new|-reuse` (each one GET /livez)."""
    cmd = ["taskset", "-c", str(args.client_cpu), "openssl", "s_time", "-connect", f"127.0.0.1:{port}",
           f"-{mode}", "-time", str(max(1, round(args.duration / 2))), "-www", "/livez"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 60).stdout
    m = re.search(r"(\d+) connections in ([\d.]+)s", out)
    m2 = re.search(r"(\d+) connections in (\d+) real seconds", out)
    if m2:
        return int(m2.group(1)) / max(int(m2.group(2)), 1)
    if m:
        return int(m.group(1)) / float(m.group(2))
    raise R.BenchError(f"s_time printed no figure:\n{out}")


def measure(case: str, args, cert: Path, key: Path) -> dict:
    proc, port = start(case, args, cert, key)
    try:
        https = case.endswith("https")
        wrk(args, port, https)  # warm-up
        R.wait_quiet(args)
        before = R.tree_cpu(proc.pid)
        r = wrk(args, port, https)
        cpu = R.cpu_delta_s(before, R.tree_cpu(proc.pid))
        out = {"rps": r["rps"], "p50_ms": r["p50_us"] / 1000, "p99_ms": r["p99_us"] / 1000,
               "errors": r["errors"], "cpu_ms_per_1k": 1e6 * cpu / max(r["requests"], 1)}
        if https:
            for mode in ("new", "reuse"):
                before = R.tree_cpu(proc.pid)
                t0 = time.monotonic()
                out[f"hs_{mode}"] = s_time(args, port, mode)
                out[f"hs_{mode}_server_cpu"] = R.cpu_delta_s(before, R.tree_cpu(proc.pid)) / (time.monotonic() - t0)
        C.log(f"  {case}: {out['rps']:,.0f} req/s, p50 {out['p50_ms']:.3f} ms, p99 {out['p99_ms']:.3f} ms"
              + (f", handshakes {out['hs_new']:,.0f}/s new, {out['hs_reuse']:,.0f}/s resumed" if https else ""))
        return out
    finally:
        R.stop_server(proc)


def render(best: dict, info: dict, args) -> tuple[str, list[str]]:
    f = C.fmt
    rows = ["| case | req/s (c=%d) | p50 / p99 (ms) | server CPU-ms/1k | new handshakes/s (server CPU) "
            "| resumed/s (server CPU) |" % args.connections, "|---|---:|---:|---:|---:|---:|"]
    for case in CASES:
        b = best.get(case)
        if not b:
            continue
        hs = (f"{f(b['hs_new'])} ({b['hs_new_server_cpu']:.0%})", f"{f(b['hs_reuse'])} ({b['hs_reuse_server_cpu']:.0%})") \
            if "hs_new" in b else ("–", "–")
        rows.append(f"| {case} | {f(b['rps'])} | {b['p50_ms']:.3f} / {b['p99_ms']:.3f} | {b['cpu_ms_per_1k']:.1f} "
                    f"| {hs[0]} | {hs[1]} |")
    notes = []
    h, p, m = best.get("bentohost-https"), best.get("bentohost-http"), best.get("bentoml-https")
    if h and m:
        x = h["rps"] / m["rps"]
        notes.append(f"HTTPS keep-alive throughput vs BentoML: {x:.1f}x (target >= 20x: {'met' if x >= 20 else 'MISSED'})")
        notes.append(f"new handshakes/s vs BentoML: {h['hs_new'] / m['hs_new']:.1f}x; resumed: "
                     f"{h['hs_reuse'] / m['hs_reuse']:.1f}x")
    if h and p:
        y = h["rps"] / p["rps"]
        notes.append(f"bentohost HTTPS / its own plaintext: {y:.2f} (target >= 0.7: {'met' if y >= 0.7 else 'MISSED'})")
    return "\n".join(rows), notes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    C.add_common_args(ap, duration=8.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--connections", type=int, default=64)
    args = ap.parse_args(argv)
    args.only = ",".join(s for s in args.only.split(",") if s in C.SERVERS)
    C.finish_args(args)
    if "bentoml" in args.servers:
        R.ensure_bentoml_venv(args.bentoml_venv, False)
    cases = [c for c in CASES if c.split("-")[0] in args.servers]
    info = R.machine_info(args)
    best: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = make_cert(Path(tmp))
        try:
            for rnd in range(args.rounds):
                order = cases if rnd % 2 == 0 else cases[::-1]
                C.log(f"round {rnd + 1}: {', '.join(order)}")
                for case in order:
                    r = measure(case, args, cert, key)
                    if case not in best or r["rps"] > best[case]["rps"]:
                        best[case] = r
        finally:
            R.stop_all()
    table, notes = render(best, info, args)
    print(table)
    for n in notes:
        print("- " + n)
    if not args.no_save:
        setup = (f"examples/hello/service.py:Hello, one worker each; server processes on CPU {args.server_cpu}, "
                 f"wrk -t1 -c{args.connections} and openssl s_time on CPU {args.client_cpu}; self-signed P-256 "
                 f"certificate; {args.duration:g} s per run, {args.rounds} round(s) alternating the order, best "
                 f"round per cell. Produced by `python bench/tls.py`.")
        C.save(args, "tls", "HTTPS: bentohost vs BentoML", setup, table, notes, {"best": best, "info": info})
    return 0


if __name__ == "__main__":
    sys.exit(main())
