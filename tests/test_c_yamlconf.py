"""BentoML's configuration file in C (csrc/common/yamlconf.c): tests/c/test_yamlconf.c
is built here twice, plain and under AddressSanitizer + UBSan (LeakSanitizer on),
and run on YAML files written into a temporary directory; it prints the JSON that
bh_yamlconf_load produced, or its error, and the assertions are made here.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bentohost import _overrides

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
CFLAGS = ["-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror", "-g", f"-I{CSRC}"]
SANITIZE = ["-O1", "-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined"]
SOURCES = [str(ROOT / "tests" / "c" / "test_yamlconf.c"), str(CSRC / "common" / "yamlconf.c"),
           str(CSRC / "common" / "yaml.c")]


def _missing() -> str | None:
    if shutil.which("gcc") is None:
        return "gcc not found"
    for header in ("yaml.h", "cjson/cJSON.h"):
        if not (Path("/usr/include") / header).exists():
            return f"<{header}> not found"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=_missing() or "")


class Prog:
    def __init__(self, path: Path, sanitized: bool) -> None:
        self.path = path
        self.sanitized = sanitized
        self.env = dict(os.environ)
        if sanitized:
            self.env["ASAN_OPTIONS"] = "detect_leaks=1:halt_on_error=1:exitcode=99"
            self.env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1:exitcode=98"

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([str(self.path), *args], check=False, capture_output=True, text=True, env=self.env,
                           timeout=120)
        assert r.returncode in (0, 1), f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
        assert "Sanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr
        return r

    def load(self, file: Path | str, overrides: str | None = None, mode: str = "load") -> dict[str, Any]:
        args = [mode, str(file)] + ([overrides] if overrides is not None else [])
        out: dict[str, Any] = json.loads(self.run(*args).stdout)
        assert "outputs_left_set" not in out, out
        return out


@pytest.fixture(scope="module", params=["plain", "asan"])
def prog(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Prog:
    out = tmp_path_factory.mktemp("yamlconf") / f"test_yamlconf-{request.param}"
    flags = SANITIZE if request.param == "asan" else ["-O2"]
    wrap = ["-Wl,--wrap=malloc", "-Wl,--wrap=strdup"]  # for the failing allocations of `oom`
    cmd = ["gcc", *CFLAGS, *flags, *SOURCES, "-lyaml", "-lcjson", *wrap, "-o", str(out)]
    r = subprocess.run(cmd, check=False, capture_output=True, text=True)
    assert r.returncode == 0, " ".join(cmd) + "\n" + r.stdout + r.stderr
    return Prog(out, request.param == "asan")


Write = Callable[..., Path]


@pytest.fixture
def write(tmp_path: Path) -> Write:
    def write(text: str | bytes, name: str = "bentoml.yaml") -> Path:
        path = tmp_path / name
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        return path

    return write


def ok(prog: Prog, file: Path | str, overrides: str | None = None) -> tuple[dict[str, Any], list[str]]:
    out = prog.load(file, overrides)
    assert out["rc"] == 0, out
    return out["config"], out["warnings"]


def error(prog: Prog, file: Path | str, overrides: str | None = None, rc: int = -errno.EINVAL) -> str:
    out = prog.load(file, overrides)
    assert out["rc"] == rc, out
    message: str = out["error"]
    return message


SAMPLE = """\
version: 2
services:
  # global defaults: BentoML's global keys written directly under services:
  traffic: {timeout: 120}
  workers: 2
  resources: {cpu: "1"}
  Preprocessing:            # any other key is a service name
    workers: 4
    resources: {gpu: 0.5}
    traffic: {timeout: 30, max_concurrency: 64}
    runner_connection: {max_requests: 1000, max_age: 600.0}
  IrisClassifier:
    workers: cpu_count
    threads: 8
    resources: {gpu: 1, cpu: 400m, memory: 1Gi}
    envs:
      - name: MODEL
        value: iris
  Bare:
