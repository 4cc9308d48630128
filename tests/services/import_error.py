"""Deliberately broken: raises while being imported."""

import bentohost

raise RuntimeError("import-boom-marker-5c2a")


@bentohost.service
class Broken:
    @bentohost.api
    def f(self) -> str:
        return "never"
