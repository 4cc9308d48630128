"""`python -m bentohost build` / `containerize` without a container tool: the bentofile, the
file selection, the generated context and Dockerfile, and the errors (one line, exit 2).
The images themselves are built and run in tests/test_image.py."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import REPO, SERVICES, base_env

from bentohost._bentofile import BentoFileError, load_bentofile
from bentohost._build import DEFAULT_BASE, MARKER, base_image, dockerfile, write_context
from bentohost._containerize import ContainerizeError, backend_options, build_command, find_backend
from bentohost._select import PathSpec, select_files


def project(tmp_path: Path, bentofile: str, files: dict[str, str] | None = None) -> Path:
    root = tmp_path / "proj"
    root.mkdir(exist_ok=True)
    (root / "bentofile.yaml").write_text(textwrap.dedent(bentofile))
    for rel, text in {"service.py": "", **(files or {})}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def cli(*args: str, cwd: Path = REPO, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bentohost", *args], capture_output=True, text=True,
                          timeout=60, cwd=cwd, env=base_env(env))


# ------------------------------------------------------------------ bentofile.yaml


def test_a_full_bentofile_is_read(tmp_path):
    root = project(tmp_path, """\
        service: "service:Summarizer"
        description: "file: ./README.md"
        labels: {owner: team, version: 2}
        include: ["*.py", "models/"]
        exclude: "tests/"
        python:
          requirements_txt: ./requirements.txt
          packages: ["numpy>=1.26", six]
          index_url: https://index.example/simple
          extra_index_url: [https://extra.example/simple]
          pip_args: "--prefer-binary --timeout 60"
          lock_packages: true
        envs:
          - name: MODEL
            value: small
          - name: SECRET
        docker:
          distro: debian
          python_version: "3.11"
          system_packages: [ffmpeg, libgl1=1.6.0-1]
          env: {HF_HOME: /tmp/hf}
          setup_script: setup.sh
        """, {"README.md": "# The summarizer\n\nMore text.\n", "requirements.txt": "torch\n",
              "setup.sh": "#!/bin/sh\necho hi\n"})
    bf = load_bentofile(root)
    assert bf.service == "service:Summarizer" and bf.name == "summarizer"
    assert bf.description == "The summarizer"
    assert bf.labels == {"owner": "team", "version": "2"}
    assert bf.include == ["*.py", "models/"] and bf.exclude == ["tests/"]
    assert bf.packages == ["numpy>=1.26", "six"] and bf.requirements_txt == root / "requirements.txt"
    assert bf.pip_options == ["--index-url https://index.example/simple",
                              "--extra-index-url https://extra.example/simple"]
    assert bf.pip_args == ["--prefer-binary", "--timeout", "60"]
    assert bf.envs == {"HF_HOME": "/tmp/hf", "MODEL": "small"}
    assert bf.system_packages == ["ffmpeg", "libgl1=1.6.0-1"] and bf.setup_script == root / "setup.sh"
    assert any("lock_packages" in w for w in bf.warnings) and any("python_version" in w for w in bf.warnings)
    assert any("SECRET" in w for w in bf.warnings)
    assert not any("distro" in w for w in bf.warnings)  # debian is what the image is


@pytest.mark.parametrize("text, message", [
    ("service: svc:S\nmodel: x\n", "unknown key 'model'"),
    ("service: svc:S\npython: {package: [x]}\n", "unknown key python.'package'"),
    ("service: svc:S\nmodels: [iris:latest]\n", "models is not supported"),
    ("service: svc:S\ndocker: {cuda_version: '12.1'}\n", "docker.cuda_version is not supported"),
    ("description: x\n", "service is missing"),
    ("service: 'not a target'\n", "expected \"module:Class\""),
    ("service: svc:S\ndocker: {system_packages: ['curl; rm -rf /']}\n", "not a Debian package name"),
    ("service: svc:S\nenvs: [{name: 'A-B', value: x}]\n", "not an environment variable name"),
    ("service: svc:S\nenvs: [{name: A, value: \"two\\nlines\"}]\n", "must be one line"),
    ("service: svc:S\npython: {requirements_txt: nope.txt}\n", "no such file: nope.txt"),
    ("service: svc:S\ninclude: {a: b}\n", "include: expected a list of strings"),
    ("service: [svc\n", "bentofile.yaml:2:1: malformed YAML"),
    ("- just a list\n", "expected a mapping of keys"),
])
def test_bad_bentofiles_are_one_line_errors(tmp_path, text, message):
    root = project(tmp_path, text)
    with pytest.raises(BentoFileError) as info:
        load_bentofile(root)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_no_bentofile(tmp_path):
    with pytest.raises(BentoFileError, match="no bentofile.yaml"):
        load_bentofile(tmp_path)


# ------------------------------------------------------------------ include / exclude


@pytest.mark.parametrize("pattern, path, matched", [
    ("*.py", "service.py", True),
    ("*.py", "pkg/deep/mod.py", True),
    ("/*.py", "pkg/mod.py", False),
    ("pkg/*.py", "pkg/mod.py", True),
    ("pkg/*.py", "pkg/sub/mod.py", False),
    ("pkg/**/*.py", "pkg/sub/mod.py", True),
    ("**/data", "a/b/data/x.txt", True),
    ("data/", "data/x.txt", True),
    ("data/", "data", False),          # a file called data: the pattern is for directories
    ("data", "data", True),
    ("model?.bin", "model1.bin", True),
    ("model[0-9].bin", "modelx.bin", False),
])
def test_gitignore_patterns(pattern, path, matched):
    assert PathSpec([pattern]).matches(path) is matched


def test_select_files(tmp_path):
    root = tmp_path / "p"
    for rel in ("service.py", "util/helpers.py", "util/scratch_x.py", "data/a.txt", "data/b.csv",
                "notes.md", "__pycache__/service.cpython-311.pyc", ".git/HEAD", ".venv/bin/python",
                "tests/test_x.py", "private/key.pem", "private/keep.txt", "private/other.txt",
                "build/out/x.py"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x")
    (root / "private" / ".bentoignore").write_text("# comment\n*.pem\n")
    include, exclude = ["*.py", "data/*.txt", "private/"], ["scratch_*", "tests/", "private/*.txt", "!keep.txt"]
    files = sorted(select_files(root, include, exclude, skip=root / "build"))
    assert files == ["data/a.txt", "private/.bentoignore", "private/keep.txt", "service.py", "util/helpers.py"]
    assert sorted(select_files(root, ["*"], [], skip=root / "build")) == [
        "data/a.txt", "data/b.csv", "notes.md", "private/.bentoignore", "private/keep.txt", "private/other.txt",
        "service.py", "tests/test_x.py", "util/helpers.py", "util/scratch_x.py"]


# ------------------------------------------------------------------ the context


def test_write_context(tmp_path):
    root = project(tmp_path, """\
        service: service:Svc
        name: my-svc
        description: One line
        labels: {team: ml}
        include: ["*.py"]
        python:
          requirements_txt: req.txt
          packages: [six]
          index_url: https://index.example/simple
          pip_args: --prefer-binary
        envs: [{name: QUOTED, value: 'say "hi" for $5 \\ now'}]
        docker: {system_packages: [netbase], setup_script: setup.sh}
        """, {"req.txt": "requests>=2\n", "lib/x.py": "", "setup.sh": "#!/bin/sh\ntrue\n", "README": "r"})
    bf = load_bentofile(root)
    out = tmp_path / "ctx"
    files = write_context(bf, out, "localhost/bentohost:test")
    assert files == ["bentofile.yaml", "lib/x.py", "service.py"]
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == sorted(
        [MARKER, "Dockerfile", "env/python/requirements.txt", "env/docker/setup_script", "src/bentofile.yaml",
         "src/lib/x.py", "src/service.py"])
    assert (out / "env/python/requirements.txt").read_text() == (
        "--index-url https://index.example/simple\nrequests>=2\nsix\n")
    text = (out / "Dockerfile").read_text()
    assert "ARG BENTOHOST_IMAGE=localhost/bentohost:test\nFROM ${BENTOHOST_IMAGE}\n" in text
    assert 'ENV QUOTED="say \\"hi\\" for \\$5 \\\\ now"' in text
    assert "apt-get install -y --no-install-recommends netbase" in text
    assert "pip install --no-cache-dir --disable-pip-version-check --prefer-binary -r" in text
    assert '"org.opencontainers.image.title"="my-svc"' in text and '"team"="ml"' in text
    assert text.rstrip().endswith('USER 10001:10001\nCMD ["service:Svc"]')
    assert text.index("USER root") < text.index("apt-get") < text.index("COPY src/ /app/")
    # an earlier context is replaced; any other directory is not
    write_context(bf, out, "x")
    assert "FROM ${BENTOHOST_IMAGE}" in (out / "Dockerfile").read_text()
    (tmp_path / "mine").mkdir()
    with pytest.raises(BentoFileError, match="not a bentohost build context"):
        write_context(bf, tmp_path / "mine", "x")


def test_a_bentofile_without_packages_has_no_pip_step(tmp_path):
    bf = load_bentofile(project(tmp_path, "service: service:Svc\n"))
    text = dockerfile(bf, "b", has_requirements=False)
    assert "pip install" not in text and "apt-get" not in text and "ENV" not in text


def test_base_image_precedence(tmp_path, monkeypatch):
    bf = load_bentofile(project(tmp_path, "service: service:Svc\n"))
    monkeypatch.delenv("BENTOHOST_BASE_IMAGE", raising=False)
    assert base_image(None, bf) == DEFAULT_BASE == f"bentohost:{__import__('bentohost').__version__}"
    monkeypatch.setenv("BENTOHOST_BASE_IMAGE", "from-env")
    assert base_image(None, bf) == "from-env"
    bf.base_image = "from-file"
    assert base_image(None, bf) == "from-file" and base_image("flag", bf) == "flag"


# ------------------------------------------------------------------ containerize


def test_backend_options_and_commands():
    assert backend_options(["network=host", "no-cache", "build-arg=A=b"]) == [
        "--network=host", "--no-cache", "--build-arg=A=b"]
    with pytest.raises(ContainerizeError):
        backend_options(["bad key=1"])
    assert build_command("buildah", "/b", "ctx", "t:1", []) == ["/b", "bud", "-t", "t:1", "ctx"]
    assert build_command("docker", "/d", "ctx", "t:1", ["pull"]) == ["/d", "build", "-t", "t:1", "--pull", "ctx"]


def test_no_container_tool(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ContainerizeError, match="no container tool found"):
        find_backend(None)
    with pytest.raises(ContainerizeError, match="'podman' is not installed"):
        find_backend("podman")
    tool = tmp_path / "buildah"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    assert find_backend(None) == ("buildah", str(tool))


# ------------------------------------------------------------------ the command line


def test_cli_build_writes_the_context(tmp_path):
    out = tmp_path / "ctx"
    p = cli("build", str(SERVICES / "image_project"), "-o", str(out), "--base", "localhost/bh:1")
    assert p.returncode == 0, p.stderr
    assert p.stderr == "" and "FROM localhost/bh:1" in p.stdout
    assert sorted(str(f.relative_to(out / "src")) for f in (out / "src").rglob("*") if f.is_file()) == [
        "bentofile.yaml", "data/greeting.txt", "service.py"]
    assert (out / "env/python/requirements.txt").read_text() == "six\n"


def test_cli_default_output_is_in_the_project(tmp_path):
    root = project(tmp_path, "service: service:Svc\n")
    assert cli("build", str(root)).returncode == 0
    assert cli("build", cwd=root).returncode == 0  # DIR defaults to ., the old context is replaced
    files = sorted(str(f.relative_to(root)) for f in root.rglob("*") if f.is_file())
    assert files == [".bentohost/build/.bentohost-build", ".bentohost/build/Dockerfile",
                     ".bentohost/build/src/bentofile.yaml", ".bentohost/build/src/service.py",
                     "bentofile.yaml", "service.py"]


@pytest.mark.parametrize("args, message", [
    (["build", "{tmp}"], "no bentofile.yaml"),
    (["build", "{tmp}/nope"], "not a directory"),
    (["build", "{proj}"], "unknown key 'servce'"),
    (["containerize", "{good}", "-t", "Bad Tag"], "not an image tag"),
    (["containerize", "{good}", "--backend", "rkt"], "unknown backend 'rkt'"),
    (["containerize", "{good}"], "no container tool found"),
])
def test_cli_errors_are_one_line(tmp_path, args, message):
    bad = project(tmp_path, "servce: service:Svc\n")
    good = tmp_path / "good"
    good.mkdir()
    (good / "bentofile.yaml").write_text("service: service:Svc\n")
    fmt = {"tmp": str(tmp_path), "proj": str(bad), "good": str(good)}
    p = cli(*[a.format(**fmt) for a in args], env={"PATH": str(tmp_path / "empty")})
    assert p.returncode == 2, (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bentohost: error: ") and message in lines[0], p.stderr


# ------------------------------------------------------------------ the Dockerfile


def test_dockerfile_defaults_match_the_package():
    import bentohost

    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"^ARG VERSION=(\S+)$", text, re.M).group(1) == bentohost.__version__
    assert re.search(r"^ARG BASE_IMAGE=python:3\.\d+-slim-bookworm$", text, re.M)
    for needed in ("STOPSIGNAL SIGTERM", "USER 10001:10001", "PYTHONDONTWRITEBYTECODE=1",
                   "org.opencontainers.image.version"):
        assert needed in text
    ignore = (REPO / ".dockerignore").read_text().split()
    assert {"!setup.py", "!README.md", "!csrc/", "!bentohost/"} <= set(ignore)
    assert os.path.isfile(REPO / "setup.py")
