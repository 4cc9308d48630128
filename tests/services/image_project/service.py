"""A BentoML-style service that probes the container it runs in (tests/test_image.py).

Served from the bentohost image with this directory mounted at /app, and containerized
from its bentofile.yaml (then ``six`` is installed, GREETING set, /etc/services present).
"""
from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

try:
    import bentohost as bentoml
except ImportError:  # the same file under BentoML
    import bentoml

HERE = Path(__file__).resolve().parent


def _writable(path: str) -> bool:
    try:
        with open(os.path.join(path, f".probe-{os.getpid()}"), "w") as f:
            f.write("x")
    except OSError:
        return False
    os.unlink(os.path.join(path, f".probe-{os.getpid()}"))
    return True


@bentoml.service
class ImageProbe:
    @bentoml.api
    def hello(self, name: str = "world") -> dict:
        return {"message": f"Hello, {name}!"}

    @bentoml.api
    async def slow(self, seconds: float = 1.0, tag: str = "") -> dict:
        await asyncio.sleep(seconds)
        return {"slept": seconds, "tag": tag}

    @bentoml.api
    def orphan(self, seconds: float = 0.5) -> dict:
        """Starts a daemonised grandchild (its parent, sh, exits at once) that exits after
        ``seconds``: it is reparented to PID 1, which must reap it."""
        out = subprocess.run(
            ["sh", "-c", f"sleep {float(seconds)} </dev/null >/dev/null 2>&1 & echo $!"],
            capture_output=True, text=True, check=True, timeout=10,
        )
        return {"pid": int(out.stdout.strip())}

    @bentoml.api
    def processes(self) -> list:
        """Every process of the container: pid, ppid, state, uid, comm (from /proc)."""
        procs = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                status = Path(f"/proc/{entry}/status").read_text()
            except OSError:
                continue
            comm = stat[stat.index("(") + 1:stat.rindex(")")]
            state, ppid = stat[stat.rindex(")") + 2:].split()[:2]
            uid = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("Uid:"))
            procs.append({"pid": int(entry), "ppid": int(ppid), "state": state, "uid": uid, "comm": comm})
        return sorted(procs, key=lambda p: p["pid"])

    @bentoml.api
    def probe(self) -> dict:
        try:
            import six  # installed by the bentofile's python.packages

            six_version = six.__version__
        except ImportError:
            six_version = None
        return {
            "uid": os.getuid(),
            "gid": os.getgid(),
            "here": str(HERE),
            "writable": {p: _writable(p) for p in ("/", "/app", "/tmp", os.path.expanduser("~"))},
            "tmpdir": os.environ.get("TMPDIR"),
            "dont_write_bytecode": os.environ.get("PYTHONDONTWRITEBYTECODE"),
            "greeting": os.environ.get("GREETING"),
            "six": six_version,
            "data": (HERE / "data" / "greeting.txt").read_text().strip(),
            "files": sorted(str(p.relative_to(HERE)) for p in HERE.rglob("*") if p.is_file()),
            "etc_services": os.path.exists("/etc/services"),
        }
