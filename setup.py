"""Build and packaging for bentohost.

The C host (csrc/) is compiled into an executable, ``bentohost/_bin/bentohost-host``,
shipped inside the package and linked against libpython of the interpreter that
runs this file. ``python setup.py build_host`` builds it in place for development;
``pip install .`` builds it into the wheel.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import sys
import sysconfig
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from setuptools import Command, find_packages, setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

ROOT = Path(__file__).resolve().parent
CSRC = ROOT / "csrc"
LLHTTP_SRC = Path("/usr/share/llhttp")
LLHTTP_INCLUDE = Path("/usr/share/include/llhttp")
HOST_NAME = "bentohost-host"

# header -> the Debian package that provides it
REQUIRED_HEADERS = {
    "uv.h": "libuv1-dev",
    "cjson/cJSON.h": "libcjson-dev",
    "yaml.h": "libyaml-dev",
    "openssl/ssl.h": "libssl-dev",
}

# llhttp's strict mode: no lenient CRLF after chunk data, no spaces in header names
# (both are where request smuggling begins); it changes llhttp.c and its header.
# -flto: the hot path crosses files (server/conn.c -> parse.c -> respond.c, the
# traffic layer, llhttp), and link-time optimisation inlines across them again.
CFLAGS = ["-std=c11", "-D_GNU_SOURCE", "-DLLHTTP_STRICT_MODE=1", "-O2", "-g", "-pthread", "-fno-strict-aliasing",
          "-flto=auto"]
WARNINGS = ["-Wall", "-Wextra", "-Werror"]


class BuildError(SystemExit):
    pass


def _fail(message: str) -> None:
    raise BuildError(f"error: {message}")


def _python_flags() -> tuple[list[str], list[str]]:
    """Compile and link flags that embed the running interpreter (python3-config --embed)."""
    include = sysconfig.get_paths()["include"]
    if not (Path(include) / "Python.h").exists():
        _fail(f"Python.h not found in {include}: install python3-dev (or the headers of this Python)")
    ldversion = sysconfig.get_config_var("LDVERSION") or sysconfig.get_python_version()
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    libs = shlex.split(sysconfig.get_config_var("LIBS") or "") + shlex.split(
        sysconfig.get_config_var("SYSLIBS") or ""
    )
    if sysconfig.get_config_var("Py_ENABLE_SHARED"):
        link = [f"-L{libdir}", f"-lpython{ldversion}", f"-Wl,-rpath,{libdir}"]
    else:
        # A static libpython: export its symbols so that extension modules
        # loaded by the worker (numpy, pydantic-core) resolve against it.
        libpl = sysconfig.get_config_var("LIBPL") or libdir
        link = [f"-L{libpl}", f"-lpython{ldversion}", "-Wl,-E"]
    return [f"-I{include}"], link + libs + ["-lm"]


def _check_system() -> None:
    cc = os.environ.get("CC", "cc")
    for header, package in REQUIRED_HEADERS.items():
        probe = subprocess.run(
            [cc, "-E", "-x", "c", "-", "-o", os.devnull],
            input=f"#include <{header}>\n",
            text=True,
            capture_output=True,
        )
        if probe.returncode != 0:
            _fail(f"<{header}> not found: install the Debian package {package} (apt-get install {package})")
    if not (LLHTTP_INCLUDE / "llhttp.h").exists() or not (LLHTTP_SRC / "llhttp.c").exists():
        _fail("llhttp sources not found in /usr/share/llhttp: install the Debian package node-llhttp")


def build_host(output: Path, *, sanitize: bool = False, verbose: bool = False) -> Path:
    """Compile csrc/**/*.c and llhttp into one executable at ``output``."""
    _check_system()
    cc = os.environ.get("CC", "cc")
    py_cflags, py_ldflags = _python_flags()
    variant = "asan" if sanitize else "release"
    # The flags are part of the folder's name: objects built with other flags are never reused.
    flags_id = hashlib.sha1(" ".join(CFLAGS + WARNINGS + [cc]).encode()).hexdigest()[:8]
    objdir = ROOT / "build" / f"host-{variant}-{sys.implementation.cache_tag}-{flags_id}"
    objdir.mkdir(parents=True, exist_ok=True)
    extra = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"] if sanitize else []
    headers = sorted(CSRC.rglob("*.h"))
    newest_header = max((h.stat().st_mtime for h in headers), default=0.0)

    jobs: list[tuple[Path, list[str]]] = []
    for src in sorted(CSRC.rglob("*.c")):
        flags = CFLAGS + WARNINGS + extra + py_cflags + [f"-I{CSRC}", f"-I{LLHTTP_INCLUDE}"]
        jobs.append((src, flags))
    for src in sorted(LLHTTP_SRC.glob("*.c")):
        # Third-party code from the system: our warning policy does not apply.
        jobs.append((src, CFLAGS + extra + [f"-I{LLHTTP_INCLUDE}"]))

    def compile_one(job: tuple[Path, list[str]]) -> Path:
        src, flags = job
        if src.parent == LLHTTP_SRC:
            name = "llhttp_" + src.stem
        else:
            name = "_".join(src.relative_to(CSRC).with_suffix("").parts)
        obj = objdir / (name + ".o")
        fresh = obj.exists() and obj.stat().st_mtime >= max(src.stat().st_mtime, newest_header)
        if not fresh:
            cmd = [cc, *flags, "-c", str(src), "-o", str(obj)]
            if verbose:
                print(" ".join(cmd))
            result = subprocess.run(cmd, capture_output=True, text=True)
            if result.returncode != 0:
                sys.stderr.write(result.stdout + result.stderr)
                _fail(f"compiling {src.name} failed")
        return obj

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        objects = list(pool.map(compile_one, jobs))

    output.parent.mkdir(parents=True, exist_ok=True)
    cmd = [cc, *CFLAGS, *extra, "-o", str(output), *map(str, objects), "-luv", "-lcjson", "-lyaml", "-lssl", "-lcrypto", "-ldl", *py_ldflags]
    if verbose:
        print(" ".join(cmd))
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        _fail("linking the bentohost host failed")
    return output


class BuildHost(Command):
    """python setup.py build_host [--sanitize]: build bentohost/_bin/bentohost-host in place."""

    description = "build the C host executable in place"
    user_options = [("sanitize", None, "build with AddressSanitizer and UBSan")]
    boolean_options = ["sanitize"]

    def initialize_options(self) -> None:
        self.sanitize = False

    def finalize_options(self) -> None:
        pass

    def run(self) -> None:
        name = HOST_NAME + ("-asan" if self.sanitize else "")
        out = build_host(ROOT / "bentohost" / "_bin" / name, sanitize=bool(self.sanitize), verbose=bool(self.verbose))
        print(f"built {out}")


class BuildPyWithHost(build_py):
    def run(self) -> None:
        super().run()
        build_host(Path(self.build_lib) / "bentohost" / "_bin" / HOST_NAME)


class BinaryDistribution(Distribution):
    """The wheel carries an executable linked to this Python: it is platform-specific."""

    def has_ext_modules(self) -> bool:
        return True


setup(
    name="bentohost",
    version="0.1.0",
    description="Serve BentoML-style Python ML services from a C host",
    long_description=(ROOT / "README.md").read_text() if (ROOT / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["bentohost", "bentohost.*"]),
    package_data={"bentohost": ["ui/*.html", "py.typed"]},
    # PyYAML: `python -m bentohost build` reads BentoML's bentofile.yaml (BentoML requires it too)
    install_requires=["pydantic>=2.5", "typing_extensions>=4.6", "httpx>=0.24", "PyYAML>=5.4"],
    extras_require={"test": ["pytest>=7", "requests"], "quickstart": ["scikit-learn"]},
    cmdclass={"build_host": BuildHost, "build_py": BuildPyWithHost},
    distclass=BinaryDistribution,
    zip_safe=False,
)
