"""BentoML's ``bentofile.yaml``, read and checked for ``python -m bentohost build``.

Every key of BentoML 1.4's build file is known: those bentohost honours are read, those
that do not change a bentohost image (``docker.distro``, ``python.lock_packages``) give a
warning, and those it cannot honour (``models``, ``conda`` packages, CUDA) are errors, as
is any other key. Errors are :class:`BentoFileError`, one line naming the key.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["BentoFile", "BentoFileError", "load_bentofile", "BENTOFILE"]

BENTOFILE = "bentofile.yaml"

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Debian package names, optionally =version (they end up on an apt-get command line)
_DEB_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+:~-]+)?$")
_LABEL_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")

# key -> what happens to it: "use", "warn" (accepted, no effect here) or "error" (refused
# unless empty)
_TOP = {"service": "use", "name": "use", "description": "use", "labels": "use", "include": "use",
        "exclude": "use", "python": "use", "docker": "use", "envs": "use", "conda": "error",
        "models": "error", "args": "error"}
_PYTHON = {"packages": "use", "requirements_txt": "use", "index_url": "use", "no_index": "use",
           "trusted_host": "use", "find_links": "use", "extra_index_url": "use", "pip_args": "use",
           "lock_packages": "warn", "pack_git_packages": "warn", "wheels": "error"}
_DOCKER = {"system_packages": "use", "base_image": "use", "env": "use", "setup_script": "use",
           "distro": "warn", "python_version": "warn", "cuda_version": "error",
           "dockerfile_template": "error"}

# values of "warn" keys that are what bentohost does anyway: no warning
_AS_DONE: dict[str, tuple[Any, ...]] = {"lock_packages": (False,), "pack_git_packages": (False,),
                                         "distro": ("debian",)}
_WHY = {
    "lock_packages": "bentohost installs python.packages as given, without locking them",
    "pack_git_packages": "packages are installed as given",
    "distro": "the image is the bentohost image's (Debian)",
    "python_version": "the Python is the bentohost image's",
}


class BentoFileError(Exception):
    """The build file is missing, malformed or asks for something unsupported (one line)."""


@dataclass
class BentoFile:
    directory: Path
    service: str
    name: str
    description: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    include: list[str] = field(default_factory=lambda: ["*"])
    exclude: list[str] = field(default_factory=list)
    packages: list[str] = field(default_factory=list)
    requirements_txt: Path | None = None
    #: lines for the top of the requirements file (--index-url and the like)
    pip_options: list[str] = field(default_factory=list)
    pip_args: list[str] = field(default_factory=list)
    envs: dict[str, str] = field(default_factory=dict)
    system_packages: list[str] = field(default_factory=list)
    base_image: str | None = None
    setup_script: Path | None = None
    warnings: list[str] = field(default_factory=list)


def _read_yaml(path: Path) -> Any:
    try:
        import yaml
    except ImportError:  # a dependency of bentohost since `build`: a broken install
        raise BentoFileError("reading bentofile.yaml needs PyYAML: pip install PyYAML") from None
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BentoFileError(f"{path.parent}: no {BENTOFILE} (a BentoML project has one)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BentoFileError(f"{path}: cannot read: {exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        raise BentoFileError(f"{path}{where}: malformed YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise BentoFileError(f"{path}: malformed YAML: {exc}") from None


def _check_keys(section: dict[str, Any], table: dict[str, str], where: str, warnings: list[str]) -> None:
    for key, value in section.items():
        if not isinstance(key, str) or key not in table:
            known = ", ".join(sorted(table))
            raise BentoFileError(f"{BENTOFILE}: unknown key {where}{key!r} (known: {known})")
        if value in (None, [], {}, ""):
            continue
        if table[key] == "error":
            raise BentoFileError(f"{BENTOFILE}: {where}{key} is not supported by bentohost build")
        if table[key] == "warn" and value not in _AS_DONE.get(key, ()):
            warnings.append(f"{where}{key} is ignored: {_WHY.get(key, 'no effect here')}")


def _string(value: Any, key: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise BentoFileError(f"{BENTOFILE}: {key}: expected a string, got {type(value).__name__}")
    text = str(value)
    if "\n" in text or "\r" in text or "\0" in text:
        raise BentoFileError(f"{BENTOFILE}: {key}: must be one line")
    return text


def _strings(value: Any, key: str) -> list[str]:
    """A list of strings; a single string is a list of one."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise BentoFileError(f"{BENTOFILE}: {key}: expected a list of strings")
    return [_string(v, f"{key}[{i}]") for i, v in enumerate(value)]


