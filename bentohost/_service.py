"""``@service``, lifecycle hooks, ``depends`` and the dependency graph.

A ``Dependency`` resolves on first access: through the resolver the worker installs
(``_remote.install_resolver``), which returns a ``RemoteProxy`` for a dependency
served by its own processes; without one (plain Python, development mode) to an
in-process instance of the dependency class.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

from ._api import APIMethod
from ._modes import ModeDescriptor, local_async, local_sync

__all__ = [
    "Service",
    "service",
    "on_startup",
    "on_shutdown",
    "on_deployment",
    "depends",
    "Dependency",
    "service_graph",
]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

CONFIG_KEYS = frozenset(
    {
        "workers",
        "threads",
        "traffic",
        "resources",
        "backlog",
        "max_runner_connections",
        "runner_connection",
        "replicate_process",
        "extra_ports",
        "metrics",
        "logging",
        "ssl",
        "http",
        "runner_probe",
        "tracing",
        "monitoring",
        "grpc",
        "endpoints",
        "envs",
        "api_server",
        "tasks",
        "gpu_per_worker",
        "cpu_affinity",
    }
)

_HOOK_ATTR = "__bentohost_hook__"


class Service(Generic[T]):
    """A decorated service class. Calling it instantiates the class with no arguments."""

    def __init__(
        self,
        inner: type[T],
        *,
        name: str | None = None,
        description: str | None = None,
        path_prefix: str | None = None,
        envs: list[dict[str, Any]] | None = None,
        labels: dict[str, str] | None = None,
        image: Any = None,
        cmd: list[str] | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        self.inner = inner
        self.name = name or inner.__name__
        self.description = description if description is not None else inner.__doc__
        self.path_prefix = (path_prefix or "").rstrip("/")
        self.envs: list[dict[str, Any]] = [dict(e) for e in (envs or [])]
        self.labels: dict[str, str] = dict(labels or {})
        self.image = image
        self.cmd = cmd
        self.config: dict[str, Any] = dict(config or {})
        self.apis: dict[str, APIMethod] = {}
        self.dependencies: dict[str, Dependency[Any]] = {}
        self.startup_hooks: list[str] = []
        self.shutdown_hooks: list[str] = []
        self._discover()
        self._install_modes()

    def _discover(self) -> None:
        seen: set[str] = set()
        for klass in reversed(self.inner.__mro__):
            for attr, member in vars(klass).items():
                target = member.__func__ if isinstance(member, (staticmethod, classmethod)) else member
                if isinstance(member, APIMethod):
                    self.apis[member.name] = member
                elif isinstance(member, Dependency):
                    self.dependencies[attr] = member
                hook = getattr(target, _HOOK_ATTR, None)
                if hook == "startup" and attr not in seen:
                    self.startup_hooks.append(attr)
                elif hook == "shutdown" and attr not in seen:
                    self.shutdown_hooks.append(attr)
                if hook is not None:
                    seen.add(attr)

    def _install_modes(self) -> None:
        """``instance.to_async`` / ``instance.to_sync`` (unless the class defines its own)."""
        for attr, factory in (("to_async", local_async), ("to_sync", local_sync)):
            if not any(attr in vars(klass) for klass in self.inner.__mro__):
                descriptor = ModeDescriptor(factory)
                descriptor.__set_name__(self.inner, attr)
                setattr(self.inner, attr, descriptor)

    def __call__(self) -> T:
        instance = self.inner()
        try:
            instance.bento_service = self  # type: ignore[attr-defined]
        except AttributeError:
            pass
        return instance

    def __getattr__(self, item: str) -> Any:
        if item.startswith("__") or item == "inner":
            raise AttributeError(item)
        return getattr(self.inner, item)

    def all_services(self) -> dict[str, Service[Any]]:
        """This service and, transitively, every service it depends on."""
        found: dict[str, Service[Any]] = {self.name: self}
        for dep in self.dependencies.values():
            if dep.on is not None and dep.on.name not in found:
                found.update(dep.on.all_services())
        return found

    def __repr__(self) -> str:
        return f"<bentohost.Service {self.name!r} apis={list(self.apis)}>"


@overload
def service(inner: type[T], /) -> Service[T]: ...


@overload
def service(
    inner: None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    path_prefix: str | None = None,
    envs: list[dict[str, Any]] | None = None,
    labels: dict[str, str] | None = None,
    image: Any = None,
    cmd: list[str] | None = None,
    service_class: Any = None,
    **config: Any,
) -> Callable[[type[T]], Service[T]]: ...


def service(
    inner: type[Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    path_prefix: str | None = None,
    envs: list[dict[str, Any]] | None = None,
    labels: dict[str, str] | None = None,
    image: Any = None,
    cmd: list[str] | None = None,
    service_class: Any = None,
    **config: Any,
) -> Any:
    """Turn a class into a servable ``Service`` (bare or with BentoML's keyword arguments)."""
    del service_class
    unknown = sorted(set(config) - CONFIG_KEYS)
    if unknown:
        warnings.warn(f"unknown service config key(s) ignored by bentohost: {', '.join(unknown)}", stacklevel=2)

    def decorator(klass: type[Any]) -> Service[Any]:
        if isinstance(klass, Service):
            raise TypeError("@service applied twice (the class is already a Service)")
        if not isinstance(klass, type):
            raise TypeError(f"@service expects a class, got {klass!r}")
        return Service(
            klass,
            name=name,
            description=description,
            path_prefix=path_prefix,
            envs=envs,
            labels=labels,
            image=image,
            cmd=cmd,
            config=config,
        )

    if inner is not None:
        return decorator(inner)
    return decorator


def _mark(kind: str) -> Callable[[F], F]:
    def mark(func: F) -> F:
        target = func.__func__ if isinstance(func, (staticmethod, classmethod)) else func
        setattr(target, _HOOK_ATTR, kind)
        return func

    return mark


def on_startup(func: F) -> F:
    """Run this method once per worker after the instance is created (sync or async)."""
    return _mark("startup")(func)


def on_shutdown(func: F) -> F:
    """Run this method when the worker shuts down (sync or async)."""
    return _mark("shutdown")(func)


def on_deployment(func: F) -> F:
    """Accepted for compatibility; deployment hooks are not run by bentohost yet."""
    return _mark("deployment")(func)


class Dependency(Generic[T]):
    """A dependency on another service; resolved on first access (see the module docstring)."""

    def __init__(self, on: Service[T] | None, url: str | None = None) -> None:
        self.on = on
        self.url = url
        self.attr_name: str | None = None
        self._resolved: T | None = None
        self._lock = threading.RLock()  # re-entrant: a cycle fails loudly instead of hanging

    def __set_name__(self, owner: type, name: str) -> None:
        self.attr_name = name

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> Dependency[T]: ...

    @overload
    def __get__(self, instance: object, owner: type | None = None) -> T: ...

    def __get__(self, instance: object | None, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return self.get()

    def get(self) -> T:
        if self._resolved is None:
            with self._lock:
                if self._resolved is None:
                    self._resolved = self._resolve()
        return self._resolved

    def _resolve(self) -> Any:
        from ._remote import current_resolver

        resolver = current_resolver()
        if resolver is not None:
            proxy = resolver(self)
            if proxy is not None:
                return proxy
        if self.on is None:
            raise NotImplementedError("depends(url=...) is not supported by bentohost yet")
        return self.on()

    def reset(self) -> None:
        """Forget the resolved instance or proxy (the next access resolves again)."""
        with self._lock:
            self._resolved = None


def depends(
    on: Service[T] | None = None,
    *,
    url: str | None = None,
    deployment: str | None = None,
    cluster: str | None = None,
) -> Any:
    """Declare a dependency on another service (instantiated in-process for now)."""
    del cluster
    if on is None and url is None and deployment is None:
        raise ValueError("depends() needs a service, a url or a deployment")
    if url is not None and deployment is not None:
        raise ValueError("depends() takes url or deployment, not both")
    if deployment is not None:
        raise NotImplementedError("depends(deployment=...) is not supported by bentohost")
    return Dependency(on, url)


def _class_name(svc: Service[Any]) -> str:
    return f"{svc.inner.__module__}.{svc.inner.__qualname__}"


def service_graph(entry: Service[Any]) -> list[Service[Any]]:
    """Every service the entry needs served locally: the entry first, then its
    dependencies depth first in declaration order, each once.

    ``url=`` dependencies are not part of the graph. A service reached twice (a
    diamond) is listed once; two different services with the same name raise
    ``ValueError`` (they would need the same socket).
    """
    order: list[Service[Any]] = []
    by_name: dict[str, Service[Any]] = {}

    def visit(svc: Service[Any]) -> None:
        seen = by_name.get(svc.name)
        if seen is svc:
            return
        if seen is not None:
            raise ValueError(
                f"Dependency conflict: services {_class_name(seen)} and {_class_name(svc)} "
                f"are both named {svc.name!r}; give one of them another name=..."
            )
        by_name[svc.name] = svc
        order.append(svc)
        for dep in svc.dependencies.values():
            if dep.on is not None and dep.url is None:
                visit(dep.on)

    visit(entry)
    return order
