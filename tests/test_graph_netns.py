"""Services of one graph across real network boundaries (test_graph_hosts.py on
loopback is the model): ``Model`` alone in network namespace A, ``Middle`` alone in
namespace B with ``--depends Model=http://<A's address>:P``, and the test calls
Middle from the root namespace.

Topology (three veth pairs, no forwarding, nothing changed in the root namespace
but two veth ends with addresses in 10.213.0.0/16; ``pid`` is the test's pid):

    root  bhnt<pid>ra 10.213.n.1/24   <->  bhnt<pid>ar 10.213.n.2/24    A  (Model listens here)
    root  bhnt<pid>rb 10.213.n+1.1/24 <->  bhnt<pid>br 10.213.n+1.2/24  B  (Middle listens here)
    A     bhnt<pid>ab 10.213.n+2.1/24 <->  bhnt<pid>ba 10.213.n+2.2/24  B
    B: 10.213.n.0/24 via 10.213.n+2.1 (dev bhnt<pid>ba), so B reaches A's address
    over its direct link; A answers on that connected link.

Everything is created by the fixture and removed at teardown, with leftovers of
earlier runs whose pid is gone. Skips when ``ip`` is missing, without
CAP_NET_ADMIN, or when namespaces or veths cannot be made (a container without
the permission)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess

import pytest
import requests

from conftest import SERVICES, Server, ServerFactory, free_port, wait_for

CALLS = str(SERVICES / "graph_calls.py")
PREFIX = "bhnt"  # bentohost netns test: namespaces and links are PREFIX<pid><suffix>
NAME_RE = re.compile(rf"^{PREFIX}(\d+)[a-z]+$")
CAP_NET_ADMIN = 12


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20, check=check)


def _stale(name: str) -> bool:
    """A name of ours whose owning test process is gone."""
    m = NAME_RE.match(name)
    return bool(m) and int(m.group(1)) != os.getpid() and not os.path.exists(f"/proc/{m.group(1)}")


def _netns_names() -> list[str]:
    out = ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _root_links() -> list[str]:
    out = ip("-o", "link", "show", check=False).stdout
    # "7: bhnt123ra@if6: <...>"
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]


def _remove_netns(ns: str):
    # the servers are killed before this; kill anything still inside so the namespace goes
    for pid in ip("netns", "pids", ns, check=False).stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    for link in ip("-n", ns, "-o", "link", "show", check=False).stdout.splitlines():
        name = link.split(":")[1].strip().split("@")[0] if ":" in link else ""
        if name.startswith(PREFIX):
            ip("-n", ns, "link", "del", name, check=False)
    ip("netns", "del", ns, check=False)


def _cleanup(pred):
    for ns in _netns_names():
        if pred(ns):
            _remove_netns(ns)
    for link in _root_links():
        if pred(link):
            ip("link", "del", link, check=False)


def _has_cap_net_admin() -> bool:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> CAP_NET_ADMIN & 1)
    return False


def _pick_block() -> int:
    """n such that 10.213.n..n+2 appear in no address or route of the root namespace."""
    used = ip("-4", "-o", "addr", "show", check=False).stdout + ip("-4", "route", "show", "table", "all",
                                                                   check=False).stdout
    for i in range(80):
        n = 1 + 3 * ((os.getpid() + i) % 80)
        if not any(f"10.213.{k}." in used for k in (n, n + 1, n + 2)):
            return n
    pytest.skip("no free 10.213.x.0/24 block in the root namespace")


class Topology:
    def __init__(self):
        pid = os.getpid()
        self.ns_a, self.ns_b = f"{PREFIX}{pid}a", f"{PREFIX}{pid}b"
        n = _pick_block()
        self.root_a, self.addr_a = f"10.213.{n}.1", f"10.213.{n}.2"
        self.root_b, self.addr_b = f"10.213.{n + 1}.1", f"10.213.{n + 1}.2"
        self.ab_a, self.ab_b = f"10.213.{n + 2}.1", f"10.213.{n + 2}.2"
        self.net_a = f"10.213.{n}.0/24"
        self.link_ba = f"{PREFIX}{pid}ba"

    @staticmethod
    def mine(name: str) -> bool:
        m = NAME_RE.match(name)
        return bool(m) and int(m.group(1)) == os.getpid()

    def build(self):
        pid = os.getpid()
        a, b = self.ns_a, self.ns_b
        for ns in (a, b):
            r = ip("netns", "add", ns, check=False)
            if r.returncode != 0:
                pytest.skip(f"`ip netns add` failed: {r.stderr.strip()}")
            r = ip("netns", "exec", ns, "true", check=False)
            if r.returncode != 0:
                pytest.skip(f"`ip netns exec` failed: {r.stderr.strip()}")
            ip("-n", ns, "link", "set", "lo", "up")
        # root <-> A, root <-> B, A <-> B
        for here, there, ns, here_addr, there_addr in (
            (f"{PREFIX}{pid}ra", f"{PREFIX}{pid}ar", a, self.root_a, self.addr_a),
            (f"{PREFIX}{pid}rb", f"{PREFIX}{pid}br", b, self.root_b, self.addr_b),
        ):
            r = ip("link", "add", here, "type", "veth", "peer", "name", there, "netns", ns, check=False)
            if r.returncode != 0:
                pytest.skip(f"cannot create a veth pair: {r.stderr.strip()}")
            ip("addr", "add", f"{here_addr}/24", "dev", here)
            ip("link", "set", here, "up")
            ip("-n", ns, "addr", "add", f"{there_addr}/24", "dev", there)
            ip("-n", ns, "link", "set", there, "up")
        ab = f"{PREFIX}{pid}ab"
        ip("-n", a, "link", "add", ab, "type", "veth", "peer", "name", self.link_ba, "netns", b)
        ip("-n", a, "addr", "add", f"{self.ab_a}/24", "dev", ab)
        ip("-n", a, "link", "set", ab, "up")
        ip("-n", b, "addr", "add", f"{self.ab_b}/24", "dev", self.link_ba)
        ip("-n", b, "link", "set", self.link_ba, "up")
        ip("-n", b, "route", "add", self.net_a, "via", self.ab_a, "dev", self.link_ba)

    def ns_inode(self, ns: str) -> int:
        return os.stat(f"/run/netns/{ns}").st_ino


@pytest.fixture
def topology():
    if shutil.which("ip") is None:
        pytest.skip("`ip` (iproute2) is not installed")
    if not _has_cap_net_admin():
        pytest.skip(f"network namespaces need CAP_NET_ADMIN (euid {os.geteuid()} lacks it)")
    _cleanup(_stale)
    topo = Topology()
    try:
        topo.build()
        yield topo
    finally:
        _cleanup(topo.mine)


class NetnsServer(Server):
    """A ``Server`` whose process runs inside a network namespace (``ip netns exec``
    execs in place, so the pid is the server's); HTTP from the root namespace
    bypasses any proxy of the environment."""

    def __init__(self, ns: str, *args, **kw):
        super().__init__(*args, **kw)
        self.ns = ns
        self.session = requests.Session()
        self.session.trust_env = False

    @property
    def cmd(self) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *super().cmd]

    def get(self, path: str, **kw):
        kw.setdefault("timeout", 30)
        return self.session.get(self.url + path, **kw)

    def post(self, path: str, json_body=None, **kw):
        kw.setdefault("timeout", 30)
        return self.session.post(self.url + path, json=json_body, **kw)


@pytest.fixture
def netns_servers(topology, tmp_path, host_binary):
    """Starts ``NetnsServer``s; they are killed before ``topology`` is torn down."""
    factory = ServerFactory(tmp_path)

    def start(ns: str, *args: str, host: str, port: int) -> NetnsServer:
        srv = NetnsServer(ns, f"{CALLS}:Front", *args, host=host, port=port,
                          log_path=tmp_path / f"{ns}-{len(factory.servers)}.log")
        factory.servers.append(srv)
        return srv.start()

    yield start
    factory.close()


def net_inode(pid: int) -> int:
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def test_services_in_separate_network_namespaces(topology, netns_servers):
    t = topology
    # B reaches A's address over the direct A<->B link, not through the root namespace
    route = ip("-n", t.ns_b, "route", "get", t.addr_a).stdout
    assert f"dev {t.link_ba}" in route, route

    port = free_port()  # any port: each namespace has its own port space
    model = netns_servers(t.ns_a, "--service", "Model", host=t.addr_a, port=port)
    middle = netns_servers(t.ns_b, "--service", "Middle", "--depends", f"Model=http://{t.addr_a}:{port}",
                           host=t.addr_b, port=free_port())

    # each server and its workers run in their namespace, not in the test's
    assert net_inode(os.getpid()) not in (t.ns_inode(t.ns_a), t.ns_inode(t.ns_b))
    for srv, ns in ((model, t.ns_a), (middle, t.ns_b)):
        pids = [srv.pid, *srv.worker_pids()]
        assert len(pids) > 1, srv.log()
        assert {net_inode(p) for p in pids} == {t.ns_inode(ns)}, (ns, pids)
        assert str(srv.pid) in ip("netns", "pids", ns).stdout.split()

    r = middle.post("/predict", {"x": [1, 2, 3]})
    assert r.status_code == 200, r.text + middle.log()
    assert r.json() == 7.0
    r = middle.post("/apredict", {"x": [1, 2]})
    assert r.status_code == 200 and r.json() == 7.0, r.text
    assert "service Middle: 1 worker" in middle.log()

    # the Model goes away: Middle answers 503
    os.killpg(model.pid, signal.SIGTERM)
    model.wait_exit(20)
    wait_for(lambda: not ip("netns", "pids", t.ns_a).stdout.split(), 10, what="no process left in namespace A")
    wait_for(lambda: middle.post("/predict", {"x": [1]}, timeout=10).status_code == 503, 5,
             what="503 from Middle without its Model")
    assert middle.proc.poll() is None

    # the Model comes back on the same address and port: Middle recovers by itself
    again = netns_servers(t.ns_a, "--service", "Model", host=t.addr_a, port=port)

    def recovered():
        r = middle.post("/predict", {"x": [1, 2, 3]}, timeout=10)
        return r.status_code == 200 and r.json() == 7.0

    wait_for(recovered, 20, interval=0.2, what="recovery of Middle")
    assert again.proc.poll() is None and middle.proc.poll() is None
