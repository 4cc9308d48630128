"""The command line of graphs across transports: ``--no-uds`` / BENTOML_NO_UDS and
``--graph-secret-file`` / BENTOHOST_GRAPH_SECRET."""

from __future__ import annotations

import argparse

import pytest

from bentohost import cli


@pytest.mark.parametrize("value,expected", [
    (None, False), ("", False), ("0", False), ("false", False), ("No", False), ("off", False),
    ("1", True), ("true", True), ("yes", True), ("anything", True),
])
def test_env_flag(value, expected):
    assert cli.env_flag(value) is expected


def _args(*argv: str) -> argparse.Namespace:
    return cli._parser().parse_args(["serve", "svc.py:Svc", *argv])


def test_no_uds_reaches_the_host():
    assert "--no-uds" in cli.build_host_argv("host", _args("--no-uds"))
    assert "--no-uds" not in cli.build_host_argv("host", _args())


def test_graph_secret_sources(tmp_path):
    path = tmp_path / "s"
    path.write_text("  a secret of twenty chars \n")
    assert cli.graph_secret(str(path), "from the environment, ignored") == "a secret of twenty chars"
    assert cli.graph_secret(None, "sixteen chars ok") == "sixteen chars ok"
    assert cli.graph_secret(None, None) is None
    path.write_bytes(b"\xff" * 20)
    with pytest.raises(ValueError, match="UTF-8"):
        cli.graph_secret(str(path), None)
    with pytest.raises(ValueError, match="BENTOHOST_GRAPH_SECRET: the secret is too short"):
        cli.graph_secret(None, "short")
