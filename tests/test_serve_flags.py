"""BentoML's `serve` interface end to end (real servers, real HTTP): --api-workers,
--timeout, --arg / --arg-file with bentohost.use_arguments(), BENTOML_PORT /
BENTOML_HOST and the accepted no-op variables, --working-dir, the BentoML flags
bentohost refuses, and a default for every option in --help."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from conftest import REPO, SERVICES, base_env, free_port

ARGS = f"{SERVICES / 'args_svc.py'}:Args"


def run_cli(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bentohost", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env=base_env(env), stdin=subprocess.DEVNULL)


def error_line(p: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in (p.stderr + p.stdout).splitlines() if "error:" in line]
    assert lines, p.stderr + p.stdout
    return lines[0]


# ---- workers and timeout --------------------------------------------------------------------


def test_api_workers_is_workers(server_factory):
    srv = server_factory("basic.py:Basic", "--api-workers", "2")
    assert sorted(srv.wait_all_workers(2)) == [1, 2]
    assert "service Basic: 2 workers" in srv.log()
    srv.kill()
    srv = server_factory("basic.py:Basic", env={"BENTOML_API_WORKERS": "2"})
    assert sorted(srv.wait_all_workers(2)) == [1, 2]


def test_timeout_flag_beats_config(server_factory, tmp_path):
    cfg = tmp_path / "bentoml.yaml"
    cfg.write_text("version: 2\nservices:\n  Basic:\n    traffic:\n      timeout: 30\n")
    srv = server_factory("basic.py:Basic", "--config", str(cfg), "--timeout", "1")
    start = time.monotonic()
    r = srv.post("/sleep", json_body={"seconds": 4})
    took = time.monotonic() - start
    assert r.status_code == 504, r.text
    assert r.json() == {"error": "Not able to process the request in 1.0 seconds"}
    assert 0.8 <= took < 3.0, took
    assert srv.post("/sleep", json_body={"seconds": 0.1}).status_code in (200, 503, 504)


def test_timeout_from_env(server_factory):
    srv = server_factory("basic.py:Basic", env={"BENTOML_TIMEOUT": "1"})
    r = srv.post("/asleep", json_body={"seconds": 4})
    assert r.status_code == 504 and "in 1.0 seconds" in r.text


@pytest.mark.parametrize("flag, value, message", [
    ("--timeout", "0", "--timeout: must be more than 0"),
    ("--api-workers", "0", "--api-workers: must be at least 1"),
])
def test_bad_values_are_usage_errors(flag, value, message):
    p = run_cli("serve", ARGS, flag, value)
    assert p.returncode == 2 and message in p.stderr.replace("argument --workers/", ""), p.stderr


# ---- bento arguments ------------------------------------------------------------------------


def test_arguments_with_a_pydantic_model(server_factory, tmp_path):
    f = tmp_path / "args.yaml"
    f.write_text("model_name: from-file\ngpu: 2\ntags: [a, b]\n")
    srv = server_factory(ARGS, "--arg-file", str(f), "--arg", "gpu=4", env={"ARGS_SCHEMA": "model"})
    assert srv.post("/args").json() == {"type": "ModelArgs", "model_name": "from-file", "gpu": 4,
                                        "tags": ["a", "b"]}


def test_arguments_with_a_dataclass_and_json_file(server_factory, tmp_path):
    f = tmp_path / "args.json"
    f.write_text(json.dumps({"model_name": "m", "gpu": "16"}))
    srv = server_factory(ARGS, "--arg-file", str(f), env={"ARGS_SCHEMA": "dataclass"})
    assert srv.post("/args").json() == {"type": "DataArgs", "model_name": "m", "gpu": 16}


def test_arguments_without_a_schema_are_a_namespace_of_strings(server_factory):
    srv = server_factory(ARGS, "--arg", "a=1", "--arg", "b=x=y", "--arg", "a=2", "--arg", "empty=",
                         "--workers", "2")
    for _ in range(4):  # every worker has them
        assert srv.post("/args").json() == {"type": "SimpleNamespace", "a": "2", "b": "x=y", "empty": ""}


def test_argument_validation_error_is_one_line_and_exits(server_factory):
    srv = server_factory(ARGS, "--arg", "gpu=many", env={"ARGS_SCHEMA": "model"}, wait_ready=False)
    assert srv.wait_exit(30) != 0
    log = srv.log()
    assert "Traceback" not in log, log
    line = error_line(subprocess.CompletedProcess([], 0, log, ""))
    assert "Argument error. Please provide correct arguments via --arg option:" in line, log
    assert "model_name: Field required" in line and "gpu: Input should be a valid integer" in line, line


@pytest.mark.parametrize("args, message", [
    (["--arg", "novalue"], "Invalid argument format: novalue. Must be in the form of key=value"),
    (["--arg-file", "/nonexistent/args.yaml"], "--arg-file /nonexistent/args.yaml: no such file"),
])
def test_argument_usage_errors(args, message):
    p = run_cli("serve", ARGS, *args)
    assert p.returncode == 2 and message in p.stderr, p.stderr


def test_bad_argument_file_is_one_line(server_factory, tmp_path):
    f = tmp_path / "args.yaml"
    f.write_text("a: [1\n")
    srv = server_factory(ARGS, "--arg-file", str(f), wait_ready=False)
    assert srv.wait_exit(30) != 0
    assert f"error: --arg-file {f}:" in srv.log() and "loading" not in srv.log(), srv.log()
    f.write_text("- just\n- a list\n")
    srv = server_factory(ARGS, "--arg-file", str(f), wait_ready=False)
    assert srv.wait_exit(30) != 0
    assert "the top level must be a map, got a list" in srv.log()


def test_use_arguments_outside_a_server(monkeypatch):
    import bentohost
    from bentohost._args import ArgumentsError
    from bentohost.exceptions import InvalidArgument

    monkeypatch.delenv("BENTOHOST_ARGUMENTS", raising=False)
    assert vars(bentohost.use_arguments()) == {}
    monkeypatch.setenv("BENTOHOST_ARGUMENTS", '{"model_name": "x"}')
    from tests.services.args_svc import DataArgs, ModelArgs  # noqa: F401  (import only: the classes)

    assert bentohost.use_arguments(ModelArgs).model_name == "x"
    assert bentohost.use_arguments(DataArgs) == DataArgs(model_name="x", gpu=8)
    monkeypatch.setenv("BENTOHOST_ARGUMENTS", '{"gpu": "x"}')
    with pytest.raises(InvalidArgument) as info:
        bentohost.use_arguments(ModelArgs)
    assert isinstance(info.value, ArgumentsError) and "\n" not in str(info.value)


# ---- environment and working dir ------------------------------------------------------------


def test_bentoml_port_and_host_and_accepted_variables(tmp_path):
    port = free_port()
    env = base_env({"BENTOML_PORT": str(port), "BENTOML_HOST": "127.0.0.1", "BENTOML_DO_NOT_TRACK": "true",
                    "BENTOML_HOME": str(tmp_path / "home")})
    log = open(tmp_path / "srv.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "bentohost", "serve", f"{SERVICES / 'basic.py'}:Basic",
                             "--do-not-track", "--production"], cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "srv.log").read_text()
            try:
                if requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        r = requests.post(f"http://127.0.0.1:{port}/echo", json={"text": "env"}, timeout=10)
        assert r.status_code == 200 and r.text == "env"
        text = (tmp_path / "srv.log").read_text()
        assert f"listening on http://127.0.0.1:{port}" in text, text
        assert "warning: --production is deprecated" in text, text
        assert not (tmp_path / "home").exists()  # nothing kept in BENTOML_HOME
    finally:
        os.killpg(proc.pid, 9)
        proc.wait(10)
        log.close()


def test_bad_bentoml_port_names_the_variable():
    p = run_cli("serve", ARGS, env={"BENTOML_PORT": "http"})
    assert p.returncode == 2 and "BENTOML_PORT" in p.stderr, p.stderr


def test_working_dir(server_factory, tmp_path):
    srv = server_factory("basic:Basic", "--working-dir", str(SERVICES), cwd=tmp_path)
    assert srv.post("/echo", json_body={"text": "wd"}).text == "wd"


# ---- flags bentohost refuses, help ----------------------------------------------------------


@pytest.mark.parametrize("args, flag", [
    (["--env", "conda"], "--env"), (["--verbose"], "--verbose"), (["--debug"], "--debug"), (["-q"], "-q"),
    (["--context", "prod"], "--context"),
])
def test_refused_bentoml_flags_say_why(args, flag):
    p = run_cli("serve", ARGS, *args, timeout=30)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"bentohost: error: {flag} is not supported: "), p.stderr


def test_every_serve_option_has_a_default_in_help():
    from bentohost import cli

    parser = cli._parser()
    serve = next(a for a in parser._actions if isinstance(a, argparse_subparsers())).choices["serve"]
    missing = [a.option_strings or [a.dest] for a in serve._actions
               if not isinstance(a, (cli._Refused,)) and a.dest != "help" and "default" not in (a.help or "")]
    assert missing == [], f"options without a default in --help: {missing}"
    text = run_cli("serve", "--help").stdout
    for opt in ("--api-workers", "--timeout SECONDS", "--arg KEY=VALUE", "--arg-file FILE", "--production",
                "--do-not-track", "--env ENV", "BENTOML_DO_NOT_TRACK", "BENTOML_HOME"):
        assert opt in text, opt


def argparse_subparsers() -> type:
    import argparse

    return argparse._SubParsersAction
