#!/usr/bin/env bash
# bench/device/run.sh: the one command for the lent GPU machine (kind nvidia-h200: one H200,
# 16 CPUs, no network, python3 = the image's 3.12 with torch, commands run as root).
#
# Before it, HERE, in the checkout the call sends (the session's own):
#   echo /.device/ >> "$(git rev-parse --git-path info/exclude)"   # once
#   bash bench/device/prepare.sh        # ~30 s; prints the carry size (about 18 MiB + the tree)
# Then the device tool's call, exactly:
#   run(command="bash bench/device/run.sh", carry=[".device"], timeout_s=480)
# It runs, within BUDGET_S (420 s) in all, each stage under its own time limit so that one that
# hangs leaves time to the others:
#   setup      the C libraries the image lacks on the library path, the wheels installed
#              (pydantic into /tmp/site, bentoml into /tmp/bm-site), the host BUILT against the
#              image's python3 (bench/device/build_host.py, ~10 s), nvidia-smi
#   test       tests/test_gpu_real.py (real GPUs), then tests/test_placement.py (stand-in CUDA);
#              "exit 5" in the summary: the GPU test was skipped whole (pytest.log says why)
#   gpu_batch  bench/gpu_batch.py, bentohost and bentoml, ~1.5 min
#   scaling    bench/scaling.py at 1, 2, 4, 8, 12 workers, both servers, ~4 min
# Only some stages:  run(command="bash bench/device/run.sh gpu_batch", carry=[".device"], timeout_s=300)
# More options for a bench:  command="SCALING_ARGS='--workers 1,8 --apis work' bash bench/device/run.sh scaling"
# (setup always runs). What comes back in $OUT (8 files, no folders): run.log (all of this output),
# nvidia-smi.txt, pytest.log, gpu_batch.{json,md}, scaling.{json,md}, logs.tar.gz (server logs).
# The end of the output shows the two tables and each stage's status.
set -uo pipefail  # no -e: a failed stage is reported and the next one still runs

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
D=${DEVICE_DIR:-$ROOT/.device}  # (another folder only to try this script elsewhere)
OUT=${OUT:-/tmp/bentohost-out}
BUDGET_S=${BUDGET_S:-420}
T0=$(date +%s)
PY=$(command -v python3)
BM_PY=/tmp/bentoml-python
STAGES=("$@")
[ ${#STAGES[@]} -eq 0 ] && STAGES=(test gpu_batch scaling)
declare -A STATUS

mkdir -p "$OUT"
exec > >(tee "$OUT/run.log") 2>&1
export PYTHONUNBUFFERED=1

say() { printf '\n######## %s  (t=%ss)\n' "$*" "$(($(date +%s) - T0))"; }
left() { echo $((BUDGET_S - ($(date +%s) - T0))); }

stage() {
  # stage NAME CAP_S CMD...: CMD under min(CAP_S, time left), its status kept for the summary
  local name=$1 cap=$2 t
  shift 2
  t=$(left)
  [ "$t" -gt "$cap" ] && t=$cap
  if [ "$t" -lt 20 ]; then
    STATUS[$name]="not run: no time left"
    say "$name: skipped, ${t}s left"
    return
  fi
  say "$name (limit ${t}s): $*"
  timeout -k 10 "$t" "$@"
  local rc=$?
  case $rc in
    0) STATUS[$name]="ok" ;;
    124|137) STATUS[$name]="TIMED OUT after ${t}s" ;;
    *) STATUS[$name]="exit $rc" ;;
  esac
}

