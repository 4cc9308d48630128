"""``python -m bentohost k8s TARGET --image IMG``: the command line of ``_k8s``.

Registered by ``cli._parser``; the service is imported only when the command runs.
The configuration file is read by the host binary (``bentohost-host config``),
with the parser and the checks that ``serve`` uses, so a file that serve refuses
is refused here with the same one-line message.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

__all__ = ["add_parser", "run", "image_target", "read_config"]


def add_parser(sub: Any) -> None:
    from .cli import _positive_int, _seconds

    k8s = sub.add_parser(
        "k8s",
        help="write Kubernetes manifests for a service graph",
        description="Write a Deployment, Service, PodDisruptionBudget and autoscaler for every service of "
        "TARGET's graph, each service in its own pods (serve --service NAME, its dependencies "
        "by their Service's cluster DNS name).",
        epilog="The image runs `python -m bentohost serve` with TARGET's directory at /app (see the "
        "Dockerfile). Configuration: --config FILE or env BENTOML_CONFIG, env BENTOML_CONFIG_OVERRIDES; "
        "services.<Name>.replicas, .scaling.{min,max}_replicas, .resources, .envs and "
        ".traffic.concurrency shape the objects, and the file is shipped to the pods in a ConfigMap.",
    )
    k8s.add_argument("target", nargs="?", default=".", metavar="TARGET", help="the entry service (default: .)")
    k8s.add_argument("--image", required=True, metavar="IMAGE", help="the container image holding TARGET at /app")
    k8s.add_argument("--namespace", default="default", metavar="NS", help="namespace of every object (default: default)")
    k8s.add_argument("-o", "--output", default=None, metavar="DIR",
                     help="write one file per service (NAME.yaml) into DIR; default: all documents to stdout")
    k8s.add_argument("--config", default=None, metavar="FILE",
                     help="BentoML's configuration file (v2 YAML; default: env BENTOML_CONFIG)")
    k8s.add_argument("--autoscale", default="hpa", metavar="KIND",
                     help="hpa: a HorizontalPodAutoscaler on CPU (default); keda: a KEDA ScaledObject on the "
                     "requests in progress (bentoml_service_request_in_progress) against traffic.concurrency; "
                     "none: a fixed replica count")
    k8s.add_argument("--prometheus-url", default=None, metavar="URL",
                     help="where KEDA queries Prometheus (needed by --autoscale keda), e.g. "
                     "http://prometheus-server.monitoring.svc")
    k8s.add_argument("--max-replicas", type=_positive_int, default=10, metavar="N",
                     help="the autoscaler's upper bound where services.<Name>.scaling.max_replicas is unset "
                     "(default 10)")
    k8s.add_argument("--cpu-utilization", type=_positive_int, default=80, metavar="PERCENT",
                     help="the HPA's target CPU utilisation, of the CPU request (default 80)")
    k8s.add_argument("--name-prefix", default="", metavar="PREFIX",
                     help="put PREFIX before every object's name (two graphs in one namespace)")
    k8s.add_argument("--cluster-domain", default="cluster.local", metavar="DOMAIN",
                     help="the cluster's DNS domain in dependency URLs (default cluster.local)")
    k8s.add_argument("--graph-secret", default=None, metavar="SECRET[:KEY]",
                     help="an existing Kubernetes Secret (key: KEY, default secret) holding the graph secret "
                     "(serve's --graph-secret-file): the pods then call each other with signed pickle instead "
                     "of JSON")
    k8s.add_argument("--shutdown-delay", type=_seconds, default=5.0, metavar="SECONDS",
                     help="on termination, keep serving this long (a preStop sleep) while the pod leaves the "
                     "Service's endpoints, before SIGTERM starts the drain (default 5)")
    k8s.add_argument("--timeout-graceful-shutdown", type=_seconds, default=30.0, metavar="SECONDS",
                     help="serve's drain time after SIGTERM (default 30); terminationGracePeriodSeconds is "
                     "the delay plus this plus 5")
    k8s.add_argument("--startup-timeout", type=_seconds, default=1800.0, metavar="SECONDS",
                     help="how long a pod may take to become ready (load its model) before it is restarted "
                     "(the startupProbe; default 1800)")


def _fail(message: str) -> int:
    print(f"bentohost: error: {message}", file=sys.stderr)
    return 2


def image_target(target: str, cwd: str) -> str:
    """TARGET as the image sees it: a file or directory becomes its path under /app
    (its directory is /app there), a module name stays (imported from /app)."""
    from ._k8s import APP_DIR

    path_part, sep, attr = target.rpartition(":")
    if not sep:
        path_part, attr = target, ""
    suffix = f":{attr}" if attr else ""
    if os.path.isdir(os.path.join(cwd, path_part)):
        return APP_DIR + suffix
    if path_part.endswith(".py") or os.sep in path_part:
        return f"{APP_DIR}/{os.path.basename(path_part)}{suffix}"
    return target


def read_config(path: str | None, overrides: str | None) -> tuple[dict[str, Any], list[str]]:
    """The host's reading of the configuration file: (``{"defaults", "services"}``,
    warnings); ``ValueError`` with the host's one-line message."""
    if not path and not overrides:
        return {}, []
    from .cli import host_binary

    binary = host_binary()
    if binary is None:
        raise ValueError("the host binary bentohost/_bin/bentohost-host is missing; build it with `make` or "
                         "`pip install .`")
    env = {k: v for k, v in os.environ.items() if k not in ("BENTOML_CONFIG", "BENTOML_CONFIG_OVERRIDES")}
    if path:
        env["BENTOML_CONFIG"] = os.path.abspath(path)
    if overrides:
        env["BENTOML_CONFIG_OVERRIDES"] = overrides
    r = subprocess.run([binary, "config"], env=env, capture_output=True, text=True, timeout=60, check=False)
    if r.returncode != 0:
        raise ValueError((r.stderr.strip().splitlines() or [f"{binary} config failed ({r.returncode})"])[-1])
    out = json.loads(r.stdout)
    return out["config"], list(out["warnings"])


