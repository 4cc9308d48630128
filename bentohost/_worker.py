"""Worker runtime: called by the C host (``main()``) after Python is initialised.

The C built-in module ``_bentohost`` hands entries over in batches (``take()``),
woken through an eventfd. Each entry is a 5-tuple ``(handle, index, a, b, c)``:

* ``index >= 0`` and ``a`` bytes/None: a request ``(handle, api, body, content_type, meta)``;
* ``index >= 0`` and ``a`` a list: an adaptive batch ``(head, api, bodies, content_types, handles)``;
* ``index == -1``: the request was cancelled (timeout answered by C, or client gone);
* ``index == -2``: a paused stream may be written again.

Answers go back with ``complete()`` or ``stream_start``/``stream_write``/``stream_end``
from any thread; every handle gets exactly one final message.
"""

from __future__ import annotations

import asyncio
import faulthandler
import functools
import inspect
import json
import logging
import os
import re
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, Protocol

from ._args import ArgumentsError
from ._config import service_config, service_config_json
from ._context import server_context
from ._dispatch import Endpoint, build_endpoints, concat_batch, handle_request, handle_request_async, split_batch
from ._io import Response, error_response
from ._loader import TargetError, guess_service_name, load_service
from ._logs import flush_line_writers, install_line_writers, log_to_root, setup_logging
from ._hooks import run_hooks
from ._links import graph_links
from ._remote import (
    DEADLINE_HEADER,
    deadline_from_header,
    reset_request_deadline,
    set_request_deadline,
)
from ._placement import PlacementError
from ._pool import Job, ThreadPool
from ._rows import rows_array
from ._service import Service, service_graph
from ._transport import RESPONSE, CallTransport
from ._wiring import connect_dependencies
from ._streams import _CANCELLED, _INTERNAL_ERROR, StreamsMixin, _Stream

__all__ = ["main", "Host", "ThreadPool", "WorkerRuntime", "handle_request", "handle_request_async", "run_hooks"]

logger = logging.getLogger("bentohost")

EXIT_IMPORT_ERROR = 3
EXIT_STARTUP_ERROR = 4
EXIT_PLACE = 75  # csrc/common/status.h BH_EXIT_PLACE
HEALTH_POLL_S = 1.0
HEARTBEAT_S = 0.5

#: the caller's remaining budget in a request head (a dependency's request)
_DEADLINE_RE = re.compile(rb"(?im)^" + DEADLINE_HEADER.encode() + rb":[ \t]*([0-9.eE+-]+)")

CANCEL = -1
WRITABLE = -2




class Host(Protocol):
    """What the worker needs from the C module ``_bentohost`` (contract v2)."""

    worker_index: int
    target: str
    reporter: bool

    def publish(self, config_json: str) -> None: ...
    def report(self, config_json: str) -> None: ...
    def set_ready(self, flag: bool) -> None: ...
    def set_alive(self, flag: bool) -> None: ...
    def eventfd(self) -> int: ...
    def take(self) -> list[tuple[int, int, Any, Any, Any]] | None: ...
    def take_wait(self) -> list[tuple[int, int, Any, Any, Any]] | None: ...
    def complete(self, handle: int, status: int, content_type: str, body: bytes, headers: str | None = None) -> None: ...
    def stream_start(self, handle: int, status: int, content_type: str, headers: str | None = None) -> None: ...
    def stream_write(self, handle: int, data: bytes | str) -> int: ...
    def stream_end(self, handle: int) -> None: ...


