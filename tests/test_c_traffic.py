"""C unit tests of the traffic side: the shared segment and limiter
(tests/c/test_shm.c, forked processes sharing one segment), the batcher and its
JSON item counter with a fake clock (tests/c/test_batch.c), and the /metrics
render parsed by prometheus_client; the dependency-call table
(tests/c/test_dep_metrics.c). Compiled here with gcc; skipped without
gcc or libuv's headers."""
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
TESTS_C = ROOT / "tests" / "c"
CFLAGS = ["-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror", "-pthread", "-I%s" % CSRC]
TRAFFIC = ["traffic/shm.c", "traffic/limiter.c", "traffic/metrics.c", "traffic/dep_metrics.c"]

_missing = None
if shutil.which("gcc") is None:
    _missing = "gcc not found"
elif not Path("/usr/include/uv.h").exists():
    _missing = "libuv headers (uv.h) not found"
pytestmark = pytest.mark.skipif(_missing is not None, reason=_missing or "")


def _build(out, main, sources, extra=("-O2",)):
    cmd = ["gcc", *CFLAGS, *extra, str(main), *[str(CSRC / s) for s in sources], "-luv", "-lm",
           "-o", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError("build failed: %s\n%s%s" % (" ".join(cmd), r.stdout, r.stderr))
    return out


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("ctraffic")


@pytest.fixture(scope="module")
def shm_bin(build_dir):
    return _build(build_dir / "test_shm", TESTS_C / "test_shm.c", TRAFFIC)


def _run(exe, *args, timeout=120):
    r = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_limiter_shm(shm_bin):
    out = _run(shm_bin)
    assert "global max seen" in out
    assert out.strip().endswith("OK")


def _run_flavour(build_dir, name, sources, flavour):
    """Builds tests/c/<name>.c at -O2 or under ASan+UBSan (leaks checked) and runs its checks."""
    extra = ["-O2"] if flavour == "O2" else [
        "-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
        "-fno-sanitize-recover=undefined"]
    exe = _build(build_dir / ("%s_%s" % (name, flavour)), TESTS_C / (name + ".c"), sources, extra)
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120,
                       env={"ASAN_OPTIONS": "detect_leaks=1", "PATH": "/usr/bin:/bin"})
    if "LeakSanitizer does not work under ptrace" in r.stderr:
        pytest.skip("LeakSanitizer unavailable here")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "runtime error" not in r.stderr, r.stderr
    assert r.stdout.strip().endswith("OK")


@pytest.mark.parametrize("flavour", ["O2", "asan"])
def test_batcher(build_dir, flavour):
    _run_flavour(build_dir, "test_batch", ["traffic/batch.c", "traffic/batch_join.c",
                                           "traffic/json_items.c", "traffic/rows.c", "common/decimal.c", *TRAFFIC],
                  flavour)


