"""``python -m bentohost k8s``: manifests for a service graph, one Deployment per service.

The manifests are validated offline with kubernetes-validate (strict) for
Kubernetes 1.29 and 1.37; KEDA's ScaledObject is not in those schemas, so its
shape is checked here against KEDA's documented fields (``check_scaled_object``).

``test_topology_across_network_namespaces`` runs what the Deployments say without
a cluster: each container's command, args and env as its own server in its own
network namespace ("pod"), /app mapped to the service file's directory, the
namespaces joined by veth pairs on a bridge, and the Services' DNS names resolved
through ``/etc/netns/<ns>/hosts`` (``ip netns exec`` bind-mounts it over
/etc/hosts)::

    root   bhk<pid>r  10.214.n.1/24  <->  bhk<pid>rs  in bhk<pid>s (the bridge bhk<pid>br)
    pod x  bhk<pid>xi 10.214.n.(10+i)/24 <-> bhk<pid>xo in bhk<pid>s  (x = a, b, c, ...)

Only the root end of one veth pair, with its address, is added to the root
namespace; everything is removed at teardown (and what earlier runs whose pid is
gone left). Skips without ``ip``, CAP_NET_ADMIN, a bridge or a writable /etc.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bentohost import _k8s, _yaml_emit
from conftest import HOST_BINARY, REPO, SERVICES, ServerFactory, base_env, wait_for
from test_graph_netns import NetnsServer, _has_cap_net_admin, ip
from test_graph_netns import _cleanup as _netns_cleanup

kubernetes_validate = pytest.importorskip("kubernetes_validate")  # tests/requirements.txt
yaml = pytest.importorskip("yaml")  # PyYAML, a dependency of kubernetes-validate

CALLS = SERVICES / "graph_calls.py"
VERSIONS = ("1.29", "1.37")


def k8s(*args: str, env: dict | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bentohost", "k8s", *args], capture_output=True, text=True,
                          timeout=60, cwd=cwd, env=base_env(env))


def generate(tmp_path: Path, *args: str, target: str = f"{CALLS}:Front", env: dict | None = None
             ) -> dict[str, list[dict[str, Any]]]:
    """{file name: documents} written by ``k8s TARGET --image ... -o DIR ARGS``."""
    out = tmp_path / "manifests"
    r = k8s(target, "--image", "my-graph/bh:1", "-o", str(out), *args, env=env)
    assert r.returncode == 0, r.stderr
    return {p.name: list(yaml.safe_load_all(p.read_text())) for p in sorted(out.glob("*.yaml"))}


def by_kind(files: dict[str, list[dict[str, Any]]], kind: str) -> dict[str, dict[str, Any]]:
    """{bentohost service name or object name: object} of one kind."""
    out = {}
    for docs in files.values():
        for doc in docs:
            if doc["kind"] == kind:
                meta = doc["metadata"]
                out[meta.get("annotations", {}).get("bentohost/service", meta["name"])] = doc
    return out


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    return c


def validate(doc: dict[str, Any]) -> None:
    if doc["kind"] == "ScaledObject":
        check_scaled_object(doc)
        return
    for version in VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']} {doc['metadata']['name']} is invalid for Kubernetes {version}: "
                        f"{exc.message} at {list(exc.path)}")


# KEDA 2.x ScaledObject fields (keda.sh/docs/latest/reference/scaledobject-spec and the
# prometheus scaler's page); the CRD types every trigger metadata value as a string.
SO_SPEC = {"scaleTargetRef", "pollingInterval", "cooldownPeriod", "initialCooldownPeriod", "idleReplicaCount",
           "minReplicaCount", "maxReplicaCount", "fallback", "advanced", "triggers"}
SO_TARGET = {"name", "apiVersion", "kind", "envSourceContainerName"}
SO_TRIGGER = {"type", "name", "metadata", "authenticationRef", "metricType", "useCachedMetrics"}
PROMETHEUS = {"serverAddress", "query", "threshold", "activationThreshold", "namespace", "customHeaders",
              "ignoreNullValues", "queryParameters", "unsafeSsl", "timeout"}


def check_scaled_object(doc: dict[str, Any]) -> None:
    assert set(doc) == {"apiVersion", "kind", "metadata", "spec"}, doc
    assert doc["apiVersion"] == "keda.sh/v1alpha1"
    for version in VERSIONS:  # the metadata is an ObjectMeta: check it in a kind the schemas know
        kubernetes_validate.validate({"apiVersion": "v1", "kind": "ConfigMap", "metadata": doc["metadata"]},
                                     version, strict=True)
    spec = doc["spec"]
    assert set(spec) <= SO_SPEC, set(spec) - SO_SPEC
    assert set(spec["scaleTargetRef"]) <= SO_TARGET and isinstance(spec["scaleTargetRef"]["name"], str)
    for key in ("minReplicaCount", "maxReplicaCount", "pollingInterval", "cooldownPeriod"):
        assert key not in spec or type(spec[key]) is int, (key, spec[key])
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    assert spec["triggers"]
    for trigger in spec["triggers"]:
        assert set(trigger) <= SO_TRIGGER and isinstance(trigger["type"], str), trigger
        assert trigger.get("metricType", "AverageValue") in ("AverageValue", "Value", "Utilization")
        meta = trigger["metadata"]
        assert all(isinstance(v, str) for v in meta.values()), meta
        if trigger["type"] == "prometheus":
            assert set(meta) <= PROMETHEUS and {"serverAddress", "query", "threshold"} <= set(meta), meta
            assert re.match(r"https?://", meta["serverAddress"])
            float(meta["threshold"])


# ---------------------------------------------------------------- units


@pytest.mark.parametrize("name,expected", [
    ("Front", "front"), ("MyModel", "my-model"), ("LLMService", "llm-service"), ("text_encoder", "text-encoder"),
    ("Model2", "model2"), ("__Hidden", "hidden"),
])
def test_dns_names(name: str, expected: str):
    assert _k8s.dns_name(name) == expected
    assert _k8s.dns_name(name, "prod-") == f"prod-{expected}"


@pytest.mark.parametrize("name", ["2Fast", "_", "Ünïcode", "X" * 80, "A" * 30 + "_" * 5 + "B" * 40])
def test_dns_names_always_valid(name: str):
    out = _k8s.dns_name(name)
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", out) and len(out) <= 63, out
    assert _k8s.dns_name(name) == out  # stable


def test_quantities():
    assert [_k8s.cpu_quantity(v, "cpu") for v in ("2", 2, 0.5, "500m", "1.5", 4.0)] == \
        ["2", "2", "500m", "500m", "1500m", "4"]
    assert [_k8s.memory_quantity(v, "memory") for v in ("4Gi", "512MiB", "1G", "2GB", "64k", "64K", 1 << 30)] == \
        ["4Gi", "512Mi", "1G", "2G", "64k", "64k", "1073741824"]
    assert [_k8s.gpu_count(v, "gpu") for v in (None, 0, 1, 2.0)] == [0, 0, 1, 2]
    for bad in ("two", "-1", "", True, "2 cores", 0):
        with pytest.raises(_k8s.K8sError, match="cpu: expected a CPU amount"):
            _k8s.cpu_quantity(bad, "cpu")
    for bad in ("512m", "4 gigs", "i", -5, "0Gi"):
        with pytest.raises(_k8s.K8sError, match="memory: expected a memory size"):
            _k8s.memory_quantity(bad, "memory")
    for bad in (0.5, -1, "1", True):
        with pytest.raises(_k8s.K8sError, match="gpu: expected a whole number"):
            _k8s.gpu_count(bad, "gpu")


TRICKY = ["yes", "No", "on", "y", "N", "null", "~", "", "3000", "0.5", "1e3", "0x1f", "-", "- x", "a: b", "#c",
          "x #y", "@at", "`tick", "!tag", "&anchor", "*alias", "{}", "[]", "'q'", '"d"', "tab\there", "line\n",
          "two\nlines\n", "no end\nnewline", "\ttab first\n", " lead\n", "trail \nx\n", "a\n\n", "nel\x85",
          "\x00\x07\x7f", "\u2028", "\ufeffbom", "\U0001f600", "é", "http://x:3000", "/app/x.py:Front",
          "sum(x{a=\"b\"})", ".inf", ".5", "2001-01-01", "1:30", "<<", "?", "%", "true", "False", "Off"]


def test_yaml_emitter_round_trips():
    docs = [{"s": TRICKY, "m": {s or "empty": s for s in TRICKY}, "n": [0, -3, 1.5, True, False, None, [], {}],
             "nested": [[{"a": [1, {"b": []}]}], {"k": {"l": "v"}}]}]
    text = _yaml_emit.dump_all(docs)
    assert list(yaml.safe_load_all(text)) == docs
    assert _yaml_emit.dump({"data": {"f.yaml": "a: 1\nb: 2\n"}}) == "data:\n  f.yaml: |\n    a: 1\n    b: 2\n"


def test_host_reads_replicas_and_scaling(tmp_path: Path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("version: 2\nservices:\n  replicas: 2\n  Model:\n    scaling: {min_replicas: 0, max_replicas: 4}\n")
    r = subprocess.run([str(HOST_BINARY), "config"], capture_output=True, text=True,
                       env={**os.environ, "BENTOML_CONFIG": str(cfg)}, check=False)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"config": {"defaults": {"replicas": 2}, "services": {
        "Model": {"scaling": {"min_replicas": 0, "max_replicas": 4}}}}, "warnings": []}
    cfg.write_text("version: 2\nservices:\n  Model:\n    replicas: 0\n")
    r = subprocess.run([str(HOST_BINARY), "config"], capture_output=True, text=True,
                       env={**os.environ, "BENTOML_CONFIG": str(cfg)}, check=False)
    assert r.returncode == 1 and r.stderr.strip() == "services.Model.replicas: expected an integer >= 1, got 0"


# ---------------------------------------------------------------- the manifests


def test_every_service_gets_valid_objects(tmp_path: Path):
    files = generate(tmp_path, "--namespace", "ml")
    assert sorted(files) == ["front.yaml", "middle.yaml", "model.yaml"]
    for name, docs in files.items():
        assert [d["kind"] for d in docs] == ["Deployment", "Service", "PodDisruptionBudget",
                                            "HorizontalPodAutoscaler"], name
        for doc in docs:
            assert doc["metadata"]["name"] == name[:-5] and doc["metadata"]["namespace"] == "ml"
            validate(doc)
    deps = by_kind(files, "Deployment")
    assert set(deps) == {"Front", "Middle", "Model"}
    url = "http://{}.ml.svc.cluster.local:3000".format
    for svc, depends in (("Front", [f"Middle={url('middle')}", f"Model={url('model')}"]),
                         ("Middle", [f"Model={url('model')}"]), ("Model", [])):
        c = container(deps[svc])
        assert c["command"] == ["python", "-m", "bentohost", "serve"] and c["workingDir"] == "/app"
        args = c["args"]
        assert args[:3] == ["/app/graph_calls.py:Front", "--service", svc]
        assert [args[i + 1] for i, a in enumerate(args) if a == "--depends"] == depends
        assert args[args.index("--port") + 1] == "3000" and args[args.index("--host") + 1] == "0.0.0.0"
    # a Service selects exactly its Deployment's pods, on the named port
    for svc, service in by_kind(files, "Service").items():
        dep = deps[svc]
        assert service["spec"]["type"] == "ClusterIP"
        assert service["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
        assert service["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
        assert service["spec"]["ports"] == [{"name": "http", "port": 3000, "targetPort": "http", "protocol": "TCP"}]
    selectors = {d["metadata"]["name"]: d["spec"]["selector"]["matchLabels"] for d in deps.values()}
    for name, pdb in by_kind(files, "PodDisruptionBudget").items():
        assert pdb["spec"]["selector"]["matchLabels"] == selectors[name]
        assert pdb["spec"]["maxUnavailable"] == 1


def test_probes_shutdown_and_security(tmp_path: Path):
    files = generate(tmp_path, "--shutdown-delay", "7", "--timeout-graceful-shutdown", "20",
                     "--startup-timeout", "600")
    dep = by_kind(files, "Deployment")["Model"]
    pod = dep["spec"]["template"]["spec"]
    c = container(dep)
    assert c["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    startup = c["startupProbe"]
    assert startup["httpGet"]["path"] == "/readyz"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600  # a slow model load is not killed
    # serve's --shutdown-delay keeps serving (/readyz 503) while endpoints are withdrawn; then it drains for 20 s
    assert c["args"][c["args"].index("--shutdown-delay") + 1] == "7" and "lifecycle" not in c
    assert c["args"][c["args"].index("--timeout-graceful-shutdown") + 1] == "20"
    assert pod["terminationGracePeriodSeconds"] > 7 + 20
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["securityContext"] == {"runAsNonRoot": True, "allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {}} in pod["volumes"]
    assert pod["automountServiceAccountToken"] is False and pod["enableServiceLinks"] is False
    assert dep["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert not any(e["name"] == "BENTOHOST_GRAPH_SECRET" for e in c["env"])
    files = generate(tmp_path, "--graph-secret", "bh-graph")
    for dep in by_kind(files, "Deployment").values():
        validate(dep)
        assert {"name": "BENTOHOST_GRAPH_SECRET", "valueFrom": {"secretKeyRef": {"name": "bh-graph", "key": "secret"}}} \
            in container(dep)["env"]


CONFIG = """\
version: 2
services:
  replicas: 2
  Model:
    replicas: 3
    scaling: {min_replicas: 2, max_replicas: 6}
    resources: {cpu: "2", memory: 4Gi, gpu: 1}
    traffic: {concurrency: 16}
    envs:
      - {name: MODEL_FLAVOUR, value: "yes"}
  Middle:
    resources: {cpu: 500m, memory: 512MiB}
    envs: [{name: HOME, value: /data}]
