"""Process-wide server context, the per-request ``Context`` and ``importing()``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

__all__ = ["ServerContext", "server_context", "Context", "ResponseContext", "importing"]


class ServerContext:
    """Facts about the running server; ``worker_index`` is None outside a server."""

    __slots__ = (
        "worker_index",
        "service_name",
        "service_type",
        "bento_name",
        "bento_version",
        "service_routes",
    )

    def __init__(self) -> None:
        self.worker_index: int | None = None
        self.service_name: str | None = None
        self.service_type: str | None = None
        self.bento_name: str | None = None
        self.bento_version: str = "not available"
        self.service_routes: list[str] = []

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__)
        return f"ServerContext({fields})"


server_context = ServerContext()


class ResponseContext:
    """What an API may set on its response (only ``status_code`` is applied for now)."""

    __slots__ = ("status_code", "headers", "cookies")

    def __init__(self) -> None:
        self.status_code: int = 200
        self.headers: dict[str, str] = {}
        self.cookies: list[dict[str, Any]] = []

    @property
    def metadata(self) -> dict[str, str]:
        return self.headers


class Context:
    """Per-request context injected into a ``ctx``/``context`` parameter.

    ``state`` is a dict shared by the whole worker process; ``request`` is not
    available yet (None).
    """

    __slots__ = ("request", "response", "state", "temp_dir")

    _shared_state: dict[str, Any] = {}

    def __init__(self, request: Any = None) -> None:
        self.request: Any = request
        self.response = ResponseContext()
        self.state: dict[str, Any] = Context._shared_state
        self.temp_dir: str | None = None


@contextlib.contextmanager
def importing() -> Iterator[None]:
    """Import optional runtime-only packages: ImportError is ignored outside a server."""
    try:
        yield
    except ImportError:
        if server_context.worker_index is not None:
            raise
