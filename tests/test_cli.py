"""The command line: --version, serve --help, bad arguments."""

import re
import subprocess
import sys

from conftest import REPO, base_env


def run_cli(*args, timeout=30):
    return subprocess.run([sys.executable, "-m", "bentohost", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env=base_env())


def test_version():
    p = run_cli("--version")
    assert p.returncode == 0, p.stderr
    out = p.stdout + p.stderr
    assert re.search(r"\d+\.\d+\.\d+", out), out
    import bentohost

    if getattr(bentohost, "__version__", None):
        assert bentohost.__version__ in out


def test_serve_help_lists_options():
    p = run_cli("serve", "--help")
    assert p.returncode == 0, p.stderr
    out = p.stdout
    for opt in ("--port", "--host", "--workers", "--timeout-keep-alive", "--timeout-graceful-shutdown",
                "--max-body-size", "--max-header-size", "--backlog"):
        assert opt in out, f"{opt} missing from serve --help:\n{out}"


def test_top_level_help():
    p = run_cli("--help")
    assert p.returncode == 0, p.stderr
    assert "serve" in p.stdout


def test_serve_without_target_is_usage_error():
    p = run_cli("serve")
    assert p.returncode != 0
    assert p.stderr.strip(), "expected a usage message on stderr"


def test_serve_bad_port_is_usage_error():
    p = run_cli("serve", "tests/services/basic.py:Basic", "--port", "notaport")
    assert p.returncode != 0
    assert "port" in p.stderr.lower()
