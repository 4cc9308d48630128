"""The ``build`` and ``containerize`` subcommands (registered by cli.py).

Only argparse here: the build modules load when one of these commands runs.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._bentofile import BentoFile

__all__ = ["register"]

_TAG = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:[:/][A-Za-z0-9._/-]+)*(?::[\w][\w.-]{0,127})?$")


def _fail(message: str) -> int:
    print(f"bentohost: error: {message}", file=sys.stderr)
    return 2


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("directory", nargs="?", default=".", metavar="DIR",
                   help="the project: a directory with a bentofile.yaml (default: .)")
    p.add_argument("--base", default=None, metavar="IMAGE",
                   help="the bentohost image to build FROM (default: docker.base_image of the bentofile, "
                   "else env BENTOHOST_BASE_IMAGE, else bentohost:VERSION, built from bentohost's Dockerfile)")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    build = sub.add_parser(
        "build", help="make an image build context from a bentofile.yaml",
        description="Reads DIR/bentofile.yaml (BentoML's build file) and writes a build context: the "
        "selected files under src/, env/python/requirements.txt and a Dockerfile FROM a bentohost image.")
    _common(build)
    build.add_argument("-o", "--output", default=None, metavar="OUT",
                       help="where to write the context (default: DIR/.bentohost/build; replaced if it "
                       "is an earlier context)")
    build.set_defaults(handler=_run_build)

    cont = sub.add_parser(
        "containerize", help="build a bentofile.yaml project's image with docker, podman or buildah",
        description="`build` into a temporary directory, then build that context's image.")
    _common(cont)
    cont.add_argument("-t", "--image-tag", dest="tag", default=None, metavar="TAG",
                      help="the image's name:tag (default: the bentofile's name, or the service class "
                      "in lower case, :latest)")
    cont.add_argument("--backend", default=os.environ.get("BENTOHOST_CONTAINER_BACKEND") or None,
                      metavar="TOOL", help="podman, buildah or docker (env BENTOHOST_CONTAINER_BACKEND; "
                      "default: the first of them on PATH, in that order)")
    cont.add_argument("--opt", action="append", default=[], metavar="KEY[=VALUE]",
                      help="an option for the build tool, repeatable: --opt network=host becomes "
                      "--network=host")
    cont.set_defaults(handler=_run_containerize)


def _load(args: argparse.Namespace) -> BentoFile:
    from ._bentofile import load_bentofile

    bf = load_bentofile(args.directory)
    for warning in bf.warnings:
        print(f"bentohost: warning: {warning}", file=sys.stderr)
    return bf


def _run_build(args: argparse.Namespace) -> int:
    from ._bentofile import BentoFileError
    from ._build import base_image, write_context

    try:
        bf = _load(args)
        out = Path(args.output) if args.output else bf.directory / ".bentohost" / "build"
        base = base_image(args.base, bf)
        files = write_context(bf, out, base)
    except BentoFileError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"cannot write the build context: {exc}")
    print(f"bentohost: wrote {out} ({len(files)} files, FROM {base}); build it with: docker build -t {bf.name} {out}")
    return 0


def _run_containerize(args: argparse.Namespace) -> int:
    from ._bentofile import BentoFileError
    from ._build import base_image, write_context
    from ._containerize import ContainerizeError, build_command, find_backend

    try:
        bf = _load(args)
        tag = args.tag or f"{re.sub(r'[^a-z0-9._-]+', '-', bf.name.lower()).strip('-._') or 'bento'}:latest"
        if not _TAG.match(tag):
            return _fail(f"not an image tag: {tag!r} (e.g. myservice:1.0)")
        backend, executable = find_backend(args.backend)
        base = base_image(args.base, bf)
        with tempfile.TemporaryDirectory(prefix="bentohost-context-") as tmp:
            context = Path(tmp) / "context"
            write_context(bf, context, base)
            cmd = build_command(backend, executable, str(context), tag, args.opt)
            print(f"bentohost: building {tag} FROM {base} with {backend}", file=sys.stderr, flush=True)
            rc = subprocess.call(cmd)
    except (BentoFileError, ContainerizeError) as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"containerize: {exc}")
    if rc != 0:
        return _fail(f"{backend} build failed (exit code {rc})")
    runner = "podman" if backend == "buildah" else backend
    print(f"bentohost: built {tag}; run it with: {runner} run -p 3000:3000 {tag}")
    return 0
