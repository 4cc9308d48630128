"""The layering rules of csrc/, checked over the sources themselves.

Layers, lowest first; a file may include and call only its own layer or lower ones:

    common < net < traffic < python < server < worker < supervisor < entry (main.c)

``bh.h`` sits below everything. Beyond the ranks:
  - other layers reach the Python room only through its door, ``python/bridge.h``
    (and the worker, which starts it, through ``python/pyhost.h``);
  - the supervisor never sees CPython or libuv, not even through a header it includes;
  - no file in csrc/ is longer than MAX_LINES, and each opens with a comment saying
    what it owns.

Calls are found at the source level: every ``bh_*`` name a file uses (a call or a
function pointer taken) that another file defines. Run as a script it prints the
violations and exits 1 when there are any; ``tests/test_layers.py`` runs it in the suite.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

CSRC = Path(__file__).resolve().parent.parent / "csrc"
MAX_LINES = 700

RANKS = {"bh.h": -1, "common": 0, "net": 1, "traffic": 2, "python": 3, "server": 4, "worker": 5, "supervisor": 6,
         "main.c": 7}
# Headers of the Python room that a file outside it may include, and who may.
PYTHON_DOORS = {"python/bridge.h": {"server", "worker"}, "python/pyhost.h": {"worker"}}
FORBIDDEN_SYSTEM = {"supervisor": {"Python.h", "uv.h"}, "common": {"Python.h"}, "net": {"Python.h"},
                    "traffic": {"Python.h"}, "server": {"Python.h"}}

_INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)
_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)
_STRING = re.compile(r'"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'')
# A definition: a bh_ name followed by its parameter list and a body, at the start of a line.
_DEFINITION = re.compile(r"^(?!static\b)[A-Za-z_][\w \t\*]*?\b(bh_\w+)\s*\([^;{]*\)\s*(?:__attribute__\S*\s*)?\{", re.M)
_INLINE = re.compile(r"^static\s+inline\s+[\w \t\*]*?\b(bh_\w+)\s*\(", re.M)
_DATA = re.compile(r"^(?:const\s+)?[A-Za-z_]\w*\s+(bh_\w+)\s*(?:\[[^\]]*\])?\s*=", re.M)
_NAME = re.compile(r"\bbh_\w+\b")


def layer_of(rel: str) -> str:
    return rel if "/" not in rel else rel.split("/", 1)[0]


def _sources() -> dict[str, str]:
    return {p.relative_to(CSRC).as_posix(): p.read_text() for p in sorted(CSRC.rglob("*.[ch]"))}


def _strip(text: str) -> str:
    return _STRING.sub('""', _COMMENT.sub(" ", text))


def _includes(rel: str, text: str) -> list[tuple[str, str]]:
    """(kind, target) per #include; quoted targets are paths from csrc/."""
    return [(m.group(1), m.group(2)) for m in _INCLUDE.finditer(text)]


def _check_rank(user: str, target: str, what: str, problems: list[str]) -> None:
    lu, lt = layer_of(user), layer_of(target)
    if lu == lt or lt == "bh.h":
        return
    if RANKS[lu] < RANKS[lt]:
        problems.append(f"{user}: {what} {target}, which is in a higher layer ({lt} above {lu})")
    elif lt == "python" and target.endswith(".h") and lu not in PYTHON_DOORS.get(target, set()):
        problems.append(f"{user}: {what} {target}: the Python room is reached only through python/bridge.h")


def check() -> list[str]:
    sources = _sources()
    problems: list[str] = []

    for rel, text in sources.items():
        if layer_of(rel) not in RANKS:
            problems.append(f"{rel}: in no known layer (folders: {', '.join(k for k in RANKS if '.' not in k)})")
            continue
        lines = text.count("\n")
        if lines > MAX_LINES:
            problems.append(f"{rel}: {lines} lines, over {MAX_LINES}: split it by concern")
        if not text.lstrip().startswith("/*"):
            problems.append(f"{rel}: does not open with a comment saying what it owns")
        for kind, target in _includes(rel, text):
            if kind == '"':
                if target not in sources:
                    problems.append(f"{rel}: includes \"{target}\", not a path under csrc/")
                else:
                    _check_rank(rel, target, "includes", problems)

    # System headers reached through any chain of includes.
    def reach(rel: str, seen: set[str]) -> set[str]:
        found: set[str] = set()
        for kind, target in _includes(rel, sources[rel]):
            if kind == "<":
                found.add(target)
            elif target in sources and target not in seen:
                seen.add(target)
                found |= reach(target, seen)
        return found

    for rel in sources:
        banned = FORBIDDEN_SYSTEM.get(layer_of(rel), set()) & reach(rel, {rel})
        for header in sorted(banned):
            problems.append(f"{rel}: reaches <{header}>, which the {layer_of(rel)} layer must never use")

    # Calls (and function pointers taken) across files.
    stripped = {rel: _strip(text) for rel, text in sources.items()}
    definer: dict[str, str] = {}
    for rel, text in stripped.items():
        for pattern in (_DEFINITION, _INLINE, _DATA):
            for m in pattern.finditer(text):
                name = m.group(1)
                if name in definer and definer[name] != rel and rel.endswith(".c"):
                    problems.append(f"{rel}: defines {name}, already defined in {definer[name]}")
                definer.setdefault(name, rel)
    for rel, text in stripped.items():
        for name in sorted(set(_NAME.findall(text))):
            owner = definer.get(name)
            if owner is not None and owner != rel:
                _check_rank(rel, owner, f"uses {name} from", problems)
    return problems


def main() -> int:
    problems = check()
    for p in problems:
        print(p)
    if problems:
        print(f"{len(problems)} layering problem(s) in csrc/ (rules: tests/layers.py)")
        return 1
    print(f"csrc/: layers clean ({len(_sources())} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
