"""``SyncHTTPClient``: a blocking client with BentoML 1.4's ``bentoml.SyncHTTPClient`` interface."""

from __future__ import annotations

import time
from typing import Any, Iterator, Mapping

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

__all__ = ["SyncHTTPClient", "SyncStream", "Task"]


class SyncStream:
    """The chunks of a streamed response, decoded as they arrive (``str`` for text outputs, else ``bytes``).

    An iterator; also a context manager, and ``close()`` drops the connection early."""

    def __init__(self, endpoint: ClientEndpoint, response: Any) -> None:
        self.endpoint = endpoint
        self.response = response
        self.headers = response.headers
        self.status_code = response.status_code
        self._iter = self._chunks()

    def _chunks(self) -> Iterator[Any]:
        decoder = StreamDecoder(self.endpoint, self.response.headers)
        try:
            for raw in self.response.iter_bytes():
                item = decoder.feed(raw)
                if item is not None:
                    yield item
            tail = decoder.finish()
            if tail is not None:
                yield tail
        finally:
            self.response.close()

    def __iter__(self) -> "SyncStream":
        return self

    def __next__(self) -> Any:
        return next(self._iter)

    def close(self) -> None:
        self._iter.close()
        self.response.close()

    def __enter__(self) -> "SyncStream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Task:
    """A submitted ``@bentoml.task`` call."""

    def __init__(self, id: str, endpoint: ClientEndpoint, client: "SyncHTTPClient") -> None:
        self.id = id
        self.endpoint = endpoint
        self.client = client

    def get_status(self) -> str:
        return self.client._get_task_status(self.endpoint, self.id)

    def get(self) -> Any:
        return self.client._get_task_result(self.endpoint, self.id)

    def cancel(self) -> None:
        return self.client._cancel_task(self.endpoint, self.id)

    def retry(self) -> "Task":
        return self.client._retry_task(self.endpoint, self.id)

    def __repr__(self) -> str:
        return f"<Task {self.endpoint.name} {self.id}>"


class SyncHTTPClient(ClientBase):
    """Call a BentoML-compatible service over HTTP; one method per API, built from ``/schema.json``.

    >>> with SyncHTTPClient("http://localhost:3000") as client:
    ...     client.summarize(text="...")
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
        httpx = httpx_module()
        transport = httpx.HTTPTransport(uds=self._uds) if self._uds else None
        self.client = httpx.Client(
            base_url=self._base_url,
            headers=self.default_headers,
            timeout=timeout,
            transport=transport,
            follow_redirects=True,
        )
        try:
            self._setup()
        except BaseException:
            self.client.close()
            raise

    # -- setup
    def _setup(self) -> None:
        if self._wants_ready_wait():
            self.wait_until_server_ready()
        httpx = httpx_module()
        try:
            resp = self.client.get("/schema.json")
        except httpx.HTTPError as exc:
            raise _exc.ServiceUnavailable(f"Failed to fetch schema from {self.url}/schema.json: {exc}") from exc
        self._install_schema(resp)

    def is_ready(self, timeout: float | None = None) -> bool:
        httpx = httpx_module()
        try:
            resp = self.client.get("/readyz", timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT)
            return resp.status_code == 200
        except httpx.TransportError:
            return False

    def wait_until_server_ready(self, timeout: float | None = None) -> None:
        """Poll ``GET /readyz`` (short sleeps in between) until it answers 200; else ServiceUnavailable."""
        timeout = self._ready_timeout(timeout)
        httpx = httpx_module()
        deadline = time.monotonic() + timeout
        delay = READY_POLL_INITIAL
        last: str = "no answer"
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                resp = self.client.get("/readyz", timeout=max(min(left, self.timeout), 0.05))
                if resp.status_code == 200:
                    return
                last = f"HTTP {resp.status_code}"
            except httpx.TransportError as exc:
                last = type(exc).__name__
            left = deadline - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(delay, left))
            delay = next_poll_delay(delay)
        raise _exc.ServiceUnavailable(f"Server is not ready after {timeout} seconds (last: {last})")

    # -- calls
    def call(self, __name: str, /, *args: Any, **kwargs: Any) -> Any:
        """Call the API named ``__name``."""
        return self._call(self._endpoint(__name), args, kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if "__call__" not in self.endpoints:
            raise TypeError("This service is not callable.")
        return self.call("__call__", *args, **kwargs)

    def _send(self, endpoint: ClientEndpoint, args: Any, kwargs: Any, suffix: str = "", stream: bool = False) -> Any:
        files = FileManager()
        try:
            spec = build_request_spec(endpoint, args, kwargs, files, suffix)
            req = self.client.build_request("POST", spec.path, **spec.build_kwargs(is_async=False))
            resp = self.client.send(req, stream=stream)
        finally:
            files.close()
        if resp.is_error:
            if stream:
                resp.read()
                resp.close()
            raise map_exception(resp.status_code, resp.text)
        return resp

    def _call(self, endpoint: ClientEndpoint, args: Any, kwargs: Any) -> Any:
        if endpoint.stream_output:
            return SyncStream(endpoint, self._send(endpoint, args, kwargs, stream=True))
        return self._parse(endpoint, self._send(endpoint, args, kwargs))

    def _parse(self, endpoint: ClientEndpoint, resp: Any) -> Any:
        if endpoint.output.get("type") == "file":
            return decode_file(endpoint, resp.content, resp.headers, self.temp_dir)
        return decode_body(endpoint, resp.content, resp.headers)

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        """A raw httpx request on the client's connection pool."""
        return self.client.request(method, url, **kwargs)

    # -- tasks
    def _task_request(self, method: str, endpoint: ClientEndpoint, what: str, task_id: str) -> Any:
        resp = self.client.request(method, f"{endpoint.route}/{what}", params={"task_id": task_id})
        if resp.is_error:
            raise map_exception(resp.status_code, resp.text)
        return resp

    def _submit(self, __endpoint: ClientEndpoint, /, *args: Any, **kwargs: Any) -> Task:
        resp = self._send(__endpoint, args, kwargs, suffix="/submit")
        return Task(resp.json()["task_id"], __endpoint, self)

    def _get_task_status(self, __endpoint: ClientEndpoint, /, task_id: str) -> str:
        return self._task_request("GET", __endpoint, "status", task_id).json()["status"]

    def _get_task_result(self, __endpoint: ClientEndpoint, /, task_id: str) -> Any:
        return self._parse(__endpoint, self._task_request("GET", __endpoint, "get", task_id))

    def _cancel_task(self, __endpoint: ClientEndpoint, /, task_id: str) -> None:
        self._task_request("PUT", __endpoint, "cancel", task_id)

    def _retry_task(self, __endpoint: ClientEndpoint, /, task_id: str) -> Task:
        resp = self._task_request("POST", __endpoint, "retry", task_id)
        return Task(resp.json()["task_id"], __endpoint, self)

    # -- lifetime
    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> "SyncHTTPClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