"""


# ---- defaults vs services -------------------------------------------------------------


def test_defaults_and_services_are_split(prog: Prog, write: Write) -> None:
    cfg, warnings = ok(prog, write(SAMPLE))
    assert warnings == []
    assert cfg["defaults"] == {"traffic": {"timeout": 120}, "workers": 2, "resources": {"cpu": "1"}}
    assert cfg["services"] == {
        "Preprocessing": {
            "workers": 4,
            "resources": {"gpu": 0.5},
            "traffic": {"timeout": 30, "max_concurrency": 64},
            "runner_connection": {"max_requests": 1000, "max_age": 600},
        },
        "IrisClassifier": {
            "workers": "cpu_count",
            "threads": 8,
            "resources": {"gpu": 1, "cpu": "400m", "memory": "1Gi"},
            "envs": [{"name": "MODEL", "value": "iris"}],
        },
        "Bare": {},
    }


@pytest.mark.parametrize(
    "key", ["batching", "resources", "workers", "traffic", "backlog", "max_runner_connections", "logging",
            "metrics", "http", "grpc", "ssl", "runner_probe", "monitoring", "tracing"],
)
def test_every_global_key_is_a_default(prog: Prog, write: Write, key: str) -> None:
    value = "3" if key in ("workers", "backlog", "max_runner_connections") else "{}"
    cfg, _ = ok(prog, write(f"version: 2\nservices:\n  {key}: {value}\n"))
    assert key in cfg["defaults"] and cfg["services"] == {}


@pytest.mark.parametrize("key,value", [("threads", "4"), ("envs", "[]"), ("runner_connection", "1")])
def test_a_per_service_key_under_services_reads_as_a_service(prog: Prog, write: Write, key: str, value: str) -> None:
    """BentoML's rule: only its global keys are defaults; threads, envs, ... name a
    service there, and a service's settings must be a map."""
    message = error(prog, write(f"version: 2\nservices:\n  {key}: {value}\n"))
    assert message.startswith(f"services.{key}: expected a map of that service's settings, got ")
    assert f"({key} is no default for all services: set it under services.<Name>)" in message


def test_a_map_under_a_per_service_key_name_is_a_service(prog: Prog, write: Write) -> None:
    cfg, _ = ok(prog, write("version: 2\nservices:\n  runner_connection: {workers: 2}\n"))
    assert cfg == {"defaults": {}, "services": {"runner_connection": {"workers": 2}}}


def test_services_must_be_a_map(prog: Prog, write: Write) -> None:
    assert error(prog, write("version: 2\nservices: [1]\n")) == "services: expected a map, got a list"
    cfg, _ = ok(prog, write("version: 2\nservices:\n"))
    assert cfg == {"defaults": {}, "services": {}}
    assert error(prog, write("version: 2\nservices:\n  M: 3\n")) == (
        "services.M: expected a map of that service's settings, got 3"
    )


# ---- BENTOML_CONFIG_OVERRIDES ---------------------------------------------------------


def test_overrides_by_dotted_path(prog: Prog, write: Write) -> None:
    path = write(SAMPLE)
    cfg, _ = ok(prog, path, json.dumps({
        "services.Preprocessing.workers": 8,
        "services.Preprocessing.traffic.timeout": 5,
        "services.traffic.max_concurrency": 3,
        "services.New.threads": 2,
    }))
    assert cfg["services"]["Preprocessing"]["workers"] == 8
    # maps merge: the file's max_concurrency stays
    assert cfg["services"]["Preprocessing"]["traffic"] == {"timeout": 5, "max_concurrency": 64}
    assert cfg["defaults"]["traffic"] == {"timeout": 120, "max_concurrency": 3}
    assert cfg["services"]["New"] == {"threads": 2}


def test_overrides_as_nested_objects(prog: Prog, write: Write) -> None:
    cfg, _ = ok(prog, write(SAMPLE), json.dumps({
        "services": {"IrisClassifier": {"resources": {"gpu": 2}, "envs": [{"name": "X", "value": "y"}]},
                     "workers": 6},
    }))
    iris = cfg["services"]["IrisClassifier"]
    assert iris["resources"] == {"gpu": 2, "cpu": "400m", "memory": "1Gi"}
    assert iris["envs"] == [{"name": "X", "value": "y"}]  # lists replace
    assert cfg["defaults"]["workers"] == 6


def test_overrides_replace_scalars_on_the_way_and_apply_in_order(prog: Prog, write: Write) -> None:
    cfg, _ = ok(prog, write("version: 2\nservices:\n  M: {traffic: 5}\n"),
                '{"services.M.traffic": null, "services.M.traffic.timeout": 9}')
    assert cfg["services"]["M"]["traffic"] == {"timeout": 9}


def test_overrides_without_a_file(prog: Prog) -> None:
    cfg, warnings = ok(prog, "-", '{"services.M.workers": 2, "version": 2}')
    assert cfg == {"defaults": {}, "services": {"M": {"workers": 2}}} and warnings == []


def test_overrides_are_checked_like_the_file(prog: Prog, write: Write) -> None:
    assert error(prog, write(SAMPLE), '{"services.Preprocessing.workers": "many"}') == (
        'services.Preprocessing.workers: expected an integer >= 1, "cpu_count" or "gpu_count", got "many"'
    )
    _, warnings = ok(prog, write(SAMPLE), '{"services.Preprocessing.turbo": true, "api_server": {}}')
    assert "services.Preprocessing.turbo: unknown key, ignored" in warnings
    assert "api_server: unknown key, ignored" in warnings
    assert error(prog, "-", '{"version": 1}') == "version: expected 2, got 1"


