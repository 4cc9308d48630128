"""Command line launcher: validates arguments and execs the C host binary.

It must stay light: it never imports the user's service, pydantic or numpy.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence

from . import __version__

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


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


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
            f"or a directory holding service.py. Environment: BENTOML_PORT, BENTOML_HOST; {HOST_BINARY_ENV} "
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
        default=os.environ.get("BENTOML_PORT", "3000"),
        help="port to listen on (env BENTOML_PORT; default 3000)",
    )
    serve.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        help="number of worker processes (default: the service's `workers` setting, else 1)",
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
    serve.add_argument(
        "--working-dir",
        default=None,
        metavar="DIR",
        help="directory to change into before resolving TARGET (default: the current directory)",
    )
    return parser


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


def build_host_argv(binary: str, args: argparse.Namespace) -> list[str]:
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
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command != "serve":
        parser.print_help()
        return 2
    if isinstance(args.port, str):  # default from the environment
        try:
            args.port = _port(args.port)
        except argparse.ArgumentTypeError as exc:
            return _fail(f"BENTOML_PORT: {exc}")
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
    env = dict(os.environ)
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
