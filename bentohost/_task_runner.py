"""A worker's tasks: the five task routes (``_tasks``) and the runs, over the store.

Every store call goes to one thread of this worker (its own SQLite connection), so
the event loop never waits on the file. A submit is validated as the API would
validate it (400 with pydantic's detail), stored, and answered with its task id; it
starts at once when this worker has a free slot (``max_running``), else it stays
``pending`` and the first worker of the service with a free slot takes it (each
polls every ``POLL_S`` while it has room, and at once when a run ends). Sync task
methods run on a pool of ``max_running`` threads of their own, async ones on the
loop, through the same ``Endpoint`` as the API, so a run's stored response is the
API's response, errors included (a task that raises is ``failed`` with its 500).
Tasks have no ``traffic.timeout`` (BentoML's run after the response) and sync runs
are not watched by the watchdog: they are long by design.

Cancel: a pending task never starts; a running async one is cancelled (by this
worker at once, by its owner within a poll); a running sync one cannot be stopped,
so its result is dropped when it returns (its slot stays taken until then).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import functools
import json
import logging
import re
import sqlite3
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ._context import Request
from ._dispatch import Endpoint
from ._io import APPLICATION_JSON, INTERNAL_ERROR, Response, error_response
from ._service import Service
from ._streams import _CANCELLED
from ._task_input import decode_input, encode_input
from ._task_store import FINISHED, Owner, StoredResult, TaskRow, TaskStatus, TaskStore, this_process
from ._tasks import TaskSettings, task_routes

__all__ = ["TaskManager", "POLL_S"]

logger = logging.getLogger("bentohost")

T = TypeVar("T")

POLL_S = 0.5
#: beat, recover dead owners' tasks and sweep expired rows every this many polls
MAINTAIN_EVERY = 10
#: rounds of one claim before it yields to the next poll
CLAIM_ROUNDS = 8
_TASK_ID = re.compile(r"[0-9a-f]{32}")

Handler = Callable[[Endpoint, Any, Any, Any], Awaitable[Response]]


def _json(status: int, payload: Any) -> Response:
    return status, APPLICATION_JSON, json.dumps(payload, separators=(",", ":")).encode(), None


def _error(status: int, message: str) -> Response:
    return _json(status, {"error": message})


_ID_REQUIRED = _error(400, "task_id is required")
_NOT_FOUND = _error(404, "task_id not found")


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).isoformat()


def status_json(row: TaskRow) -> dict[str, Any]:
    """BentoML's ``ResultRow.to_json``."""
    return {
        "task_id": row.task_id,
        "status": row.status.value,
        "created_at": _iso(row.created_at),
        "executed_at": _iso(row.executed_at),
    }


class _Reply(Exception):
    """Answer the request with ``response`` now."""

    def __init__(self, response: Response) -> None:
        super().__init__(response[0])
        self.response = response


def query_task_id(meta: Any) -> str | None:
    """``task_id`` from the request's query string (None when absent)."""
    if meta is None:
        return None
    return Request(meta[0], meta[1]).query_params.get("task_id")