@pytest.mark.parametrize(
    "overrides,message",
    [
        ("{bad", "BENTOML_CONFIG_OVERRIDES: not valid JSON (near byte 2)"),
        ('{"a": 1} trailing', "BENTOML_CONFIG_OVERRIDES: not valid JSON (near byte 9)"),
        ("[1, 2]", "BENTOML_CONFIG_OVERRIDES: expected a JSON object, got a list"),
        ("3", "BENTOML_CONFIG_OVERRIDES: expected a JSON object, got 3"),
        ('{"services..M": 1}', 'BENTOML_CONFIG_OVERRIDES: "services..M" is not a dotted path of keys'),
        ('{".services": 1}', 'BENTOML_CONFIG_OVERRIDES: ".services" is not a dotted path of keys'),
        ('{"services.": 1}', 'BENTOML_CONFIG_OVERRIDES: "services." is not a dotted path of keys'),
        ('{"": 1}', 'BENTOML_CONFIG_OVERRIDES: "" is not a dotted path of keys'),
        ('{"services": 4}', "services: expected a map, got 4"),
    ],
)
def test_bad_overrides(prog: Prog, write: Write, overrides: str, message: str) -> None:
    assert error(prog, write(SAMPLE), overrides) == message


def test_overrides_nested_too_deep(prog: Prog, write: Write) -> None:
    deep = "services.M.logging" + "".join(f".k{i}" for i in range(61))  # 64 maps: the limit
    ok(prog, "-", json.dumps({deep: 1}))
    message = error(prog, "-", json.dumps({deep + ".one_more": 1}))
    assert message == "BENTOML_CONFIG_OVERRIDES: the configuration is nested deeper than 64 levels"
    error(prog, "-", '{"a": ' + "[" * 900 + "]" * 900 + "}")


# ---- types -------------------------------------------------------------------------


def _service(body: str) -> str:
    return "version: 2\nservices:\n  M:\n" + "".join(f"    {line}\n" for line in body.splitlines())


INT1 = 'expected an integer >= 1'
WORKERS = 'expected an integer >= 1, "cpu_count" or "gpu_count"'

TYPE_ERRORS = [
    ("workers: [1]", f"services.M.workers: {WORKERS}, got a list"),
    ("workers: {a: 1}", f"services.M.workers: {WORKERS}, got a map"),
    ("workers: 0", f"services.M.workers: {WORKERS}, got 0"),
    ("workers: -2", f"services.M.workers: {WORKERS}, got -2"),
    ("workers: 1.5", f"services.M.workers: {WORKERS}, got 1.5"),
    ('workers: "4"', f'services.M.workers: {WORKERS}, got "4"'),
    ("workers: yes", f"services.M.workers: {WORKERS}, got true"),
    ("workers: ~", f"services.M.workers: {WORKERS}, got null"),
    ("workers: cpu", f'services.M.workers: {WORKERS}, got "cpu"'),
    ("workers: 3000000000", f"services.M.workers: {WORKERS}, got 3000000000"),
    ("threads: 0", f"services.M.threads: {INT1}, got 0"),
    ("threads: cpu_count", f'services.M.threads: {INT1}, got "cpu_count"'),
    ("threads: 2.5", f"services.M.threads: {INT1}, got 2.5"),
    ("traffic: 5", "services.M.traffic: expected a map, got 5"),
    ("traffic: [timeout]", "services.M.traffic: expected a map, got a list"),
    ("traffic: {timeout: 0}", "services.M.traffic.timeout: expected a number > 0, got 0"),
    ("traffic: {timeout: -1.5}", "services.M.traffic.timeout: expected a number > 0, got -1.5"),
    ('traffic: {timeout: "30"}', 'services.M.traffic.timeout: expected a number > 0, got "30"'),
    ("traffic: {timeout: .inf}", 'services.M.traffic.timeout: expected a number > 0, got ".inf"'),
    ("traffic: {max_concurrency: -1}", "services.M.traffic.max_concurrency: expected an integer >= 0, got -1"),
    ("traffic: {max_concurrency: 1.5}", "services.M.traffic.max_concurrency: expected an integer >= 0, got 1.5"),
    ("traffic: {max_concurrency: on}", "services.M.traffic.max_concurrency: expected an integer >= 0, got true"),
    ("traffic: {concurrency: many}", 'services.M.traffic.concurrency: expected an integer >= 0, got "many"'),
    ("traffic: {external_queue: 1}", "services.M.traffic.external_queue: expected true or false, got 1"),
    ("resources: [gpu]", "services.M.resources: expected a map, got a list"),
    ("resources: {gpu: -1}", "services.M.resources.gpu: expected a number >= 0, got -1"),
    ('resources: {gpu: "1"}', 'services.M.resources.gpu: expected a number >= 0, got "1"'),
    ("resources: {cpu: [1]}", "services.M.resources.cpu: expected a string or a number >= 0, got a list"),
    ("resources: {memory: {a: 1}}", "services.M.resources.memory: expected a string or a number >= 0, got a map"),
    ("resources: {memory: true}", "services.M.resources.memory: expected a string or a number >= 0, got true"),
    ("envs: {A: b}", "services.M.envs: expected a list of {name, value} maps, got a map"),
    ("envs: A=b", 'services.M.envs: expected a list of {name, value} maps, got "A=b"'),
    ("envs: [1]", "services.M.envs[0]: expected a map with a name and a value, got 1"),
    ("envs: [{name: A}, {value: b}]", "services.M.envs[1].name: expected a non-empty string, got nothing"),
    ('envs: [{name: ""}]', 'services.M.envs[0].name: expected a non-empty string, got ""'),
    ("envs: [{name: 5}]", "services.M.envs[0].name: expected a non-empty string, got 5"),
    ("envs: [{name: A, value: 1}]", "services.M.envs[0].value: expected a string, got 1"),
    ("envs: [{name: A, value: [x]}]", "services.M.envs[0].value: expected a string, got a list"),
    ("batching: 1", "services.M.batching: expected a map, got 1"),
    ("http: [1]", "services.M.http: expected a map, got a list"),
    ('ssl: "on"', 'services.M.ssl: expected a map, got "on"'),
    ("logging: true", "services.M.logging: expected a map, got true"),
    ("metrics: 1", "services.M.metrics: expected a map, got 1"),
    ("runner_probe: 1", "services.M.runner_probe: expected a map, got 1"),
    ("tracing: x", 'services.M.tracing: expected a map, got "x"'),
    ("monitoring: []", "services.M.monitoring: expected a map, got a list"),
    ("backlog: 0", f"services.M.backlog: {INT1}, got 0"),
]


