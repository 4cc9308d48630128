"""Entry -> Leaf where Leaf takes 3 s to start: the entry's /readyz waits for it."""
import time

import bentohost


@bentohost.service(workers=1)
class SlowLeaf:
    def __init__(self) -> None:
        time.sleep(3)

    @bentohost.api
    def ping(self) -> str:
        return "pong"


@bentohost.service(workers=1)
class SlowEntry:
    leaf = bentohost.depends(SlowLeaf)

    @bentohost.api
    def ping(self) -> str:
        return "entry"
