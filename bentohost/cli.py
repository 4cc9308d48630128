"""Command line launcher: validates arguments and execs the C host binary.

It must stay light: ``serve`` never imports the user's service, pydantic or numpy
(``k8s``, registered from ``_k8s_cli``, imports the service to read its graph).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Sequence

from . import __version__, _k8s_cli
from ._build_cli import register as _register_build_commands
from ._placement import CPU_AFFINITY_ENV, GPU_OVERSUBSCRIBE_ENV, GPU_PER_WORKER_ENV

__all__ = ["main", "parse_size", "build_host_argv", "host_binary", "pythonpath_for_workers"]

HOST_BINARY_ENV = "BENTOHOST_BIN"

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """``"100MiB"`` → bytes. K/M/G/T with or without ``B``/``iB`` are powers of 1024."""
    m = _SIZE_RE.match(text)
    if not m:
        raise argparse.ArgumentTypeError(f"invalid size {text!r} (examples: 1048576, 512K, 100MiB, 1G)")
    number, unit = m.group(1), m.group(2).lower()
    value = int(float(number) * _UNITS[unit])
    if value <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive: {text!r}")
    return value


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}: {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1)
#: 0 allowed: it turns the limit off where the help says so
_count = _int_at_least(0)


def _mebibytes(text: str) -> int:
    """A size where a bare number means MiB (``80`` → 80 MiB, ``1G`` → 1 GiB); 0 turns it off."""
    if text.strip() == "0":
        return 0
    bare = text.strip().replace(".", "", 1).isdigit()
    return parse_size(text + "M" if bare else text)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range: {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return value


# Protections every public server has: (flag, type, default, metavar, help). Each is passed
# to the host as is; bentohost_requests_rejected_total{reason} counts what they refuse.
LIMITS: list[tuple[str, object, object, str, str]] = [
    ("--timeout-request-header", _seconds, 30.0, "SECONDS",
     "a request's head (request line and headers) must arrive within this long of its first byte; "
     "else 408 and close (default 30)"),
    ("--timeout-request-body", _seconds, 30.0, "SECONDS",
     "a request's body must arrive within this long of its head, plus one second per --min-body-rate "
     "bytes received; else 408 and close (default 30)"),
    ("--min-body-rate", parse_size, 1024, "BYTES",
     "bytes per second that extend the body deadline (default 1024)"),
    ("--max-connections", _positive_int, 10000, "N",
     "open connections per worker; beyond it the worker stops accepting until one closes (default 10000)"),
    ("--max-headers", _positive_int, 100, "N", "header lines per request; more get 431 (default 100)"),
    ("--max-requests-per-connection", _count, 1000, "N",
     "requests on one keep-alive connection before the server closes it, so load spreads over "
     "workers again (default 1000; 0 = unlimited)"),
    ("--max-multipart-parts", _positive_int, 1000, "N", "parts of a multipart body; more get 413 (default 1000)"),
    ("--max-multipart-header-size", parse_size, 1 << 20, "SIZE",
     "bytes of all part headers of a multipart body together; more get 413 (default 1MiB)"),
    ("--max-requests", _count, 0, "N",
     "recycle a worker after it answered about N requests, one worker at a time (default 0 = never)"),
    ("--max-worker-rss", _mebibytes, 0, "MIB",
     "recycle a worker whose resident memory exceeds this (a number of MiB, or a size such as 2G), "
     "one worker at a time (default 0 = never)"),
]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bentohost",
        description="Serve BentoML-style service classes from a C host.",
    )
    parser.add_argument("--version", action="version", version=f"bentohost {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = sub.add_parser(
        "serve",
        help="serve a service over HTTP",
        description="Serve a service over HTTP with a C supervisor and embedded-Python workers.",
        epilog=(
            "TARGET forms: module:Class, path/to/file.py:Class, module or file.py (defining one service), "
            "or a directory holding service.py. Environment: BENTOML_PORT, BENTOML_HOST, BENTOML_API_WORKERS, "
            "BENTOML_TIMEOUT, BENTOML_CONFIG, BENTOML_CONFIG_OVERRIDES, BENTOML_NO_UDS; BENTOML_DO_NOT_TRACK and "
            f"BENTOML_HOME are accepted (bentohost sends nothing and keeps nothing there); {HOST_BINARY_ENV} "
            "overrides the host binary path."
        ),
    )
    serve.add_argument("target", nargs="?", default=".", metavar="TARGET", help="the service to serve (default: .)")
    serve.add_argument(
        "--host",
        default=os.environ.get("BENTOML_HOST", "0.0.0.0"),
        help="address to bind (env BENTOML_HOST; default 0.0.0.0)",
    )
    serve.add_argument(
        "-p",
        "--port",
        type=_port,
        default=None,  # BENTOML_PORT, read after parsing so that a bad one is named
        help="port to listen on (env BENTOML_PORT; default 3000)",
    )
    serve.add_argument(
        "--workers",
        "--api-workers",
        type=_positive_int,
        default=None,
        help="number of the served service's worker processes (env BENTOML_API_WORKERS; default: the "
        "service's `workers` setting, else 1)",
    )
    serve.add_argument("--backlog", type=_positive_int, default=2048, help="listen backlog (default 2048)")
    serve.add_argument(
        "--timeout-keep-alive",
        type=_seconds,
        default=5.0,
        metavar="SECONDS",
        help="close idle keep-alive connections after this many seconds (default 5)",
    )
    serve.add_argument(
        "--timeout-graceful-shutdown",
        type=_seconds,
        default=30.0,
        metavar="SECONDS",
        help="on SIGTERM, wait this long for in-flight requests before killing workers (default 30)",
    )
    serve.add_argument(
        "--max-body-size",
        type=parse_size,
        default=parse_size("100MiB"),
        metavar="SIZE",
        help="largest accepted request body; bigger ones get 413 (default 100MiB; suffixes K/M/G, KiB/MiB/GiB)",
    )
    serve.add_argument(
        "--max-header-size",
        type=parse_size,
        default=parse_size("64KiB"),
        metavar="SIZE",
        help="largest accepted request head (request line + headers) (default 64KiB)",
    )
    serve.add_argument(
        "--watchdog-factor",
        type=_seconds,
        default=2.0,
        metavar="FACTOR",
        help="restart a worker whose Python thread made no progress for FACTOR x traffic.timeout "
        "while it had work, after writing its Python stacks to the log (default 2; 0 disables)",
    )
    for flag, kind, default, metavar, help_text in LIMITS:
        serve.add_argument(flag, type=kind, default=default, metavar=metavar, help=help_text)  # type: ignore[arg-type]
    serve.add_argument(
        "--development",
        action="store_true",
        help="run the graph's dependencies in-process, as plain Python calls (BentoML's development "
        "mode): one pool, no serialisation (default: off, one pool per service)",
    )
    serve.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="BentoML's configuration file (v2 YAML; the same as env BENTOML_CONFIG=FILE); "
        "env BENTOML_CONFIG_OVERRIDES (JSON) goes over it (default: none)",
    )
    serve.add_argument(
        "--service",
        default=os.environ.get("BENTOML_SERVE_SERVICE_NAME") or None,
        metavar="NAME",
        help="serve only this service of TARGET's graph, on --host:--port (one service per host or "
        "container; env BENTOML_SERVE_SERVICE_NAME); its dependencies come from --depends "
        "(default: the whole graph)",
    )
    serve.add_argument(
        "--depends",
        action="append",
        default=None,
        metavar="NAME=URL",
        help="where a dependency runs (http://host:port), repeatable (env BENTOML_SERVE_DEPENDS, "
        "comma-separated); calls to it use JSON (default: none, every dependency runs here)",
    )
    serve.add_argument(
        "--graph-secret-file",
        default=None,
        metavar="FILE",
        help="a secret shared with the graph's services on other hosts (at least 16 characters; env "
        "BENTOHOST_GRAPH_SECRET): pickle is then accepted on this port only signed with it, and "
        "--depends / depends(url=...) dependencies are called with signed pickle instead of JSON "
        "(default: none)",
    )
    serve.add_argument(
        "--no-uds",
        action="store_true",
        help="the graph's dependency pools listen on 127.0.0.1 ports instead of Unix sockets (env "
        "BENTOML_NO_UDS); pickle on them must be signed with a random key of the run (default: Unix "
        "sockets)",
    )
    _add_tls_arguments(serve)
    # Restarts and shutdown (csrc/supervisor/restart.c, reload.c); SIGHUP restarts the workers.
    serve.add_argument("--shutdown-delay", type=_seconds, default=0.0, metavar="SECONDS",
                       help="after SIGTERM, keep serving this long while /readyz answers 503, so that a "
                       "load balancer withdraws the endpoint first; then the graceful drain (default 0)")
    serve.add_argument("--reload", action="store_true",
                       help="development: restart the workers, one at a time, when a *.py file under the "
                       "service's directory (or a --reload-dir) or the --config file changes (.bentoignore "
                       "is honoured); a change that breaks the import keeps the old workers serving (default: off)")
    serve.add_argument("--reload-dir", action="append", default=None, metavar="DIR",
                       help="also watch DIR with --reload (repeatable; default: only the service's directory)")
    # Placement (bentohost/_placement.py, applied by csrc/supervisor/placement.c).
    serve.add_argument("--gpu-per-worker", action="store_true",
                       help="worker i of a service sees only its own share of the service's GPUs (cuda:0 is "
                       "its own), not all of them as in BentoML (config key gpu_per_worker; default: off)")
    serve.add_argument("--gpu-oversubscribe", action="store_true",
                       help="services asking for more GPUs than are left share the least used ones; without "
                       "it the run stops with the reason (default: off)")
    serve.add_argument("--cpu-affinity", action="store_true",
                       help="pin each worker to its own CPUs (the usable ones, cgroup quota included), the I/O "
                       "thread on one of them, and set OMP/OpenBLAS/MKL threads to its share unless set "
                       "(config key cpu_affinity; default: off)")
    # Logs: access lines are written by the I/O threads in C, never by Python.
    serve.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="one line per request on stdout, written by C when its response ends (default on, as "
        "BentoML's bentoml.access logger; --no-access-log turns it off)",
    )
    serve.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="text lines (default), or one JSON object per line for the access log, the host's and "
        "Python's logging",
    )
    serve.add_argument(
        "--working-dir",
        default=None,
        metavar="DIR",
        help="directory to change into before resolving TARGET (default: the current directory)",
    )
    _add_bentoml_options(serve)
    _k8s_cli.add_parser(sub)
    _register_build_commands(sub)  # build, containerize: bentohost/_build_cli.py
    return parser


def _add_tls_arguments(serve: argparse.ArgumentParser) -> None:
    """BentoML's --ssl-* flags (uvicorn's meanings); TLS is done by C on the I/O thread.
    The config file's ``ssl`` block is used where no flag is given."""
    tls = serve.add_argument_group("TLS (HTTPS on --port; the config file's ssl block where a flag is not given)")
    tls.add_argument("--ssl-certfile", default=None, metavar="FILE",
                     help="PEM certificate, followed by its chain; enables HTTPS (default: none, plain HTTP)")
    tls.add_argument("--ssl-keyfile", default=None, metavar="FILE",
                     help="PEM private key (default: in --ssl-certfile)")
    tls.add_argument("--ssl-keyfile-password", default=None, metavar="PASSWORD",
                     help="password of an encrypted key (default: none; handed to the host in its "
                     "environment, never on its command line)")
    tls.add_argument("--ssl-version", type=int, default=None, metavar="N",
                     help="Python's ssl.PROTOCOL_* number: 2 or 17 (TLS 1.2 and 1.3), 5 (TLS 1.2 only); "
                     "1.0 and 1.1 are refused (default 17)")
    tls.add_argument("--ssl-cert-reqs", type=int, default=None, choices=(0, 1, 2), metavar="N",
                     help="client certificates: 0 none, 1 optional, 2 required (mutual TLS) (default 0)")
    tls.add_argument("--ssl-ca-certs", default=None, metavar="FILE",
                     help="PEM bundle that client certificates are verified against (default: none)")
    tls.add_argument("--ssl-ciphers", default=None, metavar="LIST",
                     help="OpenSSL cipher list for TLS 1.2 (default: OpenSSL's; TLS 1.3 suites are "
                     "always OpenSSL's)")


