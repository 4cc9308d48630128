#!/usr/bin/env bash
# Profile bentohost on bench/peers.py's service (POST /predict, c=64), for bench/results/peers-profile.md.
#
#   bench/peers_profile.sh [seconds]      (run from the repository root; default 6 s of sampling)
#
# bentohost pinned to CPU 0 (--workers 1 --no-access-log), wrk -t1 -c64 on CPU 1. While wrk runs:
#   1. perf record -C 0 -g: everything that ran on the server's CPU, kernel included (perf must be
#      installed; Debian: linux-perf), reported by DSO and by symbol, self time;
#   2. py-spy record --native on the worker (when .bench/ray-venv has py-spy, which ray[serve] brings):
#      the Python-level split (collapsed stacks, summed per frame).
# CPython 3.11 has no perf trampoline (-X perf / PYTHONPERFSUPPORT arrived in 3.12), so perf sees
# the interpreter as _PyEval_EvalFrameDefault and friends; py-spy names the Python frames.
# Output: .bench/profile/ (perf.data, reports, py-spy stacks). Only the processes it starts are stopped.
set -euo pipefail
secs=${1:-6}
root=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-/work/main/.venv/bin/python}
out=$root/.bench/profile
mkdir -p "$out"
port=$($py -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
body=$($py -c 'import sys; sys.path.insert(0, "bench/services"); import peers_work; print(peers_work.BODY.decode())')

cd "$root"
PYTHONPATH=$root setsid taskset -c 0 "$py" -m bentohost serve bench/services/peers_svc.py:Peers --workers 1 \
    --no-access-log --host 127.0.0.1 --port "$port" > "$out/server.log" 2>&1 &
srv=$!
cleanup() { kill -TERM -- -"$srv" 2>/dev/null || true; sleep 1; kill -KILL -- -"$srv" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 1 300); do curl -sf -o /dev/null "http://127.0.0.1:$port/readyz" && break; sleep 0.05; done
# the worker: a leaf of the server's process tree
worker=$srv
while child=$(pgrep -P "$worker" -n); do worker=$child; done
echo "server $srv, worker $worker, port $port" | tee "$out/pids.txt"
ps -o pid,ppid,nlwp,rss,cmd -s "$srv" | tee -a "$out/pids.txt"

export BENCH_METHOD=POST BENCH_BODY="$body"
taskset -c 1 wrk -t1 -c64 -d$((secs * 2 + 4))s -s bench/wrk.lua "http://127.0.0.1:$port/predict" > "$out/wrk.txt" 2>&1 &
wrkpid=$!
sleep 2
if command -v perf > /dev/null; then
    taskset -c 1 perf record -q -F 1999 -g -C 0 -o "$out/perf.data" -- sleep "$secs" 2> "$out/perf-record.err" || true
fi
spy=$root/.bench/ray-venv/bin/py-spy
if [ -x "$spy" ]; then
    taskset -c 1 "$spy" record --native -r 499 -d "$secs" -p "$worker" -f raw -o "$out/pyspy.txt" \
        > "$out/pyspy.err" 2>&1 || true
fi
wait "$wrkpid" || true
grep -E "Requests/sec|Latency|BENCH_JSON" "$out/wrk.txt" || true
if [ -f "$out/perf.data" ]; then
    perf report -i "$out/perf.data" --no-children --sort dso --stdio -g none 2> /dev/null | grep -v '^#' | grep -v '^$' \
        | head -25 > "$out/perf-dso.txt" || true
    perf report -i "$out/perf.data" --no-children --sort comm,dso,sym --stdio -g none 2> /dev/null \
        | grep -v '^#' | grep -v '^$' | head -60 > "$out/perf-sym.txt" || true
    perf report -i "$out/perf.data" --no-children --sort comm,tid --stdio -g none 2> /dev/null \
        | grep -v '^#' | grep -v '^$' | head -15 > "$out/perf-comm.txt" || true
fi
echo "wrote $out"