def test_metrics_render_parses(shm_bin):
    parser = pytest.importorskip("prometheus_client.parser")
    text = _run(shm_bin, "render")
    fams = {f.name: f for f in parser.text_string_to_metric_families(text)}

    req = fams["bentoml_service_request"]
    assert req.type == "counter"
    got = {(s.labels["endpoint"], s.labels["http_response_code"]): s.value for s in req.samples
           if s.name == "bentoml_service_request_total"}
    # two workers' slots summed; 200/500 pre-created at 0 for every route
    assert got[("/classify", "200")] == 3
    assert got[("/classify", "429")] == 1
    assert got[("/classify", "500")] == 0
    assert got[('/e"cho', "404")] == 1
    s0 = next(s for s in req.samples if s.name == "bentoml_service_request_total")
    assert set(s0.labels) == {"endpoint", "service_name", "service_version", "http_response_code",
                              "runner_name"}
    assert s0.labels["service_version"] == "not available"
    assert s0.labels["service_name"] == s0.labels["runner_name"] == "svc"

    dur = fams["bentoml_service_request_duration_seconds"]
    assert dur.type == "histogram"
    b = {s.labels["le"]: s.value for s in dur.samples
         if s.name.endswith("_bucket") and s.labels["endpoint"] == "/classify"
         and s.labels["http_response_code"] == "200"}
    assert b["0.005"] == 1 and b["0.25"] == 2 and b["2.5"] == 3 and b["+Inf"] == 3
    assert "180.0" in b
    total = [s.value for s in dur.samples if s.name.endswith("_sum")
             and s.labels["endpoint"] == "/classify" and s.labels["http_response_code"] == "200"]
    assert abs(total[0] - 1.703) < 1e-6

    inprog = fams["bentoml_service_request_in_progress"]
    assert inprog.type == "gauge"
    # worker 2 died with 2 in progress: a dead worker has none
    assert all(s.value == 0 for s in inprog.samples)

    bs = fams["bentoml_service_adaptive_batch_size"]
    les = [s.labels["le"] for s in bs.samples if s.name.endswith("_bucket")
           and s.labels["worker_index"] == "1"]
    assert les == ["1.0", "2.0", "4.0", "8.0", "16.0", "32.0", "64.0", "100.0", "+Inf"]
    assert {s.labels["worker_index"] for s in bs.samples} == {"1", "2"}
    assert set(bs.samples[0].labels) == {"runner_name", "worker_index", "method_name",
                                         "service_version", "service_name", "le"}

    q = fams["bentohost_batch_queue_seconds"]
    assert [s.value for s in q.samples if s.name.endswith("_count")] == [3]

    rej = {s.labels["reason"]: s.value for s in fams["bentohost_requests_rejected"].samples
           if s.name.endswith("_total")}
    assert {k: v for k, v in rej.items() if v} == {"429": 1, "503": 1, "504": 1}
    # every documented reason is exported, at zero until it happens
    assert {"header_timeout", "body_timeout", "headers_count", "header_size", "body_size",
            "multipart_limit", "bad_request", "not_implemented", "http_version", "connections"} <= set(rej)
    restarts = {s.labels["worker_index"]: s.value for s in fams["bentohost_worker_restarts"].samples
                if s.name.endswith("_total")}
    assert restarts["2"] == 1 and restarts["1"] == 0


@pytest.mark.parametrize("flavour", ["O2", "asan"])
def test_dependency_table(build_dir, flavour):
    """tests/c/test_dep_metrics.c: recording, names cut, the overflow row, two slots summed."""
    _run_flavour(build_dir, "test_dep_metrics", TRAFFIC, flavour)


def test_dependency_render_parses(build_dir):
    parser = pytest.importorskip("prometheus_client.parser")
    exe = _build(build_dir / "test_dep_metrics_render", TESTS_C / "test_dep_metrics.c", TRAFFIC)
    text = _run(exe, "render")
    fams = {f.name: f for f in parser.text_string_to_metric_families(text)}
    dep = fams["bentohost_dependency_request_duration_seconds"]
    assert dep.type == "histogram"
    series = {}
    for s in dep.samples:
        key = (s.labels["service_name"], s.labels["dependency"], s.labels["endpoint"])
        series.setdefault(key, {})[s.name.rsplit("_", 1)[1] if "le" not in s.labels
                                   else s.labels["le"]] = s.value
    assert set(series) == {("Entry", "Leaf", "/predict"), ("Entry", "Other", '/e"p'),
                           ("Leaf", "Other", "/deeper")}
    for key, v in series.items():
        les = [k for k in v if k not in ("count", "sum")]
        assert les[-1] == "+Inf" and len(les) == 19, (key, les)
        counts = [v[k] for k in les]
        assert counts == sorted(counts), (key, counts)
        assert v["+Inf"] == v["count"], key
    assert series[("Entry", "Leaf", "/predict")]["count"] == 4  # two workers' slots summed
    assert abs(series[("Entry", "Leaf", "/predict")]["sum"] - 3.323) < 1e-9
    # the rest of the page is untouched by it
    assert "bentoml_service_request" in fams and "bentohost_worker_restarts" in fams
