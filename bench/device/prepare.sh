#!/usr/bin/env bash
# bench/device/prepare.sh: run HERE (the x86-64 Debian dev machine), in the checkout whose tree
# the GPU machine will get, before `bench/device/run.sh` is run there. It fills the git-ignored
# folder .device/ with what that machine lacks (it reaches no package registry):
#
#   .device/include, .device/lib   headers and shared libraries of the host's C dependencies
#                                  (libuv, cJSON, libyaml, OpenSSL) and wrk's LuaJIT: the host is
#                                  BUILT THERE (bench/device/build_host.py), since it embeds the
#                                  Python it links and that machine's (3.12, with torch) is not ours
#   .device/llhttp                 llhttp's C sources and header (Debian's node-llhttp)
#   .device/bin/wrk                Debian's wrk
#   .device/whl                    cp312 manylinux wheels bentohost needs and the image lacks
#                                  (pydantic and its own needs), at the versions installed here
#   .device/bentoml-whl            bentoml 1.4 and those of its needs the image lacks (skip with
#                                  --no-bentoml); the GPU machine's python3 runs it
#
# Once per checkout, so that git ignores it:   echo /.device/ >> "$(git rev-parse --git-path info/exclude)"
# Then:                                         bash bench/device/prepare.sh [--no-bentoml]
# It prints the size of what travels (the limit is 64 MiB: the tree plus the carried paths).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
D=${DEVICE_DIR:-$ROOT/.device}
PY=${PYTHON:-python3}
WITH_BENTOML=1
[ "${1:-}" = "--no-bentoml" ] && WITH_BENTOML=0

# pip's options for the GPU machine's interpreter: CPython 3.12 on x86-64 glibc (README of the
# device tool); pip matches each manylinux_2_N tag exactly, so several are named.
# (DEVICE_PYTHON_VERSION=3.11 makes a set for this machine's Python, to try run.sh here.)
PIP_TARGET=(--only-binary=:all: --python-version "${DEVICE_PYTHON_VERSION:-3.12}" --implementation cp
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64
  --platform manylinux_2_5_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_27_x86_64
  --platform manylinux_2_28_x86_64 --platform manylinux_2_31_x86_64 --platform manylinux_2_34_x86_64
  --platform manylinux_2_35_x86_64)

# Python packages already in the GPU machine's image ('cuda', as listed by the device tool's
# KINDS.md on 2026-11-17), normalised (lower case, '-'): their wheels are not carried.
IMAGE_PACKAGES="absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs
botorch build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage
cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops
equinox etils execnet filelock flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio
h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna imageio iniconfig
interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver
lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown
markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict
multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro
nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft
nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py
nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime
onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint
packaging pandas pathspec patsy peft pillow pip pluggy portalocker prometheus-client propcache
protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions
pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist python-dateutil
pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six
sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore
threadpoolctl tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric
torchmetrics torchvision tqdm transformers treescope triton typer typing-extensions typing-inspect
urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp"

say() { printf '\n== %s\n' "$*"; }

need_debs() {
  local missing=()
  for pkg in libuv1-dev libcjson-dev libyaml-dev libssl-dev node-llhttp wrk; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "missing Debian packages: ${missing[*]} (make deps, or apt-get install ${missing[*]})" >&2
    exit 2
  fi
}