class TaskManager:
    """One worker's task routes and runs. ``open()`` at start-up, ``attach(runtime)``,
    then ``start()``; ``stop()`` when the worker drains and ``close()`` at the end."""

    def __init__(self, svc: Service[Any], endpoints: list[Endpoint], settings: TaskSettings) -> None:
        self.svc = svc
        self.service = svc.name
        self.settings = settings
        self.store = TaskStore(settings.store, settings.ttl)
        self.me: Owner = this_process(uuid.uuid4().hex)
        self._eps = {ep.name: ep for ep in endpoints if ep.method.is_task}
        self._db = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="bentohost-task-db")
        self._threads: concurrent.futures.ThreadPoolExecutor | None = None
        if any(not ep.is_async for ep in self._eps.values()):
            self._threads = concurrent.futures.ThreadPoolExecutor(
                settings.max_running, thread_name_prefix="bentohost-task"
            )
        self.loop: asyncio.AbstractEventLoop | None = None
        self._runtime: Any = None
        #: task id -> (its run, whether cancelling the run interrupts it: async methods)
        self._running: dict[str, tuple[asyncio.Task[None], bool]] = {}
        self._slots = 0  # runs started or about to start
        self._stopping = False
        self._claiming = False
        self._claim_again = False
        self._checking = False
        self._ticks = 0
        self._tick_handle: asyncio.TimerHandle | None = None

    # -- lifecycle

    def open(self) -> None:
        """Open the store and register this process (blocking; raises when the file is unusable)."""

        def run() -> None:
            self.store.open()
            self.store.register(self.me)

        self._db.submit(run).result()
        logger.info(
            "tasks of %s: store %s, up to %d running per worker, results kept %gs",
            self.service, self.settings.store, self.settings.max_running, self.settings.ttl,
        )  # fmt: skip

    def attach(self, runtime: Any) -> list[tuple[Endpoint, None, Any]]:
        """Bind to the worker runtime; the routes it appends after its APIs' (wire order)."""
        self._runtime = runtime
        self.loop = runtime.loop
        handlers: dict[str, Handler] = {
            "submit": self._submit,
            "status": self._status,
            "get": self._get,
            "retry": self._retry,
            "cancel": self._cancel,
        }
        return [
            (self._eps[tr.api], None, functools.partial(self._answer, handlers[tr.action]))
            for tr in task_routes(self.svc)
        ]

    def start(self) -> None:
        self._spawn(self._maintain())
        self._kick()
        self._schedule_tick()

    def stop(self) -> None:
        """No new runs from now on (a submit is kept ``pending`` for later)."""
        self._stopping = True
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None

    async def close(self) -> None:
        """After the worker awaited its runs: leave the store."""
        self.stop()
        if self._running:  # a claim that came back after the worker's own wait
            await asyncio.gather(*(task for task, _ in list(self._running.values())), return_exceptions=True)
        try:
            await self._call(self.store.unregister, self.me)
            await self._call(self.store.close)
        except Exception:  # noqa: BLE001 - shutting down anyway
            logger.exception("closing the task store failed")
        self._db.shutdown(wait=False)
        if self._threads is not None:
            self._threads.shutdown(wait=False)

    # -- plumbing

    def _loop(self) -> asyncio.AbstractEventLoop:
        assert self.loop is not None, "TaskManager.attach() was not called"
        return self.loop

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._loop().run_in_executor(self._db, fn, *args)

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        """A task the worker's shutdown waits for; its failure is logged."""
        task = self._loop().create_task(coro)  # type: ignore[arg-type]
        tasks = self._runtime._tasks
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        task.add_done_callback(_log_failure)
        return task

    async def _answer(self, impl: Handler, handle: int, ep: Endpoint, body: Any, ctype: Any, meta: Any) -> None:
        """Run a route's handler and answer its request (as the runtime's async APIs do)."""
        try:
            resp = await impl(ep, body, ctype, meta)
        except _Reply as reply:
            resp = reply.response
        except asyncio.CancelledError:
            resp = _CANCELLED
        except sqlite3.Error as exc:
            logger.exception("task store error")
            resp = _error(500, f"task store error: {exc}")
        except BaseException:  # noqa: BLE001 - the handle must be answered
            logger.exception("task request failed")
            resp = INTERNAL_ERROR
        runtime = self._runtime
        runtime._active.pop(handle, None)
        runtime._complete(handle, resp)

    # -- slots

    def _free(self) -> int:
        return 0 if self._stopping else self.settings.max_running - self._slots

    def _take_slot(self) -> bool:
        if self._free() <= 0:
            return False
        self._slots += 1
        return True

    # -- routes

    async def _submit(self, ep: Endpoint, body: Any, ctype: Any, meta: Any) -> Response:
        # validated and copied before C frees the request (its temp dir included)
        accepted = await self._call(self._accept, ep, body, ctype, meta)
        if not isinstance(accepted, bytes):
            return accepted
        return await self._shielded(self._new_task(ep.name, accepted))

    @staticmethod
    def _accept(ep: Endpoint, body: Any, ctype: Any, meta: Any) -> bytes | Response:
        """The stored input, or the API's error answer when the API would refuse it."""
        try:
            _args, _kwargs, ctx = ep.prepare(body, ctype, meta)
        except Exception as exc:  # noqa: BLE001 - bad input answers as the API would
            return error_response(exc)
        ctx.close()
        return encode_input(body, ctype, meta)

    async def _shielded(self, coro: Awaitable[Response]) -> Response:
        """Once a task is being stored it is stored and started, even if the request
        that asked for it is cancelled meanwhile."""
        return await asyncio.shield(self._spawn(coro))

    async def _new_task(self, name: str, blob: bytes) -> Response:
        task_id = uuid.uuid4().hex
        run_now = self._take_slot()
        try:
            status = await self._call(
                self.store.insert, task_id, self.service, name, blob, self.me.token if run_now else None
            )
        except BaseException:
            if run_now:
                self._slots -= 1
            raise
        if run_now:
            self._start(task_id, name, blob)
        logger.info("Task(%s) %s is submitted", name, task_id)
        return _json(200, {"task_id": task_id, "status": status.value})

    async def _lookup(self, meta: Any, fn: Callable[[str, str], T | None]) -> tuple[str, T]:
        """The request's task id and what ``fn(service, task_id)`` found; answers 400
        without an id and 404 when nothing is found."""
        task_id = query_task_id(meta)
        if task_id is None:
            raise _Reply(_ID_REQUIRED)
        if not _TASK_ID.fullmatch(task_id):
            raise _Reply(_NOT_FOUND)  # not an id this server hands out: no need to ask the store
        found = await self._call(fn, self.service, task_id)
        if found is None:
            raise _Reply(_NOT_FOUND)
        return task_id, found

    async def _status(self, ep: Endpoint, body: Any, ctype: Any, meta: Any) -> Response:
        _task_id, row = await self._lookup(meta, self.store.get_row)
        return _json(200, status_json(row))

    async def _get(self, ep: Endpoint, body: Any, ctype: Any, meta: Any) -> Response:
        task_id, (row, result) = await self._lookup(meta, self.store.get_result)
        if row.status is TaskStatus.CANCELED:
            return _error(400, f"task {task_id} was canceled")
        if result is None:
            return _error(400, f"task {task_id} is not completed yet")
        return result.status, result.content_type, result.body, result.headers

    async def _retry(self, ep: Endpoint, body: Any, ctype: Any, meta: Any) -> Response:
        task_id, (row, blob) = await self._lookup(meta, self.store.get_input)
        if row.status not in FINISHED:
            return _error(400, f"task {task_id} is not completed yet")
        if row.name not in self._eps:
            return _error(400, f"task {task_id} belongs to {row.name!r}, which is not a task API of this service")
        return await self._shielded(self._new_task(row.name, blob))

    async def _cancel(self, ep: Endpoint, body: Any, ctype: Any, meta: Any) -> Response:
        task_id, (row, changed, owner) = await self._lookup(meta, self.store.cancel)
        if not changed:
            return _error(400, f"task {task_id} cannot be canceled: it is {row.status.value}")
        if owner == self.me.token:
            self._cancel_run(task_id)
        logger.info("Task(%s) %s is canceled", row.name, task_id)
        return _json(200, status_json(row))

    # -- runs

    def _start(self, task_id: str, name: str, blob: bytes) -> None:
        """Run a task whose slot is taken and whose row says it runs here."""
        ep = self._eps.get(name)
        self._running[task_id] = (self._spawn(self._run(task_id, name, blob)), ep is None or ep.is_async)

    def _cancel_run(self, task_id: str) -> None:
        task, interruptible = self._running.get(task_id, (None, False))
        if task is not None and interruptible:
            task.cancel()  # a sync run cannot be interrupted: its result is dropped

    async def _run(self, task_id: str, name: str, blob: bytes) -> None:
        try:
            resp = await self._execute(name, blob)
            result = StoredResult(int(resp[0]), str(resp[1]), bytes(resp[2]), resp[3])
            if await self._call(self.store.finish, task_id, self.me.token, result):
                logger.info("Task(%s) %s is %s", name, task_id, "completed" if result.status < 400 else "failed")
            else:
                logger.info("Task(%s) %s was canceled; its result is dropped", name, task_id)
        except asyncio.CancelledError:
            logger.info("Task(%s) %s is cancelled", name, task_id)
        finally:
            self._running.pop(task_id, None)
            self._slots -= 1
            self._kick()

    async def _execute(self, name: str, blob: bytes) -> Response:
        """The API's response to the stored request (never raises but CancelledError)."""
        ep = self._eps.get(name)
        if ep is None:
            logger.error("task API %r is not in service %s any more", name, self.service)
            return INTERNAL_ERROR
        loop = self._loop()
        try:
            if not ep.is_async:
                assert self._threads is not None
                return await loop.run_in_executor(self._threads, _run_sync, ep, blob)
            req = await loop.run_in_executor(None, decode_input, blob)
            try:
                return await ep.run_async(req.body, req.content_type, req.meta)
            finally:
                req.close()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a corrupt input fails the task
            return error_response(exc)

    # -- polling

    def _schedule_tick(self) -> None:
        if not self._stopping:
            self._tick_handle = self._loop().call_later(POLL_S, self._tick)

    def _tick(self) -> None:
        self._tick_handle = None
        if self._stopping:
            return
        self._schedule_tick()
        self._ticks += 1
        self._kick()
        if self._running and not self._checking:
            self._checking = True
            self._spawn(self._check_canceled())
        if self._ticks % MAINTAIN_EVERY == 0:
            self._spawn(self._maintain())

    def _kick(self) -> None:
        """Claim pending tasks for the free slots (one claim at a time)."""
        if self._free() <= 0:
            return
        if self._claiming:
            self._claim_again = True
            return
        self._claiming = True
        self._spawn(self._claim())

    async def _claim(self) -> None:
        try:
            for _ in range(CLAIM_ROUNDS):
                self._claim_again = False
                n = self._free()
                if n <= 0:
                    return
                self._slots += n
                try:
                    rows = await self._call(self.store.claim, self.service, self.me.token, n)
                finally:
                    self._slots -= n
                for task_id, name, blob in rows:
                    self._slots += 1
                    self._start(task_id, name, blob)
                if not self._claim_again:
                    return
        finally:
            self._claiming = False

    async def _check_canceled(self) -> None:
        try:
            for task_id in await self._call(self.store.canceled_among, list(self._running)):
                self._cancel_run(task_id)
        finally:
            self._checking = False

    async def _maintain(self) -> None:
        await self._call(self.store.beat, self.me)
        failed = await self._call(self.store.recover, self.me)
        if failed:
            logger.warning("%d task(s) whose worker exited mid-run are marked failed", failed)
        await self._call(self.store.sweep)


def _run_sync(ep: Endpoint, blob: bytes) -> Response:
    req = decode_input(blob)
    try:
        return ep.run_sync(req.body, req.content_type, req.meta)
    finally:
        req.close()


def _log_failure(task: asyncio.Task[Any]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        logger.error("task bookkeeping failed", exc_info=exc)
