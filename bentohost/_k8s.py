"""Kubernetes manifests for a service graph: one Deployment per service.

:func:`plan` turns the graph (``service_graph``) and the configuration file as the
host reads it into one :class:`ServiceSpec` per service; :func:`manifests` writes
each spec's Deployment, Service, PodDisruptionBudget and autoscaler (an HPA on CPU,
or a KEDA ScaledObject on ``bentoml_service_request_in_progress``) as dicts, ready
for ``_yaml_emit``. Nothing here imports Kubernetes libraries or talks to a cluster.

Every pod runs ``python -m bentohost serve <target under /app> --service NAME``,
its dependencies given with ``--depends NAME=http://<k8s-name>.<ns>.svc.<domain>:3000``
(a ClusterIP Service's address stays the same while the Service exists, so the
host's look-up once at start stays right).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._overrides import apply as apply_overrides
from ._service import Service, service_graph

__all__ = [
    "AUTOSCALERS",
    "K8sError",
    "Options",
    "ServiceSpec",
    "dns_name",
    "cpu_quantity",
    "memory_quantity",
    "gpu_count",
    "plan",
    "manifests",
    "keda_query",
    "secret_ref",
]

PORT = 3000
APP_DIR = "/app"
CONFIG_DIR = "/etc/bentohost"
CONFIG_FILE = "bentoml_config.yaml"
RUN_AS = 10001  # any non-root uid: the image's files are world-readable, it writes only to /tmp
AUTOSCALERS = ("hpa", "keda", "none")
MAX_NAME = 63  # a Service's name is a DNS-1035 label


class K8sError(ValueError):
    """A one-line reason the manifests cannot be written."""


@dataclass(frozen=True)
class Options:
    image: str
    target: str  # the serve target inside the image (under /app)
    namespace: str = "default"
    autoscale: str = "hpa"
    prometheus_url: str | None = None
    max_replicas: int = 10
    cpu_utilization: int = 80
    name_prefix: str = ""
    cluster_domain: str = "cluster.local"
    shutdown_delay: float = 5.0
    graceful_timeout: float = 30.0
    startup_timeout: float = 1800.0
    config_text: str | None = None  # the configuration file, shipped in a ConfigMap
    config_overrides: str | None = None  # BENTOML_CONFIG_OVERRIDES, passed on as is
    graph_secret: tuple[str, str] | None = None  # (Secret name, key): BENTOHOST_GRAPH_SECRET from it


@dataclass(frozen=True)
class ServiceSpec:
    name: str  # the bentohost service name
    k8s_name: str
    depends: dict[str, str]  # dependency name -> URL inside the cluster
    replicas: int
    min_replicas: int
    max_replicas: int
    cpu: str
    memory: str | None
    gpu: int
    envs: list[dict[str, str]]
    concurrency: int | None
    autoscaler: str  # "hpa", "keda" or "none" for this service
    notes: list[str] = field(default_factory=list)  # warnings for stderr


# ---------------------------------------------------------------- names and quantities

_NAME_RE = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?\Z")


def dns_name(name: str, prefix: str = "") -> str:
    """A DNS-1035 label (what a Service's name must be, and a valid Deployment name)
    for a service name: ``MyModel`` -> ``my-model``, ``LLMService`` -> ``llm-service``,
    ``text_encoder`` -> ``text-encoder``; ``prefix`` goes first. A name that has to be
    cut to 63 characters, or that starts without a letter, gets a short hash of the
    original so that it stays unique."""
    kebab = re.sub(r"([a-z0-9])([A-Z])", r"\1-\2", name)
    kebab = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1-\2", kebab)
    out = re.sub(r"[^a-z0-9]+", "-", (prefix + kebab).lower()).strip("-")
    digest = hashlib.sha256((prefix + name).encode()).hexdigest()[:8]
    if not out or not out[0].isalpha():
        out = f"svc-{out}-{digest}" if out else f"svc-{digest}"
    if len(out) > MAX_NAME:
        out = f"{out[:MAX_NAME - 9].rstrip('-')}-{digest}"
    assert _NAME_RE.match(out), out
    return out


_CPU_RE = re.compile(r"(\d+(?:\.\d+)?|\.\d+)(m?)\Z")
_MEM_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([kKMGTPE]?)(i?)(B?)\Z")


def cpu_quantity(value: Any, where: str) -> str:
    """BentoML's ``resources.cpu`` (2, 0.5, "2", "500m") as a Kubernetes quantity."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise K8sError(f"{where}: expected a CPU amount such as 2, 0.5 or \"500m\", got {value!r}")
    text = str(value).strip()
    m = _CPU_RE.match(text)
    if not m or float(m.group(1)) <= 0:
        raise K8sError(f"{where}: expected a CPU amount such as 2, 0.5 or \"500m\", got {value!r}")
    if m.group(2):
        return text
    cores = float(m.group(1))
    if cores == int(cores):
        return str(int(cores))
    return f"{math.ceil(cores * 1000)}m"


def memory_quantity(value: Any, where: str) -> str:
    """BentoML's ``resources.memory`` ("4Gi", "512MiB", "1G", 2**30) as a quantity:
    Ki/Mi/Gi/... are powers of 1024 and k/M/G/... of 1000 as in Kubernetes, a
    trailing B is dropped, a bare number is bytes. Lowercase ``m`` is refused (for
    Kubernetes it means thousandths of a byte)."""
    bad = f"{where}: expected a memory size such as \"4Gi\", \"512Mi\" or a number of bytes, got {value!r}"
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise K8sError(bad)
    if isinstance(value, (int, float)):
        if value <= 0 or not math.isfinite(value):
            raise K8sError(bad)
        return str(math.ceil(value))
    m = _MEM_RE.match(value.strip())
    if not m or float(m.group(1)) <= 0 or (m.group(3) and not m.group(2)):
        raise K8sError(bad)
    number, unit, binary = m.group(1), m.group(2), m.group(3)
    if binary:
        unit = unit.upper()
    elif unit == "K":
        unit = "k"
    return f"{number}{unit}{binary}"


def gpu_count(value: Any, where: str) -> int:
    """``resources.gpu`` as a whole number of ``nvidia.com/gpu``."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or value != int(value):
        raise K8sError(f"{where}: expected a whole number of GPUs, got {value!r}")
    return int(value)


def _count(value: Any, where: str, default: int, least: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise K8sError(f"{where}: expected an integer >= {least}, got {value!r}")
    return value


_ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*\Z")


# ---------------------------------------------------------------- the plan


def _envs(items: Any, where: str, notes: list[str]) -> list[dict[str, str]]:
    out: dict[str, str] = {}
    for item in items or []:
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            raise K8sError(f"{where}: expected {{name, value}} maps, got {item!r}")
        name = item["name"]
        if not _ENV_NAME.match(name):
            raise K8sError(f"{where}: {name!r} is not a valid environment variable name")
        value = item.get("value")
        if value is None:
            notes.append(f"env {name} has no value: add it to the Deployment yourself (from a Secret, say)")
            continue
        out[name] = str(value)
    return [{"name": k, "value": v} for k, v in out.items()]


def _spec(svc: Service[Any], merged: Mapping[str, Any], opts: Options, names: dict[str, str]) -> ServiceSpec:
    where = f"services.{svc.name}"
    cfg = apply_overrides({**svc.config, "envs": list(svc.envs)}, svc.name, merged)
    notes: list[str] = []
    res = cfg.get("resources") or {}
    workers = cfg.get("workers")
    if res.get("cpu") is not None:
        cpu = cpu_quantity(res["cpu"], f"{where}.resources.cpu")
    else:  # the HPA's utilization is relative to the request: one CPU per worker
        cpu = str(workers) if isinstance(workers, int) and not isinstance(workers, bool) else "1"
    memory = memory_quantity(res["memory"], f"{where}.resources.memory") if res.get("memory") is not None else None
    gpu = gpu_count(res.get("gpu"), f"{where}.resources.gpu")
    replicas = _count(cfg.get("replicas"), f"{where}.replicas", 1, 1)
    scaling = cfg.get("scaling") or {}
    low = _count(scaling.get("min_replicas"), f"{where}.scaling.min_replicas", replicas, 0)
    high = _count(scaling.get("max_replicas"), f"{where}.scaling.max_replicas", max(low, opts.max_replicas), 1)
    autoscaler = opts.autoscale
    concurrency = (cfg.get("traffic") or {}).get("concurrency")
    if autoscaler == "keda" and not concurrency:
        notes.append("no traffic.concurrency: scaled by an HPA on CPU instead of KEDA")
        autoscaler = "hpa"
    if autoscaler != "none":
        if low == 0:
            raise K8sError(f"{where}.scaling.min_replicas: 0 (scale to zero) is not supported: "
                           "no pod would report the concurrency that wakes the service")
        if low > high:
            raise K8sError(f"{where}.scaling: min_replicas {low} is above max_replicas {high}")
    depends = {
        dep.on.name: f"http://{names[dep.on.name]}.{opts.namespace}.svc.{opts.cluster_domain}:{PORT}"
        for dep in svc.dependencies.values()
        if dep.on is not None and dep.url is None
    }
    return ServiceSpec(
        name=svc.name,
        k8s_name=names[svc.name],
        depends=depends,
        replicas=replicas,
        min_replicas=low,
        max_replicas=high,
        cpu=cpu,
        memory=memory,
        gpu=gpu,
        envs=_envs(cfg.get("envs"), f"{where}.envs", notes),
        concurrency=concurrency if isinstance(concurrency, int) and concurrency > 0 else None,
        autoscaler=autoscaler,
        notes=notes,
    )


def plan(entry: Service[Any], merged: Mapping[str, Any], opts: Options) -> list[ServiceSpec]:
    """One spec per service of the entry's graph (``url=`` dependencies are outside
    it), the entry first; ``merged`` is the host's reading of the configuration file
    (``{"defaults": ..., "services": ...}``)."""
    if opts.autoscale not in AUTOSCALERS:
        raise K8sError(f"--autoscale must be one of {', '.join(AUTOSCALERS)}, got {opts.autoscale!r}")
    if opts.autoscale == "keda" and not opts.prometheus_url:
        raise K8sError("--autoscale keda needs --prometheus-url URL (where KEDA queries Prometheus)")
    if not _NAME_RE.match(opts.namespace):
        raise K8sError(f"--namespace {opts.namespace!r} is not a valid namespace name (a DNS-1123 label)")
    try:
        graph = service_graph(entry)
    except ValueError as exc:
        raise K8sError(str(exc)) from None
    names: dict[str, str] = {}
    for svc in graph:
        k8s = dns_name(svc.name, opts.name_prefix)
        clash = next((n for n, k in names.items() if k == k8s), None)
        if clash is not None:
            raise K8sError(f"services {clash!r} and {svc.name!r} would both be named {k8s!r} in Kubernetes; "
                           "rename one of them")
        names[svc.name] = k8s
    return [_spec(svc, merged, opts, names) for svc in graph]


# ---------------------------------------------------------------- the objects


def _fmt(seconds: float) -> str:
    return f"{seconds:g}"


def _labels(spec: ServiceSpec, graph: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": spec.k8s_name,
        "app.kubernetes.io/part-of": graph,
        "app.kubernetes.io/managed-by": "bentohost",
    }


def _selector(spec: ServiceSpec, graph: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": spec.k8s_name, "app.kubernetes.io/part-of": graph}


def _meta(name: str, opts: Options, labels: dict[str, str], svc_name: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": opts.namespace, "labels": labels}
    if svc_name is not None:
        meta["annotations"] = {"bentohost/service": svc_name}
    return meta


def _object(api: str, kind: str, spec: ServiceSpec, opts: Options, graph: str, body: dict[str, Any],
            annotate: bool = False) -> dict[str, Any]:
    """One of a service's objects, named as its Deployment, with its labels."""
    meta = _meta(spec.k8s_name, opts, _labels(spec, graph), spec.name if annotate else None)
    return {"apiVersion": api, "kind": kind, "metadata": meta, "spec": body}


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 5,
        "failureThreshold": failures,
    }