"""


def test_config_overrides(tmp_path: Path):
    cfg = tmp_path / "bentoml_config.yaml"
    cfg.write_text(CONFIG)
    files = generate(tmp_path, "--config", str(cfg), "--autoscale", "none",
                     env={"BENTOML_CONFIG_OVERRIDES": '{"services": {"Front": {"replicas": 4}}}'})
    assert "front.config.yaml" in files
    for docs in files.values():
        for doc in docs:
            validate(doc)
    (cm,) = files["front.config.yaml"]
    assert cm["kind"] == "ConfigMap" and cm["data"] == {"bentoml_config.yaml": CONFIG}
    deps = by_kind(files, "Deployment")
    assert {s: d["spec"]["replicas"] for s, d in deps.items()} == {"Front": 4, "Middle": 2, "Model": 3}
    model, middle, front = container(deps["Model"]), container(deps["Middle"]), container(deps["Front"])
    assert model["resources"] == {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"nvidia.com/gpu": "1"}}
    assert middle["resources"] == {"requests": {"cpu": "500m", "memory": "512Mi"}}
    assert front["resources"] == {"requests": {"cpu": "2"}}  # none given: one CPU per worker (workers=2)
    env = {c_name: {e["name"]: e["value"] for e in c["env"]} for c_name, c in
           (("Model", model), ("Middle", middle), ("Front", front))}
    assert env["Model"]["MODEL_FLAVOUR"] == "yes"
    assert env["Middle"]["HOME"] == "/data" and env["Front"]["HOME"] == "/tmp"
    for e in env.values():  # the pods read the same file and overrides
        assert e["BENTOML_CONFIG"] == "/etc/bentohost/bentoml_config.yaml"
        assert json.loads(e["BENTOML_CONFIG_OVERRIDES"]) == {"services": {"Front": {"replicas": 4}}}
    pod = deps["Model"]["spec"]["template"]["spec"]
    assert {"name": "config", "configMap": {"name": "front-config"}} in pod["volumes"]
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert deps["Model"]["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    assert len({d["spec"]["template"]["metadata"]["annotations"]["bentohost/config-sha256"]
                for d in deps.values()}) == 1

    # with an autoscaler the count is its own: min/max from scaling, or replicas and --max-replicas
    files = generate(tmp_path, "--config", str(cfg), "--max-replicas", "5")
    assert all("replicas" not in d["spec"] for d in by_kind(files, "Deployment").values())
    hpas = by_kind(files, "HorizontalPodAutoscaler")
    assert {n: (h["spec"]["minReplicas"], h["spec"]["maxReplicas"]) for n, h in hpas.items()} == \
        {"front": (2, 5), "middle": (2, 5), "model": (2, 6)}
    assert hpas["model"]["spec"]["metrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]


def test_keda_scaled_object(tmp_path: Path):
    cfg = tmp_path / "bentoml_config.yaml"
    cfg.write_text(CONFIG)
    prom = "http://prometheus-server.monitoring.svc"
    out = tmp_path / "manifests"
    r = k8s(f"{CALLS}:Front", "--image", "bh:1", "--config", str(cfg), "--autoscale", "keda", "--namespace", "ml",
            "--prometheus-url", prom, "-o", str(out))
    assert r.returncode == 0, r.stderr
    # only Model sets traffic.concurrency; the others keep the CPU HPA, and say so
    assert "service Front: no traffic.concurrency: scaled by an HPA on CPU instead of KEDA" in r.stderr
    files = {p.name: list(yaml.safe_load_all(p.read_text())) for p in out.glob("*.yaml")}
    assert [d["kind"] for d in files["model.yaml"]][-1] == "ScaledObject"
    assert [d["kind"] for d in files["front.yaml"]][-1] == "HorizontalPodAutoscaler"
    so = files["model.yaml"][-1]
    validate(so)
    assert so["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "model"}
    assert (so["spec"]["minReplicaCount"], so["spec"]["maxReplicaCount"]) == (2, 6)
    (trigger,) = so["spec"]["triggers"]
    assert trigger["type"] == "prometheus" and trigger["metricType"] == "AverageValue"
    assert trigger["metadata"] == {
        "serverAddress": prom,
        "query": 'sum(bentoml_service_request_in_progress{namespace="ml",service_name="Model"})',
        "threshold": "16",
    }


@pytest.mark.parametrize("args,env,message", [
    (["nope.py:X"], None, "no such file or directory: 'nope.py'"),
    ([f"{CALLS}:Nothing"], None, "has no attribute 'Nothing'"),
    ([f"{SERVICES / 'import_error.py'}"], None, "cannot import"),
    ([f"{CALLS}:Front", "--autoscale", "vpa"], None, "--autoscale must be one of hpa, keda, none, got 'vpa'"),
    ([f"{CALLS}:Front", "--autoscale", "keda"], None, "--autoscale keda needs --prometheus-url URL"),
    ([f"{CALLS}:Front", "--namespace", "Bad_NS"], None, "is not a valid namespace name"),
    ([f"{CALLS}:Front", "--graph-secret", "Bad:key"], None, "--graph-secret: 'Bad' is not a valid Secret name"),
    ([f"{CALLS}:Front"], {"BENTOML_CONFIG_OVERRIDES": '{"services": {"Model": {"workers": 0}}}'},
     "services.Model.workers: expected an integer >= 1"),
    ([f"{CALLS}:Front"], {"BENTOML_CONFIG_OVERRIDES": '{"services": {"Model": {"scaling": {"min_replicas": 0}}}}'},
     "services.Model.scaling.min_replicas: 0 (scale to zero) is not supported"),
    ([f"{CALLS}:Front"], {"BENTOML_CONFIG_OVERRIDES": '{"services": {"Model": {"scaling": {"min_replicas": 3, '
                                                      '"max_replicas": 2}}}}'},
     "services.Model.scaling: min_replicas 3 is above max_replicas 2"),
    ([f"{CALLS}:Front"], {"BENTOML_CONFIG_OVERRIDES": '{"services": {"Model": {"resources": {"gpu": 0.5}}}}'},
     "services.Model.resources.gpu: expected a whole number of GPUs, got 0.5"),
])
def test_one_line_errors(args: list[str], env: dict | None, message: str):
    r = k8s(*args, "--image", "bh:1", env=env)
    assert r.returncode == 2, r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bentohost: error: ") and message in lines[0], r.stderr
    assert r.stdout == ""


def test_name_clash_and_stdout(tmp_path: Path):
    svc = tmp_path / "svc.py"
    svc.write_text(
        "import bentohost\n\n"
        "@bentohost.service\nclass my_model:\n    @bentohost.api\n    def f(self) -> int:\n        return 1\n\n"
        "@bentohost.service\nclass MyModel:\n    dep = bentohost.depends(my_model)\n"
        "    ext = bentohost.depends(url='http://elsewhere:3000')\n\n"
        "    @bentohost.api\n    def f(self) -> int:\n        return 1\n")
    r = k8s(f"{svc}:MyModel", "--image", "bh:1")
    assert r.returncode == 2 and "would both be named 'my-model' in Kubernetes" in r.stderr, r.stderr
    r = k8s("svc:MyModel", "--image", "bh:1", "--name-prefix", "a-", cwd=tmp_path)
    assert r.returncode == 2 and "would both be named 'a-my-model'" in r.stderr
    svc.write_text(svc.read_text().replace("class my_model", "class Leaf").replace("depends(my_model)",
                                                                                   "depends(Leaf)"))
    r = k8s("svc:MyModel", "--image", "bh:1", cwd=tmp_path)  # a module target, to stdout
    assert r.returncode == 0, r.stderr
    docs = list(yaml.safe_load_all(r.stdout))
    deps = by_kind({"-": docs}, "Deployment")
    assert set(deps) == {"MyModel", "Leaf"}  # the url= dependency gets no Deployment
    assert container(deps["MyModel"])["args"][:3] == ["svc:MyModel", "--service", "MyModel"]


# ---------------------------------------------------------------- the topology, without a cluster

PREFIX = "bhk"
NAME_RE = re.compile(rf"^{PREFIX}(\d+)[a-z]+$")
NETNS_ETC = Path("/etc/netns")


def _mine(name: str) -> bool:
    m = NAME_RE.match(name)
    return bool(m) and int(m.group(1)) == os.getpid()


def _stale(name: str) -> bool:
    m = NAME_RE.match(name)
    return bool(m) and int(m.group(1)) != os.getpid() and not os.path.exists(f"/proc/{m.group(1)}")


def _cleanup(pred) -> None:
    """Our namespaces (with what runs in them), root links and hosts files."""
    _netns_cleanup(pred)
    if NETNS_ETC.is_dir():
        for d in NETNS_ETC.iterdir():
            if pred(d.name):
                shutil.rmtree(d, ignore_errors=True)


class Cluster:
    """A bridge namespace and one namespace per pod, each with a hosts file."""

    def __init__(self, names: list[str]):
        pid = os.getpid()
        used = ip("-4", "-o", "addr", "show", check=False).stdout + ip("-4", "route", "show", "table", "all",
                                                                       check=False).stdout
        block = next((n for n in range(1 + pid % 200, 255) if f"10.214.{n}." not in used), None)
        if block is None:
            pytest.skip("no free 10.214.x.0/24 block in the root namespace")
        self.root_addr = f"10.214.{block}.1"
        self.switch = f"{PREFIX}{pid}s"
        self.pods = {name: (f"{PREFIX}{pid}{chr(ord('a') + i)}", f"10.214.{block}.{10 + i}")
                     for i, name in enumerate(names)}
        self.made_etc = False

    def build(self) -> None:
        pid, sw = os.getpid(), self.switch
        for ns in [sw, *(ns for ns, _ in self.pods.values())]:
            r = ip("netns", "add", ns, check=False)
            if r.returncode != 0:
                pytest.skip(f"`ip netns add` failed: {r.stderr.strip()}")
            ip("-n", ns, "link", "set", "lo", "up")
        r = ip("-n", sw, "link", "add", f"{PREFIX}{pid}br", "type", "bridge", check=False)
        if r.returncode != 0:
            pytest.skip(f"cannot create a bridge: {r.stderr.strip()}")
        ip("-n", sw, "link", "set", f"{PREFIX}{pid}br", "up")
        ends = [(f"{PREFIX}{pid}r", None, self.root_addr)]
        ends += [(f"{ns}i", ns, addr) for ns, addr in self.pods.values()]
        for link, ns, addr in ends:
            outer = f"{link[:-1]}o" if ns else f"{link}s"
            where = ["netns", ns] if ns else []
            r = ip("link", "add", link, *where, "type", "veth", "peer", "name", outer, "netns", sw, check=False)
            if r.returncode != 0:
                pytest.skip(f"cannot create a veth pair: {r.stderr.strip()}")
            ip("-n", sw, "link", "set", outer, "master", f"{PREFIX}{pid}br")
            ip("-n", sw, "link", "set", outer, "up")
            run_in = ["-n", ns] if ns else []
            ip(*run_in, "addr", "add", f"{addr}/24", "dev", link)
            ip(*run_in, "link", "set", link, "up")

    def write_hosts(self, names: dict[str, str]) -> None:
        """``names``: {DNS name: service}; every pod resolves them to that service's pod."""
        self.made_etc = not NETNS_ETC.exists()
        lines = ["127.0.0.1 localhost", "::1 localhost"]
        lines += [f"{self.pods[svc][1]} {dns}" for dns, svc in names.items()]
        for ns, _ in self.pods.values():
            try:
                (NETNS_ETC / ns).mkdir(parents=True, exist_ok=True)
                (NETNS_ETC / ns / "hosts").write_text("\n".join(lines) + "\n")
            except OSError as exc:
                pytest.skip(f"cannot write {NETNS_ETC / ns}: {exc.strerror}")

    def remove(self) -> None:
        _cleanup(_mine)
        if self.made_etc:
            try:
                NETNS_ETC.rmdir()
            except OSError:
                pass


