"""The real ``bentoml.SyncHTTPClient`` / ``bentoml.AsyncHTTPClient`` (1.4, from PyPI) against bentohost.

A virtualenv with ``bentoml>=1.4,<1.5`` (plus pandas and Pillow, which the checks use) is made once
and cached: ``.bench/bentoml-venv`` when it exists, else the pytest cache. The checks themselves are
``tests/services/client_checks.py``, run as a script inside that venv against a bentohost server
started here with the repository's interpreter. The test is skipped when the package index cannot be
reached to build the venv.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, SERVICES

pytestmark = pytest.mark.slow

BENCH_VENV = REPO / ".bench" / "bentoml-venv"
BENTOML_SPEC = "bentoml>=1.4,<1.5"
EXTRA_PACKAGES = ["pandas", "pillow"]
CHECKS = SERVICES / "client_checks.py"

_OFFLINE_MARKERS = (
    "No matching distribution found",
    "Could not find a version",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "Name or service not known",
    "Connection refused",
    "ConnectTimeout",
    "ReadTimeout",
    "Max retries exceeded",
    "ProxyError",
)


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _probe(python: Path, code: str) -> bool:
    if not python.exists():
        return False
    r = subprocess.run([str(python), "-c", code], capture_output=True, timeout=120)
    return r.returncode == 0


def _has_bentoml(python: Path) -> bool:
    return _probe(
        python,
        "import bentoml, sys; v = tuple(int(x) for x in bentoml.__version__.split('.')[:2]); "
        "sys.exit(0 if v == (1, 4) else 1)",
    )


def _pip_install(python: Path, *packages: str) -> None:
    r = subprocess.run(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", *packages],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if r.returncode != 0:
        out = r.stdout + r.stderr
        if any(m in out for m in _OFFLINE_MARKERS):
            pytest.skip(f"package index unreachable, cannot install {' '.join(packages)}: {out.strip()[-300:]}")
        pytest.fail(f"pip install {' '.join(packages)} failed:\n{out}")


@pytest.fixture(scope="session")
def bentoml_python(request) -> Path:
    """The interpreter of a virtualenv that has the real bentoml 1.4 plus pandas and Pillow."""
    if _has_bentoml(_venv_python(BENCH_VENV)):
        venv = BENCH_VENV
    else:
        venv = Path(request.config.cache.mkdir("bentoml-venv"))
        python = _venv_python(venv)
        if not _has_bentoml(python):
            if not python.exists():
                subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
            _pip_install(python, BENTOML_SPEC, *EXTRA_PACKAGES)
            if not _has_bentoml(python):
                pytest.fail(f"bentoml is not importable in {venv} after installing it")
    python = _venv_python(venv)
    if not _probe(python, "import pandas, PIL, numpy"):
        _pip_install(python, *EXTRA_PACKAGES, "numpy")
    return python


@pytest.fixture(scope="module")
def io_server(module_server_factory):
    return module_server_factory("client_io.py:ClientIO", "--workers", "1")


def _run_checks(python: Path, url: str, mode: str, home: Path) -> None:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # the venv must not see the repository's bentohost
    env["BENTOML_HOME"] = str(home)
    env["BENTOML_DO_NOT_TRACK"] = "True"
    try:
        r = subprocess.run(
            [str(python), str(CHECKS), url, "bentoml", mode],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
            cwd=str(CHECKS.parent),
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the bentoml client checks ({mode}) did not finish in 300s:\n{exc.stdout}\n{exc.stderr}")
    if r.returncode != 0 or "ALL OK" not in r.stdout:
        pytest.fail(
            f"the real bentoml {mode} client checks failed against bentohost (rc {r.returncode})\n"
            f"----- stdout -----\n{r.stdout}\n----- stderr -----\n{r.stderr[-6000:]}",
            pytrace=False,
        )


def test_real_bentoml_sync_client(bentoml_python, io_server, tmp_path):
    """bentoml.SyncHTTPClient calls every IO type of client_io.py against bentohost."""
    _run_checks(bentoml_python, io_server.url, "sync", tmp_path)


def test_real_bentoml_async_client(bentoml_python, io_server, tmp_path):
    """bentoml.AsyncHTTPClient: the same values, streams, concurrency and an error."""
    _run_checks(bentoml_python, io_server.url, "async", tmp_path)
