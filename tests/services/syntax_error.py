"""Deliberately broken: a syntax error (used by the start-up failure test)."""

import bentohost


@bentohost.service
class Broken:
    @bentohost.api
    def f(self) -> str
        return "never"