def _mapping(value: Any, key: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BentoFileError(f"{BENTOFILE}: {key}: expected a mapping")
    return value


def _file_in(directory: Path, value: Any, key: str) -> Path:
    path = (directory / _string(value, key)).resolve()
    if not path.is_file():
        raise BentoFileError(f"{BENTOFILE}: {key}: no such file: {value}")
    return path


def _description(directory: Path, value: Any) -> str | None:
    """The first line of the description (``file: ./README.md`` reads that file): an image label."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise BentoFileError(f"{BENTOFILE}: description: expected a string")
    text = value
    if value.startswith("file:"):
        text = _file_in(directory, value[5:].strip(), "description").read_text(encoding="utf-8", errors="replace")
    for line in text.splitlines():
        line = line.strip().lstrip("#").strip()
        if line:
            return line[:500]
    return None


def _env_pairs(envs: Any, docker_env: Any, warnings: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(docker_env, dict):
        pairs = [(k, v) for k, v in docker_env.items()]
    else:
        pairs = []
        for item in _strings(docker_env, "docker.env"):
            name, sep, value = item.partition("=")
            if not sep:
                raise BentoFileError(f"{BENTOFILE}: docker.env: expected NAME=VALUE, got {item!r}")
            pairs.append((name, value))
    if envs is not None and not isinstance(envs, list):
        raise BentoFileError(f"{BENTOFILE}: envs: expected a list of {{name, value}}")
    for i, item in enumerate(envs or []):
        if not isinstance(item, dict) or "name" not in item or set(item) - {"name", "value", "stage"}:
            raise BentoFileError(f"{BENTOFILE}: envs[{i}]: expected a mapping with name and value")
        if item.get("value") is None:
            warnings.append(f"envs[{i}] {item['name']} has no value: set it when the container runs")
            continue
        pairs.append((item["name"], item["value"]))
    for name, value in pairs:
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            raise BentoFileError(f"{BENTOFILE}: not an environment variable name: {name!r}")
        out[name] = _string(value, f"env {name}")
    return out


def _pip_options(python: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    if python.get("index_url"):
        lines.append(f"--index-url {_string(python['index_url'], 'python.index_url')}")
    if python.get("no_index"):
        lines.append("--no-index")
    for key, flag in (("extra_index_url", "--extra-index-url"), ("trusted_host", "--trusted-host"),
                      ("find_links", "--find-links")):
        lines += [f"{flag} {v}" for v in _strings(python.get(key), f"python.{key}")]
    return lines


def _service(value: Any) -> str:
    if value is None:
        raise BentoFileError(f"{BENTOFILE}: service is missing (service: \"module:Class\")")
    service = _string(value, "service")
    if not re.match(r"^[A-Za-z_][\w.]*(:[A-Za-z_][\w.]*)?$", service):
        raise BentoFileError(f"{BENTOFILE}: service: expected \"module:Class\", got {service!r}")
    return service


def _labels(value: Any) -> dict[str, str]:
    labels = {}
    for key, v in _mapping(value, "labels").items():
        if not isinstance(key, str) or not _LABEL_KEY.match(key):
            raise BentoFileError(f"{BENTOFILE}: labels: not a label name: {key!r}")
        labels[key] = _string(v, f"labels.{key}")
    return labels


def load_bentofile(directory: str | os.PathLike[str]) -> BentoFile:
    """Reads and checks ``DIRECTORY/bentofile.yaml``."""
    root = Path(directory).resolve()
    if not root.is_dir():
        raise BentoFileError(f"not a directory: {directory}")
    doc = _read_yaml(root / BENTOFILE)
    if not isinstance(doc, dict):
        raise BentoFileError(f"{root / BENTOFILE}: expected a mapping of keys (service:, include:, ...)")
    warnings: list[str] = []
    _check_keys(doc, _TOP, "", warnings)
    python = _mapping(doc.get("python"), "python")
    docker = _mapping(doc.get("docker"), "docker")
    _check_keys(python, _PYTHON, "python.", warnings)
    _check_keys(docker, _DOCKER, "docker.", warnings)

    service = _service(doc.get("service"))
    default_name = service.rpartition(":")[2].rsplit(".", 1)[-1].lower() or root.name.lower()
    system_packages = _strings(docker.get("system_packages"), "docker.system_packages")
    for package in system_packages:
        if not _DEB_PACKAGE.match(package):
            raise BentoFileError(f"{BENTOFILE}: docker.system_packages: not a Debian package name: {package!r}")
    requirements = python.get("requirements_txt")
    setup_script = docker.get("setup_script")
    try:
        pip_args = shlex.split(_string(python["pip_args"], "python.pip_args")) if python.get("pip_args") else []
    except ValueError as exc:
        raise BentoFileError(f"{BENTOFILE}: python.pip_args: {exc}") from None
    base_image = docker.get("base_image")
    return BentoFile(
        directory=root,
        service=service,
        name=_string(doc.get("name") or default_name, "name"),
        description=_description(root, doc.get("description")),
        labels=_labels(doc.get("labels")),
        include=_strings(doc.get("include"), "include") or ["*"],
        exclude=_strings(doc.get("exclude"), "exclude"),
        packages=_strings(python.get("packages"), "python.packages"),
        requirements_txt=_file_in(root, requirements, "python.requirements_txt") if requirements else None,
        pip_options=_pip_options(python),
        pip_args=pip_args,
        envs=_env_pairs(doc.get("envs"), docker.get("env"), warnings),
        system_packages=system_packages,
        base_image=_string(base_image, "docker.base_image") if base_image else None,
        setup_script=_file_in(root, setup_script, "docker.setup_script") if setup_script else None,
        warnings=warnings,
    )
