# bentohost: `make serve` and `make test` work on a fresh Debian/Ubuntu machine:
# they install the system packages and a virtualenv (.venv) first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := build-essential libuv1-dev libcjson-dev libyaml-dev libssl-dev node-llhttp wrk
# only for the test suite: the web page is tested in headless Chromium; the fuzz
# targets (tests/test_fuzz.py) need clang with libFuzzer (-fsanitize=fuzzer)
APT_FUZZ_PACKAGES := clang libclang-rt-dev
# the multi-host test (tests/test_graph_netns.py) makes network namespaces with iproute2
# the image test (tests/test_image.py) builds and runs the Dockerfile's image without a
# daemon or a registry: podman (runc as its runtime), buildah, a base made by mmdebstrap;
# its podman settings are the test's own (tests/oci.py), never written to /etc
APT_IMAGE_PACKAGES := podman buildah mmdebstrap runc
# the TLS tests (tests/test_tls.py) make their certificate authority with the openssl
# tool and also check the server with curl and `openssl s_client`
APT_TLS_PACKAGES := openssl curl
APT_TEST_PACKAGES := chromium iproute2 $(APT_FUZZ_PACKAGES) $(APT_IMAGE_PACKAGES) $(APT_TLS_PACKAGES)
FUZZ_SECONDS ?= 600
PORT ?= 3000

.PHONY: all deps venv host host-asan serve test test-fast bench clean

all: host

# System packages: only when a header or tool is missing, so repeated runs are quiet.
.deps/apt:
	@mkdir -p .deps
	@if ! { [ -f /usr/include/uv.h ] && [ -f /usr/include/cjson/cJSON.h ] && [ -f /usr/include/yaml.h ] \
	      && [ -f /usr/include/openssl/ssl.h ] && [ -f /usr/share/llhttp/llhttp.c ] && command -v wrk >/dev/null; }; then \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(APT_PACKAGES); \
	fi
	@touch $@

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel

.deps/venv: $(PY) tests/requirements.txt
	$(PY) -m pip install -q -r tests/requirements.txt
	@mkdir -p .deps && touch $@

.deps/apt-test: .deps/apt
	@if ! command -v chromium >/dev/null || ! command -v clang >/dev/null || ! command -v ip >/dev/null \
	    || ! command -v podman >/dev/null || ! command -v buildah >/dev/null || ! command -v mmdebstrap >/dev/null \
	    || ! command -v runc >/dev/null || ! command -v openssl >/dev/null || ! command -v curl >/dev/null; then \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(APT_TEST_PACKAGES) \
	  || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(APT_TEST_PACKAGES); }; \
	fi
	@touch $@

deps: .deps/apt .deps/venv

host: deps
	$(PY) setup.py -q build_host

host-asan: deps
	$(PY) setup.py -q build_host --sanitize

serve: host
	$(PY) -m bentohost serve examples/quickstart/service.py:IrisClassifier --port $(PORT) --workers 2

test: host .deps/apt-test
	$(PY) -m pytest -q tests

test-fast: host
	BENTOHOST_SKIP_VENV_TEST=1 $(PY) -m pytest -q -m "not slow" tests

# Long fuzzing runs: each libFuzzer target of tests/test_fuzz.py for FUZZ_SECONDS.
.PHONY: fuzz
fuzz: deps
	@if ! echo 'int LLVMFuzzerTestOneInput(const char *d, long n) { return 0; }' \
	    | clang -fsanitize=fuzzer -x c - -o /dev/null 2>/dev/null; then \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(APT_FUZZ_PACKAGES); \
	fi
	BENTOHOST_FUZZ_SECONDS=$(FUZZ_SECONDS) $(PY) -m pytest -q -s tests/test_fuzz.py

bench: host
	$(PY) bench/run.py

clean:
	rm -rf build bentohost/_bin .deps
