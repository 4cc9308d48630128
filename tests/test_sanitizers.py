"""The end-to-end suites again, with the host built under AddressSanitizer and UBSan.

The C unit tests already run their own sanitizer builds; this covers the whole host
(supervisor, I/O thread, bridge, batcher, multipart, pyhost's reference handling)
with real Python workers. Sanitizer reports go to files (``log_path``): the test
fails if any appears, whatever the inner suites concluded.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Suites that exercise the C paths most; timing-tight ones (429 latency bounds)
# are left out because the instrumented host is several times slower.
SUITES = [
    "tests/test_api_roundtrip.py",
    "tests/test_http_edges.py",
    "tests/test_errors.py",
    "tests/test_streaming.py",
    "tests/test_multipart.py",
    "tests/test_upload_memory.py",
    "tests/test_context.py",
    "tests/test_batching.py",
    "tests/test_timeout.py",
    "tests/test_workers.py",
    "tests/test_graph.py",
    "tests/test_graph_calls.py",
    "tests/test_graph_metrics.py",
    "tests/test_config_file.py",
    "tests/test_graph_streams.py",
    "tests/test_tls.py",
    "tests/test_cors.py",
    "tests/test_serve_flags.py",
    "tests/test_access_log.py",
    "tests/test_json_arrays.py",
]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler"),
    pytest.mark.skipif(os.environ.get("BENTOHOST_SKIP_SANITIZERS") == "1", reason="BENTOHOST_SKIP_SANITIZERS=1"),
]


def test_host_is_clean_under_asan_and_ubsan(tmp_path: Path) -> None:
    build = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_host", "--sanitize"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    binary = ROOT / "bentohost" / "_bin" / "bentohost-host-asan"
    assert binary.exists()

    reports = tmp_path / "reports"
    reports.mkdir()
    env = dict(os.environ)
    env["BENTOHOST_BIN"] = str(binary)
    # Leaks: CPython keeps interned objects and arenas to the end by design, and
    # workers exit without finalising; the C unit tests check leaks of our own code.
    env["ASAN_OPTIONS"] = f"detect_leaks=0:log_path={reports}/asan"
    env["UBSAN_OPTIONS"] = f"print_stacktrace=1:log_path={reports}/ubsan"
    run = subprocess.run(
        # BentoML's own client needs its cached venv (the cache provider is off here)
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-k", "not real_bentoml", *SUITES],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    found = sorted(reports.iterdir())
    details = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[:4000]}" for p in found[:5])
    assert not found, f"sanitizer reports:\n{details}"
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
