"""Streaming responses in the worker: sync generators stepped on the pool with
back-pressure from the I/O thread, async generators awaited on the loop."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from ._context import Context
from ._dispatch import Endpoint
from ._frames import frame_encoder, requested_frames
from ._io import INTERNAL_ERROR, Response, error_response
from ._pool import ThreadPool

logger = logging.getLogger("bentohost")

_INTERNAL_ERROR: Response = INTERNAL_ERROR
_CANCELLED: Response = (503, "application/json", b'{"error":"request cancelled"}', None)


class _Stream:
    """State of one streaming response."""

    __slots__ = (
        "handle",
        "ep",
        "gen",
        "ctx",
        "started",
        "cancelled",
        "paused",
        "writable_pending",
        "lock",
        "task",
        "waiter",
        "done",
        "media",
        "encode",
    )

    def __init__(self, handle: int, ep: Endpoint, meta: Any = None) -> None:
        self.handle = handle
        self.ep = ep
        # a caller of the graph may ask for one frame per item (bentohost/_frames.py)
        self.media = requested_frames(meta[0]) if meta is not None else None
        self.encode = frame_encoder(self.media) if self.media is not None else ep.encode_item
        self.gen: Any = None
        self.ctx: Context | None = None
        self.started = False
        self.cancelled = False
        self.paused = False
        self.writable_pending = False
        self.lock = threading.Lock()
        self.task: asyncio.Task[None] | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.done = False


class StreamsMixin:
    """The stream half of ``WorkerRuntime`` (which provides the attributes below)."""

    host: Any
    loop: asyncio.AbstractEventLoop
    pool: ThreadPool
    _active: dict[int, Any]

    def _complete(self, handle: int, resp: Response) -> None:
        raise NotImplementedError

    def _writable(self, handle: int) -> None:
        st = self._active.get(handle)
        if not isinstance(st, _Stream):
            return
        if st.task is not None:  # async generator: wake the writer
            w = st.waiter
            if w is not None and not w.done():
                w.set_result(None)
            else:
                st.writable_pending = True
            return
        with st.lock:
            if st.paused:
                st.paused = False
                resume = True
            else:
                st.writable_pending = True
                resume = False
        if resume:
            self.pool.submit((self._gen_step_job, st.handle, st, None, None, None))

    # streams ----------------------------------------------------------------------

    def _stream_begin(self, st: _Stream) -> None:
        ep = st.ep
        assert st.ctx is not None
        status, ctype, headers = ep.stream_head(st.ctx)
        if st.media is not None:
            ctype = st.media
        if headers is None:
            self.host.stream_start(st.handle, status, ctype)
        else:
            self.host.stream_start(st.handle, status, ctype, headers)
        st.started = True

    def _stream_finish(self, st: _Stream) -> None:
        """The final message of a stream (exactly once) and its clean-up."""
        if st.done:
            return
        st.done = True
        self._active.pop(st.handle, None)
        try:
            if st.started:
                self.host.stream_end(st.handle)
            else:
                self._complete(
                    st.handle, _CANCELLED if st.cancelled else (200, st.media or st.ep.stream_ct, b"", None)
                )
        finally:
            if st.ctx is not None:
                st.ctx.close()

    def _stream_fail(self, st: _Stream, exc: BaseException) -> None:
        if st.started:
            logger.error("Exception in stream after the first chunk; ending the stream", exc_info=exc)
            self._stream_finish(st)
            return
        st.done = True
        self._active.pop(st.handle, None)
        try:
            self._complete(st.handle, error_response(exc))
        finally:
            if st.ctx is not None:
                st.ctx.close()

    def _gen_open_job(self, handle: int, ep: Endpoint, body: Any, ctype: Any, meta: Any) -> None:
        """Pool: call a sync generator API and stream it."""
        st = _Stream(handle, ep, meta)
        try:
            st.gen, st.ctx = ep.open_stream(body, ctype, meta)
        except BaseException as exc:  # noqa: BLE001
            st.done = True
            self._complete(handle, error_response(exc) if isinstance(exc, Exception) else _INTERNAL_ERROR)
            return
        self._active[handle] = st  # dict ops are atomic under the GIL
        self._gen_step_job(handle, st, None, None, None)

    def _gen_step_job(self, handle: int, st: _Stream, _a: Any, _b: Any, _c: Any) -> None:
        """Pool: advance a sync generator while its items can be written.

        Keeps the thread while no other job waits; otherwise yields the thread after
        one item (the stream goes to the back of the queue). Stops on a full socket
        buffer until C reports the handle writable again.
        """
        gen = st.gen
        encode = st.encode
        write = self.host.stream_write
        pool = self.pool
        while True:
            if st.cancelled:
                self._close_sync(st)
                return
            try:
                item = next(gen)
            except StopIteration:
                self._stream_finish(st)
                return
            except Exception as exc:
                self._stream_fail(st, exc)
                return
            if not st.started:
                try:
                    self._stream_begin(st)
                except Exception as exc:  # bad headers set on ctx.response
                    self._close_sync(st, answer=False)
                    self._stream_fail(st, exc)
                    return
            try:
                data = encode(item)
            except Exception as exc:
                self._close_sync(st, answer=False)
                self._stream_fail(st, exc)
                return
            rc = write(handle, data)
            if rc < 0:
                st.cancelled = True
                self._close_sync(st)
                return
            if rc > 0:
                with st.lock:
                    if st.writable_pending:
                        st.writable_pending = False
                    elif not st.cancelled:
                        st.paused = True
                        return
            if pool.busy():
                pool.submit((self._gen_step_job, handle, st, None, None, None))
                return

    def _close_sync(self, st: _Stream, answer: bool = True) -> None:
        try:
            st.gen.close()
        except Exception:  # noqa: BLE001
            logger.exception("closing the generator failed")
        if answer:
            self._stream_finish(st)

    def _cancel_stream(self, st: _Stream) -> None:
        if st.task is not None:
            st.cancelled = True
            st.task.cancel()
            return
        with st.lock:
            st.cancelled = True
            resume = st.paused
            st.paused = False
        if resume:  # nobody runs it: close it on a pool thread
            self.pool.submit((self._gen_step_job, st.handle, st, None, None, None))

    async def _run_agen(self, handle: int, ep: Endpoint, body: Any, ctype: Any, meta: Any) -> None:
        """Loop: stream an async generator API (its items are awaited on the loop)."""
        st = _Stream(handle, ep, meta)
        st.task = self._active.get(handle)  # type: ignore[assignment]
        self._active[handle] = st
        try:
            st.gen, st.ctx = ep.open_stream(body, ctype, meta)
        except Exception as exc:
            st.done = True
            self._active.pop(handle, None)
            self._complete(handle, error_response(exc))
            return
        agen = st.gen
        write = self.host.stream_write
        encode = st.encode
        sent = 0
        try:
            while True:
                try:
                    item = await agen.__anext__()
                except StopAsyncIteration:
                    break
                if not st.started:
                    self._stream_begin(st)
                rc = write(handle, encode(item))
                sent += 1
                if not sent & 15:
                    # A generator that never really awaits would keep the loop to
                    # itself until it ends: let other requests (and new streams'
                    # first chunks) through every few items.
                    await asyncio.sleep(0)
                if rc < 0:
                    st.cancelled = True
                    break
                if rc > 0:
                    if st.writable_pending:
                        st.writable_pending = False
                    else:
                        st.waiter = self.loop.create_future()
                        await st.waiter
                        st.waiter = None
        except asyncio.CancelledError:
            st.cancelled = True
        except Exception as exc:
            await self._aclose(agen)
            self._stream_fail(st, exc)
            return
        await self._aclose(agen)
        self._stream_finish(st)

    @staticmethod
    async def _aclose(agen: Any) -> None:
        try:
            await agen.aclose()
        except BaseException:  # noqa: BLE001
            logger.exception("closing the async generator failed")
