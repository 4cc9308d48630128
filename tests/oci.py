"""Podman for the image tests, in storage of the test's own (tests/test_image.py).

No daemon and no registry: the base image is made with mmdebstrap from the Debian
repository of this machine's own apt sources, imported with ``podman import``; images
are built with ``podman build --network host``. Everything podman makes lives under one
directory (CONTAINERS_STORAGE_CONF, CONTAINERS_CONF), so that nothing of other users of
the machine is touched, and all of it is removed by :meth:`Podman.close`.

Two settings this machine needs (see the Makefile's APT_TEST_PACKAGES): runc, since crun
fails with cgroups in hybrid mode, and ulimits at most the shell's hard limits, since
podman's defaults need CAP_SYS_RESOURCE.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import time
import uuid
from pathlib import Path

CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
APT_SOURCES = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))
BASE_PACKAGES = ("python3", "python3-pip", "python3-setuptools", "python3-wheel", "python-is-python3",
                 "libpython3-dev", "ca-certificates")


def missing_tools() -> str | None:
    """Why the image tests cannot run here, or None."""
    missing = [t for t in ("podman", "mmdebstrap") if shutil.which(t) is None]
    if missing:
        return f"{' and '.join(missing)} not installed (`make test` installs them: apt-get install " \
               "podman buildah mmdebstrap runc)"
    if os.geteuid() != 0:
        return "the image tests need root (rootful podman, mmdebstrap's root mode)"
    return None


def _codename() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.partition("=")[2].strip().strip('"')
    return "bookworm"


class Podman:
    def __init__(self, root: Path):
        self.root = root
        self.run_id = uuid.uuid4().hex[:10]
        self.timings: dict[str, float] = {}
        (root / "storage").mkdir(parents=True)
        (root / "run").mkdir()
        (root / "tmp").mkdir()
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        nofile = 1 << 20 if nofile == resource.RLIM_INFINITY else nofile
        nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
        nproc = 32768 if nproc == resource.RLIM_INFINITY else min(nproc, 32768)
        engine = f'tmp_dir = "{root / "tmp"}"\n'
        if shutil.which("runc"):
            engine += 'runtime = "runc"\n'
        (root / "containers.conf").write_text(
            "[containers]\n"
            f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n'
            f"[engine]\n{engine}")
        (root / "storage.conf").write_text(
            f'[storage]\ndriver = "overlay"\ngraphroot = "{root / "storage"}"\nrunroot = "{root / "run"}"\n')
        self.env = dict(os.environ, CONTAINERS_CONF=str(root / "containers.conf"),
                        CONTAINERS_STORAGE_CONF=str(root / "storage.conf"))

    def tag(self, name: str) -> str:
        return f"localhost/bentohost-test-{name}:{self.run_id}"

    def __call__(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        p = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, env=self.env)
        if check and p.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} failed ({p.returncode}):\n{p.stdout[-4000:]}\n"
                                 f"{p.stderr[-4000:]}")
        return p

    def timed(self, what: str, fn, *args, **kw):  # type: ignore[no-untyped-def]
        start = time.monotonic()
        try:
            return fn(*args, **kw)
        finally:
            self.timings[what] = round(time.monotonic() - start, 1)

    def ca_volume(self) -> list[str]:
        """The host's CA bundle for downloads during a build (never baked into the image)."""
        return ["-v", f"{CA_BUNDLE}:{CA_BUNDLE}:ro"] if CA_BUNDLE.is_file() else []

    def make_base(self) -> str:
        """A Python base image from Debian's repository (BENTOHOST_TEST_BASE_TAR reuses a tarball)."""
        tarball = os.environ.get("BENTOHOST_TEST_BASE_TAR")
        if not tarball:
            sources = next((str(p) for p in APT_SOURCES if p.is_file()), None)
            if sources is None:
                raise AssertionError(f"no apt sources file ({', '.join(map(str, APT_SOURCES))})")
            tarball = str(self.root / "base.tar")
            # docs removed afterwards rather than filtered per file (much faster), and
            # dpkg without fsync: the tree is thrown away after the import
            cmd = ["mmdebstrap", "--quiet", "--variant=minbase", "--include=" + ",".join(BASE_PACKAGES),
                   "--dpkgopt=force-unsafe-io",
                   "--customize-hook=rm -rf \"$1\"/usr/lib/python3*/EXTERNALLY-MANAGED \"$1\"/usr/share/doc/* "
                   "\"$1\"/usr/share/man/* \"$1\"/usr/share/locale/*",
                   _codename(), tarball, sources]
            p = self.timed("mmdebstrap", subprocess.run, cmd, capture_output=True, text=True, timeout=600,
                           env=dict(os.environ, TMPDIR=str(self.root)))
            assert p.returncode == 0, f"mmdebstrap failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
        tag = self.tag("base")
        self.timed("import", self, "import", "--change", "ENV LANG=C.UTF-8", "--change", 'CMD ["python3"]',
                   tarball, tag, timeout=300)
        if not os.environ.get("BENTOHOST_TEST_BASE_TAR"):
            os.unlink(tarball)
        return tag

    def size(self, image: str) -> int:
        return int(self("image", "inspect", "--format", "{{.Size}}", image).stdout.strip())

    def close(self) -> None:
        self("rm", "--all", "--force", "--time", "0", check=False, timeout=120)
        self("rmi", "--all", "--force", check=False, timeout=300)
        self("umount", "--all", check=False, timeout=60)
        mounts = []
        with open("/proc/self/mounts") as f:
            for line in f:
                point = line.split()[1].replace("\\040", " ")
                if point == str(self.root) or point.startswith(str(self.root) + "/"):
                    mounts.append(point)
        for point in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True, timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)
