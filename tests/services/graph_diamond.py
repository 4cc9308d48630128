"""A diamond graph: Entry -> Left, Right -> Leaf (Leaf reached twice, one pool)."""
import os

import bentohost


def whoami(name: str) -> dict:
    return {"service": name, "pid": os.getpid(), "worker_index": bentohost.server_context.worker_index}


@bentohost.service(workers=2)
class Leaf:
    @bentohost.api
    def who(self) -> dict:
        return whoami("Leaf")


@bentohost.service(workers=1)
class Left:
    leaf = bentohost.depends(Leaf)

    @bentohost.api
    def who(self) -> dict:
        return whoami("Left")


@bentohost.service(workers=1)
class Right:
    leaf = bentohost.depends(Leaf)

    @bentohost.api
    def who(self) -> dict:
        return whoami("Right")


@bentohost.service(workers=2)
class Entry:
    left = bentohost.depends(Left)
    right = bentohost.depends(Right)

    @bentohost.api
    def who(self) -> dict:
        return whoami("Entry")

    @bentohost.api
    def whoami(self) -> dict:
        return whoami("Entry")
