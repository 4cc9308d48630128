"""Resolve a serve target (``module:Class``, ``file.py:Class``, ``module``, a directory)."""

from __future__ import annotations

import importlib
import os
import re
import sys
from types import ModuleType
from typing import Any

from ._service import Service

__all__ = ["split_target", "load_service", "guess_service_name", "TargetError"]


class TargetError(Exception):
    """The target does not name exactly one service."""


def split_target(target: str, cwd: str | None = None) -> tuple[str, str | None, str | None]:
    """Split a target into ``(module_name, attr, directory_for_sys_path)``.

    A directory target is read through its ``bentofile.yaml`` ``service:`` entry,
    else its ``service.py``.
    """
    cwd = cwd or os.getcwd()
    target = target or "."
    path_part, sep, attr = target.rpartition(":")
    if not sep:
        path_part, attr = target, ""
    candidate = os.path.join(cwd, path_part)
    if os.path.isdir(candidate):
        directory = os.path.abspath(candidate)
        inner = _bentofile_service(directory)
        if inner is not None and not attr:
            module, _, inner_attr = inner.partition(":")
            return module, inner_attr or None, directory
        if not os.path.isfile(os.path.join(directory, "service.py")):
            raise TargetError(f"directory {path_part!r} has no service.py")
        return "service", attr or None, directory
    if path_part.endswith(".py") or os.sep in path_part:
        file = os.path.abspath(candidate)
        if not os.path.isfile(file):
            raise TargetError(f"no such file: {path_part}")
        stem = os.path.splitext(os.path.basename(file))[0]
        return stem, attr or None, os.path.dirname(file)
    return path_part, attr or None, os.path.abspath(cwd)


def _bentofile_service(directory: str) -> str | None:
    path = os.path.join(directory, "bentofile.yaml")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return None
    m = re.search(r"^service:\s*[\"']?([^\"'\s#]+)", text, re.MULTILINE)
    return m.group(1) if m else None


def guess_service_name(target: str) -> str | None:
    """The class name in ``...:Class`` (used as ``service_name`` before the import)."""
    _, sep, attr = target.rpartition(":")
    if sep and attr:
        return attr.rsplit(".", 1)[-1]
    return None


def _pick(module: ModuleType) -> Service[Any]:
    found = {id(v): v for v in vars(module).values() if isinstance(v, Service)}
    services = list(found.values())
    if not services:
        raise TargetError(f"module {module.__name__!r} defines no bentohost service")
    if len(services) == 1:
        return services[0]
    depended = {
        id(dep.on) for svc in services for dep in svc.dependencies.values() if dep.on is not None
    }
    roots = [s for s in services if id(s) not in depended]
    if len(roots) == 1:
        return roots[0]
    names = ", ".join(sorted(s.name for s in services))
    raise TargetError(
        f"module {module.__name__!r} defines several services ({names}); name one as module:Class"
    )


def _forget_stale(module_name: str, directory: str) -> None:
    """Drop an already imported module of the same name that lives elsewhere."""
    old = sys.modules.get(module_name)
    file = getattr(old, "__file__", None)
    if "." in module_name or old is None:
        return
    if file and os.path.dirname(os.path.abspath(file)) != directory:
        del sys.modules[module_name]


def load_service(target: str, cwd: str | None = None) -> Service[Any]:
    """Import the target and return its Service; the service directory goes first on sys.path."""
    module_name, attr, directory = split_target(target, cwd)
    if directory is not None:
        if directory in sys.path:
            sys.path.remove(directory)
        sys.path.insert(0, directory)
    if directory is not None:
        _forget_stale(module_name, directory)
    module = importlib.import_module(module_name)
    if attr is None:
        return _pick(module)
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise TargetError(f"{module_name!r} has no attribute {attr!r}") from None
    if not isinstance(obj, Service):
        raise TargetError(f"{target!r} is not a bentohost service (decorate the class with @service)")
    return obj