def config_map_name(graph: str) -> str:
    return f"{graph[:MAX_NAME - 7].rstrip('-')}-config"


def config_file_stem(graph: str) -> str:
    """The ConfigMap's file in -o DIR; the dot keeps it apart from every service's file."""
    return f"{graph}.config"


def _container(spec: ServiceSpec, opts: Options) -> dict[str, Any]:
    # --shutdown-delay: after SIGTERM the pod keeps serving while /readyz answers 503, so
    # every kube-proxy and load balancer withdraws it before the drain starts
    args = [opts.target, "--service", spec.name, "--host", "0.0.0.0", "--port", str(PORT),
            "--timeout-graceful-shutdown", _fmt(opts.graceful_timeout), "--shutdown-delay", _fmt(opts.shutdown_delay)]
    for name, url in spec.depends.items():
        args += ["--depends", f"{name}={url}"]
    ours: dict[str, str] = {}
    if opts.config_text is not None:  # the file this graph was generated from, where serve reads it
        ours["BENTOML_CONFIG"] = f"{CONFIG_DIR}/{CONFIG_FILE}"
    if opts.config_overrides:
        ours["BENTOML_CONFIG_OVERRIDES"] = opts.config_overrides
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in ours.items()]
    if opts.graph_secret is not None:  # signed pickle between the pods (numpy dtypes kept, no JSON)
        secret, key = opts.graph_secret
        env.append({"name": "BENTOHOST_GRAPH_SECRET", "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}})
        ours["BENTOHOST_GRAPH_SECRET"] = secret
    if not any(e["name"] == "HOME" for e in spec.envs):  # the root filesystem is read-only
        env.append({"name": "HOME", "value": "/tmp"})
    env += [e for e in spec.envs if e["name"] not in ours]
    requests: dict[str, str] = {"cpu": spec.cpu}
    if spec.memory is not None:
        requests["memory"] = spec.memory
    resources: dict[str, Any] = {"requests": requests}
    if spec.gpu:
        resources["limits"] = {"nvidia.com/gpu": str(spec.gpu)}
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]
    if opts.config_text is not None:
        mounts.append({"name": "config", "mountPath": CONFIG_DIR, "readOnly": True})
    startup_failures = max(1, math.ceil(opts.startup_timeout / 5))
    return {
        "name": "bentohost",
        "image": opts.image,
        # the image's own ENTRYPOINT (Dockerfile), written out so that any image with bentohost works
        "command": ["python", "-m", "bentohost", "serve"],
        "args": args,
        "workingDir": APP_DIR,
        "env": env,
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "resources": resources,
        # /readyz is 503 until the model is loaded: allow startup_timeout for it, then
        # liveness takes over (/livez is answered by C, even while Python is busy)
        "startupProbe": _probe("/readyz", 5, startup_failures),
        "readinessProbe": _probe("/readyz", 5, 2),
        "livenessProbe": _probe("/livez", 10, 3),
        "securityContext": {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": mounts,
    }


def _deployment(spec: ServiceSpec, opts: Options, graph: str, config_hash: str | None) -> dict[str, Any]:
    labels = _labels(spec, graph)
    annotations = {
        "bentohost/service": spec.name,
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(PORT),
        "prometheus.io/path": "/metrics",
    }
    if config_hash is not None:  # a changed configuration file rolls the pods
        annotations["bentohost/config-sha256"] = config_hash
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}]
    if opts.config_text is not None:
        volumes.append({"name": "config", "configMap": {"name": config_map_name(graph)}})
    pod: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,  # no FOO_PORT=tcp://... variables (BENTOML_PORT among them)
        # the shutdown delay, then the drain, then a margin
        "terminationGracePeriodSeconds": math.ceil(opts.shutdown_delay + opts.graceful_timeout + 5),
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "fsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [_container(spec, opts)],
        "volumes": volumes,
    }
    if spec.gpu:
        pod["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    # a GPU pod cannot surge when every GPU is taken: replace in place instead
    rolling = {"maxSurge": 0, "maxUnavailable": 1} if spec.gpu else {"maxSurge": 1, "maxUnavailable": 0}
    body: dict[str, Any] = {}
    if spec.autoscaler == "none":  # otherwise the autoscaler owns the count (kubectl apply leaves it)
        body["replicas"] = spec.replicas
    body.update({
        "selector": {"matchLabels": _selector(spec, graph)},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": rolling},
        "progressDeadlineSeconds": max(600, math.ceil(opts.startup_timeout) + 60),
        "template": {"metadata": {"labels": labels, "annotations": annotations}, "spec": pod},
    })
    return _object("apps/v1", "Deployment", spec, opts, graph, body, annotate=True)


def _service(spec: ServiceSpec, opts: Options, graph: str) -> dict[str, Any]:
    return _object("v1", "Service", spec, opts, graph, {
        "type": "ClusterIP",
        "selector": _selector(spec, graph),
        "ports": [{"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}],
    }, annotate=True)


def _pdb(spec: ServiceSpec, opts: Options, graph: str) -> dict[str, Any]:
    # one pod at a time: a node drain never stalls (minAvailable: 1 would, with one
    # replica), and pods that never became ready may always be evicted
    return _object("policy/v1", "PodDisruptionBudget", spec, opts, graph, {
        "maxUnavailable": 1,
        "unhealthyPodEvictionPolicy": "AlwaysAllow",
        "selector": {"matchLabels": _selector(spec, graph)},
    })


def _target_ref(spec: ServiceSpec) -> dict[str, str]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "name": spec.k8s_name}


def _hpa(spec: ServiceSpec, opts: Options, graph: str) -> dict[str, Any]:
    return _object("autoscaling/v2", "HorizontalPodAutoscaler", spec, opts, graph, {
        "scaleTargetRef": _target_ref(spec),
        "minReplicas": spec.min_replicas,
        "maxReplicas": spec.max_replicas,
        "metrics": [{
            "type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": opts.cpu_utilization}},
        }],
    })


