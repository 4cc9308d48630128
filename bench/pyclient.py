#!/usr/bin/env python3
"""Closed-loop HTTP/1.1 keep-alive load generator for bench/overload.py and bench/streaming.py.

    python bench/pyclient.py '{"mode": "overload", "port": 3000, ...}'

Used where wrk cannot say what we need: latency per status code (time to a 429), and
streaming responses (time to first body byte, tokens per second). asyncio streams, uvloop
when importable. Prints one JSON line.

mode "overload": `connections` clients POST `body` to `path` for `duration` s; after a
  non-2xx answer a client waits `backoff_ms` (a polite client; it also keeps the client
  off the CPU limit when the server answers 429 in microseconds). Latency per status.
mode "stream": `connections` clients each POST, read the chunked (or Content-Length)
  response as it arrives, for `requests` requests each (or `duration` s): time to the
  first body byte (TTFT), total time, body bytes.
"""
from __future__ import annotations

import asyncio
import json
import sys
import time

try:
    import uvloop  # type: ignore
except ImportError:  # pragma: no cover
    uvloop = None


def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, int(round(p / 100 * len(xs) + 0.5)) - 1))
    return xs[k]


async def read_head(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for ln in lines[1:]:
        if ":" in ln:
            k, v = ln.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return status, headers


async def read_body(reader, headers, on_first=None):
    """-> body bytes (de-chunked). on_first() is called at the first non-empty body byte."""
    out = bytearray()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            line = await reader.readuntil(b"\r\n")
            size = int(line.split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # trailer end (no trailers)
                return bytes(out)
            data = await reader.readexactly(size + 2)
            if not out and on_first:
                on_first()
            out += data[:-2]
    n = int(headers.get("content-length", "0"))
    if n:
        first = await reader.read(min(n, 65536))
        if on_first:
            on_first()
        out += first
        if len(out) < n:
            out += await reader.readexactly(n - len(out))
    return bytes(out)


def request_bytes(spec):
    body = spec.get("body", "").encode()
    return (f"POST {spec['path']} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {spec.get('ctype', 'application/json')}"
            f"\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


async def overload(spec):
    req = request_bytes(spec)
    lat: dict[int, list[float]] = {}
    errors = 0
    stop = time.monotonic() + spec["duration"]
    backoff = spec.get("backoff_ms", 10) / 1000

    async def client():
        nonlocal errors
        reader = writer = None
        while time.monotonic() < stop:
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", spec["port"])
                t = time.perf_counter()
                writer.write(req)
                status, headers = await read_head(reader)
                await read_body(reader, headers)
                lat.setdefault(status, []).append(time.perf_counter() - t)
                if headers.get("connection", "").lower() == "close":
                    writer.close()
                    writer = None
                if status >= 300:
                    await asyncio.sleep(backoff)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                errors += 1
                if writer is not None:
                    writer.close()
                writer = None
                await asyncio.sleep(backoff)
        if writer is not None:
            writer.close()

    t0 = time.monotonic()
    await asyncio.gather(*(client() for _ in range(spec["connections"])))
    wall = time.monotonic() - t0
    out = {"wall_s": wall, "errors": errors, "by_status": {}}
    for st, xs in sorted(lat.items()):
        out["by_status"][str(st)] = {"count": len(xs), "rps": len(xs) / wall,
                                     **{f"p{p}_ms".replace(".", "_"): pct(xs, p) * 1e3 for p in (50, 90, 99, 99.9)},
                                     "max_ms": max(xs) * 1e3}
    return out


async def stream(spec):
    req = request_bytes(spec)
    ttft, total, nbytes, bad = [], [], [], 0
    stop = time.monotonic() + spec.get("duration", 1e9)
    per = spec.get("requests", 10**9)

    async def client():
        nonlocal bad
        reader, writer = await asyncio.open_connection("127.0.0.1", spec["port"])
        for _ in range(per):
            if time.monotonic() >= stop:
                break
            first = []
            t = time.perf_counter()
            writer.write(req)
            status, headers = await read_head(reader)
            body = await read_body(reader, headers, lambda: first.append(time.perf_counter()))
            t1 = time.perf_counter()
            if status != 200 or (spec.get("expect_bytes") and len(body) != spec["expect_bytes"]):
                bad += 1
            ttft.append((first[0] if first else t1) - t)
            total.append(t1 - t)
            nbytes.append(len(body))
        writer.close()

    t0 = time.monotonic()
    await asyncio.gather(*(client() for _ in range(spec["connections"])))
    wall = time.monotonic() - t0
    return {"wall_s": wall, "requests": len(total), "bad": bad,
            "ttft_p50_ms": pct(ttft, 50) * 1e3, "ttft_p99_ms": pct(ttft, 99) * 1e3,
            "total_p50_ms": pct(total, 50) * 1e3, "total_p99_ms": pct(total, 99) * 1e3,
            "bytes_per_request": sum(nbytes) / max(1, len(nbytes)), "body_bytes": sum(nbytes)}


def main():
    spec = json.loads(sys.argv[1])
    fn = {"overload": overload, "stream": stream}[spec["mode"]]
    if uvloop is not None:
        uvloop.install()
    out = asyncio.run(fn(spec))
    out["uvloop"] = uvloop is not None
    print(json.dumps(out))


if __name__ == "__main__":
    main()
