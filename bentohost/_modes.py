"""``.to_async`` / ``.to_sync``: call any API of a service in the mode you choose.

``svc.to_async.api(...)`` is always awaitable (an async iterator for a stream API);
``svc.to_sync.api(...)`` always returns the value (an iterator for a stream API).

A coroutine that must be run synchronously goes to a private event loop on a
helper thread (started on first use), so ``to_sync`` also works from the thread
of a running event loop; that loop is blocked while it waits, as with any
blocking call. The coroutine runs in a copy of the caller's ``contextvars``
context, so a request's deadline follows it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any

from ._api import APIMethod

__all__ = ["AsyncView", "ModeDescriptor", "SyncView", "aiterate_sync", "iterate_async", "local_async", "local_sync", "run_coroutine"]


# --------------------------------------------------------------------------- private loop


class _LoopThread:
    """One event loop on one daemon thread, shared by the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._thread is None or not self._thread.is_alive():
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                thread = threading.Thread(target=run, name="bentohost-to-sync", daemon=True)
                thread.start()
                ready.wait()
                self._loop, self._thread = loop, thread
            return self._loop

    def on_this_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread


_runner = _LoopThread()


def run_coroutine(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coro`` to completion from synchronous code, whatever the calling thread."""
    ctx = contextvars.copy_context()
    if _runner.on_this_thread():
        # waiting on our own loop would deadlock: use a one-off loop on another thread
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="bentohost-to-sync") as ex:
            return ex.submit(ctx.run, asyncio.run, coro).result()
    loop = _runner.loop()
    done: concurrent.futures.Future[Any] = concurrent.futures.Future()

    def start() -> None:
        task = ctx.run(loop.create_task, coro)

        def transfer(t: asyncio.Task[Any]) -> None:
            if t.cancelled():
                done.cancel()
            elif t.exception() is not None:
                done.set_exception(t.exception())  # type: ignore[arg-type]
            else:
                done.set_result(t.result())

        task.add_done_callback(transfer)

    loop.call_soon_threadsafe(start)
    return done.result()


def iterate_async(agen: AsyncIterator[Any]) -> Iterator[Any]:
    """A blocking iterator over an async iterator (each step on the private loop)."""
    try:
        while True:
            try:
                item = run_coroutine(_anext(agen))
            except StopAsyncIteration:
                return
            yield item
    finally:
        aclose = getattr(agen, "aclose", None)
        if aclose is not None:
            run_coroutine(aclose())


async def _anext(agen: AsyncIterator[Any]) -> Any:
    return await agen.__anext__()


_DONE = object()


async def aiterate_sync(gen: Iterator[Any]) -> AsyncIterator[Any]:
    """An async iterator over a blocking iterator (each ``next`` on a thread)."""
    try:
        while True:
            item = await asyncio.to_thread(next, gen, _DONE)
            if item is _DONE:
                return
            yield item
    finally:
        close = getattr(gen, "close", None)
        if close is not None:
            close()


# --------------------------------------------------------------------------- views


Invoker = Callable[[APIMethod, tuple[Any, ...], dict[str, Any]], Any]


class _View:
    """Attribute ``name`` is a callable for the API named ``name`` (its function name)."""

    __slots__ = ("_apis", "_invoke", "_owner")

    def __init__(self, apis: dict[str, APIMethod], invoke: Invoker, owner: str) -> None:
        self._apis = apis
        self._invoke = invoke
        self._owner = owner

    def __getattr__(self, name: str) -> Callable[..., Any]:
        try:
            api = self._apis[name]
        except KeyError:
            raise AttributeError(f"{self._owner} has no API named {name!r}") from None
        invoke = self._invoke

        def call(*args: Any, **kwargs: Any) -> Any:
            return invoke(api, args, kwargs)

        call.__name__ = call.__qualname__ = name
        call.__doc__ = api.__doc__
        return call

    def __dir__(self) -> list[str]:
        return sorted(self._apis)


class AsyncView(_View):
    """``view.api(...)``: an awaitable (async iterator for streams) for every API."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<to_async of {self._owner}>"


class SyncView(_View):
    """``view.api(...)``: the value (an iterator for streams) for every API."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<to_sync of {self._owner}>"


def _instance_apis(instance: object) -> tuple[dict[str, APIMethod], str]:
    svc = getattr(instance, "bento_service", None)
    if svc is not None:
        return svc.apis, svc.name
    apis: dict[str, APIMethod] = {}
    for klass in reversed(type(instance).__mro__):
        for member in vars(klass).values():
            if isinstance(member, APIMethod):
                apis[member.name] = member
    return apis, type(instance).__name__


def _bound(api: APIMethod, instance: object) -> Callable[..., Any]:
    return api.__get__(instance, type(instance))


def local_async(instance: object) -> AsyncView:
    apis, name = _instance_apis(instance)

    def invoke(api: APIMethod, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Awaitable[Any] | AsyncIterator[Any]:
        fn = _bound(api, instance)
        if api.is_async:  # coroutine or async generator: as is
            return fn(*args, **kwargs)  # type: ignore[no-any-return]
        if api.is_gen:
            return aiterate_sync(fn(*args, **kwargs))
        return asyncio.to_thread(fn, *args, **kwargs)

    return AsyncView(apis, invoke, name)


def local_sync(instance: object) -> SyncView:
    apis, name = _instance_apis(instance)

    def invoke(api: APIMethod, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        fn = _bound(api, instance)
        if api.is_async_gen:
            return iterate_async(fn(*args, **kwargs))
        if api.is_coro:
            return run_coroutine(fn(*args, **kwargs))
        return fn(*args, **kwargs)

    return SyncView(apis, invoke, name)


class ModeDescriptor:
    """Class attribute ``to_async`` / ``to_sync`` installed on service classes."""

    def __init__(self, factory: Callable[[object], _View]) -> None:
        self.factory = factory

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance: object | None, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return self.factory(instance)