class WorkerRuntime(StreamsMixin):
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
        self.transport: CallTransport | None = None
        self._timeout = float(service_config(svc)["traffic"]["timeout"])
        sync_threads = getattr(host, "sync_threads", None)
        if sync_threads is not None:
            sync_threads(max(1, threads))
        self.pool = ThreadPool(threads, getattr(host, "sync_busy", None))
        self._tasks: set[asyncio.Task[None]] = set()
        #: handle -> asyncio task or _Stream, for cancel and writable events
        self._active: dict[int, Any] = {}
        #: sync calls handed to the pool and not started yet: handle -> still wanted.
        #: A call whose request timed out while it waited is never started.
        self._queued: dict[int, bool] = {}
        self._stopping = False
        self._fd = -1
        self._heartbeat: Callable[[], Any] | None = getattr(host, "heartbeat", None)
        self._health: list[tuple[Callable[[], Any], Callable[[bool], None], str]] = []
        for attr, setter in (("__is_ready__", host.set_ready), ("__is_alive__", host.set_alive)):
            fn = getattr(instance, attr, None)
            if callable(fn):
                self._health.append((fn, setter, attr))
        self._health_busy = False
        #: the task routes' and runs' manager (``attach_tasks``), when the service has tasks
        self.tasks: Any = None
        self._health_warned: set[str] = set()
        # per API: (endpoint, pool function or None for async ones, coroutine function or None)
        self._routes: list[tuple[Endpoint, Any, Any]] = []
        for ep in endpoints:
            if ep.mode == "sync":
                self._routes.append((ep, self._sync_job, None))
            elif ep.mode == "gen":
                self._routes.append((ep, self._gen_open_job, None))
            elif ep.mode == "agen":
                self._routes.append((ep, None, self._run_agen))
            else:
                self._routes.append((ep, None, self._run_async))

    def attach_tasks(self, tasks: Any) -> None:
        """Serve a task manager's routes (numbered after the APIs, as ``_config`` publishes them)."""
        self.tasks = tasks
        self._routes.extend(tasks.attach(self))

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

    def _beat(self) -> None:
        """Loop timer: tells the supervisor that the loop thread makes progress."""
        if self._stopping and not self._tasks:
            return
        self.loop.call_later(HEARTBEAT_S, self._beat)
        if self._heartbeat is not None:
            try:
                self._heartbeat()
            except Exception:  # noqa: BLE001
                logger.exception("heartbeat() failed")
                self._heartbeat = None

    # -- requests -----------------------------------------------------------------

    def drain(self) -> None:
        take = self.host.take
        routes = self._routes
        sync_job = self._sync_job
        n_eps = len(routes)
        if self._heartbeat is not None:
            self._heartbeat()
        while True:
            batch = take()
            if batch is None:
                self.begin_shutdown()
                return
            if not batch:
                return
            sync_jobs: list[Job] = []
            for handle, index, body, ctype, meta in batch:
                if index >= 0:
                    if index >= n_eps:
                        self._answer_bad_index(handle, body, meta)
                        continue
                    ep, pool_fn, coro_fn = routes[index]
                    if body.__class__ is list:
                        self._batch(ep, handle, body, ctype, meta)
                    elif pool_fn is not None:
                        if pool_fn == sync_job:
                            self._queued[handle] = True
                        sync_jobs.append((pool_fn, handle, ep, body, ctype, meta))
                    else:
                        task = self.loop.create_task(coro_fn(handle, ep, body, ctype, meta))
                        self._active[handle] = task
                        self._tasks.add(task)
                        task.add_done_callback(self._tasks.discard)
                elif index <= RESPONSE:  # a dependency's response, or a fragment of its stream
                    if self.transport is not None:
                        self.transport.deliver(index, handle, body, ctype, meta)
                elif index == CANCEL:
                    self._cancel(handle)
                elif index == WRITABLE:
                    self._writable(handle)
            if sync_jobs:
                self.pool.submit_many(sync_jobs)

    def _runs_sync_in_place(self) -> bool:
        """One sync thread and nothing but plain ``def`` APIs (no batches, streams, tasks or
        dependencies): then that thread reads the ring itself and the loop stays out of the
        request path (BENTOHOST_SYNC_HANDOFF=1 keeps the hand-off through the loop)."""
        if os.environ.get("BENTOHOST_SYNC_HANDOFF") == "1" or not hasattr(self.host, "take_wait"):
            return False
        if self.pool.size != 1 or self.tasks is not None or self.transport is not None:
            return False
        sync_job = self._sync_job
        return bool(self._routes) and all(
            fn == sync_job and not ep.method.batchable for ep, fn, _ in self._routes
        )

    def _take_and_run(self) -> None:
        """The sync thread of a worker that ``_runs_sync_in_place``: each request runs as
        soon as it is taken, on this thread, with no wake-up of the loop and no GIL hand-off
        between two threads per request."""
        take_wait = self.host.take_wait
        complete = self.host.complete
        endpoints = [ep for ep, _, _ in self._routes]
        n_eps = len(endpoints)
        mark = getattr(self.host, "sync_busy", None)
        while True:
            try:
                batch = take_wait()
            except BaseException:  # noqa: BLE001 - stop serving rather than lose the thread silently
                logger.exception("taking requests failed")
                batch = None
            if batch is None:
                self.loop.call_soon_threadsafe(self.begin_shutdown)
                return
            # a request whose time ran out while it waited in the ring is not started
            cancelled = {e[0] for e in batch if e[1] == CANCEL}
            for handle, index, body, ctype, meta in batch:
                if index < 0:
                    continue  # cancels (seen above); writable events are for streams only
                if index >= n_eps:
                    self._answer_bad_index(handle, body, meta)
                    continue
                if cancelled and handle in cancelled:
                    self._complete(handle, _CANCELLED)
                    continue
                if mark is not None:
                    mark(0)
                try:
                    try:  # run_sync answers every failure itself; this is for BaseExceptions
                        status, rtype, out, headers = endpoints[index].run_sync(body, ctype, meta)
                    except BaseException:  # noqa: BLE001 - the handle must still be answered
                        logger.exception("request handling failed")
                        status, rtype, out, headers = _INTERNAL_ERROR
                    if headers is None:
                        complete(handle, status, rtype, out)
                    else:
                        complete(handle, status, rtype, out, headers)
                except BaseException:  # noqa: BLE001 - keep the thread serving
                    logger.exception("job failed")
                if mark is not None:
                    mark(~0)

    def _answer_bad_index(self, handle: int, body: Any, members: Any) -> None:
        if body.__class__ is list:
            for h in members:
                self.host.complete(h, *_INTERNAL_ERROR[:3])
        else:
            self.host.complete(handle, *_INTERNAL_ERROR[:3])

    def _complete(self, handle: int, resp: Response) -> None:
        status, ctype, out, headers = resp
        if headers is None:
            self.host.complete(handle, status, ctype, out)
        else:
            self.host.complete(handle, status, ctype, out, headers)

    # sync APIs (pool threads)

    def _deadline(self, meta: Any) -> float:
        """When the request's time is up: this service's traffic.timeout from now, or the
        caller's remaining budget when it is shorter (sent by the proxy that called us)."""
        deadline = time.monotonic() + self._timeout
        if meta is not None and meta[0]:
            m = _DEADLINE_RE.search(meta[0])
            if m is not None:
                theirs = deadline_from_header(m.group(1).decode("latin-1"))
                if theirs is not None and theirs < deadline:
                    deadline = theirs
        return deadline

    def _sync_job(self, handle: int, ep: Endpoint, body: Any, ctype: Any, meta: Any) -> None:
        if self._queued.pop(handle, True) is False:
            self._complete(handle, _CANCELLED)  # C answered 504 already: do not run it
            return
        # Only a service that calls others needs the budget (its proxies send it on).
        token = set_request_deadline(self._deadline(meta)) if self.transport is not None else None
        try:
            status, rtype, out, headers = ep.run_sync(body, ctype, meta)
        except BaseException:  # noqa: BLE001 - the handle must still be answered
            logger.exception("request handling failed")
            status, rtype, out, headers = _INTERNAL_ERROR
        finally:
            if token is not None:
                reset_request_deadline(token)
        if headers is None:
            self.host.complete(handle, status, rtype, out)
        else:
            self.host.complete(handle, status, rtype, out, headers)

    # async APIs (loop)

    async def _run_async(self, handle: int, ep: Endpoint, body: Any, ctype: Any, meta: Any) -> None:
        if self.transport is not None:  # the task has its own context: nothing to reset
            set_request_deadline(self._deadline(meta))
        try:
            resp = await ep.run_async(body, ctype, meta)
        except asyncio.CancelledError:
            resp = _CANCELLED
        except BaseException:
            logger.exception("request handling failed")
            resp = _INTERNAL_ERROR
        self._active.pop(handle, None)
        self._complete(handle, resp)

    def _cancel(self, handle: int) -> None:
        entry = self._active.get(handle)
        if entry is None:
            # A sync call cannot be interrupted once it runs (it answers when it
            # returns); one still waiting for a pool thread is skipped.
            if handle in self._queued:
                self._queued[handle] = False
            return
        if isinstance(entry, _Stream):
            self._cancel_stream(entry)
        else:
            entry.cancel()
            # a task cancelled before it ran never answers by itself
            entry.add_done_callback(functools.partial(self._answer_if_pending, handle))

    def _answer_if_pending(self, handle: int, _task: Any) -> None:
        entry = self._active.get(handle)
        if entry is not None and not isinstance(entry, _Stream):
            del self._active[handle]
            self._complete(handle, _CANCELLED)

    # batches -----------------------------------------------------------------------

    def _batch(self, ep: Endpoint, head: int, bodies: list[bytes], ctypes: list[Any], handles: list[int]) -> None:
        if ep.is_async:
            task = self.loop.create_task(self._run_batch_async(ep, bodies, ctypes, handles))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self.pool.submit((self._batch_job, head, ep, bodies, ctypes, handles))

    def _batch_input(self, ep: Endpoint, bodies: list[bytes], ctypes: Any, handles: list[int]) -> Any:
        """(batch, counts, the handles it answers), or None when every member is answered.
        ``ctypes`` is a tuple when C decoded the whole batch (bentohost/_rows.py)."""
        ok = handles
        try:
            if ctypes.__class__ is tuple:
                batch, counts = rows_array(ctypes, ep.rows_dtype)
                return batch, counts, handles
            values, ok = self._batch_decode(ep, bodies, ctypes, handles)
            if not ok:
                return None
            batch, counts = concat_batch(values, ep.batch_dim[0])
            return batch, counts, ok
        except Exception as exc:
            resp = error_response(exc)
            for h in ok:
                self._complete(h, resp)
            return None

    def _batch_decode(
        self, ep: Endpoint, bodies: list[bytes], ctypes: list[Any], handles: list[int]
    ) -> tuple[list[Any], list[int]]:
        """Members' inputs; a member whose body is invalid is answered now and left out."""
        values: list[Any] = []
        ok: list[int] = []
        for h, body, ct in zip(handles, bodies, ctypes):
            try:
                values.append(ep.decode_member(body, ct))
                ok.append(h)
            except Exception as exc:
                self._complete(h, error_response(exc))
        return values, ok

    def _batch_answer(self, ep: Endpoint, output: Any, counts: list[int], ok: list[int]) -> None:
        try:
            parts = split_batch(output, counts, ep.batch_dim[1])
        except Exception as exc:
            logger.error("cannot split the output of batch API %s", ep.name, exc_info=exc)
            for h in ok:
                self._complete(h, _INTERNAL_ERROR)
            return
        for h, part in zip(ok, parts):
            try:
                ctype, out, headers = ep.encode(part)
                self._complete(h, (200, ctype, out, headers))
            except Exception as exc:
                self._complete(h, error_response(exc))

    def _batch_job(self, head: int, ep: Endpoint, bodies: Any, ctypes: Any, handles: Any) -> None:
        prepared = self._batch_input(ep, bodies, ctypes, handles)
        if prepared is None:
            return
        batch, counts, ok = prepared
        try:
            output = ep.call_batch(batch)
        except Exception as exc:
            resp = error_response(exc)
            for h in ok:
                self._complete(h, resp)
            return
        self._batch_answer(ep, output, counts, ok)

    async def _run_batch_async(self, ep: Endpoint, bodies: Any, ctypes: Any, handles: Any) -> None:
        prepared = self._batch_input(ep, bodies, ctypes, handles)
        if prepared is None:
            return
        batch, counts, ok = prepared
        try:
            output = await ep.call_batch(batch)
        except Exception as exc:
            resp = error_response(exc)
            for h in ok:
                self._complete(h, resp)
            return
        except asyncio.CancelledError:
            for h in ok:
                self._complete(h, _CANCELLED)
            return
        self._batch_answer(ep, output, counts, ok)

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
            if self.tasks is not None:
                self.tasks.stop()  # runs under way finish; pending ones wait in the store
            if self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
            self.pool.stop()
            await self.loop.run_in_executor(None, self.pool.join)
            if self.tasks is not None:
                await self.tasks.close()
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
        # The loop thread must take the GIL from busy pool threads quickly to hand
        # over new requests: CPython's default 5 ms switch interval would add up to
        # that to every hand-off while a sync method or generator runs.
        sys.setswitchinterval(float(os.environ.get("BENTOHOST_SWITCH_INTERVAL", "0.001")))
        if self._runs_sync_in_place():
            self.pool.stop()  # its one thread is this worker's taker instead
            threading.Thread(target=self._take_and_run, name="bentohost-api-0", daemon=True).start()
        else:
            self._fd = self.host.eventfd()
            self.loop.add_reader(self._fd, self.drain)
            self.loop.call_soon(self.drain)  # requests that arrived before the reader was attached
        self.loop.call_soon(self._beat)
        if self.tasks is not None:
            self.tasks.start()

    def serve(self) -> int:
        self.start()
        try:
            self.loop.run_forever()
        except KeyboardInterrupt:
            return 0
        return 0