def _tls_host_args(args: argparse.Namespace) -> list[str]:
    out: list[str] = []
    for flag, value in (("--ssl-certfile", args.ssl_certfile), ("--ssl-keyfile", args.ssl_keyfile),
                        ("--ssl-ca-certs", args.ssl_ca_certs), ("--ssl-ciphers", args.ssl_ciphers)):
        if value:
            out += [flag, os.path.abspath(value) if flag != "--ssl-ciphers" else value]
    for flag, number in (("--ssl-version", args.ssl_version), ("--ssl-cert-reqs", args.ssl_cert_reqs)):
        if number is not None:
            out += [flag, str(number)]
    return out


def _runner_map(env: dict[str, str]) -> dict[str, str]:
    """BentoML's ``BENTOML_RUNNER_MAP`` (and the deprecated ``BENTOML_SERVE_RUNNER_MAP``):
    JSON ``{service: uri}``; ``tcp://host:port`` is taken as ``http://host:port``."""


# ---- BentoML's other `serve` options ------------------------------------------------------


def _positive_seconds(text: str) -> float:
    value = _seconds(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0: {text!r}")
    return value


class _Refused(argparse.Action):
    """A BentoML option bentohost cannot honour: one line saying why, exit 2."""

    def __init__(self, option_strings: Sequence[str], dest: str, why: str = "", **kwargs: object) -> None:
        self.why = why
        super().__init__(option_strings, dest, help=f"not supported: {why}", **kwargs)  # type: ignore[arg-type]

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        print(f"bentohost: error: {option_string} is not supported: {self.why}", file=sys.stderr)
        sys.exit(2)


class _Deprecated(argparse.Action):
    """``--production``: BentoML's deprecated no-op, with BentoML's warning."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        print(f"bentohost: warning: {option_string} is deprecated: production mode is the default "
              "(use --development for development mode)", file=sys.stderr)


def _add_bentoml_options(serve: argparse.ArgumentParser) -> None:
    serve.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=None,
        metavar="SECONDS",
        help="traffic.timeout of every service served, over the decorator and the configuration file: "
        "a request not answered by then gets 504 (env BENTOML_TIMEOUT; default: each service's "
        "traffic.timeout, else 60)",
    )
    serve.add_argument(
        "--arg",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="a bento argument for bentohost.use_arguments() (the value a string), repeatable; wins over "
        "--arg-file (default: none)",
    )
    serve.add_argument(
        "--arg-file",
        default=None,
        metavar="FILE",
        help="a YAML or JSON map of bento arguments for bentohost.use_arguments() (default: none)",
    )
    serve.add_argument(
        "--production",
        nargs=0,
        action=_Deprecated,
        help="deprecated, as in BentoML: production mode is the default (default: on)",
    )
    serve.add_argument(
        "--do-not-track",
        action="store_true",
        help="accepted as BentoML's: bentohost sends no usage data either way (env BENTOML_DO_NOT_TRACK; "
        "default: off)",
    )
    refused = serve.add_argument_group("BentoML options bentohost refuses (each exits with the reason)")
    refused.add_argument("--env", action=_Refused, nargs=1, metavar="ENV",
                         why="bentohost runs in the interpreter that starts it: activate the environment first")
    refused.add_argument("-q", "--quiet", action=_Refused, nargs=0,
                         why="bentohost has no log levels: its lines are the supervisor's and the service's")
    refused.add_argument("--verbose", "--debug", action=_Refused, nargs=0,
                         why="bentohost has no log levels: its lines are the supervisor's and the service's")
    refused.add_argument("--context", action=_Refused, nargs=1, metavar="NAME",
                         why="BentoCloud contexts are not part of bentohost")


def _bento_arguments(pairs: list[str] | None) -> dict[str, str]:
    """``--arg KEY=VALUE`` pairs as BentoML reads them: split at the first ``=``, the last
    of a repeated key wins; ``ValueError`` in BentoML's words otherwise."""
    out: dict[str, str] = {}
    for item in pairs or ():
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"Invalid argument format: {item}. Must be in the form of key=value")
        out[key] = value
    return out


