"""Served over TLS (tests/test_tls.py): JSON, a stream, an upload, the worker."""
from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path

import bentohost


@bentohost.service(workers=2)
class TlsSvc:
    @bentohost.api
    def echo(self, text: str) -> str:
        return text

    @bentohost.api
    def ticks(self, n: int = 3) -> Generator[str, None, None]:
        for i in range(n):
            yield f"tick {i}\n"

    @bentohost.api
    def upload(self, f: Path) -> dict:
        data = f.read_bytes()
        return {"size": len(data), "head": data[:8].decode("latin-1")}

    @bentohost.api
    def whoami(self) -> dict:
        return {"worker_index": bentohost.server_context.worker_index, "pid": os.getpid()}
