"""The outbound HTTP/1.1 client (csrc/net/client*.c), driven by tests/c/test_client.c
against a test server of its own on Unix sockets and loopback TCP. The program is
compiled here with gcc twice, plainly and with ASan/UBSan (LeakSanitizer included);
the tests skip when gcc, libuv's headers or llhttp's sources are missing."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
TEST_SRC = ROOT / "tests" / "c" / "test_client.c"
LLHTTP_SRC = Path(os.environ.get("BH_LLHTTP_SRC", "/usr/share/llhttp"))
LLHTTP_INC = Path(os.environ.get("BH_LLHTTP_INC", "/usr/share/include/llhttp"))
LLHTTP_SOURCES = ["api.c", "http.c", "llhttp.c"]

# As setup.py builds the host: llhttp's strict mode changes llhttp.c and its header.
CFLAGS = ["-std=c11", "-D_GNU_SOURCE", "-DLLHTTP_STRICT_MODE=1", "-Wall", "-Wextra", "-Werror", "-pthread"]
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer"]


def _missing_toolchain():
    if shutil.which("gcc") is None:
        return "gcc not found"
    if not Path("/usr/include/uv.h").exists() and not os.environ.get("BH_UV_INC"):
        return "libuv headers (uv.h) not found"
    if not all((LLHTTP_SRC / s).exists() for s in LLHTTP_SOURCES):
        return f"llhttp sources not found in {LLHTTP_SRC}"
    if not (LLHTTP_INC / "llhttp.h").exists():
        return f"llhttp.h not found in {LLHTTP_INC}"
    return None


_missing = _missing_toolchain()
pytestmark = pytest.mark.skipif(_missing is not None, reason=_missing or "")


def _run(cmd):
    r = subprocess.run([str(c) for c in cmd], check=False, capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError(f"build failed: {' '.join(map(str, cmd))}\n{r.stdout}{r.stderr}")


def _build(out: Path, flags):
    inc = [f"-I{CSRC}", f"-I{LLHTTP_INC}"]
    if os.environ.get("BH_UV_INC"):
        inc.append(f"-I{os.environ['BH_UV_INC']}")
    objs = []
    for s in LLHTTP_SOURCES:
        o = out.parent / f"{out.name}-llhttp-{s[:-2]}.o"
        # llhttp's generated code has unused parameters everywhere
        _run(["gcc", *CFLAGS, "-Wno-unused-parameter", *flags, *inc, "-c", LLHTTP_SRC / s, "-o", o])
        objs.append(o)
    client = [*sorted((CSRC / "net").glob("client*.c")), CSRC / "net" / "tls.c", CSRC / "common" / "log.c"]
    _run(["gcc", *CFLAGS, *flags, *inc, TEST_SRC, *client, *objs, "-luv", "-lssl", "-lcrypto", "-o", out])
    return out


def _execute(exe: Path, tmp_path: Path, env=None):
    env = dict(os.environ if env is None else env, TMPDIR=str(tmp_path))
    r = subprocess.run([str(exe)], check=False, capture_output=True, text=True, timeout=240, env=env)
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}{r.stderr[-8000:]}"
    assert r.stdout.strip().endswith("OK"), r.stdout + r.stderr
    assert list(tmp_path.iterdir()) == [], "the test server left files behind"
    return r


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cclient")


def test_client(build_dir, tmp_path):
    exe = _build(build_dir / "test_client", ["-O2", "-g"])
    _execute(exe, tmp_path)


def test_client_asan_ubsan(build_dir, tmp_path):
    exe = _build(build_dir / "test_client_asan", ["-O1", "-g", *SANITIZE])
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0:exitcode=23"
    env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1:exitcode=24"
    try:
        r = _execute(exe, tmp_path, env)
    except AssertionError as e:
        if "LeakSanitizer does not work under ptrace" in str(e):
            pytest.skip("LeakSanitizer unavailable here")
        raise
    assert "ERROR: AddressSanitizer" not in r.stderr, r.stderr
    assert "ERROR: LeakSanitizer" not in r.stderr, r.stderr
    assert "runtime error" not in r.stderr, r.stderr