def _promql_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def keda_query(spec: ServiceSpec, opts: Options) -> str:
    """Requests in progress in all of the service's pods together."""
    return (f"sum(bentoml_service_request_in_progress{{namespace={_promql_string(opts.namespace)},"
            f"service_name={_promql_string(spec.name)}}})")


def _scaled_object(spec: ServiceSpec, opts: Options, graph: str) -> dict[str, Any]:
    assert spec.concurrency is not None and opts.prometheus_url
    return _object("keda.sh/v1alpha1", "ScaledObject", spec, opts, graph, {
        "scaleTargetRef": _target_ref(spec),
        "minReplicaCount": spec.min_replicas,
        "maxReplicaCount": spec.max_replicas,
        # AverageValue: replicas = ceil(requests in progress / concurrency), as BentoCloud scales
        "triggers": [{
            "type": "prometheus",
            "metricType": "AverageValue",
            "metadata": {
                "serverAddress": opts.prometheus_url,
                "query": keda_query(spec, opts),
                "threshold": str(spec.concurrency),
            },
        }],
    })


def config_map(opts: Options, graph: str) -> dict[str, Any] | None:
    if opts.config_text is None:
        return None
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": config_map_name(graph), "namespace": opts.namespace,
                     "labels": {"app.kubernetes.io/part-of": graph, "app.kubernetes.io/managed-by": "bentohost"}},
        "data": {CONFIG_FILE: opts.config_text},
    }