@pytest.fixture
def cluster_factory():
    if shutil.which("ip") is None:
        pytest.skip("`ip` (iproute2) is not installed")
    if not _has_cap_net_admin():
        pytest.skip(f"network namespaces need CAP_NET_ADMIN (euid {os.geteuid()} lacks it)")
    _cleanup(_stale)
    made: list[Cluster] = []

    def make(names: list[str]) -> Cluster:
        cluster = Cluster(names)
        made.append(cluster)
        cluster.build()
        return cluster

    try:
        yield make
    finally:
        for cluster in made:
            cluster.remove()


class Pod(NetnsServer):
    """One Deployment's container, run as its manifest says in its namespace: the
    command (``python`` is this interpreter), args, env and workingDir, with every
    path under a volume mount mapped to ``mounts``' directory for it."""

    def __init__(self, ns: str, addr: str, spec: dict[str, Any], mounts: dict[str, Path],
                 secrets: dict[tuple[str, str], str], log_path: Path):
        def path(value: str) -> str:
            for mount, local in mounts.items():
                if value == mount or value.startswith(mount + "/"):
                    return str(local) + value[len(mount):]
            return value

        def value(e: dict[str, Any]) -> str:
            if "value" in e:
                return path(e["value"])
            ref = e["valueFrom"]["secretKeyRef"]
            return secrets[ref["name"], ref["key"]]

        env = {e["name"]: value(e) for e in spec.get("env", [])}
        super().__init__(ns, "unused", host=addr, port=spec["ports"][0]["containerPort"], log_path=log_path,
                         env=env, cwd=path(spec["workingDir"]))
        command = [sys.executable if spec["command"][0] == "python" else spec["command"][0], *spec["command"][1:]]
        self.container_cmd = [*command, *(path(a) for a in spec["args"])]

    @property
    def cmd(self) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *self.container_cmd]


