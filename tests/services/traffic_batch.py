"""Batchable APIs. Each batch the functions receive is recorded (in memory, per worker)."""

from __future__ import annotations

import os
import time

import numpy as np

import bentohost

BATCH_SLEEP = float(os.environ.get("BATCH_SLEEP", "0.05"))


@bentohost.service
class Batcher:
    def __init__(self) -> None:
        self.sizes: dict[str, list[int]] = {"predict": [], "predict1": [], "double": [], "overload": []}

    @bentohost.api(batchable=True, max_batch_size=8, max_latency_ms=1000)
    def predict(self, x: np.ndarray) -> np.ndarray:
        self.sizes["predict"].append(int(x.shape[0]))
        time.sleep(BATCH_SLEEP)
        return x * 2 + 1

    @bentohost.api(batchable=True, max_batch_size=1, max_latency_ms=1000)
    def predict1(self, x: np.ndarray) -> np.ndarray:
        self.sizes["predict1"].append(int(x.shape[0]))
        time.sleep(0.01)
        return x * 2 + 1

    @bentohost.api(batchable=True, max_batch_size=8, max_latency_ms=1000)
    def double(self, xs: list[int]) -> list[int]:
        self.sizes["double"].append(len(xs))
        time.sleep(BATCH_SLEEP)
        return [2 * v for v in xs]

    @bentohost.api(batchable=True, max_batch_size=4, max_latency_ms=50)
    def overload(self, x: np.ndarray) -> np.ndarray:
        # far slower than max_latency_ms: under load, queued requests cannot make it
        self.sizes["overload"].append(int(x.shape[0]))
        time.sleep(0.3)
        return x * 2 + 1

    @bentohost.api(batchable=True, max_batch_size=8, max_latency_ms=1000)
    def explode(self, xs: list[int]) -> list[int]:
        time.sleep(BATCH_SLEEP)
        raise ValueError("batch-explode-marker")

    @bentohost.api(batchable=True, max_batch_size=8, max_latency_ms=1000)
    def short(self, xs: list[int]) -> list[int]:
        time.sleep(BATCH_SLEEP)
        return [2 * v for v in xs][:-1]  # one output too few: it cannot be split back

    @bentohost.api
    def sizes_seen(self) -> dict:
        return self.sizes

    @bentohost.api
    def whoami(self) -> dict:
        return {"worker_index": bentohost.server_context.worker_index, "pid": os.getpid()}