def _setup_logging(host: Any) -> None:
    """Whole lines on stdout/stderr; tracebacks of failed requests in the host's format."""
    install_line_writers()
    setup_logging(logger, getattr(host, "log_format", "text"))


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _print_user_traceback() -> None:
    """Print the current exception without bentohost's and importlib's own frames:
    the user wants to see where their file failed, not how it was loaded."""
    exc = sys.exc_info()[1]
    if exc is None:
        return
    tbe = traceback.TracebackException.from_exception(exc)
    kept = [
        frame
        for frame in tbe.stack
        if not frame.filename.startswith(_PACKAGE_DIR)
        and not frame.filename.startswith("<frozen importlib")
        and not frame.filename.endswith(os.path.join("importlib", "__init__.py"))
    ]
    tbe.stack = traceback.StackSummary.from_list(kept)
    text = "".join(tbe.format())
    if not kept:  # e.g. a SyntaxError in the user's file: no frame of theirs, keep the usual header
        text = "Traceback (most recent call last):\n" + text
    sys.stderr.write(text)
    sys.stderr.flush()


def _setup_faulthandler() -> None:
    """Every thread's Python stack on stderr: on SIGUSR1 (the supervisor asks before killing a
    hung worker) and on a fatal signal (a segfault in an extension names the call that crashed)."""
    try:
        faulthandler.enable(all_threads=True)
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    except (AttributeError, ValueError, RuntimeError, OSError):  # pragma: no cover - not on this platform
        pass