def manifests(specs: list[ServiceSpec], opts: Options) -> dict[str, list[dict[str, Any]]]:
    """``{file stem: documents}``: the ConfigMap (when there is a configuration file)
    under ``<graph>.config``, then each service's objects under its Kubernetes name."""
    graph = specs[0].k8s_name
    out: dict[str, list[dict[str, Any]]] = {}
    cm = config_map(opts, graph)
    config_hash = None
    if cm is not None:
        seed = (opts.config_text or "") + "\0" + (opts.config_overrides or "")
        config_hash = hashlib.sha256(seed.encode()).hexdigest()[:16]
        out[config_file_stem(graph)] = [cm]
    for spec in specs:
        docs = [_deployment(spec, opts, graph, config_hash), _service(spec, opts, graph), _pdb(spec, opts, graph)]
        if spec.autoscaler == "hpa":
            docs.append(_hpa(spec, opts, graph))
        elif spec.autoscaler == "keda":
            docs.append(_scaled_object(spec, opts, graph))
        out[spec.k8s_name] = docs
    return out


def secret_ref(text: str) -> tuple[str, str]:
    """``--graph-secret NAME[:KEY]`` as (Secret name, key); the key defaults to ``secret``."""
    name, _, key = text.partition(":")
    key = key or "secret"
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name) or len(name) > 253:
        raise K8sError(f"--graph-secret: {name!r} is not a valid Secret name")
    if not re.fullmatch(r"[-._a-zA-Z0-9]+", key) or len(key) > 253:
        raise K8sError(f"--graph-secret: {key!r} is not a valid key of a Secret")
    return name, key
