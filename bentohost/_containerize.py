"""``python -m bentohost containerize``: build a context's image with docker, podman or buildah."""

from __future__ import annotations

import shutil
from collections.abc import Sequence

__all__ = ["BACKENDS", "BACKEND_ENV", "ContainerizeError", "find_backend", "build_command", "backend_options"]

#: in the order they are looked for: the daemonless ones first, since a docker client is
#: often installed where no docker daemon runs
BACKENDS = ("podman", "buildah", "docker")
BACKEND_ENV = "BENTOHOST_CONTAINER_BACKEND"


class ContainerizeError(Exception):
    """No usable backend, or bad --opt (one line)."""


def find_backend(preferred: str | None) -> tuple[str, str]:
    """(name, executable path) of ``preferred``, or of the first of BACKENDS on PATH."""
    if preferred:
        if preferred not in BACKENDS:
            raise ContainerizeError(f"unknown backend {preferred!r} (one of: {', '.join(BACKENDS)})")
        path = shutil.which(preferred)
        if path is None:
            raise ContainerizeError(f"backend {preferred!r} is not installed (not found on PATH)")
        return preferred, path
    for name in BACKENDS:
        path = shutil.which(name)
        if path is not None:
            return name, path
    raise ContainerizeError(
        "no container tool found: install docker, podman or buildah (e.g. apt-get install podman), "
        "or run `python -m bentohost build` and build the context yourself"
    )


def backend_options(opts: Sequence[str]) -> list[str]:
    """BentoML's ``--opt KEY=VALUE`` (or ``--opt KEY``) → ``--KEY=VALUE`` for the build tool."""
    out: list[str] = []
    for opt in opts:
        key, sep, value = opt.partition("=")
        key = key.strip().lstrip("-")
        if not key or not all(c.isalnum() or c == "-" for c in key):
            raise ContainerizeError(f"--opt expects KEY=VALUE or KEY (e.g. network=host), got {opt!r}")
        out.append(f"--{key}={value}" if sep else f"--{key}")
    return out


def build_command(backend: str, executable: str, context: str, tag: str, opts: Sequence[str]) -> list[str]:
    verb = ["bud"] if backend == "buildah" else ["build"]
    return [executable, *verb, "-t", tag, *backend_options(opts), context]
