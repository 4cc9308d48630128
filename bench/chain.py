#!/usr/bin/env python3
"""Service graphs: bentohost vs `bentoml serve` on bench/services/chain.py (depends() chains).

    python bench/chain.py                               # both servers, 2 rounds, ~8 min
    python bench/chain.py --duration 2 --rounds 1 --no-save   # quick

The same service file runs under both servers (BENCH_SERVER=bentohost|bentoml picks the import);
every service has one worker, and ALL server processes (entry, dependencies, supervisor or
arbiter) are pinned to --server-cpu (0); wrk -t1 and this script run on --client-cpu (1).

1. Small JSON through a 3-service chain, Entry -> Pre -> Model (2 hops; Pre adds 1 to each
   value, Model sums), against Single, the same work in one service (0 hops). Body
   {"x": [1.0, 2.0, 3.0]}, answer 9.0. Sync `def` APIs (/predict: the API's thread blocks in
   `self.pre.process(...)`); `--modes sync,async` adds the async APIs (/apredict:
   `await self.pre.to_async.aprocess(...)`), opt-in because BentoML 1.4.30+'s async dependency
   client fails calls under concurrency (it closes its aiohttp session every 100 calls with
   calls in flight: 500s; BentoML issues #5540, #5544).
   wrk -t1 at -c1, -c16 and -c64 (bench/wrk.lua). Latency added per hop = (p50 chain - p50 single)
   / 2. At c=1 that is the cost of a hop on an idle server; at c=16/64 a closed loop's p50 is
   about c / throughput, so there it also counts the queueing behind the slower pipeline.
2. A 4 MiB float32 array across one hop: ArrayEntry.echo(n) sends its cached np.arange(n)
   (n = 1,048,576) to ArrayModel.echo, which returns it; the entry checks size and a strided
   checksum and answers a small JSON object. 2 x 4 MiB cross the hop per request, so
   MiB/s across the hop = 8 MiB x req/s. ArrayEntry.local(n) is the same without the hop.
   wrk -t1 -c4, body {"n": 1048576}.

Rounds alternate the order of the servers (bentohost first in round 1, bentoml first in round
2, ...); each round starts every server afresh; each cell reports its best round (highest
req/s; latency from that same run). Before each run the machine must be quiet (--quiet-wait);
a run disturbed by other processes is redone (--retries). Writes bench/results/chain.{md,json}.
Exit status: 0 ok; 1 a server answered non-2xx, had socket errors or failed; 2 setup failure.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402
import run as R  # noqa: E402

FILE = "chain.py"
BODY = '{"x": [1.0, 2.0, 3.0]}'
EXPECT = "9.0"
HOPS = 2
N = 1_048_576
STRIDE = 1024  # bench/services/chain.py: checksum = sum of a[::STRIDE] for a = arange(n)


def array_checksum(n: int) -> float:
    return float(sum(range(0, n, STRIDE)))


def mode_path(mode: str) -> str:
    return {"sync": "/predict", "async": "/apredict"}[mode]


# --------------------------------------------------------------------- one server, one target


def sanity(server, port, path, body, expect, tries_s=30.0):
    """POST until a 200 (BentoML's entry may be ready before its dependencies), then check the answer."""
    deadline = time.monotonic() + tries_s
    while True:
        try:
            st, _, rb = C.post(port, path, body.encode(), timeout=30)
        except OSError as e:
            st, rb = None, repr(e).encode()
        if st == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if st != 200 or expect.encode() not in rb:
        raise C.BenchError(f"{server}: POST {path} {body[:60]} -> {st} {rb[:300]!r} (expected {expect!r})")
    return rb.decode(errors="replace")


def affinity(proc) -> dict:
    """Cpus_allowed_list of every process of the server (all must be on --server-cpu)."""
    out = {}
    for pid in R._descendants(proc.pid):
        try:
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("Cpus_allowed_list:"):
                    out[pid] = line.split(":", 1)[1].strip()
        except OSError:
            pass
    return out


def start(server, target, args):
    """common.start, retried when the port picked by free_port() was taken before the server bound it
    (another program on this shared machine may grab it in between)."""
    for attempt in range(3):
        try:
            return C.start(server, f"{FILE}:{target}", args, extra_env={"BENCH_SERVER": server})
        except C.BenchError as e:
            if attempt == 2 or not any(m in str(e) for m in ("Address already in use", "Could not bind")):
                raise
            C.log(f"  {server} {target}: its port was taken before it bound it: starting again")


def check_pinned(args, aff: dict) -> None:
    if args.server_cpu is not None and any(v != str(args.server_cpu) for v in aff.values()):
        raise C.BenchError(f"a server process is not pinned to CPU {args.server_cpu}: {aff}")


def memory(server, proc) -> dict:
    workers, others = R.classify_tree(server, proc.pid)
    return {"workers": workers, "others": others, "nworkers": len(workers), "affinity": affinity(proc),
            "worker_rss_mb": round(sum(w["rss_mb"] for w in workers), 1),
            "total_rss_mb": round(sum(m["rss_mb"] for m in workers + others), 1)}


def measure(args, proc, port, path, body, c, label, rejected) -> dict:
    args.connections = c
    r = R.measure_clean(args, proc, port, path, "POST", body, rejected, label)
    C.log(f"  {label:22s} {r['rps']:9,.0f} req/s  p50 {r['p50_us'] / 1e3:7.3f} ms  p99 {r['p99_us'] / 1e3:8.3f} ms  "
          f"errors {r['errors']}  server CPU {r['server_cpu_util']:.0%}  {r['cpu_ms_per_1k']:7.1f} CPU-ms/1k  "
          f"wrk CPU {r['client_cpu_util']:.0%}{R.wrk_bound(r)}")
    return r


def warm(args, port, path, body, expect, c) -> dict:
    args.connections = c
    w = R.run_wrk(args, port, path, "POST", body, args.warmup, strict_expect=expect)
    C.log(f"  warm-up {path} c={c}: {w['rps']:,.0f} req/s, {w['strict_checked']:,} answers checked, "
          f"{w['strict_bad_status']} non-2xx, {w['strict_bad_body']} wrong bodies, "
          f"{w['err_connect'] + w['err_read'] + w['err_write'] + w['err_timeout']} socket errors")
    return {k: w[k] for k in ("requests", "rps", "errors", "strict_checked", "strict_bad_status", "strict_bad_body")}


def bench_json(server, target, args, rejected) -> dict:
    """Entry (chain) or Single: sync and async endpoints at each concurrency."""
    proc, port, logfile = start(server, target, args)
    out = {"cells": {}, "warmup": {}}
    try:
        for mode in args.modes:
            out["answer_" + mode] = sanity(server, port, mode_path(mode), BODY, EXPECT)
        out["idle"] = memory(server, proc)
        C.log(f"  {out['idle']['nworkers']} worker process(es), RSS {out['idle']['worker_rss_mb']} MB; "
              f"all {len(out['idle']['affinity'])} processes {out['idle']['total_rss_mb']} MB, on CPUs "
              + ", ".join(sorted(set(out["idle"]["affinity"].values()))))
        check_pinned(args, out["idle"]["affinity"])
        for mode in args.modes:
            if args.warmup:
                out["warmup"][mode] = warm(args, port, mode_path(mode), BODY, EXPECT, max(args.connections_list))
            for c in args.connections_list:
                out["cells"][f"{mode}/c{c}"] = measure(args, proc, port, mode_path(mode), BODY, c,
                                                       f"{target} {mode} c={c}", rejected)
        out["loaded"] = memory(server, proc)
        if proc.poll() is not None:
            raise C.BenchError(f"{server} exited during the benchmark\n{R._tail(logfile)}")
    finally:
        C.stop_server(proc)
    return out


def bench_array(server, args, rejected) -> dict:
    proc, port, logfile = start(server, "ArrayEntry", args)
    body = json.dumps({"n": args.n})
    expect = f"{array_checksum(args.n):.1f}"[:-2]  # the digits, whatever the JSON float formatting
    out = {"cells": {}, "warmup": {}}
    try:
        for path in ("/echo", "/local"):
            out["answer" + path.replace("/", "_")] = ans = sanity(server, port, path, body, expect)
            got = json.loads(ans)
            if got.get("n") != args.n or got.get("dtype") != "float32":
                raise C.BenchError(f"{server}: POST {path} answered {ans[:200]}")
        out["idle"] = memory(server, proc)
        check_pinned(args, out["idle"]["affinity"])
        for path in ("/echo", "/local"):
            if args.warmup:
                out["warmup"][path] = warm(args, port, path, body, expect, args.array_connections)
            r = measure(args, proc, port, path, body, args.array_connections,
                        f"ArrayEntry {path} c={args.array_connections}", rejected)
            if path == "/echo":
                r["hop_bytes_per_request"] = 2 * 4 * args.n
                r["hop_mib_s"] = r["rps"] * r["hop_bytes_per_request"] / 2**20
                C.log(f"  {'':22s} -> {r['hop_mib_s']:,.0f} MiB/s across the hop (2 x {4 * args.n / 2**20:g} MiB "
                      "per request)")
            out["cells"][path.strip("/")] = r
        out["loaded"] = memory(server, proc)
        if proc.poll() is not None:
            raise C.BenchError(f"{server} exited during the benchmark\n{R._tail(logfile)}")
    finally:
        C.stop_server(proc)
    return out


def bench_round(server, args) -> dict:
    rejected: list = []
    res = {"server": server, "ok": False}
    try:
        if "chain" in args.parts:
            res["chain"] = bench_json(server, "Entry", args, rejected)
            res["single"] = bench_json(server, "Single", args, rejected)
        if "array" in args.parts:
            res["array"] = bench_array(server, args, rejected)
    except C.BenchError as e:
        C.log(f"  !!! {server} FAILED: {e}")
        res["error"] = str(e)
        res["rejected_runs"] = rejected
        return res
    cells = [r for part in ("chain", "single", "array") for r in res.get(part, {}).get("cells", {}).values()]
    warmups = [w for part in ("chain", "single", "array") for w in res.get(part, {}).get("warmup", {}).values()]
    res["errors_total"] = sum(r["errors"] for r in cells) + sum(w["errors"] + w["strict_bad_status"]
                                                                + w["strict_bad_body"] for w in warmups)
    res["rejected_runs"] = rejected
    res["ok"] = res["errors_total"] == 0
    if not res["ok"]:
        C.log(f"  !!! {server}: {res['errors_total']} non-2xx answers, wrong bodies or socket errors")
    return res


# --------------------------------------------------------------------- best of the rounds, report


def best(rounds: list[dict], server: str, part: str, key: str) -> dict | None:
    runs = [r[part]["cells"][key] for r in rounds
            if r["server"] == server and part in r and key in r[part]["cells"]]
    if not runs:
        return None
    b = dict(max(runs, key=lambda x: x["rps"]))
    b["rounds_rps"] = [x["rps"] for x in runs]
    b["rounds_p50_us"] = [x["p50_us"] for x in runs]
    return b


def ratio(a, b):
    return a / b if (a is not None and b) else None


def summarize(rounds, args) -> dict:
    s: dict = {"cells": {}, "per_hop_us": {}, "array": {}, "memory": {}}
    for srv in args.servers:
        for part in ("chain", "single"):
            for mode in args.modes:
                for c in args.connections_list:
                    b = best(rounds, srv, part, f"{mode}/c{c}")
                    if b:
                        s["cells"].setdefault(f"{part}/{mode}/c{c}", {})[srv] = b
        for key in ("echo", "local"):
            b = best(rounds, srv, "array", key)
            if b:
                s["array"].setdefault(key, {})[srv] = b
        for part in ("chain", "single", "array"):
            mems = [r[part] for r in rounds if r["server"] == srv and part in r and "loaded" in r[part]]
            if mems:
                s["memory"].setdefault(part, {})[srv] = {
                    "nworkers": mems[-1]["loaded"]["nworkers"],
                    "idle_total_rss_mb": statistics.median(m["idle"]["total_rss_mb"] for m in mems),
                    "loaded_total_rss_mb": statistics.median(m["loaded"]["total_rss_mb"] for m in mems),
                    "idle_worker_rss_mb": statistics.median(m["idle"]["worker_rss_mb"] for m in mems),
                    "loaded_worker_rss_mb": statistics.median(m["loaded"]["worker_rss_mb"] for m in mems)}
    for mode in args.modes:
        for c in args.connections_list:
            ch, si = s["cells"].get(f"chain/{mode}/c{c}", {}), s["cells"].get(f"single/{mode}/c{c}", {})
            for srv in args.servers:
                if srv in ch and srv in si:
                    # the chain's and the single's best p50 over the rounds (each its own best)
                    s["per_hop_us"].setdefault(f"{mode}/c{c}", {})[srv] = \
                        (min(ch[srv]["rounds_p50_us"]) - min(si[srv]["rounds_p50_us"])) / HOPS
    return s


def f_ms(us):
    return "n/a" if us is None else (f"{us / 1e3:.3f}" if us < 10_000 else f"{us / 1e3:.1f}")


def render(s, args) -> tuple[str, list[str], dict]:
    srvs = args.servers
    both = len(srvs) == 2 and srvs[0] == "bentohost"
    lines = ["| case | c | " + " | ".join(f"{x} req/s" for x in srvs) + (" | req/s ratio" if both else "")
             + " | " + " | ".join(f"{x} p50 / p99 (ms)" for x in srvs) + (" | p50 ratio" if both else "")
             + " | " + " | ".join(f"{x} CPU-ms/1k" for x in srvs) + " |",
             "|---|---:|" + "---:|" * (len(srvs) * 3 + (2 if both else 0))]
    ratios: dict = {"chain_rps": {}, "single_rps": {}, "p50": {}, "per_hop": {}, "array_mib_s": None}
    for mode in args.modes:
        for part, label in (("chain", f"chain Entry→Pre→Model, {mode}"), ("single", f"single service, {mode}")):
            for c in args.connections_list:
                cell = s["cells"].get(f"{part}/{mode}/c{c}", {})
                row = f"| {label} | {c} |"
                row += "".join(f" {C.fmt(cell[x]['rps']) if x in cell else 'failed'} |" for x in srvs)
                if both:
                    x = ratio(cell.get("bentohost", {}).get("rps"), cell.get("bentoml", {}).get("rps"))
                    ratios[f"{part}_rps"][f"{mode}/c{c}"] = x
                    row += f" **{x:.1f}×** |" if x else " — |"
                row += "".join(f" {f_ms(cell[x]['p50_us'])} / {f_ms(cell[x]['p99_us'])} |" if x in cell else " — |"
                               for x in srvs)
                if both:
                    x = ratio(cell.get("bentohost", {}).get("p50_us"), cell.get("bentoml", {}).get("p50_us"))
                    ratios["p50"][f"{part}/{mode}/c{c}"] = x
                    row += f" {x:.3f} |" if x else " — |"
                row += "".join(f" {cell[x]['cpu_ms_per_1k']:.1f} |" if x in cell else " — |" for x in srvs)
                lines.append(row)
    table = "\n".join(lines)

    hop = ["| latency added per hop, p50 (µs) | c | " + " | ".join(srvs) + (" | ratio" if both else "") + " |",
           "|---|---:|" + "---:|" * (len(srvs) + (1 if both else 0))]
    for mode in args.modes:
        for c in args.connections_list:
            h = s["per_hop_us"].get(f"{mode}/c{c}", {})
            row = f"| (chain − single) / {HOPS}, {mode} | {c} |" + "".join(
                f" {h[x]:,.0f} |" if x in h else " — |" for x in srvs)
            if both:
                x = ratio(h.get("bentohost"), h.get("bentoml"))
                ratios["per_hop"][f"{mode}/c{c}"] = x
                row += f" {x:.3f} |" if x is not None else " — |"
            hop.append(row)
    table += "\n\n" + "\n".join(hop)

    arr = ["| 4 MiB float32 array, c=%d | " % args.array_connections + " | ".join(srvs)
           + (" | ratio" if both else "") + " |", "|---|" + "---:|" * (len(srvs) + (1 if both else 0))]
    e, lo = s["array"].get("echo", {}), s["array"].get("local", {})
    def arow(label, d, fn, rk=None):
        row = f"| {label} |" + "".join(f" {fn(d[x])} |" if x in d else " — |" for x in srvs)
        if both:
            a, b = (rk(d["bentohost"]) if "bentohost" in d else None), (rk(d["bentoml"]) if "bentoml" in d else None)
            x = ratio(a, b) if rk else None
            row += (f" **{x:.1f}×** |" if x and x >= 1 else f" {x:.2f}× |") if x else " |"
            return row, x
        return row, None
    r1, xm = arow("MiB/s across the hop (8 MiB per request: 4 MiB each way)", e, lambda r: C.fmt(r["hop_mib_s"]),
                  lambda r: r["hop_mib_s"])
    ratios["array_mib_s"] = xm
    arr += [r1,
            arow("echo through the hop: req/s", e, lambda r: C.fmt(r["rps"], "{:,.1f}"), lambda r: r["rps"])[0],
            arow("echo through the hop: p50 / p99 (ms)", e, lambda r: f"{f_ms(r['p50_us'])} / {f_ms(r['p99_us'])}",
                 lambda r: r["p50_us"])[0],
            arow("echo: server CPU-ms per request", e, lambda r: f"{r['cpu_ms_per_1k'] / 1000:.2f}",
                 lambda r: r["cpu_ms_per_1k"])[0],
            arow("no hop (same check on the entry's own array): req/s", lo, lambda r: C.fmt(r["rps"]),
                 lambda r: r["rps"])[0]]
    table += "\n\n" + "\n".join(arr)

    mem = ["| memory (RSS, MB, median over rounds) | " + " | ".join(srvs) + " |", "|---|" + "---:|" * len(srvs)]
    for part, label in (("chain", "chain: worker processes; their RSS idle → after load"),
                        ("single", "single: worker processes; RSS idle → after load")):
        d = s["memory"].get(part, {})
        mem.append(f"| {label} |" + "".join(
            f" {d[x]['nworkers']}; {d[x]['idle_worker_rss_mb']:.0f} → {d[x]['loaded_worker_rss_mb']:.0f} |"
            if x in d else " — |" for x in srvs))
        mem.append(f"| {part}: all processes (with supervisor / arbiter), after load |" + "".join(
            f" {d[x]['loaded_total_rss_mb']:.0f} |" if x in d else " — |" for x in srvs))
    table += "\n\n" + "\n".join(mem)

    notes = []
    if both:
        hop_c1 = s["per_hop_us"]
        for mode in args.modes:
            for c in args.connections_list:
                h = hop_c1.get(f"{mode}/c{c}", {}).get("bentohost")
                if h is not None:
                    notes.append(f"target ≤ 100 µs p50 added per hop (bentohost), {mode}, c={c}: {h:,.0f} µs: "
                                 + ("met" if h <= 100 else "MISSED"))
        for mode in args.modes:
            for c in args.connections_list:
                if c == 1:
                    continue
                x = ratios["chain_rps"].get(f"{mode}/c{c}")
                if x:
                    notes.append(f"target ≥ 20× BentoML's chain throughput, {mode}, c={c}: {x:.1f}×: "
                                 + ("met" if x >= 20 else "MISSED"))
        if xm:
            notes.append(f"target ≥ 10× BentoML's MiB/s for the 4 MiB array across a hop: {xm:.1f}×: "
                         + ("met" if xm >= 10 else "MISSED"))
    return table, notes, ratios


def setup_text(args) -> str:
    return (f"bench/services/chain.py, every service `workers=1` (threads 1, both servers' default); all server "
            f"processes pinned to CPU {args.server_cpu} with taskset, wrk -t1 (and this script) on CPU "
            f"{args.client_cpu}; keep-alive POST JSON. Chain: Entry→Pre→Model (2 hops) vs Single (0 hops), body "
            f"`{BODY}`, wrk -c{'/'.join(map(str, args.connections_list))}. Array: np.arange({args.n:,}, float32) "
            f"= {4 * args.n / 2**20:g} MiB from ArrayEntry to ArrayModel and back (echo), body `{{\"n\": {args.n}}}`, "
            f"wrk -c{args.array_connections}. {args.duration:g} s per run after a {args.warmup:g} s warm-up that "
            f"checks every answer; {args.rounds} round(s) alternating the server order, each server started "
            "afresh per round; best round per cell. Produced by `python bench/chain.py`")


def save(args, info, table, notes, doc) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    (args.out / "chain.json").write_text(json.dumps({"machine": info, "settings": settings,
                                                     "setup": setup_text(args), **doc}, indent=2, default=str) + "\n")
    venv = info.get("bentoml_venv", {}).get("versions", "")
    md = (f"# Service graphs: `bentoml.depends()` chains, bentohost vs BentoML\n\n"
          f"{info['date']} · {info['cpu']} · {info['ncpu']} CPUs · Linux {info['kernel']} · "
          f"Python {info['python']} · {venv} · bentohost {info['git_commit'] or '(uncommitted)'}"
          f"{' (dirty)' if info['git_dirty'] else ''}\n\nSetup: {setup_text(args)}.\n\n{table}\n\n"
          + "\n".join(f"- {n}" for n in notes) + "\n")
    (args.out / "chain.md").write_text(md)
    C.log(f"\nwrote {(args.out / 'chain.json').relative_to(C.ROOT)} and {(args.out / 'chain.md').relative_to(C.ROOT)}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    C.add_common_args(ap, duration=8.0)
    ap.add_argument("--connections", default="1,16,64", help="wrk connections for the chain (1,16,64)")
    ap.add_argument("--array-connections", type=int, default=4, help="wrk connections for the array (4)")
    ap.add_argument("--n", type=int, default=N, help=f"float32 values in the array ({N:,} = 4 MiB)")
    ap.add_argument("--modes", default="sync",
                    help="sync and/or async (sync; async is opt-in: BentoML 1.4.30+'s async dependency client "
                         "fails calls under concurrency, see bench/README.md)")
    ap.add_argument("--parts", default="chain,array", help="chain,array")
    ap.add_argument("--rounds", type=int, default=2, help="rounds, alternating the server order (2)")
    ap.add_argument("--wrk-timeout", type=float, default=10.0)
    args = ap.parse_args(argv)
    args.connections_list = [int(c) for c in args.connections.split(",")]
    args.modes = [m for m in args.modes.split(",") if m]
    args.parts = [p for p in args.parts.split(",") if p]
    for m in args.modes:
        if m not in ("sync", "async"):
            ap.error(f"--modes: unknown mode {m!r}")
    C.finish_args(args)
    if not Path(args.wrk).exists():
        C.log(f"wrk not found ({args.wrk}): apt-get install wrk")
        return 2
    info = R.machine_info(args)
    C.log(f"bench: {info['cpu']} ({info['ncpu']} CPUs), Python {info['python']}, {info['wrk']}")
    C.log(f"pinning: every server process on CPU {args.server_cpu} (taskset), wrk -t1 and this script on CPU "
          f"{args.client_cpu}")
    rounds: list[dict] = []
    try:
        if "bentoml" in args.servers:
            info["bentoml_venv"] = R.ensure_bentoml_venv(args.bentoml_venv, False)
            C.log(f"bentoml venv: {info['bentoml_venv']['versions']}")
        for i in range(args.rounds):
            order = args.servers if i % 2 == 0 else list(reversed(args.servers))
            for srv in order:
                C.log(f"\n######## round {i + 1}/{args.rounds}: {srv}")
                r = bench_round(srv, args)
                r["round"] = i + 1
                rounds.append(r)
    except KeyboardInterrupt:
        C.log("\ninterrupted: stopping servers")
        C.stop_all()
        return 130
    except C.BenchError as e:
        C.log(f"setup failed: {e}")
        C.stop_all()
        return 2
    finally:
        C.stop_all()
    s = summarize(rounds, args)
    table, notes, ratios = render(s, args)
    notes.append("Ratios are bentohost ÷ bentoml: above 1 is better for req/s and MiB/s, below 1 for latency and CPU. "
                 "Each cell is its best round by req/s (its p50/p99/CPU from that run); latency per hop uses each "
                 "of chain and single's lowest p50 over the rounds.")
    notes.append("c=1 gives the cost of a hop on an idle graph; at c=16/64 a closed loop's p50 ≈ c ÷ req/s, so the "
                 "per-hop figure there includes queueing behind the chain's slower pipeline (sync: threads=1 per "
                 "service, so each hop's caller thread waits for the answer).")
    disturbed = sum(1 for r in rounds for p in ("chain", "single", "array") for x in r.get(p, {}).get("cells", {}).values()
                    if x.get("disturbed"))
    redone = sum(len(r.get("rejected_runs", [])) for r in rounds)
    notes.append(f"runs redone because other processes used the CPUs: {redone}; kept although disturbed: {disturbed}.")
    failed = [f"{r['server']} (round {r['round']}): {r.get('error', str(r.get('errors_total')) + ' errors')}"
              for r in rounds if not r["ok"]]
    if failed:
        notes.append("FAILED: " + "; ".join(failed))
    C.log("\n" + table + "\n\n" + "\n".join(f"- {n}" for n in notes))
    if not args.no_save:
        save(args, info, table, notes, {"summary": s, "ratios": ratios, "rounds": rounds})
    if failed:
        C.log("\nFAILED: a server answered non-2xx, had socket errors, or did not start (see above)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
