"""Entry -> Leaf for bentohost_dependency_request_duration_seconds: calls that
succeed, a dependency that raises, and a call that outlives the entry's own
deadline (the client's timeout: a transport error, no HTTP status)."""
import os
import time

import bentohost


@bentohost.service(workers=1, threads=4)
class MetricLeaf:
    @bentohost.api
    def predict(self, x: float) -> float:
        return x * 2

    @bentohost.api
    def boom(self) -> str:
        raise RuntimeError("the leaf failed")

    @bentohost.api
    def sleep(self, seconds: float) -> str:
        time.sleep(seconds)
        return "late"


@bentohost.service(workers=2, traffic={"timeout": 1.5})
class MetricEntry:
    leaf = bentohost.depends(MetricLeaf)

    @bentohost.api
    def whoami(self) -> dict:
        return {"worker_index": bentohost.server_context.worker_index, "pid": os.getpid()}

    @bentohost.api
    def predict(self, x: float) -> list:
        return [bentohost.server_context.worker_index, self.leaf.predict(x=x)]

    @bentohost.api
    def boom(self) -> str:
        return self.leaf.boom()

    @bentohost.api
    def late(self, seconds: float) -> str:
        return self.leaf.sleep(seconds=seconds)