libraries() {
  # runtime: only the carried libraries the image lacks (its own OpenSSL stays in use);
  # link time: every carried one under its plain name, and libpython's where only .so.1.0 is
  mkdir -p /tmp/bh/lib /tmp/bh/link
  local f so have
  have=$(ldconfig -p | awk '{print $1}')
  for f in "$D"/lib/*.so.*; do
    so=$(basename "$f")
    grep -qx "$so" <<<"$have" || ln -sf "$f" "/tmp/bh/lib/$so"
    ln -sf "$f" "/tmp/bh/link/${so%%.so*}.so"
  done
  local libdir ldv
  libdir=$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR") or "")')
  ldv=$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("LDVERSION") or "")')
  if [ ! -e "$libdir/libpython$ldv.so" ]; then
    for f in "$libdir"/libpython"$ldv".so.*; do [ -e "$f" ] && ln -sf "$f" "/tmp/bh/link/libpython$ldv.so"; done
  fi
  echo "added to the library path: $(ls /tmp/bh/lib | tr '\n' ' ')"
  export LD_LIBRARY_PATH=/tmp/bh/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  export LIBRARY_PATH=/tmp/bh/link${LIBRARY_PATH:+:$LIBRARY_PATH}
  export CPATH=$D/include${CPATH:+:$CPATH}
  chmod +x "$D/bin/wrk"
  export PATH=$D/bin:$PATH
}

wheels() {
  # pydantic & co. into /tmp/site, seen by every python3 through a .pth file: the tests' servers
  # get a PYTHONPATH of their own (tests/conftest.py), so PYTHONPATH alone would not reach them;
  # a .pth adds /tmp/site after the image's packages, which keep precedence
  timeout 120 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$D"/whl/*.whl
  local site
  site=$("$PY" -c 'import site; print(site.getsitepackages()[0])')
  echo /tmp/site > "$site/zz-bentohost-device.pth"
  "$PY" -c 'import pydantic; print("pydantic", pydantic.VERSION, "from", pydantic.__file__)'
  if ls "$D"/bentoml-whl/*.whl >/dev/null 2>&1; then
    # bentoml and its needs into /tmp/bm-site, first on the path of the wrapper that runs it
    timeout 120 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/bm-site "$D"/bentoml-whl/*.whl
    printf '#!/bin/sh\nPYTHONPATH=/tmp/bm-site${PYTHONPATH:+:$PYTHONPATH} exec %s "$@"\n' "$PY" > "$BM_PY"
    chmod +x "$BM_PY"
    (cd bench/services && "$BM_PY" -c 'import bentoml; print("bentoml", bentoml.__version__)') \
      || echo "bentoml does not import: the benches will skip it"
  else
    echo "no bentoml wheels carried: the benches skip bentoml"
  fi
}

build() {
  local inc
  inc=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  [ -f "$inc/Python.h" ] || { echo "NO Python.h in $inc; found:"; find / -name Python.h -path '*3.12*' 2>/dev/null | head; }
  timeout 180 "$PY" bench/device/build_host.py "$D" || return 1
  ldd bentohost/_bin/bentohost-host
  ! ldd bentohost/_bin/bentohost-host | grep -q 'not found' && "$PY" -m bentohost --version
}

setup() {
  uname -a
  nproc
  "$PY" --version
  cc --version | head -1
  nvidia-smi 2>&1 | tee "$OUT/nvidia-smi.txt"
  nvidia-smi --query-gpu=index,name,uuid,memory.total,driver_version,clocks.sm,clocks.max.sm,power.draw \
    --format=csv 2>&1 | tee -a "$OUT/nvidia-smi.txt"
  "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.device_count())' \
    || echo "torch does not import: the GPU test and bench will skip"
  libraries
  wrk -v 2>&1 | head -1
  wheels
  build
}

test_stage() {
  # exit 0: both passed; 5: tests/test_gpu_real.py was skipped whole (pytest's "no tests ran": no GPU
  # seen, the log says why) and the rest passed; 1: a failure
  "$PY" -m pytest -q -rA -p no:cacheprovider --basetemp=/tmp/pt-gpu tests/test_gpu_real.py 2>&1 | tee "$OUT/pytest.log"
  local gpu=${PIPESTATUS[0]}
  "$PY" -m pytest -q -rfE -p no:cacheprovider --basetemp=/tmp/pt-placement tests/test_placement.py 2>&1 \
    | tee -a "$OUT/pytest.log"
  local placement=${PIPESTATUS[0]}
  [ "$placement" -ne 0 ] && return 1
  [ "$gpu" -eq 5 ] && return 5
  [ "$gpu" -ne 0 ] && return 1
  return 0
}

collect() {
  # the servers' logs (the benches' in .bench/logs, the tests' under pytest's basetemp) without the
  # access-log lines, which run to gigabytes under wrk, and cut to their last 3000 lines
  local f dst=/tmp/bh/logs
  mkdir -p "$dst"
  find .bench/logs /tmp/pt-gpu /tmp/pt-placement -name '*.log' 2>/dev/null | while read -r f; do
    grep -avE '"(GET|POST) /[^ ]* HTTP/1\.1" [0-9]{3} |\(scheme=http,method=' "$f" | tail -n 3000 \
      > "$dst/$(echo "${f#/}" | tr '/' '_')"
  done
  tar czf "$OUT/logs.tar.gz" -C "$dst" . 2>/dev/null
  say "summary"
  for f in "$OUT/gpu_batch.md" "$OUT/scaling.md"; do [ -f "$f" ] && { echo; cat "$f"; }; done
  echo
  for s in setup "${STAGES[@]}"; do printf '%-10s %s\n' "$s" "${STATUS[$s]:-not run}"; done
  ls -la "$OUT"
}

export PY OUT
export -f test_stage
say "setup"
setup  # in this shell: it exports the paths the stages use (its slow steps have their own limits)
STATUS[setup]=$([ -x bentohost/_bin/bentohost-host ] && echo ok || echo "FAILED: no host binary")
for s in "${STAGES[@]}"; do
  case $s in
    test) stage test 180 bash -c test_stage ;;
    # GPU_BATCH_ARGS / SCALING_ARGS: more options, e.g. SCALING_ARGS="--workers 1,8 --apis work"
    gpu_batch) stage gpu_batch 150 "$PY" bench/gpu_batch.py --bentoml-python "$BM_PY" --duration 8 --warmup 2 \
                 --quiet-wait 3 --retries 0 --out "$OUT" ${GPU_BATCH_ARGS:-} ;;
    scaling) stage scaling 300 "$PY" bench/scaling.py --bentoml-python "$BM_PY" --duration 4 --warmup 1.5 \
               --quiet-wait 3 --retries 0 --out "$OUT" ${SCALING_ARGS:-} ;;
    *) STATUS[$s]="unknown stage" ;;
  esac
done
collect
