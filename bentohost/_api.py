"""``@api`` and ``@task``: mark a service method as an HTTP endpoint (a task: also queued)."""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable
from typing import Any, TypedDict, TypeVar, overload

from pydantic.fields import FieldInfo
from typing_extensions import Unpack

__all__ = ["APIMethod", "api", "task"]

F = TypeVar("F", bound=Callable[..., Any])

CONTEXT_PARAM_NAMES = ("ctx", "context")


class APIMethod:
    """A service method exposed over HTTP. Acts like the plain method on instances."""

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        route: str | None = None,
        input_spec: type[Any] | None = None,
        output_spec: type[Any] | None = None,
        batchable: bool = False,
        batch_dim: int | tuple[int, int] = 0,
        max_batch_size: int = 100,
        max_latency_ms: int = 60000,
        is_task: bool = False,
    ) -> None:
        name = func.__name__
        if name.startswith("__") and name != "__call__":
            raise ValueError(f"API name {name!r} is reserved: names starting with '__' are not allowed")
        if route is None:
            route = "/" if name == "__call__" else "/" + name
        if not route.startswith("/"):
            raise ValueError(f"API route must start with '/': {route!r}")
        if isinstance(batch_dim, int):
            dims = (batch_dim, batch_dim)
        else:
            dims = (int(batch_dim[0]), int(batch_dim[1]))
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        if max_latency_ms <= 0:
            raise ValueError("max_latency_ms must be positive")
        self.func = func
        self.name = name
        self.route = route
        self.input_spec = input_spec
        self.output_spec = output_spec
        self.batchable = bool(batchable)
        self.batch_dim: tuple[int, int] = dims
        self.max_batch_size = int(max_batch_size)
        self.max_latency_ms = int(max_latency_ms)
        self.is_async_gen = inspect.isasyncgenfunction(func)
        self.is_gen = inspect.isgeneratorfunction(func)
        self.is_coro = inspect.iscoroutinefunction(func)
        self.is_stream = self.is_gen or self.is_async_gen
        self.is_async = self.is_coro or self.is_async_gen
        self.is_task = bool(is_task)
        if self.is_task and self.is_stream:
            raise ValueError("Async task cannot return a stream.")
        sig = inspect.signature(func)
        params = list(sig.parameters.values())[1:]  # drop self
        self.ctx_param: str | None = None
        for p in params:
            if p.name in CONTEXT_PARAM_NAMES and _is_ctx_annotation(p.annotation):
                self.ctx_param = p.name
        self._field_defaults = {
            p.name: p.default for p in params if isinstance(p.default, FieldInfo)
        }
        functools.update_wrapper(self, func)

    @property
    def signature(self) -> inspect.Signature:
        return inspect.signature(self.func)

    def __set_name__(self, owner: type, name: str) -> None:
        self.attr_name = name

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> APIMethod: ...

    @overload
    def __get__(self, instance: object, owner: type | None = None) -> Callable[..., Any]: ...

    def __get__(self, instance: object | None, owner: type | None = None) -> Any:
        if instance is None:
            return self
        if not self._field_defaults:
            return types.MethodType(self.func, instance)
        return types.MethodType(self._call_with_field_defaults, instance)

    def _call_with_field_defaults(self, instance: object, *args: Any, **kwargs: Any) -> Any:
        """Local call: ``Field(...)`` defaults are resolved instead of passed as FieldInfo."""
        bound = inspect.signature(self.func).bind_partial(instance, *args, **kwargs)
        for pname, field in self._field_defaults.items():
            if pname not in bound.arguments:
                bound.arguments[pname] = field.get_default(call_default_factory=True)
        return self.func(*bound.args, **bound.kwargs)

    def __call__(self, instance: object, *args: Any, **kwargs: Any) -> Any:
        return self.__get__(instance)(*args, **kwargs)

    def __repr__(self) -> str:
        kind = "task" if self.is_task else "APIMethod"
        return f"<{kind} {self.name} route={self.route!r}>"


def _is_ctx_annotation(annotation: Any) -> bool:
    if annotation is inspect.Parameter.empty:
        return True
    if isinstance(annotation, str):
        return annotation.rsplit(".", 1)[-1] == "Context"
    from ._context import Context

    return annotation is Context


class MethodOptions(TypedDict, total=False):
    """The keyword arguments of ``@api`` and ``@task`` (BentoML's)."""

    route: str | None
    name: str | None  # accepted; as in BentoML the API name is always the function's name
    input_spec: type[Any] | None
    output_spec: type[Any] | None
    batchable: bool
    batch_dim: int | tuple[int, int]
    max_batch_size: int
    max_latency_ms: int


@overload
def api(func: F, /) -> APIMethod: ...


@overload
def api(**options: Unpack[MethodOptions]) -> Callable[[F], APIMethod]: ...


def api(func: Callable[..., Any] | None = None, /, **options: Unpack[MethodOptions]) -> Any:
    """Expose a method as an API (bare or with ``MethodOptions``)."""
    return _decorate(func, False, options)


@overload
def task(func: F, /) -> APIMethod: ...


@overload
def task(**options: Unpack[MethodOptions]) -> Callable[[F], APIMethod]: ...


def task(func: Callable[..., Any] | None = None, /, **options: Unpack[MethodOptions]) -> Any:
    """Expose a method as a task (BentoML's ``@bentoml.task``, the options of ``api``):
    ``POST {route}`` calls it at once as an API would; ``{route}/submit`` queues a call and
    answers its task id, ``/status``, ``/get``, ``/retry`` and ``/cancel`` follow it
    (bentohost/_task_runner.py). A generator cannot be a task."""
    return _decorate(func, True, options)


def _decorate(func: Callable[..., Any] | None, is_task: bool, options: MethodOptions) -> Any:
    unknown = sorted(set(options) - set(MethodOptions.__annotations__))
    if unknown:
        raise TypeError(f"unexpected keyword argument(s) for @{'task' if is_task else 'api'}: {', '.join(unknown)}")
    kwargs: dict[str, Any] = {k: v for k, v in options.items() if k != "name"}

    def decorator(f: Callable[..., Any]) -> APIMethod:
        if isinstance(f, APIMethod):
            raise TypeError("@api applied twice" if not is_task else "@task applied to an API method")
        return APIMethod(f, is_task=is_task, **kwargs)

    if func is not None:
        return decorator(func)
    return decorator
