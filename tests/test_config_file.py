"""BentoML's configuration file (BENTOML_CONFIG, v2 YAML, read and checked in C)
and BENTOML_CONFIG_OVERRIDES, per service, with BentoML's precedence: decorator <
file < overrides < command line; a bad file is one line and a non-zero exit."""

from __future__ import annotations

import json
import re

from conftest import SERVICES

DIAMOND = f"{SERVICES / 'graph_diamond.py'}:Entry"


def _file(tmp_path, text: str):
    p = tmp_path / "bentoml.yaml"
    p.write_text(text)
    return p


def test_file_overrides_and_command_line_in_order(server_factory, tmp_path):
    cfg = _file(tmp_path, "version: 2\nservices:\n  Entry:\n    workers: 3\n  Leaf:\n    workers: 3\n"
                "    traffic:\n      timeout: 7\n")
    srv = server_factory(DIAMOND, "--config", str(cfg))
    srv.wait_all_workers(3)
    log = srv.log()
    assert "service Entry: 3 workers" in log and "service Leaf: 3 workers" in log, log
    srv.kill()

    over = json.dumps({"services.Entry.workers": 1})
    srv = server_factory(DIAMOND, env={"BENTOML_CONFIG": str(cfg), "BENTOML_CONFIG_OVERRIDES": over})
    assert "service Entry: 1 worker," in srv.log() and "service Leaf: 3 workers" in srv.log()
    srv.kill()

    srv = server_factory(DIAMOND, "--config", str(cfg), "--workers", "2")
    srv.wait_all_workers(2)
    assert "service Entry: 2 workers" in srv.log()


def test_bad_file_is_one_line_and_no_worker_starts(server_factory, tmp_path):
    cfg = _file(tmp_path, "version: 2\nservices:\n  Entry:\n    workers: [1, 2\n")
    srv = server_factory(DIAMOND, "--config", str(cfg), wait_ready=False)
    assert srv.proc.wait(20) != 0
    log = srv.log()
    assert re.search(re.escape(str(cfg)) + r":\d+:\d+: ", log), log
    assert "loading" not in log and "Traceback" not in log


def test_wrong_type_names_the_key(server_factory, tmp_path):
    cfg = _file(tmp_path, "version: 2\nservices:\n  Leaf:\n    workers: [1]\n")
    srv = server_factory(DIAMOND, "--config", str(cfg), wait_ready=False)
    assert srv.proc.wait(20) != 0
    assert "services.Leaf.workers" in srv.log()


def test_unknown_key_is_a_warning(server_factory, tmp_path):
    cfg = _file(tmp_path, "version: 2\nservices:\n  Entry:\n    turbo: true\n")
    srv = server_factory(DIAMOND, "--config", str(cfg))
    assert re.search(r"warning: .*services\.Entry\.turbo", srv.log()), srv.log()