@pytest.mark.parametrize("body,message", TYPE_ERRORS, ids=[b for b, _ in TYPE_ERRORS])
def test_type_errors_name_the_key_path(prog: Prog, write: Write, body: str, message: str) -> None:
    assert error(prog, write(_service(body))) == message


@pytest.mark.parametrize(
    "body,message",
    [
        ("workers: 0", f"services.workers: {WORKERS}, got 0"),
        ("traffic: {timeout: x}", 'services.traffic.timeout: expected a number > 0, got "x"'),
        ("resources: 1", "services.resources: expected a map, got 1"),
        ("logging: []", "services.logging: expected a map, got a list"),
    ],
)
def test_type_errors_in_defaults(prog: Prog, write: Write, body: str, message: str) -> None:
    assert error(prog, write(f"version: 2\nservices:\n  {body}\n")) == message


def test_accepted_values(prog: Prog, write: Write) -> None:
    cfg, warnings = ok(prog, write(_service(
        "workers: 1\n"
        "threads: 0x10\n"
        "traffic: {timeout: 2.5, max_concurrency: 0, concurrency: ~, external_queue: no}\n"
        "resources: {gpu: 0, cpu: 2, memory: 512Mi, gpu_type: nvidia-l4}\n"
        "envs: [{name: A, value: ''}, {name: B}]\n"
        "batching: {enabled: true, max_batch_size: 8}\n"
        "http: {cors: {enabled: yes, access_control_allow_origins: ['*']}}\n"
        "ssl: {enabled: false}\n"
        "logging: {access: {enabled: off}}\n"
        "metrics: {namespace: x}\n"
        "runner_probe: {enabled: true, timeout: 1, period: 10}\n"
        "tracing: {exporter_type: zipkin, sample_rate: 0.5}\n"
        "monitoring: {enabled: true, options: {log_path: monitoring}}\n"
        "grpc: {}\n"
        "endpoints: {livez: /livez}\n"
        "extra_ports: [3001]\n"
        "replicate_process: true\n"
        "backlog: 128\n"
        "max_runner_connections: 4\n"
    )))
    assert warnings == []
    m = cfg["services"]["M"]
    assert m["threads"] == 16
    assert m["traffic"] == {"timeout": 2.5, "max_concurrency": 0, "concurrency": None, "external_queue": False}
    assert m["resources"] == {"gpu": 0, "cpu": 2, "memory": "512Mi", "gpu_type": "nvidia-l4"}
    assert m["envs"] == [{"name": "A", "value": ""}, {"name": "B"}]
    assert m["http"] == {"cors": {"enabled": True, "access_control_allow_origins": ["*"]}}
    assert m["logging"] == {"access": {"enabled": False}}
    assert m["monitoring"] == {"enabled": True, "options": {"log_path": "monitoring"}}
    assert m["extra_ports"] == [3001] and m["replicate_process"] is True


