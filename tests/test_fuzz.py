"""Coverage-guided fuzzing of the C host with libFuzzer (clang), under ASan and UBSan.

Two targets in tests/fuzz/ (see tests/fuzz/README.md):

  fuzz_request    one connection's bytes through the real server code: llhttp (strict
                  mode), the parser glue, limits, routing, responses, streams, multipart
  fuzz_multipart  the multipart/form-data parser and the request that receives its parts

Each is built here with clang from every csrc/ file of the layers up to the server
(csrc/server/*.c, csrc/traffic/*.c, csrc/common/*.c, ..., globbed, so new files are
picked up) with only bridge.c of the Python room, plus Debian's llhttp,
all with -DLLHTTP_STRICT_MODE=1; then both run side by side for BENTOHOST_FUZZ_SECONDS
(default 60) from a copy of their seed corpora in tests/fuzz/corpus/ (the repository
is never written). A test fails on a crash, a sanitizer report, a broken invariant
("FUZZ INVARIANT: ...") or a non-zero exit, and prints the executions and coverage
reached. It skips when clang or -fsanitize=fuzzer is unavailable (Debian: clang,
libclang-rt-dev). `make fuzz` runs it for longer (FUZZ_SECONDS=600).

Run as a script it only builds: ``python tests/test_fuzz.py OUTDIR`` leaves the two
binaries in OUTDIR, e.g. to replay a reproducer (``OUTDIR/fuzz_request FILE``).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
FUZZ = ROOT / "tests" / "fuzz"
LLHTTP_SRC = Path(os.environ.get("BH_LLHTTP_SRC", "/usr/share/llhttp"))
LLHTTP_INC = Path(os.environ.get("BH_LLHTTP_INC", "/usr/share/include/llhttp"))
CLANG = os.environ.get("BENTOHOST_FUZZ_CC", "clang")
SECONDS = int(os.environ.get("BENTOHOST_FUZZ_SECONDS", "60"))

SANITIZE = ["-fsanitize=fuzzer,address,undefined", "-fno-sanitize-recover=undefined", "-g", "-O1"]
CFLAGS = ["-std=c11", "-D_GNU_SOURCE", "-pthread", "-DLLHTTP_STRICT_MODE=1",
          "-I%s" % CSRC, "-I%s" % LLHTTP_INC]
LIBS = ["-luv", "-lcjson", "-lssl", "-lcrypto", "-lm"]
# Each target: its source and link flags, against an archive of the host's objects
# (a target pulls only the objects it needs). fuzz_request counts the limiter's
# acquire/release calls on their way to the real ones.
TARGETS = {
    "fuzz_request": ["fuzz_request.c", "-Wl,--wrap=bh_limiter_acquire,--wrap=bh_limiter_release"],
    "fuzz_multipart": ["fuzz_multipart.c"],
}
BAD_OUTPUT = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error", "deadly signal",
              "FUZZ INVARIANT", "ERROR: libFuzzer")


def host_sources():
    """The host's files the targets may use: every file of the layers up to the server
    (tests/layers.py ranks them: common, net, traffic, ...), but of the Python room only
    its door, bridge.c (the rest needs CPython); not the worker, supervisor or main.c."""
    try:
        from layers import RANKS
    except ImportError:  # run from elsewhere
        RANKS = {"common": 0, "net": 1, "traffic": 2, "python": 3, "server": 4}
    out = []
    for folder, rank in sorted(RANKS.items(), key=lambda kv: kv[1]):
        if rank < 0 or rank > RANKS["server"] or not (CSRC / folder).is_dir():
            continue
        if folder == "python":
            out.append(CSRC / "python" / "bridge.c")
        else:
            out += sorted((CSRC / folder).glob("*.c"))
    return out


def _missing_toolchain(work: Path):
    if shutil.which(CLANG) is None:
        return "%s not found (Debian: apt-get install clang libclang-rt-dev)" % CLANG
    if not (Path("/usr/include/uv.h").exists() or os.environ.get("BH_UV_INC")):
        return "libuv headers (uv.h) not found"
    if not list(LLHTTP_SRC.glob("*.c")) or not (LLHTTP_INC / "llhttp.h").exists():
        return "llhttp sources not found in %s / %s" % (LLHTTP_SRC, LLHTTP_INC)
    probe = work / "probe.c"
    probe.write_text("#include <stddef.h>\n#include <stdint.h>\n"
                     "int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { return 0; }\n")
    r = subprocess.run([CLANG, *SANITIZE, str(probe), "-o", str(work / "probe")],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return "%s -fsanitize=fuzzer does not link (Debian: libclang-rt-dev): %s" % (
            CLANG, (r.stderr or r.stdout).strip()[-300:])
    return None


def _run(cmd):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError("build failed: %s\n%s%s" % (" ".join(map(str, cmd)), r.stdout, r.stderr))


def build(out: Path) -> dict:
    """Builds every target into out; returns {name: path}."""
    out.mkdir(parents=True, exist_ok=True)
    objdir = out / "obj"
    objdir.mkdir(exist_ok=True)
    jobs = []
    for src in host_sources():
        obj = objdir / ("%s_%s.o" % (src.parent.name, src.stem))
        jobs.append([CLANG, *SANITIZE, *CFLAGS, "-Wall", "-c", src, "-o", obj])
    for src in sorted(LLHTTP_SRC.glob("*.c")):
        obj = objdir / ("llhttp_%s.o" % src.stem)
        jobs.append([CLANG, *SANITIZE, *CFLAGS, "-w", "-c", src, "-o", obj])
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        list(pool.map(_run, jobs))
    lib = out / "libbentohost_fuzz.a"
    lib.unlink(missing_ok=True)
    _run(["ar", "rcs", lib, *[j[-1] for j in jobs]])
    exes = {}
    for name, (src, *ldflags) in TARGETS.items():
        exe = out / name
        _run([CLANG, *SANITIZE, *CFLAGS, "-Wall", FUZZ / src, lib, *ldflags, *LIBS, "-o", exe])
        exes[name] = exe
    return exes


@pytest.fixture(scope="module")
def fuzzers(tmp_path_factory):
    work = tmp_path_factory.mktemp("fuzz-build")
    missing = _missing_toolchain(work)
    if missing:
        pytest.skip(missing)
    return build(work)


def _summary(output: str) -> str:
    done = re.findall(r"^#(\d+)\s+DONE\s+(.*)$", output, re.M)
    execs = re.search(r"stat::number_of_executed_units:\s*(\d+)", output)
    speed = re.search(r"stat::average_exec_per_sec:\s*(\d+)", output)
    parts = []
    if execs:
        parts.append("%s execs" % execs.group(1))
    if speed:
        parts.append("%s exec/s" % speed.group(1))
    if done:
        parts.append("#%s DONE %s" % done[-1])
    return ", ".join(parts) or "no libFuzzer summary"


class Run:
    """One target fuzzing in the background from a copy of its seed corpus."""

    def __init__(self, exe: Path, corpus_name: str, work: Path, extra=()):
        self.exe = exe
        self.work = work
        corpus = work / "corpus"
        shutil.copytree(FUZZ / "corpus" / corpus_name, corpus)
        self.artifacts = work / "artifacts"
        self.artifacts.mkdir()
        self.tmp = work / "tmp"
        self.tmp.mkdir()
        cmd = [str(exe), "-max_total_time=%d" % SECONDS, "-timeout=10", "-rss_limit_mb=2048",
               "-print_final_stats=1", "-artifact_prefix=%s/" % self.artifacts, *extra, str(corpus)]
        env = dict(os.environ, TMPDIR=str(self.tmp))
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        self.log_path = work / "fuzz.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=str(work))

    def wait(self):
        try:
            rc = self.proc.wait(timeout=SECONDS + 180)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            rc = "killed after %ds" % (SECONDS + 180)
        self.log.close()
        return rc, self.log_path.read_text(errors="replace")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def runs(fuzzers, tmp_path_factory):
    """Both targets fuzz at once, so the module takes SECONDS, not twice that."""
    started = {
        "fuzz_request": Run(fuzzers["fuzz_request"], "request", tmp_path_factory.mktemp("fuzz-request"),
                            ["-dict=%s" % (FUZZ / "request.dict"), "-max_len=8192"]),
        "fuzz_multipart": Run(fuzzers["fuzz_multipart"], "multipart",
                              tmp_path_factory.mktemp("fuzz-multipart"),
                              ["-dict=%s" % (FUZZ / "multipart.dict"), "-max_len=8192"]),
    }
    yield started
    for r in started.values():
        r.kill()


def _check(run: Run, capsys):
    rc, output = run.wait()
    summary = _summary(output)
    with capsys.disabled():
        print("\n[%s] %ds: %s" % (run.exe.name, SECONDS, summary))
    crashes = sorted(str(p) for p in run.artifacts.iterdir())
    bad = [s for s in BAD_OUTPUT if s in output]
    assert rc == 0 and not bad and not crashes, (
        "%s: exit %s, %s, reproducers %s (replay: python tests/test_fuzz.py OUTDIR, then "
        "OUTDIR/%s FILE)\n%s" % (run.exe.name, rc, bad, crashes, run.exe.name, output[-8000:]))
    assert "DONE" in summary, output[-4000:]
    assert not [p for p in run.tmp.iterdir() if p.name.startswith("bh-fuzz-")], \
        "the fuzzer left its temp dir behind"


def test_fuzz_request(runs, capsys):
    _check(runs["fuzz_request"], capsys)


def test_fuzz_multipart(runs, capsys):
    _check(runs["fuzz_multipart"], capsys)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/test_fuzz.py OUTDIR")
    dest = Path(sys.argv[1]).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    problem = _missing_toolchain(dest)
    if problem:
        sys.exit(problem)
    for target, path in build(dest).items():
        print(path)
