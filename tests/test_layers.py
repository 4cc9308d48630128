"""csrc/ keeps its layers: includes and calls only go downward, the Python room
is reached through its door, the supervisor never sees CPython or libuv, and no
file grows past the size limit (rules in tests/layers.py)."""

import layers


def test_csrc_layers_have_no_upward_include_or_call():
    problems = layers.check()
    assert not problems, "\n".join(problems)


def test_checker_catches_an_upward_call(monkeypatch):
    real = layers._sources

    def with_violation():
        files = real()
        files["traffic/limiter.c"] += "\nstatic void bad(void) { bh_http_reject(0, 0); }\n"
        files["common/log.c"] += '\n#include "server/router.h"\n'
        return files

    monkeypatch.setattr(layers, "_sources", with_violation)
    problems = "\n".join(layers.check())
    assert "traffic/limiter.c: uses bh_http_reject from server/stream.c" in problems
    assert "common/log.c: includes server/router.h, which is in a higher layer" in problems