def test_yaml_scalars_keep_their_types(prog: Prog, write: Write) -> None:
    """Plain scalars as YAML 1.1 (PyYAML's safe_load) reads them; quoted ones stay strings."""
    cfg, _ = ok(prog, write(_service(
        "logging:\n"
        "  bools: [true, True, TRUE, yes, Yes, YES, on, On, ON, false, False, FALSE, no, No, NO, off, Off, OFF]\n"
        "  not_bools: [y, n, yES, 'yes', \"true\"]\n"
        "  nulls: [~, null, Null, NULL, '', 'null']\n"
        "  empty:\n"
        "  ints: [0, 7, -7, +7, 1_000, 0x1F, 0b101, 017, -0x10, 010]\n"
        "  floats: [1.5, -0.5, .5, 2., 1e3, 1.5E-2, 1_000.5, +1.0]\n"
        "  strings: [09, 1.2.3, 0x, 1e, .inf, -.inf, .nan, 0o17, 12:30, abc, '5', \"6\", !!str 7]\n"
        "  tagged: [!!int '8', !!float '9', !!float 1.25, !!bool 'yes', !!null '~']\n"
        "  text: |\n"
        "    two\n"
        "    lines\n"
        "  folded: >-\n"
        "    one\n"
        "    line\n"
        "  unicode: \"caf\\u00e9 \\U0001F600\"\n"
    )))
    lg = cfg["services"]["M"]["logging"]
    assert lg["bools"] == [True] * 9 + [False] * 9
    assert lg["not_bools"] == ["y", "n", "yES", "yes", "true"]
    assert lg["nulls"] == [None, None, None, None, "", "null"]
    assert lg["empty"] is None
    assert lg["ints"] == [0, 7, -7, 7, 1000, 31, 5, 15, -16, 8]
    assert lg["floats"] == [1.5, -0.5, 0.5, 2.0, 1000.0, 0.015, 1000.5, 1.0]
    assert lg["strings"] == ["09", "1.2.3", "0x", "1e", ".inf", "-.inf", ".nan", "0o17", "12:30", "abc", "5", "6", "7"]
    assert lg["tagged"] == [8, 9.0, 1.25, True, None]
    assert lg["text"] == "two\nlines\n" and lg["folded"] == "one line"
    assert lg["unicode"] == "caf\u00e9 \U0001F600"


@pytest.mark.parametrize(
    "text,message",
    [
        ("a: !!int 1.5\n", '1:4: cannot read "1.5" as tag:yaml.org,2002:int'),
        ("a: !!bool maybe\n", '1:4: cannot read "maybe" as tag:yaml.org,2002:bool'),
        ("a: !custom x\n", '1:4: cannot read "x" as !custom'),
        ("a: !!set {x}\n", "1:4: unsupported tag tag:yaml.org,2002:set"),
    ],
)
def test_bad_tags(prog: Prog, write: Write, text: str, message: str) -> None:
    path = write(text)
    assert error(prog, path) == f"{path}:{message}"


def test_anchors_and_aliases(prog: Prog, write: Write) -> None:
    cfg, _ = ok(prog, write(
        "version: 2\n"
        "services:\n"
        "  A: &common\n"
        "    workers: &n 3\n"
        "    resources: {gpu: 1}\n"
        "  B: *common\n"
        "  C:\n"
        "    workers: *n\n"
    ))
    assert cfg["services"]["A"] == cfg["services"]["B"] == {"workers": 3, "resources": {"gpu": 1}}
    assert cfg["services"]["C"] == {"workers": 3}


@pytest.mark.parametrize(
    "text,message",
    [
        ("a: *nothing\n", "1:4: *nothing names no anchor that closed before it"),
        ("a: &x [1, *x]\n", "1:11: *x names no anchor that closed before it"),
        ("a: &x 1\n*x : 2\n", "2:1: an alias as a map key is not supported"),
        ("<<: {a: 1}\n", "1:1: merge keys (<<) are not supported"),
        ("? [a]\n: 1\n", "1:3: a map or a list as a map key is not supported"),
        ('a: "x\\0y"\n', "1:4: a NUL character in a scalar is not supported"),
    ],
)
def test_unsupported_yaml(prog: Prog, write: Write, text: str, message: str) -> None:
    path = write(text)
    assert error(prog, path) == f"{path}:{message}"


def test_alias_bomb_is_bounded(prog: Prog, write: Write) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    message = error(prog, write("\n".join(lines) + "\n"))
    assert message.endswith("aliases expand to more than 100000 values"), message


def test_alias_cannot_nest_past_the_limit(prog: Prog, write: Write) -> None:
    deep = "[" * 40 + "]" * 40
    text = f"a: &deep {deep}\nb: " + "[" * 30 + "*deep" + "]" * 30 + "\n"
    assert error(prog, write(text)).endswith("nested deeper than 64 levels")


# ---- unknown keys ----------------------------------------------------------------------


