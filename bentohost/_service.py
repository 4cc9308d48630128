"""``@service``, lifecycle hooks and the in-process ``depends``."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

from ._api import APIMethod

__all__ = ["Service", "service", "on_startup", "on_shutdown", "on_deployment", "depends", "Dependency"]

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
    """A dependency on another service; resolved in-process on first access."""

    def __init__(self, on: Service[T] | None, url: str | None = None) -> None:
        self.on = on
        self.url = url
        self._resolved: T | None = None

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
            if self.on is None:
                raise NotImplementedError("depends(url=...) is not supported by bentohost yet")
            self._resolved = self.on()
        return self._resolved


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