def _bentoml_env(args: argparse.Namespace, env: dict[str, str]) -> str | None:
    """What BentoML's options hand the host and its workers, in ``env``; a one-line
    problem, or None."""
    if args.workers is None and env.get("BENTOML_API_WORKERS"):
        try:
            args.workers = _positive_int(env["BENTOML_API_WORKERS"])
        except argparse.ArgumentTypeError as exc:
            return f"BENTOML_API_WORKERS: {exc}"
    timeout = args.timeout
    if timeout is None and env.get("BENTOML_TIMEOUT"):
        try:
            timeout = _positive_seconds(env["BENTOML_TIMEOUT"])
        except argparse.ArgumentTypeError as exc:
            return f"BENTOML_TIMEOUT: {exc}"
    env.pop("BENTOHOST_TIMEOUT", None)
    if timeout is not None:
        env["BENTOHOST_TIMEOUT"] = _fmt_seconds(timeout)
    try:
        env["BENTOHOST_ARGUMENTS"] = json.dumps(_bento_arguments(args.arg))
    except ValueError as exc:
        return str(exc)
    env.pop("BENTOHOST_ARGUMENT_FILE", None)
    if args.arg_file is not None:
        if not os.path.isfile(args.arg_file):
            return f"--arg-file {args.arg_file}: no such file"
        env["BENTOHOST_ARGUMENT_FILE"] = os.path.abspath(args.arg_file)
    return None


