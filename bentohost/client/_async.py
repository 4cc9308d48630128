"""``AsyncHTTPClient``: an asyncio client with BentoML 1.4's ``bentoml.AsyncHTTPClient`` interface."""

from __future__ import annotations

import time
from typing import Any, AsyncIterator, Mapping

from .. import exceptions as _exc
from ._common import (
    READY_POLL_INITIAL,
    ClientBase,
    ClientEndpoint,
    FileManager,
    StreamDecoder,
    build_request_spec,
    decode_body,
    decode_file,
    httpx_module,
    map_exception,
    next_poll_delay,
)

__all__ = ["AsyncHTTPClient", "AsyncStream", "AsyncTask"]


class AsyncStream:
    """The chunks of a streamed response (``str`` for text outputs, else ``bytes``).

    ``async for chunk in client.stream_api(...)`` sends the request on the first iteration, like
    BentoML's client. ``stream = await client.stream_api(...)`` sends it at once, so that an error
    status raises there. Also an async context manager; ``aclose()`` drops the connection early."""

    def __init__(self, client: "AsyncHTTPClient", endpoint: ClientEndpoint, args: Any, kwargs: Any) -> None:
        self._client = client
        self.endpoint = endpoint
        self._args = args
        self._kwargs = kwargs
        self.response: Any = None
        self._gen: Any = None
        self._closed = False

    async def _start(self) -> None:
        if self.response is None:
            if self._closed:
                raise RuntimeError("the stream is closed")
            self.response = await self._client._send(self.endpoint, self._args, self._kwargs, stream=True)
            self._gen = self._chunks()

    async def _chunks(self) -> AsyncIterator[Any]:
        decoder = StreamDecoder(self.endpoint, self.response.headers)
        try:
            async for raw in self.response.aiter_bytes():
                item = decoder.feed(raw)
                if item is not None:
                    yield item
            tail = decoder.finish()
            if tail is not None:
                yield tail
        finally:
            await self.response.aclose()

    def __await__(self):
        async def started() -> "AsyncStream":
            await self._start()
            return self

        return started().__await__()

    def __aiter__(self) -> "AsyncStream":
        return self

    async def __anext__(self) -> Any:
        await self._start()
        return await self._gen.__anext__()

    async def aclose(self) -> None:
        self._closed = True
        if self._gen is not None:
            await self._gen.aclose()
        if self.response is not None:
            await self.response.aclose()

    async def __aenter__(self) -> "AsyncStream":
        await self._start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()


class AsyncTask:
    """A submitted ``@bentoml.task`` call (async)."""

    def __init__(self, id: str, endpoint: ClientEndpoint, client: "AsyncHTTPClient") -> None:
        self.id = id
        self.endpoint = endpoint
        self.client = client

    async def get_status(self) -> str:
        return await self.client._get_task_status(self.endpoint, self.id)

    async def get(self) -> Any:
        return await self.client._get_task_result(self.endpoint, self.id)

    async def cancel(self) -> None:
        return await self.client._cancel_task(self.endpoint, self.id)

    async def retry(self) -> "AsyncTask":
        return await self.client._retry_task(self.endpoint, self.id)

    def __repr__(self) -> str:
        return f"<AsyncTask {self.endpoint.name} {self.id}>"