def _register_documents(host: Any, svc: Service[Any], endpoints: list[Endpoint]) -> None:
    """``/schema.json``, ``/docs.json`` and the web page, served by C from memory."""
    set_document = getattr(host, "set_document", None)
    if set_document is None:
        return
    from ._schema import documents

    try:
        docs = documents(svc, endpoints)
    except Exception:  # noqa: BLE001 - a schema problem must not stop serving
        logger.exception("cannot build the discovery documents")
        return
    for path, ctype, body in docs:
        set_document(path, ctype, body)


def _setup_context(host: Host) -> None:
    server_context.worker_index = int(host.worker_index)
    server_context.service_name = guess_service_name(host.target)
    server_context.service_type = "entry_service"


def _service_graph(entry: Service[Any]) -> list[Service[Any]]:
    """The entry and every service it reaches through ``depends(Other)``, each once."""
    try:
        return service_graph(entry)
    except ValueError as exc:  # two different classes with one name
        raise TargetError(str(exc)) from None


def _placed_elsewhere(config_json: str) -> bool:
    """Whether worker 1 has a placement (its GPUs, CPUs, thread counts): the reporter
    was forked before anyone knew it, so it is started again, placed."""
    first = (json.loads(config_json).get("placement") or [{}])[0]
    return bool(first.get("env") or first.get("cpus"))