def _runner_map(env: dict[str, str]) -> dict[str, str]:
    """BentoML's ``BENTOML_RUNNER_MAP`` (and the deprecated ``BENTOML_SERVE_RUNNER_MAP``):
    JSON ``{service: uri}``; ``tcp://host:port`` is taken as ``http://host:port``."""
    out: dict[str, str] = {}
    for var in ("BENTOML_SERVE_RUNNER_MAP", "BENTOML_RUNNER_MAP"):
        raw = env.get(var)
        if not raw or not raw.strip():
            continue
        try:
            mapping = json.loads(raw)
        except ValueError as exc:
            raise ValueError(f"{var} is not JSON: {exc}") from None
        if not isinstance(mapping, dict):
            raise ValueError(f"{var} must be a JSON object {{service: uri}}")
        for name, uri in mapping.items():
            if not isinstance(uri, str) or not uri.startswith(("http://", "https://", "tcp://")):
                raise ValueError(f"{var}: {name!r} must map to an http(s):// or tcp:// URI, got {uri!r}")
            out[str(name)] = ("http://" + uri[len("tcp://"):] if uri.startswith("tcp://") else uri).rstrip("/")
    return out


def _depends_map(flags: list[str] | None, from_env: str | None, env: dict[str, str] | None = None) -> dict[str, str]:
    """Where dependencies run, as {name: url}: ``BENTOML_RUNNER_MAP`` under
    ``BENTOML_SERVE_DEPENDS`` (``NAME=URL`` pairs) under the ``--depends`` flags."""
    pairs = [p for p in (from_env or "").split(",") if p.strip()] + list(flags or [])
    out: dict[str, str] = _runner_map(env or {})
    for pair in pairs:
        name, sep, url = pair.strip().partition("=")
        if not sep or not name or not url.startswith(("http://", "https://")):
            raise ValueError(f"--depends expects NAME=http://host:port, got {pair!r}")
        out[name] = url.rstrip("/")
    return out


