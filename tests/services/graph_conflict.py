"""Two different classes both named Twin in one graph: a clear error at start."""
import bentohost


@bentohost.service(name="Twin")
class TwinA:
    @bentohost.api
    def a(self) -> str:
        return "a"


@bentohost.service(name="Twin")
class TwinB:
    @bentohost.api
    def b(self) -> str:
        return "b"


@bentohost.service
class Conflicted:
    one = bentohost.depends(TwinA)
    two = bentohost.depends(TwinB)

    @bentohost.api
    def c(self) -> str:
        return "c"