def _served_service(graph: list[Service[Any]], name: str) -> Service[Any]:
    """The service this worker serves: the entry, or the dependency the supervisor named."""
    if not name:
        return graph[0]
    for svc in graph:
        if svc.name == name:
            return svc
    raise TargetError(f"service {name!r} is not in the graph of {graph[0].name!r}")


def open_tasks(svc: Service[Any], endpoints: list[Endpoint], threads: int) -> Any:
    """The service's ``TaskManager`` with its store open, or None when it has no task."""
    from ._tasks import has_tasks, task_settings

    if not has_tasks(svc):
        return None
    from ._config import effective_config
    from ._task_runner import TaskManager

    manager = TaskManager(svc, endpoints, task_settings(effective_config(svc).get("tasks"), threads))
    manager.open()
    return manager


def main() -> int:
    """Entry point called by the C worker. Exit codes: 0 ok, 3 import error, 4 startup error."""
    import _bentohost as host  # type: ignore[import-not-found]  # built into the C host

    _setup_logging(host)
    _setup_faulthandler()
    try:
        return _main(host)
    finally:
        flush_line_writers()


def _main(host: Any) -> int:
    _setup_context(host)
    try:
        entry = load_service(host.target)
        graph = _service_graph(entry)
        only = os.environ.get("BENTOHOST_SERVE_SERVICE", "")
        svc = _served_service(graph, getattr(host, "service_name", "") or only)
        if only and not getattr(host, "service_name", ""):
            graph = [svc]  # one service of the graph alone: its dependencies run elsewhere
        elif os.environ.get("BENTOHOST_DEVELOPMENT") == "1":
            graph = [svc]  # development: dependencies in-process, plain Python calls
        endpoints = build_endpoints(svc)
        config = service_config(svc)
        links = graph_links(host, graph)
        # The entry's description carries the whole graph: the supervisor starts
        # one pool per service from it (on the ports reserved here, with --no-uds).
        warnings: list[str] | None = [] if host.reporter else None
        config_json = service_config_json(svc, graph if svc is entry else None, links.ports, warnings)
    except (TargetError, ArgumentsError, PlacementError) as exc:  # a CorsError is a TargetError
        print(f"bentohost: error: {exc}", file=sys.stderr, flush=True)
        return EXIT_IMPORT_ERROR
    except BaseException:
        _print_user_traceback()
        return EXIT_IMPORT_ERROR
    for warning in warnings or ():
        print(f"bentohost: warning: {warning}", file=sys.stderr, flush=True)
    if host.reporter and _placed_elsewhere(config_json):
        host.report(config_json)
        return EXIT_PLACE
    server_context.service_name = svc.name
    server_context.bento_name = svc.name
    log_to_root(logger, getattr(host, "log_format", "text"))
    server_context.service_routes = [a["route"] for a in config["apis"]]
    _register_documents(host, svc, endpoints)
    transport = connect_dependencies(host, svc, graph, links)
    host.publish(config_json)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        instance = svc()
        for ep in endpoints:
            ep.bind(instance)
        loop.run_until_complete(run_hooks(instance, svc.startup_hooks))
        tasks = open_tasks(svc, endpoints, config["threads"])
    except BaseException:
        _print_user_traceback()
        return EXIT_STARTUP_ERROR
    runtime = WorkerRuntime(host, svc, instance, endpoints, config["threads"], loop)
    runtime.transport = transport
    if tasks is not None:
        runtime.attach_tasks(tasks)
    try:
        return runtime.serve()
    finally:
        try:
            loop.close()
        except Exception:
            pass