def env_flag(value: str | None) -> bool:
    """An environment flag such as BENTOML_NO_UDS: set, and not empty, 0, false, no or off."""
    return value is not None and value.strip().lower() not in ("", "0", "false", "no", "off")


GRAPH_SECRET_ENV = "BENTOHOST_GRAPH_SECRET"
MIN_SECRET = 16
MAX_SECRET = 65536


def _read_secret(path: str) -> str:
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_SECRET + 1)
    except OSError as exc:
        raise ValueError(f"cannot read --graph-secret-file {path}: {exc.strerror}") from None
    if len(raw) > MAX_SECRET:
        raise ValueError(f"--graph-secret-file {path}: the secret is longer than {MAX_SECRET} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"--graph-secret-file {path}: the secret must be UTF-8 text") from None


def graph_secret(path: str | None, from_env: str | None) -> str | None:
    """The graph secret from ``--graph-secret-file`` (which wins) or the environment,
    without surrounding whitespace; ``ValueError`` with a one-line reason."""
    if path:
        where, text = f"--graph-secret-file {path}", _read_secret(path)
    elif from_env is not None:
        where, text = GRAPH_SECRET_ENV, from_env
    else:
        return None
    secret = text.strip()
    if "\0" in secret:
        raise ValueError(f"{where}: the secret must not contain NUL bytes")
    size = len(secret.encode())
    if size < MIN_SECRET:
        raise ValueError(f"{where}: the secret is too short ({size} bytes; at least {MIN_SECRET})")
    return secret


def _fail(message: str) -> int:
    print(f"bentohost: error: {message}", file=sys.stderr)
    return 2


def _target_path_problem(target: str) -> str | None:
    """A one-line message when TARGET looks like a path that does not exist."""
    path_part = target.rpartition(":")[0] if ":" in target else target
    looks_like_path = path_part in (".", "..") or "/" in path_part or path_part.endswith(".py")
    if not looks_like_path:
        return None
    if os.path.isdir(path_part):
        if ":" not in target and not (
            os.path.isfile(os.path.join(path_part, "service.py"))
            or os.path.isfile(os.path.join(path_part, "bentofile.yaml"))
        ):
            return f"directory {path_part!r} has no service.py"
        return None
    if not os.path.isfile(path_part):
        return f"no such file or directory: {path_part!r}"
    return None


def host_binary() -> str | None:
    override = os.environ.get(HOST_BINARY_ENV)
    candidates = [override] if override else []
    candidates.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), "_bin", "bentohost-host"))
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def _site_dirs() -> set[str]:
    import site
    import sysconfig

    dirs = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}
    try:
        dirs.update(site.getsitepackages())
    except AttributeError:
        pass
    try:
        dirs.add(site.getusersitepackages())
    except AttributeError:
        pass
    return {os.path.realpath(d) for d in dirs if d}


