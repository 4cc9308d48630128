"""--reload (development): the supervisor watches the service's directory with inotify
and does a rolling restart after a burst of saves; a save that breaks the import keeps
the old workers serving and prints the error once; .bentoignore'd files are not
watched; the listening socket never closes meanwhile."""

from __future__ import annotations

import time

from conftest import wait_for
from loadgen import ReadyPoller

TEMPLATE = '''
import bentohost
{extra}

@bentohost.service
class Versioned:
    @bentohost.api
    def version(self) -> str:
        return "{version}"
'''


def _write(path, version: str, extra: str = "") -> None:
    # a temporary file renamed over the old one, as many editors save
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(TEMPLATE.format(version=version, extra=extra))
    tmp.replace(path)


def _version(srv) -> str:
    return srv.post("/version", {}, timeout=10).text


def _reloads(srv) -> int:
    return sum(1 for line in srv.log().splitlines() if "restart (reload: " in line and "): replacing" in line)


def _serve(server_factory, tmp_path, *args):
    svc = tmp_path / "app" / "service.py"
    svc.parent.mkdir()
    _write(svc, "v1")
    srv = server_factory(f"{svc}:Versioned", "--workers", "1", "--reload", *args)
    wait_for(lambda: "reload: watching" in srv.log(), 10, what="the watcher to start")
    assert _version(srv) == "v1"
    return srv, svc


def test_edit_takes_over_and_a_broken_save_keeps_the_old_code(server_factory, tmp_path):
    srv, svc = _serve(server_factory, tmp_path)
    ready = ReadyPoller(srv.host, srv.port).start()
    try:
        _write(svc, "v2")
        wait_for(lambda: _version(srv) == "v2", 15, what="the new code to answer")

        _write(svc, "v3", extra="def broken(:")  # a syntax error
        wait_for(lambda: "restart aborted" in srv.log(), 15, what="the broken save to be refused")
        for _ in range(10):
            assert _version(srv) == "v2"
        time.sleep(1.0)
        log = srv.log()
        assert log.count("SyntaxError") == 1, log
        assert log.count("restart aborted") == 1, log

        _write(svc, "v4")
        wait_for(lambda: _version(srv) == "v4", 15, what="the fixed code to answer")
    finally:
        ready.stop()
    # the socket stayed open and some worker was ready all along
    assert ready.statuses and not ready.not_ready(), ready.not_ready()[:10]
    assert "reload: service.py changed" in srv.log()


def test_a_burst_of_saves_is_one_restart(server_factory, tmp_path):
    srv, svc = _serve(server_factory, tmp_path)
    for i in range(10):
        _write(svc, f"burst{i}")
        time.sleep(0.02)
    wait_for(lambda: _version(srv) == "burst9", 15, what="the last save to answer")
    time.sleep(1.5)
    assert _reloads(srv) == 1, srv.log()


def test_bentoignored_and_other_files_do_not_restart(server_factory, tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    (app / ".bentoignore").write_text("# scratch work\nscratch_*.py\nnotebooks/\n/data/*.py\n")
    (app / "notebooks").mkdir()
    (app / "data").mkdir()
    (app / "pkg").mkdir()
    svc = app / "service.py"
    _write(svc, "v1")
    srv = server_factory(f"{svc}:Versioned", "--workers", "1", "--reload")
    wait_for(lambda: "reload: watching" in srv.log(), 10, what="the watcher to start")
    (app / "scratch_1.py").write_text("x = 1\n")
    (app / "notebooks" / "try.py").write_text("x = 1\n")
    (app / "data" / "gen.py").write_text("x = 1\n")
    (app / "notes.txt").write_text("not python\n")
    (app / "__pycache__").mkdir(exist_ok=True)
    (app / "__pycache__" / "x.py").write_text("x = 1\n")
    time.sleep(1.5)
    assert _reloads(srv) == 0, srv.log()
    # a module in a subdirectory does count
    (app / "pkg" / "helpers.py").write_text("x = 2\n")
    wait_for(lambda: _reloads(srv) == 1, 10, what="a restart for pkg/helpers.py")
    assert "reload: pkg/helpers.py changed" in srv.log()


def test_reload_dir_and_config_file_are_watched(server_factory, tmp_path):
    extra = tmp_path / "shared"
    extra.mkdir()
    config = tmp_path / "bentoml.yaml"
    config.write_text("version: 2\nservices:\n  Versioned:\n    traffic:\n      timeout: 30\n")
    srv, svc = _serve(server_factory, tmp_path, "--reload-dir", str(extra), "--config", str(config))
    (extra / "lib.py").write_text("x = 1\n")
    wait_for(lambda: _reloads(srv) == 1, 10, what="a restart for the --reload-dir")
    wait_for(lambda: "restart (reload: lib.py changed) done" in srv.log(), 20, what="that restart")
    config.write_text("version: 2\nservices:\n  Versioned:\n    traffic:\n      timeout: 20\n")
    wait_for(lambda: _reloads(srv) == 2, 10, what="a restart for the config file")
    wait_for(lambda: "bentoml.yaml changed) done" in srv.log(), 20, what="that restart")
    # a broken configuration file: no restart, the workers keep serving
    config.write_text("version: 2\nservices:\n  Versioned:\n    traffic: [1, 2\n")
    wait_for(lambda: "the configuration file has errors" in srv.log(), 10, what="the broken file to be refused")
    assert _version(srv) == "v1"
