"""A service whose __init__ takes a while (model loading); SLOW_INIT_ONLY_WORKER
makes only that worker index slow, and /whoami says which worker answered."""

import os
import time

import bentohost


@bentohost.service
class SlowInit:
    def __init__(self) -> None:
        only = os.environ.get("SLOW_INIT_ONLY_WORKER")
        if only is None or int(only) == bentohost.server_context.worker_index:
            time.sleep(float(os.environ.get("SLOW_INIT_SECONDS", "3")))
        self.loaded = True

    @bentohost.api
    def ping(self) -> str:
        return "pong" if self.loaded else "not loaded"

    @bentohost.api
    def whoami(self) -> dict:
        return {"worker_index": bentohost.server_context.worker_index, "pid": os.getpid()}