def pythonpath_for_workers(env: dict[str, str]) -> str | None:
    """PYTHONPATH with the directory holding the ``bentohost`` package first, unless it is in site-packages."""
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    current = env.get("PYTHONPATH", "")
    if os.path.realpath(pkg_parent) in _site_dirs():
        return current or None
    parts = [p for p in current.split(os.pathsep) if p and os.path.realpath(p) != os.path.realpath(pkg_parent)]
    return os.pathsep.join([pkg_parent, *parts])


def _fmt_seconds(value: float) -> str:
    return f"{value:g}"


def reload_dirs(target: str, extra: list[str] | None) -> list[str]:
    """What ``--reload`` watches: the service's directory (that of the target's file, the
    target directory, or the current one for a module), then every ``--reload-dir``."""
    path_part = target.rpartition(":")[0] if ":" in target else target
    if os.path.isdir(path_part):
        home = path_part
    elif path_part.endswith(".py") or os.path.isfile(path_part):
        home = os.path.dirname(path_part) or "."
    else:
        home = "."
    return [os.path.abspath(d) for d in [home, *(extra or [])]]


def _restart_argv(args: argparse.Namespace) -> list[str]:
    out = ["--shutdown-delay", _fmt_seconds(getattr(args, "shutdown_delay", 0.0))]
    if getattr(args, "reload", False):
        out.append("--reload")
        for d in reload_dirs(args.target, getattr(args, "reload_dir", None)):
            out += ["--reload-dir", d]
    return out


