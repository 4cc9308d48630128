"""HTTP clients for bentohost (and BentoML 1.4) services.

``SyncHTTPClient`` and ``AsyncHTTPClient`` have the interface of ``bentoml.SyncHTTPClient`` and
``bentoml.AsyncHTTPClient``: they wait for ``/readyz``, read ``/schema.json`` and grow one method per API::

    from bentohost.client import SyncHTTPClient

    with SyncHTTPClient("http://localhost:3000") as client:
        print(client.summarize(text="..."))

    async with AsyncHTTPClient("http://localhost:3000") as client:
        print(await client.summarize(text="..."))
        async for chunk in client.generate(prompt="..."):
            ...

httpx is imported only when a client is created.
"""

from __future__ import annotations

from ._async import AsyncHTTPClient, AsyncStream, AsyncTask
from ._common import ClientEndpoint
from ._sync import SyncHTTPClient, SyncStream, Task

__all__ = [
    "SyncHTTPClient",
    "AsyncHTTPClient",
    "SyncStream",
    "AsyncStream",
    "Task",
    "AsyncTask",
    "ClientEndpoint",
]
