"""Worker runtime: called by the C host (``main()``) after Python is initialised.

The C built-in module ``_bentohost`` hands requests over in batches (``take()``),
woken through an eventfd; answers go back with ``complete()`` from any thread.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import queue
import sys
import threading
import traceback
from collections.abc import Callable
from typing import Any, Protocol

from ._config import service_config, service_config_json
from ._context import Context, server_context
from ._dispatch import Endpoint, build_endpoints, handle_request, handle_request_async
from ._io import APPLICATION_JSON, Response
from ._loader import TargetError, guess_service_name, load_service
from ._service import Service

__all__ = ["main", "Host", "ThreadPool", "WorkerRuntime", "handle_request", "handle_request_async", "run_hooks"]

logger = logging.getLogger("bentohost")

EXIT_IMPORT_ERROR = 3
EXIT_STARTUP_ERROR = 4
HEALTH_POLL_S = 1.0

_INTERNAL_ERROR: Response = (
    500,
    APPLICATION_JSON,
    b'{"error":"An unexpected error has occurred, please check the server log."}',
)

Job = tuple[int, Endpoint, bytes, "str | None"]


class Host(Protocol):
    """What the worker needs from the C module ``_bentohost``."""

    worker_index: int
    target: str
    reporter: bool

    def publish(self, config_json: str) -> None: ...
    def set_ready(self, flag: bool) -> None: ...
    def set_alive(self, flag: bool) -> None: ...
    def eventfd(self) -> int: ...
    def take(self) -> list[tuple[int, int, bytes, str | None]] | None: ...
    def complete(self, handle: int, status: int, content_type: str, body: bytes) -> None: ...


class ThreadPool:
    """``threads`` Python threads running sync APIs.

    A drained batch goes in with one ``deque.extend`` and at most ``min(len, threads)``
    wake-ups (one with the default single thread); each woken thread keeps taking
    jobs until the deque is empty.
    """

    def __init__(self, size: int, complete: Callable[[int, int, str, bytes], None]) -> None:
        self.size = max(1, size)
        self._complete = complete
        self._jobs: collections.deque[Job] = collections.deque()
        self._wake: queue.SimpleQueue[bool] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._run, name=f"bentohost-api-{i}", daemon=True) for i in range(self.size)
        ]
        for t in self._threads:
            t.start()

    def submit_many(self, jobs: list[Job]) -> None:
        self._jobs.extend(jobs)
        put = self._wake.put
        for _ in range(min(len(jobs), self.size)):
            put(True)

    def stop(self) -> None:
        for _ in self._threads:
            self._wake.put(False)

    def join(self, timeout: float | None = None) -> None:
        for t in self._threads:
            t.join(timeout)

    def _run(self) -> None:
        jobs = self._jobs
        popleft = jobs.popleft
        wait = self._wake.get
        complete = self._complete
        while wait():
            while True:
                try:
                    handle, ep, body, ctype = popleft()
                except IndexError:
                    break
                try:
                    status, rtype, out = ep.run_sync(body, ctype)
                except BaseException:  # noqa: BLE001 - the handle must still be answered
                    logger.exception("request handling failed")
                    status, rtype, out = _INTERNAL_ERROR
                try:
                    complete(handle, status, rtype, out)
                except Exception:
                    logger.exception("complete() failed")


async def run_hooks(instance: object, names: list[str]) -> None:
    """Run lifecycle hooks in order; each may be sync or async and may take a ``ctx``."""
    for name in names:
        hook = getattr(instance, name)
        try:
            nparams = len(inspect.signature(hook).parameters)
        except (TypeError, ValueError):
            nparams = 0
        result = hook(Context()) if nparams >= 1 else hook()
        if inspect.isawaitable(result):
            await result


class WorkerRuntime:
    """The asyncio side of one worker: drains the C ring and dispatches requests."""

    def __init__(
        self,
        host: Host,
        svc: Service[Any],
        instance: object,
        endpoints: list[Endpoint],
        threads: int,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.host = host
        self.svc = svc
        self.instance = instance
        self.endpoints = endpoints
        self.loop = loop
        self.pool = ThreadPool(threads, host.complete)
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._fd = -1
        self._health: list[tuple[Callable[[], Any], Callable[[bool], None], str]] = []
        for attr, setter in (("__is_ready__", host.set_ready), ("__is_alive__", host.set_alive)):
            fn = getattr(instance, attr, None)
            if callable(fn):
                self._health.append((fn, setter, attr))
        self._health_busy = False
        self._health_warned: set[str] = set()

    # -- health -------------------------------------------------------------------

    def _poll_health(self) -> None:
        if self._stopping:
            return
        self.loop.call_later(HEALTH_POLL_S, self._poll_health)
        if self._health_busy:
            return
        pending = []
        for fn, setter, attr in self._health:
            try:
                value = fn()
            except Exception:
                self._warn_health(attr)
                setter(False)
                continue
            if inspect.isawaitable(value):
                pending.append((value, setter, attr))
            else:
                setter(bool(value))
        if pending:
            self._health_busy = True
            self.loop.create_task(self._await_health(pending))

    async def _await_health(self, pending: list[tuple[Any, Callable[[bool], None], str]]) -> None:
        try:
            for aw, setter, attr in pending:
                try:
                    setter(bool(await aw))
                except Exception:
                    self._warn_health(attr)
                    setter(False)
        finally:
            self._health_busy = False

    def _warn_health(self, attr: str) -> None:
        if attr not in self._health_warned:
            self._health_warned.add(attr)
            logger.exception("%s() raised; reporting False", attr)

    # -- requests -----------------------------------------------------------------

    def drain(self) -> None:
        take = self.host.take
        eps = self.endpoints
        n_eps = len(eps)
        create_task = self.loop.create_task
        while True:
            batch = take()
            if batch is None:
                self.begin_shutdown()
                return
            if not batch:
                return
            sync_jobs: list[Job] = []
            for handle, index, body, ctype in batch:
                if index < 0 or index >= n_eps:
                    self.host.complete(handle, *_INTERNAL_ERROR)
                    continue
                ep = eps[index]
                if ep.is_async:
                    task = create_task(self._run_async(handle, ep, body, ctype))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                else:
                    sync_jobs.append((handle, ep, body, ctype))
            if sync_jobs:
                self.pool.submit_many(sync_jobs)

    async def _run_async(self, handle: int, ep: Endpoint, body: bytes, ctype: str | None) -> None:
        try:
            status, rtype, out = await ep.run_async(body, ctype)
        except BaseException:
            logger.exception("request handling failed")
            status, rtype, out = _INTERNAL_ERROR
        self.host.complete(handle, status, rtype, out)

    # -- lifecycle ----------------------------------------------------------------

    def begin_shutdown(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        if self._fd >= 0:
            self.loop.remove_reader(self._fd)
        self.loop.create_task(self._shutdown())

    async def _shutdown(self) -> None:
        try:
            if self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
            self.pool.stop()
            await self.loop.run_in_executor(None, self.pool.join)
            await run_hooks(self.instance, self.svc.shutdown_hooks)
        except Exception:
            logger.exception("error during shutdown")
        finally:
            self.loop.stop()

    def start(self) -> None:
        """Mark ready (or start polling ``__is_ready__``/``__is_alive__``) and attach the eventfd."""
        if self._health:
            names = {attr for _, _, attr in self._health}
            if "__is_ready__" not in names:
                self.host.set_ready(True)
            self._poll_health()
        else:
            self.host.set_ready(True)
        self._fd = self.host.eventfd()
        self.loop.add_reader(self._fd, self.drain)
        self.loop.call_soon(self.drain)  # requests that arrived before the reader was attached

    def serve(self) -> int:
        self.start()
        try:
            self.loop.run_forever()
        except KeyboardInterrupt:
            return 0
        return 0


def _setup_logging() -> None:
    """Tracebacks of failed requests go to stderr unless the user configured logging."""
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(name)s] %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def _setup_context(host: Host) -> None:
    server_context.worker_index = int(host.worker_index)
    server_context.service_name = guess_service_name(host.target)
    server_context.service_type = "entry_service"


def main() -> int:
    """Entry point called by the C worker. Exit codes: 0 ok, 3 import error, 4 startup error."""
    import _bentohost as host  # type: ignore[import-not-found]  # built into the C host

    _setup_logging()
    _setup_context(host)
    try:
        svc = load_service(host.target)
        endpoints = build_endpoints(svc)
        config = service_config(svc)
        config_json = service_config_json(svc)
    except TargetError as exc:
        print(f"bentohost: error: {exc}", file=sys.stderr, flush=True)
        return EXIT_IMPORT_ERROR
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        return EXIT_IMPORT_ERROR
    server_context.service_name = svc.name
    server_context.bento_name = svc.name
    server_context.service_routes = [a["route"] for a in config["apis"]]
    host.publish(config_json)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        instance = svc()
        for ep in endpoints:
            ep.bind(instance)
        loop.run_until_complete(run_hooks(instance, svc.startup_hooks))
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        return EXIT_STARTUP_ERROR
    runtime = WorkerRuntime(host, svc, instance, endpoints, config["threads"], loop)
    try:
        return runtime.serve()
    finally:
        try:
            loop.close()
        except Exception:
            pass