class AsyncHTTPClient(ClientBase):
    """The asyncio twin of ``SyncHTTPClient``; use it as an async context manager::

        async with AsyncHTTPClient("http://localhost:3000") as client:
            await client.summarize(text="...")
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float = 30,
        server_ready_timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
        media_type: str = "application/json",
    ) -> None:
        if media_type != "application/json":
            raise _exc.InvalidArgument("only the application/json media type is supported")
        super().__init__(
            url, token=token, timeout=timeout, server_ready_timeout=server_ready_timeout, headers=headers
        )
        self._client: Any = None

    @property
    def client(self) -> Any:
        """The underlying ``httpx.AsyncClient`` (created on first use, inside the running loop)."""
        if self._client is None:
            httpx = httpx_module()
            transport = httpx.AsyncHTTPTransport(uds=self._uds) if self._uds else None
            self._client = httpx.AsyncClient(
                base_url=self._base_url,
                headers=self.default_headers,
                timeout=self.timeout,
                transport=transport,
                follow_redirects=True,
            )
        return self._client

    def __getattr__(self, name: str) -> Any:
        # only reached for missing attributes: explain the usual mistake
        if name.startswith("_") or self.__dict__.get("_setup_done", False):
            raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")
        raise RuntimeError("Client is not set up yet, please use it as an async context manager")

    # -- setup
    async def _setup(self) -> None:
        if self._setup_done:
            return
        if self._wants_ready_wait():
            await self.wait_until_server_ready()
        httpx = httpx_module()
        try:
            resp = await self.client.get("/schema.json")
        except httpx.HTTPError as exc:
            raise _exc.ServiceUnavailable(f"Failed to fetch schema from {self.url}/schema.json: {exc}") from exc
        self._install_schema(resp)

    async def is_ready(self, timeout: float | None = None) -> bool:
        httpx = httpx_module()
        try:
            resp = await self.client.get(
                "/readyz", timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT
            )
            return resp.status_code == 200
        except httpx.TransportError:
            return False

    async def wait_until_server_ready(self, timeout: float | None = None) -> None:
        """Poll ``GET /readyz`` (short sleeps in between) until it answers 200; else ServiceUnavailable."""
        timeout = self._ready_timeout(timeout)
        httpx = httpx_module()
        deadline = time.monotonic() + timeout
        delay = READY_POLL_INITIAL
        last = "no answer"
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                resp = await self.client.get("/readyz", timeout=max(min(left, self.timeout), 0.05))
                if resp.status_code == 200:
                    return
                last = f"HTTP {resp.status_code}"
            except httpx.TransportError as exc:
                last = type(exc).__name__
            left = deadline - time.monotonic()
            if left <= 0:
                break
            import asyncio

            await asyncio.sleep(min(delay, left))
            delay = next_poll_delay(delay)
        raise _exc.ServiceUnavailable(f"Server is not ready after {timeout} seconds (last: {last})")

    # -- calls
    def call(self, __name: str, /, *args: Any, **kwargs: Any) -> Any:
        """Call the API named ``__name``: a coroutine, or an ``AsyncStream`` for streaming APIs."""
        endpoint = self._endpoint(__name)
        if endpoint.stream_output:
            # validate now, so that a bad call raises TypeError where it is made
            files = FileManager()
            try:
                build_request_spec(endpoint, args, kwargs, files)
            finally:
                files.close()
            return AsyncStream(self, endpoint, args, kwargs)
        return self._call(endpoint, args, kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if "__call__" not in self.endpoints:
            raise TypeError("This service is not callable.")
        return self.call("__call__", *args, **kwargs)

    async def _send(
        self, endpoint: ClientEndpoint, args: Any, kwargs: Any, suffix: str = "", stream: bool = False
    ) -> Any:
        files = FileManager()
        try:
            spec = build_request_spec(endpoint, args, kwargs, files, suffix)
            req = self.client.build_request("POST", spec.path, **spec.build_kwargs(is_async=True))
            resp = await self.client.send(req, stream=stream)
        finally:
            files.close()
        if resp.is_error:
            if stream:
                await resp.aread()
                await resp.aclose()
            raise map_exception(resp.status_code, resp.text)
        return resp

    async def _call(self, endpoint: ClientEndpoint, args: Any, kwargs: Any) -> Any:
        return self._parse(endpoint, await self._send(endpoint, args, kwargs))

    def _parse(self, endpoint: ClientEndpoint, resp: Any) -> Any:
        if endpoint.output.get("type") == "file":
            return decode_file(endpoint, resp.content, resp.headers, self.temp_dir)
        return decode_body(endpoint, resp.content, resp.headers)

    async def request(self, method: str, url: str, **kwargs: Any) -> Any:
        """A raw httpx request on the client's connection pool."""
        return await self.client.request(method, url, **kwargs)

    # -- tasks
    async def _task_request(self, method: str, endpoint: ClientEndpoint, what: str, task_id: str) -> Any:
        resp = await self.client.request(method, f"{endpoint.route}/{what}", params={"task_id": task_id})
        if resp.is_error:
            raise map_exception(resp.status_code, resp.text)
        return resp

    async def _submit(self, __endpoint: ClientEndpoint, /, *args: Any, **kwargs: Any) -> AsyncTask:
        resp = await self._send(__endpoint, args, kwargs, suffix="/submit")
        return AsyncTask(resp.json()["task_id"], __endpoint, self)

    async def _get_task_status(self, __endpoint: ClientEndpoint, /, task_id: str) -> str:
        return (await self._task_request("GET", __endpoint, "status", task_id)).json()["status"]

    async def _get_task_result(self, __endpoint: ClientEndpoint, /, task_id: str) -> Any:
        return self._parse(__endpoint, await self._task_request("GET", __endpoint, "get", task_id))

    async def _cancel_task(self, __endpoint: ClientEndpoint, /, task_id: str) -> None:
        await self._task_request("PUT", __endpoint, "cancel", task_id)

    async def _retry_task(self, __endpoint: ClientEndpoint, /, task_id: str) -> AsyncTask:
        resp = await self._task_request("POST", __endpoint, "retry", task_id)
        return AsyncTask(resp.json()["task_id"], __endpoint, self)

    # -- lifetime
    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def __aenter__(self) -> "AsyncHTTPClient":
        try:
            await self._setup()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
