"""A service whose __init__ takes a while (model loading)."""

import os
import time

import bentohost


@bentohost.service
class SlowInit:
    def __init__(self) -> None:
        time.sleep(float(os.environ.get("SLOW_INIT_SECONDS", "3")))
        self.loaded = True

    @bentohost.api
    def ping(self) -> str:
        return "pong" if self.loaded else "not loaded"
