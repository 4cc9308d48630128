"""Streaming bench service: 1,000 small str tokens ("00000 ", "00001 ", ... 6 bytes each).

Runs unchanged under bentohost and BentoML (bench/streaming.py).
"""
from typing import AsyncGenerator, Generator

try:
    import bentohost as bentoml
except ImportError:
    import bentoml


@bentoml.service
class Tokens:
    @bentoml.api
    def stream(self, n: int = 1000) -> Generator[str, None, None]:
        for i in range(n):
            yield f"{i:05d} "

    @bentoml.api
    async def stream_async(self, n: int = 1000) -> AsyncGenerator[str, None]:
        for i in range(n):
            yield f"{i:05d} "
