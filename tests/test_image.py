"""The container image (Dockerfile), built and run with podman; `bentohost containerize` (slow).

The base is a Debian Python made here with mmdebstrap (tests/oci.py), so that no registry is
needed; the image is built FROM it (BASE_IMAGE=localhost/...) and run with --network host,
a read-only root file system and a tmpfs on /tmp, serving tests/services/image_project
mounted at /app. Then that project is containerized from its bentofile.yaml and run.
Skipped only where podman or mmdebstrap are missing or the user is not root.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from conftest import REPO, SERVICES, base_env, free_port, wait_for
from oci import Podman, missing_tools

pytestmark = [pytest.mark.slow, pytest.mark.skipif(missing_tools() is not None, reason=missing_tools() or "")]

PROJECT = SERVICES / "image_project"
UID = 10001
# what the bentohost layers may add to the base: the host's libraries and the wheels
MAX_OVERHEAD = 40 << 20


@pytest.fixture(scope="module")
def podman(tmp_path_factory):
    pm = Podman(tmp_path_factory.mktemp("oci"))
    yield pm
    pm.close()
    print(f"\nimage test timings (s): {pm.timings}")


@pytest.fixture(scope="module")
def image(podman) -> dict:
    import bentohost

    base = podman.make_base()
    tag = podman.tag("bentohost")
    podman.timed("build", podman, "build", "--pull=never", "--network", "host", "--build-arg",
                 f"BASE_IMAGE={base}", "--build-arg", f"VERSION={bentohost.__version__}", *podman.ca_volume(),
                 "-t", tag, "-f", str(REPO / "Dockerfile"), str(REPO), timeout=600)
    return {"tag": tag, "base": base}


class Container:
    def __init__(self, podman: Podman, name: str, port: int):
        self.podman, self.name, self.port = podman, name, port
        self.url = f"http://127.0.0.1:{port}"

    def post(self, route: str, body: dict | None = None, timeout: float = 30) -> requests.Response:
        return requests.post(self.url + route, json=body or {}, timeout=timeout)

    def logs(self) -> str:
        p = self.podman("logs", self.name, check=False)
        return p.stdout + p.stderr

    def wait_ready(self, timeout: float = 60) -> None:
        def ready() -> bool:
            state = self.podman("inspect", "--format", "{{.State.Running}}", self.name).stdout.strip()
            assert state == "true", f"the container stopped:\n{self.logs()}"
            return requests.get(self.url + "/readyz", timeout=2).status_code == 200

        try:
            wait_for(ready, timeout, interval=0.2, what="/readyz in the container")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.logs()}") from None

    def exit_code(self) -> int:
        return int(self.podman("inspect", "--format", "{{.State.ExitCode}}", self.name).stdout.strip())


def _run(podman: Podman, image: str, *args: str, name: str, port: int, mount: bool,
         env: dict | None = None) -> Container:
    opts = ["--network", "host", "--read-only", "--tmpfs", "/tmp"]
    if mount:
        opts += ["-v", f"{PROJECT}:/app:ro"]
    for k, v in (env or {}).items():
        opts += ["-e", f"{k}={v}"]
    c = Container(podman, f"bentohost-test-{name}-{podman.run_id}", port)
    podman("run", "-d", "--name", c.name, *opts, image, *args)
    c.wait_ready()
    return c


@pytest.fixture(scope="module")
def served(podman, image) -> Container:
    port = free_port()
    return _run(podman, image["tag"], "/app", "--host", "127.0.0.1", "--port", str(port), "--workers", "2",
                name="serve", port=port, mount=True)


def test_image_config_labels_and_size(podman, image):
    info = json.loads(podman("image", "inspect", image["tag"]).stdout)[0]
    config = info["Config"]
    assert config["User"] == f"{UID}:{UID}"
    assert config["StopSignal"] == "SIGTERM"
    assert config["Entrypoint"] == ["python", "-m", "bentohost", "serve"]
    assert "PYTHONDONTWRITEBYTECODE=1" in config["Env"]
    labels = config["Labels"]
    import bentohost

    assert labels["org.opencontainers.image.title"] == "bentohost"
    assert labels["org.opencontainers.image.version"] == bentohost.__version__
    assert labels["org.opencontainers.image.base.name"] == image["base"]
    # the runtime stage has neither the compiler nor the wheels
    p = podman("run", "--rm", "--network", "host", "--entrypoint", "python", image["tag"], "-c",
               "import os, shutil; print(shutil.which('gcc'), os.path.exists('/wheels'))")
    assert p.stdout.split() == ["None", "False"], p.stdout
    size, base = podman.size(image["tag"]), podman.size(image["base"])
    print(f"\nimage size {size / 1e6:.1f} MB: base {base / 1e6:.1f} MB + bentohost {(size - base) / 1e6:.1f} MB")
    assert size - base < MAX_OVERHEAD, (size, base)


def test_serves_read_only_as_non_root(served):
    r = served.post("/hello", {"name": "image"})
    assert r.status_code == 200 and r.json() == {"message": "Hello, image!"}, r.text
    probe = served.post("/probe").json()
    assert probe["uid"] == UID and probe["gid"] == UID, probe
    assert probe["writable"] == {"/": False, "/app": False, "/tmp": True, "/home/bentohost": False}, probe
    assert probe["dont_write_bytecode"] == "1" and probe["tmpdir"] == "/tmp", probe
    assert probe["six"] is None and probe["greeting"] is None  # only in the containerized image
    procs = {p["pid"]: p for p in served.post("/processes").json()}
    supervisor = procs[1]
    assert supervisor["comm"] == "bentohost-host" and supervisor["ppid"] == 0, procs
    workers = [p for p in procs.values() if p["ppid"] == 1 and p["comm"] == "bentohost-host"]
    assert len(workers) == 2, procs
    assert all(p["uid"] == UID for p in procs.values()), procs
    # podman's view agrees: the container's user, PID 1 and its two workers
    top = served.podman("top", served.name, "user", "pid", "ppid", "comm").stdout.split("\n")[1:]
    rows = [line.split() for line in top if line.strip()]
    assert {r[0] for r in rows} == {"bentohost"}, rows
    assert ["1", "0", "bentohost-host"] in [r[1:] for r in rows], rows
    assert sum(r[2] == "1" for r in rows) >= 2, rows


def test_orphans_of_the_service_are_reaped(served):
    pids = [served.post("/orphan", {"seconds": 0.5}).json()["pid"] for _ in range(3)]

    def reparented() -> bool:
        procs = {p["pid"]: p for p in served.post("/processes").json()}
        return all(pid not in procs or procs[pid]["ppid"] == 1 for pid in pids)

    wait_for(reparented, 5, what="the sleepers reparented to PID 1")

    def gone() -> bool:
        procs = {p["pid"]: p for p in served.post("/processes").json()}
        return not any(pid in procs for pid in pids)

    wait_for(gone, 10, interval=0.2, what="the orphans reaped (no zombies left)")
    zombies = [p for p in served.post("/processes").json() if p["state"] == "Z"]
    assert zombies == [], zombies


def _in_progress(c: Container) -> float:
    text = requests.get(c.url + "/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("bentoml_service_request_in_progress{"))


def test_podman_stop_drains_in_flight_requests(served):
    results: dict[int, requests.Response | Exception] = {}

    def call(i: int) -> None:
        try:
            results[i] = served.post("/slow", {"seconds": 2.0, "tag": str(i)}, timeout=60)
        except Exception as exc:  # noqa: BLE001 - reported below
            results[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    wait_for(lambda: _in_progress(served) >= 6, 10, what="6 requests in flight")
    start = time.monotonic()
    served.podman("stop", "--time", "30", served.name, timeout=60)
    stopped_in = time.monotonic() - start
    for t in threads:
        t.join(30)
    for i in range(6):
        r = results.get(i)
        assert isinstance(r, requests.Response) and r.status_code == 200, (i, r, served.logs())
        assert r.json() == {"slept": 2.0, "tag": str(i)}
    assert served.exit_code() == 0, served.logs()
    assert "stopped" in served.logs()
    assert stopped_in < 20, stopped_in
    served.podman.timings["stop (drain)"] = round(stopped_in, 2)


def test_containerize_a_bentoml_project(podman, image):
    tag = podman.tag("app")
    cmd = [sys.executable, "-m", "bentohost", "containerize", str(PROJECT), "-t", tag, "--base", image["tag"],
           "--backend", "podman", "--opt", "network=host", "--opt", "pull=never"]
    cmd += [f"--opt=volume={v}" for v in podman.ca_volume()[1::2]]
    env = base_env(podman.env)
    p = podman.timed("containerize", subprocess.run, cmd, capture_output=True, text=True, timeout=600, env=env,
                     cwd=REPO)
    assert p.returncode == 0, f"{p.stdout[-4000:]}\n{p.stderr[-4000:]}"
    labels = json.loads(podman("image", "inspect", tag).stdout)[0]["Config"]["Labels"]
    assert labels["org.opencontainers.image.title"] == "image-probe" and labels["owner"] == "bentohost-tests"
    port = free_port()
    c = _run(podman, tag, name="app", port=port, mount=False,
             env={"BENTOML_HOST": "127.0.0.1", "BENTOML_PORT": str(port)})
    try:
        assert c.post("/hello", {"name": "bento"}).json() == {"message": "Hello, bento!"}
        probe = c.post("/probe").json()
        assert probe["uid"] == UID and probe["here"] == "/app", probe
        assert probe["six"] and probe["greeting"] == "Hi from bentofile.yaml" and probe["etc_services"], probe
        assert probe["data"] == "hello from data/greeting.txt"
        files = [f for f in probe["files"] if "__pycache__" not in f]
        assert files == ["bentofile.yaml", "data/greeting.txt", "service.py"], probe["files"]
        assert any("__pycache__" in f for f in probe["files"]), "bytecode is compiled at build time"
    finally:
        podman("stop", "--time", "10", c.name, check=False)
    assert c.exit_code() == 0, c.logs()
