"""Imports fine, but every instance creation raises."""

import bentohost


@bentohost.service
class InitFails:
    def __init__(self) -> None:
        raise RuntimeError("init-boom-marker-77e0")

    @bentohost.api
    def f(self) -> str:
        return "never"