CALLS_TO_COMPARE = [("/predict", {"x": [1, 2, 3]}), ("/apredict", {"x": [1, 2]}), ("/sync_to_async", {"x": [4]}),
                    ("/async_to_sync", {"x": [5]}), ("/matmul", {"n": 3}), ("/fail", {"kind": "invalid"}),
                    ("/fail", {"kind": "missing"}), ("/fail", {"kind": "boom"})]


def _answers(srv) -> list[tuple[int, Any]]:
    out = []
    for route, body in CALLS_TO_COMPARE:
        r = srv.post(route, body, timeout=30)
        out.append((r.status_code, r.json() if "json" in r.headers.get("content-type", "") else r.text))
    return out


def test_topology_across_network_namespaces(cluster_factory, tmp_path: Path, host_binary, server_factory):
    cfg = tmp_path / "bentoml_config.yaml"
    cfg.write_text("version: 2\nservices:\n  Middle:\n    envs: [{name: GRAPH_MARK_DIR, value: /tmp/marks}]\n")
    # with a graph secret the pods call each other with signed pickle, as one process's pools do
    # (without it, JSON: a float32 array comes back float64)
    files = generate(tmp_path, "--namespace", "ml", "--config", str(cfg), "--graph-secret", "bh-graph:token")
    secrets = {("bh-graph", "token"): "a graph secret of the test run"}
    deps = by_kind(files, "Deployment")
    cluster = cluster_factory(list(deps))
    dns = {}
    for svc, service in by_kind(files, "Service").items():
        name = service["metadata"]["name"]
        dns[f"{name}.ml.svc.cluster.local"] = svc
        dns[name] = svc
    cluster.write_hosts(dns)
    config_dir = tmp_path / "configmap"
    config_dir.mkdir()
    for key, text in files["front.config.yaml"][0]["data"].items():
        (config_dir / key).write_text(text)

    factory = ServerFactory(tmp_path)
    pods: dict[str, Pod] = {}

    def start(svc: str, wait: bool = True) -> Pod:
        ns, addr = cluster.pods[svc]
        scratch = tmp_path / f"{svc}-tmp-{len(factory.servers)}"
        scratch.mkdir()
        spec = container(deps[svc])
        mounts = {"/app": CALLS.parent, "/tmp": scratch, "/etc/bentohost": config_dir}
        assert {m["mountPath"] for m in spec["volumeMounts"]} <= set(mounts)
        pod = Pod(ns, addr, spec, mounts, secrets, tmp_path / f"{svc}-{len(factory.servers)}.log")
        factory.servers.append(pod)
        pods[svc] = pod
        pod.start(wait_ready=wait)
        return pod

    try:
        for svc in deps:  # as a cluster would: all at once, in no order
            start(svc, wait=False)
        for pod in pods.values():
            pod.wait_ready()
        front = pods["Front"]
        # every pod serves its one service, in its own namespace, from the manifest's env
        for svc, pod in pods.items():
            assert f"service {svc}: " in pod.log(), pod.log()
            assert os.stat(f"/proc/{pod.pid}/ns/net").st_ino == os.stat(f"/run/netns/{pod.ns}").st_ino
        environ = dict(kv.split("=", 1) for kv in
                       Path(f"/proc/{pods['Middle'].pid}/environ").read_text().split("\0") if "=" in kv)
        scratch = tmp_path / "Middle-tmp-1"
        assert environ["HOME"] == str(scratch) and environ["GRAPH_MARK_DIR"] == f"{scratch}/marks"
        assert environ["BENTOML_CONFIG"] == str(config_dir / "bentoml_config.yaml")

        # the graph answers across pods as it does in one process
        whole = server_factory(f"{CALLS}:Front")
        assert _answers(front) == _answers(whole)
        who = front.post("/who", {}).json()
        assert [w["service"] for w in who] == ["Front", "Middle", "Model"]
        assert len({w["pid"] for w in who}) == 3

        # a pod dies: the entry answers 503 until it is back (same Service address), then recovers
        for victim in ("Model", "Middle"):
            pods[victim].kill()
            wait_for(lambda: front.post("/predict", {"x": [1]}, timeout=10).status_code == 503, 15,
                     what=f"503 from the entry without {victim}")
            assert front.proc.poll() is None
            # /readyz stays the pod's own: a dependency's outage does not take the callers' pods
            # out of their Services (and the startupProbe does not wait on other pods)
            assert front.get("/readyz", timeout=10).status_code == 200
            start(victim)
            wait_for(lambda: front.post("/predict", {"x": [1, 2, 3]}, timeout=10).json() == 7.0, 30,
                     interval=0.2, what=f"recovery after {victim} came back")
        assert _answers(front) == _answers(whole)
    finally:
        factory.close()