def test_unknown_keys_warn_and_are_left_out(prog: Prog, write: Write) -> None:
    cfg, warnings = ok(prog, write(
        "version: 2\n"
        "api_server: {port: 1}\n"
        "services:\n"
        "  M:\n"
        "    workers: 1\n"
        "    turbo: true\n"
        "    traffic: {timeout: 1, retries: 3}\n"
        "    resources: {gpu: 1, tpu: 2}\n"
        "    envs: [{name: A, value: b, secret: true}]\n"
        "  traffic: {timeout: 5, burst: 1}\n"
    ))
    assert warnings == [
        "api_server: unknown key, ignored",
        "services.M.turbo: unknown key, ignored",
        "services.M.traffic.retries: unknown key, ignored",
        "services.M.resources.tpu: unknown key, ignored",
        "services.M.envs[0].secret: unknown key, ignored",
        "services.traffic.burst: unknown key, ignored",
    ]
    assert cfg == {
        "defaults": {"traffic": {"timeout": 5}},
        "services": {"M": {"workers": 1, "traffic": {"timeout": 1}, "resources": {"gpu": 1},
                           "envs": [{"name": "A", "value": "b"}]}},
    }


def test_duplicate_keys_warn_and_the_later_wins(prog: Prog, write: Write) -> None:
    path = write(_service("workers: 1\nthreads: 2\nworkers: 3\n"))
    cfg, warnings = ok(prog, path)
    assert cfg["services"]["M"] == {"threads": 2, "workers": 3}
    assert warnings == [f'{path}:6:5: duplicate key "workers": the later value wins']


def test_duplicate_keys_and_aliases(prog: Prog, write: Write) -> None:
    path = write(_service("logging:\n  a: &x [1]\n  k: &y {z: [2]}\n  k: *x\n  j: *y\n  j: *x\n"))
    cfg, warnings = ok(prog, path)
    assert cfg["services"]["M"]["logging"] == {"a": [1], "k": [1], "j": [1]}
    assert len(warnings) == 2


# ---- malformed files -----------------------------------------------------------------


@pytest.mark.parametrize(
    "text,message",
    [
        (b"a: b: c\n", "1:5: mapping values are not allowed in this context"),
        (b"a: 1\n b: 2\n", "2:3: mapping values are not allowed in this context"),
        (b"a:\n\tb: 1\n", ("2:1: found character that cannot start any token "
                           "(while scanning for the next token at line 2, column 1)")),
        (b'a: "open\n', "2:1: found unexpected end of stream (while scanning a quoted scalar at line 1, column 4)"),
        (b"a: [1, 2\n", "2:1: did not find expected ',' or ']' (while parsing a flow sequence at line 1, column 4)"),
        (b"a:\n  - 1\n  b: 2\n", ("3:3: did not find expected '-' indicator "
                                  "(while parsing a block collection at line 2, column 3)")),
        (b"ok: 1\nbad: \xff\n", "2:6: invalid leading UTF-8 octet"),
        (b"a: 1\n---\nb: 2\n", "2:1: more than one YAML document in the file"),
        (b"a: &x 1\nb: *\n", ("2:5: did not find expected alphabetic or numeric character "
                              "(while scanning an alias at line 2, column 4)")),
    ],
)
def test_malformed_yaml_line_and_column(prog: Prog, write: Write, text: bytes, message: str) -> None:
    path = write(text)
    assert error(prog, path) == f"{path}:{message}"


def test_top_level_must_be_a_map(prog: Prog, write: Write) -> None:
    path = write("- 1\n- 2\n")
    assert error(prog, path) == f"{path}: the top level must be a map, got a list"
    path = write("just text\n")
    assert error(prog, path) == f'{path}: the top level must be a map, got "just text"'


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n", "~\n", "--- # c\n...\n"])
def test_an_empty_file_configures_nothing(prog: Prog, write: Write, text: str) -> None:
    assert ok(prog, write(text)) == ({"defaults": {}, "services": {}}, [])


def test_version_only(prog: Prog, write: Write) -> None:
    assert ok(prog, write("version: 2\n")) == ({"defaults": {}, "services": {}}, [])


# ---- files -----------------------------------------------------------------------


