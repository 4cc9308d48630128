#!/usr/bin/env python3
"""Large payloads: bentohost vs `bentoml serve` on bench/services/payload.py (issue 4).

    python bench/io.py                          # both servers, 5 s per cell, ~3 min
    python bench/io.py --duration 2 --clients 8 --only bentohost --no-save

Payloads (generated once into .bench/io/, fixed seed):
  json       1 MiB float32 array (262,144 values) as {"x": [...]} to /total (both servers)
  octet      the same array as raw bytes, Content-Type application/octet-stream, to /total
             (bentohost's numpy fast path; BentoML has no such path for an ndarray)
  multipart  the same raw bytes as a multipart/form-data file part "f" to /total_file
             (f: Path -> np.fromfile): BentoML's binary path for an array (what its
             client sends for a file/Path input); bentohost too, for comparison
  jpeg       a ~1 MiB JPEG as a multipart file part "image" to /image_size (PIL.Image.Image;
             returns width*height, so the upload path is measured, not JPEG decoding)
Each cell: wrk -t1 -cN (N = 8 and 32) with the whole file as the body; MB/s = payload MiB
(1 MiB array or the JPEG size) x req/s; p99 from wrk. Every answer is checked once first.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402

TARGET = "payload.py:Payload"
DIR = C.STATE / "io"
BOUNDARY = "benchboundary7d1f0a"
N = 262_144


def make_payloads() -> dict:
    import numpy as np
    import PIL.Image
    DIR.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arr = rng.random(N, dtype=np.float32)
    expect = float(arr.sum(dtype=np.float64))
    raw = arr.tobytes()
    (DIR / "array.bin").write_bytes(raw)
    (DIR / "array.json").write_text('{"x":' + json.dumps(arr.tolist()) + "}")

    def mp(name, filename, ctype, data):
        return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n"
                f"Content-Type: {ctype}\r\n\r\n").encode() + data + f"\r\n--{BOUNDARY}--\r\n".encode()

    (DIR / "array.multipart").write_bytes(mp("f", "array.bin", "application/octet-stream", raw))
    # ~1 MiB JPEG: noise with a gradient, size tuned by the side length
    import io as _io
    side, jpg = 1024, b""
    for _ in range(8):
        img = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        buf = _io.BytesIO()
        PIL.Image.fromarray(img).save(buf, format="JPEG", quality=60)
        jpg = buf.getvalue()
        side = int(side * (2**20 / len(jpg)) ** 0.5)
        if abs(len(jpg) - 2**20) < 2**20 * 0.03:
            break
    w, h = PIL.Image.open(_io.BytesIO(jpg)).size
    (DIR / "image.multipart").write_bytes(mp("image", "image.jpg", "image/jpeg", jpg))
    return {"sum": expect, "jpeg_bytes": len(jpg), "jpeg_wh": w * h, "json_bytes": (DIR / "array.json").stat().st_size}


def cases(meta):
    mpct = f"multipart/form-data; boundary={BOUNDARY}"
    return [
        # name, path, file, content type, payload bytes, servers, expected answer
        ("json", "/total", "array.json", "application/json", N * 4, ("bentohost", "bentoml"), meta["sum"]),
        ("octet", "/total", "array.bin", "application/octet-stream", N * 4, ("bentohost",), meta["sum"]),
        ("multipart", "/total_file", "array.multipart", mpct, N * 4, ("bentohost", "bentoml"), meta["sum"]),
        ("jpeg", "/image_size", "image.multipart", mpct, meta["jpeg_bytes"], ("bentohost", "bentoml"), meta["jpeg_wh"]),
    ]


def bench(server: str, args, meta) -> dict:
    proc, port, _ = C.start(server, TARGET, args)
    out = {}
    try:
        for name, path, fname, ctype, nbytes, servers, expect in cases(meta):
            if server not in servers or name not in args.cases:
                continue
            f = DIR / fname
            st, _, body = C.post(port, path, f.read_bytes(), ctype, timeout=60)
            try:
                got = json.loads(body)
            except ValueError:
                got = None
            if st != 200 or got is None or abs(float(got) - expect) > 1e-3 * max(1.0, abs(expect)):
                raise C.BenchError(f"{server} {name}: POST {path} -> {st} {body[:300]!r} (expected {expect})")
            import os
            os.environ["BENCH_WHOLE"] = "1"
            if args.warmup:
                C.run_wrk_pool(args, proc, port, path, f, ctype, 8, args.warmup, quiet=False, timeout_s=30)
            for c in args.clients:
                r = C.clean(args, lambda: C.run_wrk_pool(args, proc, port, path, f, ctype, c, args.duration,
                                                         timeout_s=30), f"{name} c={c}")
                r["mb_s"] = r["rps"] * nbytes / 2**20
                r["payload_bytes"] = nbytes
                r["wire_bytes"] = f.stat().st_size
                out[f"{name}/c{c}"] = r
                C.log(f"  {name:9s} c={c:2d}: {r['rps']:8,.0f} req/s  {r['mb_s']:8,.1f} MB/s  p50 "
                      f"{r['p50_us'] / 1e3:7.2f} ms  p99 {r['p99_us'] / 1e3:7.2f} ms  non-2xx {r['non2xx']}  "
                      f"errors {r['errors']}  server CPU {r['server_cpu_util']:.0%}  wrk CPU {r['client_cpu_util']:.0%}")
    finally:
        C.stop_server(proc)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    C.add_common_args(ap, duration=5.0)
    ap.add_argument("--clients", default="8,32", help="concurrency levels (8,32)")
    ap.add_argument("--cases", default="json,octet,multipart,jpeg")
    args = ap.parse_args(argv)
    args.warmup = min(args.warmup, 1.0) if args.warmup else 0
    args.clients = [int(c) for c in args.clients.split(",")]
    args.cases = args.cases.split(",")
    C.finish_args(args)
    meta = make_payloads()
    C.log(f"payloads: array 1 MiB ({N:,} float32), JSON body {meta['json_bytes'] / 2**20:.2f} MiB, "
          f"JPEG {meta['jpeg_bytes'] / 2**20:.3f} MiB")
    results = {}
    try:
        for s in args.servers:
            results[s] = bench(s, args, meta)
    except KeyboardInterrupt:
        return 130
    finally:
        C.stop_all()
    lines = ["| payload | clients | " + " | ".join(f"{s} MB/s | {s} p99 (ms)" for s in args.servers)
             + (" | MB/s ratio |" if len(args.servers) == 2 else " |"),
             "|---|---:|" + "---:|---:|" * len(args.servers) + ("---:|" if len(args.servers) == 2 else "")]
    notes, ratios = [], {}
    best_bentoml = {}
    for c in args.clients:
        if "bentoml" in results:
            best_bentoml[c] = max((results["bentoml"].get(f"{n}/c{c}", {}).get("mb_s", 0), n) for n in ("multipart",))
    for name, *_ in cases(meta):
        if name not in args.cases:
            continue
        for c in args.clients:
            row = f"| {name} | {c} |"
            vals = []
            for s in args.servers:
                r = results[s].get(f"{name}/c{c}")
                vals.append(r["mb_s"] if r else None)
                row += (f" {r['mb_s']:,.1f} | {r['p99_us'] / 1e3:.2f} |" if r else " — | — |")
            if len(args.servers) == 2:
                a, b = vals
                if a is not None and b is None and name == "octet" and c in best_bentoml:
                    b = best_bentoml[c][0]
                    row += f" {a / b:.1f}x vs bentoml multipart |" if b else " — |"
                else:
                    row += f" {a / b:.1f}x |" if (a and b) else " — |"
                if a and b:
                    ratios[f"{name}/c{c}"] = a / b
            lines.append(row)
    table = "\n".join(lines)
    if ratios:
        for key in ("octet", "multipart", "jpeg"):
            rs = {k: v for k, v in ratios.items() if k.startswith(key + "/")}
            if rs:
                worst = min(rs.values())
                notes.append(f"{key}: bentohost ÷ bentoml MB/s " + ", ".join(f"{k.split('/')[1]} {v:.1f}x" for k, v in rs.items())
                             + (f" (target ≥ 10x: {'met' if worst >= 10 else 'MISSED'})"))
        rs = {k: v for k, v in ratios.items() if k.startswith("json/")}
        if rs:
            notes.append("json: bentohost ÷ bentoml MB/s " + ", ".join(f"{k.split('/')[1]} {v:.1f}x" for k, v in rs.items()))
    notes.append(f"JSON body is {meta['json_bytes'] / 2**20:.2f} MiB on the wire for the 1 MiB array; MB/s counts "
                 "the 1 MiB array (payload), not wire bytes. octet is compared with BentoML's multipart (its best binary path).")
    C.log("\n" + table + "\n\n" + "\n".join(notes))
    setup = (f"bench/services/payload.py:Payload, 1 worker, server on CPU {args.server_cpu}; wrk -t1 -c8 and -c32, "
             f"{args.duration:g} s per cell, on CPU {args.client_cpu}, the whole payload file as the body (keep-alive). "
             "Produced by `python bench/io.py`.")
    C.save(args, "io", "Large payloads: 1 MiB float32 array and 1 MiB JPEG", setup, table, notes,
           {"payloads": meta, "servers": results, "ratios": ratios})
    bad = any(r["errors"] or r["non2xx"] for s in results.values() for r in s.values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