def build_host_argv(binary: str, args: argparse.Namespace) -> list[str]:
    limits: list[str] = []
    for flag, _kind, _default, _metavar, _help in LIMITS:
        value = getattr(args, flag[2:].replace("-", "_"))
        limits += [flag, _fmt_seconds(value) if isinstance(value, float) else str(value)]
    return [
        binary,
        "serve",
        "--target",
        args.target,
        "--python",
        sys.executable,
        "--prefix",
        sys.prefix,
        "--host",
        args.host,
        "--port",
        str(args.port),
        "--backlog",
        str(args.backlog),
        "--workers",
        str(args.workers or 0),
        "--timeout-keep-alive",
        _fmt_seconds(args.timeout_keep_alive),
        "--timeout-graceful-shutdown",
        _fmt_seconds(args.timeout_graceful_shutdown),
        "--max-body-size",
        str(args.max_body_size),
        "--max-header-size",
        str(args.max_header_size),
        "--watchdog-factor",
        _fmt_seconds(args.watchdog_factor),
        *limits,
        *(["--no-uds"] if getattr(args, "no_uds", False) else []),
        *_tls_host_args(args),
        *_restart_argv(args),
        *(["--no-access-log"] if not getattr(args, "access_log", True) else []),
        *(["--log-format", args.log_format] if getattr(args, "log_format", "text") != "text" else []),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "k8s":
        return _k8s_cli.run(args)
    handler = getattr(args, "handler", None)
    if handler is not None:  # a subcommand registered with its own handler
        return int(handler(args))
    if args.command != "serve":
        parser.print_help()
        return 2
    if args.port is None:  # default from the environment
        try:
            args.port = _port(os.environ.get("BENTOML_PORT", "3000"))
        except argparse.ArgumentTypeError as exc:
            return _fail(f"BENTOML_PORT: {exc}")
    env = dict(os.environ)
    # Before --working-dir: --arg-file is relative to where the command was given.
    problem = _bentoml_env(args, env)
    if problem:
        return _fail(problem)
    if args.working_dir is not None:
        try:
            os.chdir(args.working_dir)
        except OSError as exc:
            return _fail(f"cannot change to working dir {args.working_dir!r}: {exc.strerror}")
    problem = _target_path_problem(args.target)
    if problem:
        return _fail(problem)
    binary = host_binary()
    if binary is None:
        return _fail(
            "the host binary bentohost/_bin/bentohost-host is missing; build it with `make` or `pip install .`"
        )
    try:
        depends = _depends_map(args.depends, env.get("BENTOML_SERVE_DEPENDS"), env)
    except ValueError as exc:
        return _fail(str(exc))
    # The workers read these (bentohost/_worker.py): the service to serve and the
    # dependencies that run elsewhere.
    if args.config:
        env["BENTOML_CONFIG"] = os.path.abspath(args.config)
    if args.reload:
        # A save within the second of the last one, of the same size, would pass
        # the .pyc check and the new worker would run the old code.
        env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
        for d in args.reload_dir or []:
            if not os.path.isdir(d):
                return _fail(f"--reload-dir {d!r} is not a directory")
        if len(args.reload_dir or []) > 15:
            return _fail("--reload-dir: at most 15 directories")
    for flag, name in ((args.gpu_per_worker, GPU_PER_WORKER_ENV), (args.gpu_oversubscribe, GPU_OVERSUBSCRIBE_ENV),
                       (args.cpu_affinity, CPU_AFFINITY_ENV)):
        if flag:
            env[name] = "1"
    if args.development:
        env["BENTOHOST_DEVELOPMENT"] = "1"
    if args.service:
        env["BENTOHOST_SERVE_SERVICE"] = args.service
    if depends:
        env["BENTOHOST_DEPENDS"] = json.dumps(depends)
    args.no_uds = args.no_uds or env_flag(env.get("BENTOML_NO_UDS"))
    try:
        secret = graph_secret(args.graph_secret_file, env.get(GRAPH_SECRET_ENV))
    except ValueError as exc:
        return _fail(str(exc))
    if secret is not None:
        env[GRAPH_SECRET_ENV] = secret
    if args.ssl_keyfile_password:
        env["BENTOHOST_SSL_KEYFILE_PASSWORD"] = args.ssl_keyfile_password
    pythonpath = pythonpath_for_workers(env)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    argv_host = build_host_argv(binary, args)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(binary, argv_host, env)
    except OSError as exc:
        return _fail(f"cannot execute {binary}: {exc.strerror}")
    return 0  # not reached
