"""Access log, request ids and worker output (tests/test_access_log.py)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Generator

import bentohost

logger = logging.getLogger("logs_svc")


@bentohost.service(workers=2, threads=4)
class LogsSvc:
    @bentohost.api
    def hello(self, name: str = "world") -> dict:
        return {"message": f"Hello, {name}!"}

    @bentohost.api
    def nap(self, seconds: float) -> str:
        time.sleep(seconds)
        return "rested"

    @bentohost.api
    def ticks(self, n: int = 3) -> Generator[str, None, None]:
        for i in range(n):
            yield f"tick {i}\n"

    @bentohost.api
    def rid(self, ctx: bentohost.Context) -> dict:
        return {"id": ctx.request.headers.get("x-request-id"),
                "all": ctx.request.headers.getlist("x-request-id")}

    @bentohost.api
    def own_rid(self, ctx: bentohost.Context) -> str:
        ctx.response.headers["X-Request-ID"] = "set-by-python"
        return "ok"

    @bentohost.api
    def warn(self, text: str) -> str:
        logger.warning("user says %s", text)
        logging.getLogger("bentohost").info("bentohost says %s", text)
        return "ok"

    @bentohost.api
    def shout(self, tag: str, lines: int = 50, width: int = 3000, threads: int = 2) -> int:
        """Prints ``lines`` lines of ``width`` characters from each of ``threads`` threads,
        print() with several arguments so that each line takes several write() calls."""
        index = bentohost.server_context.worker_index

        def run(t: int) -> None:
            for i in range(lines):
                head = f"<{tag}:{index}:{t}:{i}:"
                print(head, "x" * (width - len(head) - 2), ">", sep="")

        workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        return lines * threads
