"""`pip install` into a clean virtualenv, then serve from it (slow; needs the package index)."""

import os
import shutil
import subprocess
import sys

import pytest
import requests

from conftest import HOST_BINARY, REPO, SERVICES, Server, children_of

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("BENTOHOST_SKIP_VENV_TEST") == "1",
                       reason="BENTOHOST_SKIP_VENV_TEST=1"),
]


def test_pip_install_into_clean_venv_and_serve(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    # copy the repo without build leftovers so the install builds from source
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".git", "build", "dist", "*.egg-info", "__pycache__", ".venv", ".bench", "_bin", ".pytest_cache"))
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env.pop("PYTHONHOME", None)
    p = subprocess.run([str(py), "-m", "pip", "install", "--quiet", str(src)], capture_output=True, text=True,
                       timeout=900, env=env, cwd=tmp_path)
    assert p.returncode == 0, f"pip install failed:\n{p.stdout}\n{p.stderr}"

    # the installed package is importable and is not the repo checkout
    p = subprocess.run([str(py), "-c", "import bentohost, sys; print(bentohost.__file__)"],
                       capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().startswith(str(venv)), p.stdout

    workdir = tmp_path / "work"
    workdir.mkdir()
    shutil.copy(SERVICES / "venv_probe.py", workdir / "probe.py")
    srv = Server("probe.py:Probe", "--workers", "1", log_path=tmp_path / "server.log", python=str(py),
                 cwd=workdir, use_repo=False)
    try:
        srv.start()
        r = requests.post(srv.url + "/where", json={"text": "from the venv"}, timeout=30)
        assert r.status_code == 200, r.text
        info = r.json()
        assert info["echo"] == "from the venv"
        assert os.path.realpath(info["prefix"]) == os.path.realpath(venv), info
        assert info["bentohost_file"].startswith(str(venv)), info
        assert info["worker_index"] == 1
        exe = os.path.realpath(f"/proc/{info['pid']}/exe")
        assert exe.startswith(os.path.realpath(venv)) and exe.endswith("bentohost-host"), exe
        assert exe != os.path.realpath(HOST_BINARY)
        assert info["pid"] in children_of(srv.pid)
    finally:
        srv.kill()