def run(args: argparse.Namespace) -> int:
    from . import _k8s, _yaml_emit
    from ._loader import TargetError, load_service
    from .cli import _target_path_problem

    if args.autoscale not in _k8s.AUTOSCALERS:
        return _fail(f"--autoscale must be one of {', '.join(_k8s.AUTOSCALERS)}, got {args.autoscale!r}")
    problem = _target_path_problem(args.target)
    if problem:
        return _fail(problem)
    path = args.config or os.environ.get("BENTOML_CONFIG") or None
    overrides = os.environ.get("BENTOML_CONFIG_OVERRIDES") or None
    try:
        merged, warnings = read_config(path, overrides)
        text = None
        if path:
            with open(path, encoding="utf-8") as f:
                text = f.read()
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        return _fail(str(exc))
    for line in warnings:
        print(f"bentohost: warning: {path or 'BENTOML_CONFIG_OVERRIDES'}: {line}", file=sys.stderr)
    try:
        secret = _k8s.secret_ref(args.graph_secret) if args.graph_secret is not None else None
    except _k8s.K8sError as exc:
        return _fail(str(exc))
    try:
        entry = load_service(args.target)
    except TargetError as exc:
        return _fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - the user's module failed to import
        return _fail(f"cannot import {args.target}: {type(exc).__name__}: {exc}".splitlines()[0])
    opts = _k8s.Options(
        image=args.image,
        target=image_target(args.target, os.getcwd()),
        namespace=args.namespace,
        autoscale=args.autoscale,
        prometheus_url=args.prometheus_url,
        max_replicas=args.max_replicas,
        cpu_utilization=args.cpu_utilization,
        name_prefix=args.name_prefix,
        cluster_domain=args.cluster_domain,
        shutdown_delay=args.shutdown_delay,
        graceful_timeout=args.timeout_graceful_shutdown,
        startup_timeout=args.startup_timeout,
        config_text=text,
        config_overrides=overrides,
        graph_secret=secret,
    )
    try:
        specs = _k8s.plan(entry, merged, opts)
        files = _k8s.manifests(specs, opts)
    except _k8s.K8sError as exc:
        return _fail(str(exc))
    for spec in specs:
        for note in spec.notes:
            print(f"bentohost: warning: service {spec.name}: {note}", file=sys.stderr)
    if args.output is None:
        sys.stdout.write(_yaml_emit.dump_all(doc for docs in files.values() for doc in docs))
        return 0
    try:
        os.makedirs(args.output, exist_ok=True)
        for stem, docs in files.items():
            out = os.path.join(args.output, f"{stem}.yaml")
            with open(out, "w", encoding="utf-8") as f:
                f.write(_yaml_emit.dump_all(docs))
            print(out)
    except OSError as exc:
        return _fail(f"cannot write to {args.output}: {exc.strerror}")
    return 0