copy_headers() {
  # every header of the -dev packages, at its path under /usr/include (the multiarch
  # folder flattened: OpenSSL keeps opensslconf.h and configuration.h there)
  local pkg h rel
  for pkg in libuv1-dev libcjson-dev libyaml-dev libssl-dev; do
    dpkg -L "$pkg" | grep '\.h$' | while read -r h; do
      rel=${h#/usr/include/}
      rel=${rel#x86_64-linux-gnu/}
      mkdir -p "$D/include/$(dirname "$rel")"
      cp "$h" "$D/include/$rel"
    done
  done
}

copy_libs() {
  # the shared libraries the host and wrk load, under their sonames; run.sh puts on the
  # library path only those the GPU machine lacks, and links the host against these
  local host="$ROOT/bentohost/_bin/bentohost-host" bin lib
  [ -x "$host" ] || (cd "$ROOT" && "$PY" setup.py -q build_host)
  for bin in "$host" /usr/bin/wrk; do
    ldd "$bin" | awk '/=> \//{print $3}' | while read -r lib; do
      case "$(basename "$lib")" in
        libuv.so.*|libcjson.so.*|libyaml-0.so.*|libssl.so.*|libcrypto.so.*|libluajit-5.1.so.*)
          cp -L "$lib" "$D/lib/$(basename "$lib")" ;;
      esac
    done
  done
  cp /usr/bin/wrk "$D/bin/wrk"
}

copy_llhttp() {
  cp /usr/share/llhttp/*.c "$D/llhttp/src/"
  cp /usr/share/include/llhttp/*.h "$D/llhttp/include/"
}

local_version() {
  "$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$1"
}

bentohost_wheels() {
  # pydantic as tested here (its version and its own needs' versions), for CPython 3.12
  local specs=() name
  for name in pydantic pydantic-core annotated-types typing-inspection typing-extensions; do
    specs+=("$name==$(local_version "$name")")
  done
  "$PY" -m pip download -q --no-deps "${PIP_TARGET[@]}" -d "$D/whl" "${specs[@]}"
}

in_image() {
  local n
  n=$(basename "$1" | sed -E 's/-[0-9].*//; s/_/-/g' | tr 'A-Z' 'a-z')
  [[ " $(echo $IMAGE_PACKAGES) " == *" $n "* ]]
}

bentoml_wheels() {
  # bentoml 1.4 with its needs resolved for CPython 3.12, less what the image has
  local tmp w kept=0 dropped=0
  tmp=$(mktemp -d)
  "$PY" -m pip download -q "${PIP_TARGET[@]}" -d "$tmp" 'bentoml>=1.4,<1.5'
  for w in "$tmp"/*.whl; do
    if in_image "$w"; then dropped=$((dropped + 1)); else mv "$w" "$D/bentoml-whl/"; kept=$((kept + 1)); fi
  done
  rm -rf "$tmp"
  echo "bentoml: $kept wheels carried, $dropped left out (the image has them)"
}

tree_bytes() {
  # what travels without carry: tracked files and untracked ones git does not ignore
  # (.device itself left out: it is counted as the carried path)
  local rel=${D#"$ROOT"/}
  (cd "$ROOT" && { git ls-files -z; git ls-files -z --others --exclude-standard; } \
    | grep -zv "^$rel/" | xargs -0 -r du -cb 2>/dev/null | awk '$2 == "total" {t += $1} END {print t + 0}')
}

main() {
  need_debs
  rm -rf "$D"
  mkdir -p "$D"/include "$D"/lib "$D"/bin "$D"/llhttp/src "$D"/llhttp/include "$D"/whl "$D"/bentoml-whl
  say "headers, libraries, llhttp, wrk"
  copy_headers
  copy_libs
  copy_llhttp
  say "wheels for bentohost (CPython 3.12)"
  bentohost_wheels
  ls "$D/whl"
  if [ "$WITH_BENTOML" = 1 ]; then
    say "wheels for bentoml (CPython 3.12)"
    bentoml_wheels
  fi
  {
    echo "made by bench/device/prepare.sh on $(date -u +%FT%TZ) from $(git -C "$ROOT" rev-parse --short HEAD)"
    echo "libraries:"; ls "$D/lib"
    echo "wheels:"; ls "$D/whl" "$D/bentoml-whl"
  } > "$D/MANIFEST.txt"
  say "sizes"
  du -sh "$D"/* | sort -h
  local carry tree
  carry=$(du -sb "$D" | cut -f1)
  tree=$(tree_bytes)
  awk -v c="$carry" -v t="$tree" 'BEGIN {
    printf "carry .device: %.1f MiB; the tree that travels anyway: %.1f MiB; together %.1f MiB of 64\n",
      c / 1048576, t / 1048576, (c + t) / 1048576 }'
  if [ $((carry + tree)) -gt $((62 * 1048576)) ]; then
    echo "TOO BIG for one call: run again with --no-bentoml" >&2
    exit 1
  fi
  git -C "$ROOT" check-ignore -q "$D" || echo "NOTE: .device/ is not ignored by git here: echo /.device/ >> \"\$(git rev-parse --git-path info/exclude)\""
}

main