def test_missing_file(prog: Prog, tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    assert error(prog, path, rc=-errno.ENOENT) == f"{path}: No such file or directory"


def test_a_directory(prog: Prog, tmp_path: Path) -> None:
    path = tmp_path / "dir.yaml"
    path.mkdir()
    assert error(prog, path, rc=-errno.EISDIR) == f"{path}: Is a directory"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(prog: Prog, write: Write) -> None:
    path = write(SAMPLE)
    path.chmod(0)
    assert error(prog, path, rc=-errno.EACCES) == f"{path}: Permission denied"


def test_the_name_must_end_in_yaml_or_yml(prog: Prog, write: Write) -> None:
    ok(prog, write(SAMPLE, "conf.yml"))
    path = write(SAMPLE, "conf.json")
    assert error(prog, path) == f"{path}: the configuration file must end in .yaml or .yml"


def test_larger_than_16_mib(prog: Prog, write: Write) -> None:
    limit = 16 << 20
    line = "# " + "x" * 1021 + "\n"  # 1 KiB
    body = "version: 2\n" + line * ((limit - 11) // len(line))
    body += "#" * (limit - len(body) - 1) + "\n"
    assert len(body) == limit
    ok(prog, write(body))
    path = write(body + "\n")
    assert error(prog, path, rc=-errno.EFBIG) == f"{path}: larger than 16 MiB"


# ---- versions --------------------------------------------------------------------


def test_v1_file_is_refused(prog: Prog, write: Write) -> None:
    v1 = "version: 1\napi_server:\n  workers: 2\nrunners:\n  timeout: 30\n"
    message = error(prog, write(v1))
    assert "a version 1 configuration (api_server:, runners:) is not supported" in message
    assert "write version: 2" in message
    # no version at all, with v1's sections: BentoML reads it as v1 too
    message = error(prog, write("api_server:\n  workers: 2\n"))
    assert "a version 1 configuration" in message


def test_services_need_version_2(prog: Prog, write: Write) -> None:
    path = write("services:\n  M: {workers: 2}\n")
    assert error(prog, path) == (
        f"{path}: services: needs version: 2 at the top of the file "
        "(BentoML reads a file without a version as version 1)"
    )
    assert error(prog, write("version: 3\nservices: {}\n")) == "version: expected 2, got 3"
    assert error(prog, write('version: "2"\nservices: {}\n')) == 'version: expected 2, got "2"'


# ---- nesting ---------------------------------------------------------------------


def test_nesting_up_to_64_levels(prog: Prog, write: Write) -> None:
    # the top map is level 1, services 2, M 3, logging 4: 60 more lists make 64
    ok(prog, write(_service("logging: {deep: " + "[" * 60 + "]" * 60 + "}")))
    path = write(_service("logging: {deep: " + "[" * 61 + "]" * 61 + "}"))
    assert error(prog, path) == f"{path}:4:81: nested deeper than 64 levels"


def test_deep_block_nesting_is_refused(prog: Prog, write: Write) -> None:
    text = "".join("  " * i + f"k{i}:\n" for i in range(100))
    message = error(prog, write(text))
    assert message.endswith(":65:129: nested deeper than 64 levels"), message


def test_very_deep_flow_nesting_is_refused_quickly(prog: Prog, write: Write) -> None:
    message = error(prog, write("a: " + "[" * 100000 + "]" * 100000 + "\n"))
    assert message.endswith("nested deeper than 64 levels"), message


# ---- the C contract, and the whole way to a service's config -----------------------


def test_api_contract(prog: Prog, write: Write) -> None:
    good = write(_service("workers: 1"), "good.yaml")
    bad = write("a: b: c\n", "bad.yaml")
    r = prog.run("api", str(good), str(bad))
    assert r.stdout.strip().splitlines()[-1] == "OK", r.stdout


@pytest.mark.parametrize("with_file,overrides", [
    (True, None),
    (True, '{"services.A.traffic.timeout": 3, "services": {"B": {"threads": 2}}, "services.workers": 1}'),
    (False, '{"services.M.workers": 2, "services.M.envs": [{"name": "A", "value": "b"}]}'),
])
def test_every_allocation_failure_is_clean(prog: Prog, write: Write, with_file: bool, overrides: str | None) -> None:
    """Each allocation fails in turn: -ENOMEM (or, inside cJSON_Parse, which cannot
    tell, "not valid JSON") and nothing left behind, as LeakSanitizer checks."""
    path = write(
        "version: 2\nextra: 1\nservices:\n  traffic: {timeout: 120, junk: 1}\n  workers: 2\n"
        "  A: &a\n    workers: 4\n    workers: 5\n    resources: {gpu: 0.5, cpu: '1'}\n"
        "    envs: [{name: X, value: y}]\n    logging: {a: [1, 2, {b: c}]}\n  B: *a\n  C:\n"
    )
    args = ["oom", str(path) if with_file else "-"] + ([overrides] if overrides else [])
    r = prog.run(*args)
    assert r.stdout.splitlines()[-1].startswith("OK after "), r.stdout


def test_file_to_service_config(prog: Prog, write: Write) -> None:
    """The C output, json.loads'ed, through bentohost._overrides.apply."""
    cfg, _ = ok(prog, write(SAMPLE), '{"services.Preprocessing.traffic.max_concurrency": 8}')
    decorator = {"workers": 1, "traffic": {"timeout": 10, "concurrency": 4}, "resources": {"memory": "2Gi"}}
    pre = _overrides.apply(decorator, "Preprocessing", cfg)
    assert pre == {
        "workers": 4,
        "traffic": {"timeout": 30, "concurrency": 4, "max_concurrency": 8},
        "resources": {"cpu": "1", "memory": "2Gi", "gpu": 0.5},
        "runner_connection": {"max_requests": 1000, "max_age": 600},
    }
    # a service the file does not name: the global defaults fill what the decorator left unset
    other = _overrides.apply({"traffic": {"max_concurrency": 2}}, "Other", cfg)
    assert other == {"traffic": {"timeout": 120, "max_concurrency": 2}, "workers": 2, "resources": {"cpu": "1"}}


# ---- http.cors (answered in C by csrc/server/cors.c) --------------------------------------


def test_http_cors_keys_are_checked(prog: Prog, write: Write) -> None:
    cfg, warnings = ok(prog, write(
        "version: 2\nservices:\n  http:\n    cors:\n      enabled: true\n"
        "      access_control_allow_origins: https://a.example\n"
        "      access_control_allow_methods: [GET, POST]\n      access_control_max_age: 60\n"
        "      access_control_allow_origin_regex: 'https://.*\\.b\\.example'\n      turbo: 1\n"
        "  Svc:\n    http: {cors: {access_control_expose_headers: [X-A, X-B]}}\n"))
    assert cfg["defaults"]["http"]["cors"] == {
        "enabled": True, "access_control_allow_origins": "https://a.example",
        "access_control_allow_methods": ["GET", "POST"], "access_control_max_age": 60,
        "access_control_allow_origin_regex": "https://.*\\.b\\.example"}
    assert cfg["services"]["Svc"]["http"]["cors"] == {"access_control_expose_headers": ["X-A", "X-B"]}
    assert warnings == ["services.http.cors.turbo: unknown key, ignored"], warnings


@pytest.mark.parametrize("cors, message", [
    ("{enabled: 1}", "services.S.http.cors.enabled: expected true or false, got 1"),
    ("{access_control_allow_origins: [a, 2]}",
     "services.S.http.cors.access_control_allow_origins[1]: expected a string, got 2"),
    ("{access_control_allow_methods: {a: b}}",
     "services.S.http.cors.access_control_allow_methods: expected a string or a list of strings, got a map"),
    ("{access_control_max_age: 1.5}", "services.S.http.cors.access_control_max_age: expected an integer >= 0"),
    ("{access_control_max_age: -1}", "services.S.http.cors.access_control_max_age: expected an integer >= 0"),
    ("{access_control_allow_credentials: yes please}",
     "services.S.http.cors.access_control_allow_credentials: expected true or false"),
    ("[1]", "services.S.http.cors: expected a map, got a list"),
])
def test_http_cors_wrong_types(prog: Prog, write: Write, cors: str, message: str) -> None:
    assert error(prog, write(f"version: 2\nservices:\n  S:\n    http:\n      cors: {cors}\n")).startswith(message)


# ---- bento arguments (--arg-file, --arg) ---------------------------------------------------


def _args(prog: Prog, file: Path | str, flags: str | None = None) -> dict[str, Any]:
    return prog.load(file, flags, mode="args")


def test_arguments_file_and_flags(prog: Prog, write: Write) -> None:
    path = write("model_name: m\ngpu: 4\nflags: [a, b]\nratio: 0.5\nquiet: yes\nempty:\n", "args.yaml")
    out = _args(prog, path)
    assert out == {"rc": 0, "config": {"model_name": "m", "gpu": 4, "flags": ["a", "b"], "ratio": 0.5,
                                       "quiet": True, "empty": None}, "warnings": []}
    # --arg pairs (strings, as BentoML gives them) win over the file
    out = _args(prog, path, '{"gpu": "8", "new": "x"}')
    assert out["config"]["gpu"] == "8" and out["config"]["new"] == "x" and out["config"]["model_name"] == "m"
    assert _args(prog, write('{"a": 1, "b": {"c": [true]}}', "args.json"))["config"] == {"a": 1, "b": {"c": [True]}}
    assert _args(prog, write("", "empty.yaml"))["config"] == {}
    assert _args(prog, "-", '{"k": "v"}')["config"] == {"k": "v"}
    assert _args(prog, write("a: 1\na: 2\n", "dup.yaml"))["warnings"][0].endswith(
        'duplicate key "a": the later value wins')


def test_arguments_errors_are_one_line(prog: Prog, write: Write, tmp_path: Path) -> None:
    out = _args(prog, write("- a\n- b\n", "list.yaml"))
    assert out["rc"] == -errno.EINVAL and out["error"].endswith("list.yaml: the top level must be a map, got a list")
    out = _args(prog, write("a: [1\n", "bad.yaml"))
    assert re.search(r"bad\.yaml:\d+:\d+: ", out["error"]), out
    out = _args(prog, tmp_path / "missing.yaml")
    assert out["rc"] == -errno.ENOENT and out["error"].endswith("missing.yaml: No such file or directory")


@pytest.mark.parametrize("with_file, flags", [(True, None), (True, '{"gpu": "8", "x": "y"}'), (False, '{"k": "v"}')])
def test_arguments_allocation_failures_are_clean(prog: Prog, write: Write, with_file: bool, flags: str | None) -> None:
    path = write("model: m\ngpu: 4\nlist: [a, {b: c}]\nmodel: n\n", "args.yaml")
    args = ["oomargs", str(path) if with_file else "-"] + ([flags] if flags else [])
    r = prog.run(*args)
    assert r.stdout.splitlines()[-1].startswith("OK after "), r.stdout
