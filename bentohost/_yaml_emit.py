"""A small YAML emitter for the manifests ``python -m bentohost k8s`` writes.

Only what JSON holds: dicts (keys are strings), lists, strings, ints, floats,
bools and None, in block style. A string is written plain only when every YAML
reader (YAML 1.1 as PyYAML and go-yaml v2 read it, and 1.2) takes it back as that
same string; otherwise it is double-quoted with escapes, or written as a literal
block (``|``) when it is several printable lines. ``yaml.safe_load`` of the output
gives back the input.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["dump", "dump_all"]

# Starts with a letter, '_' or '/', then letters, digits and _ . / - ; nothing a
# YAML reader could take for a number, a date, an anchor, a tag, a flow or a comment.
_PLAIN = re.compile(r"[A-Za-z_/][A-Za-z0-9_./-]*\Z")
# YAML 1.1 booleans (go-yaml v2 also reads y/n) and nulls, in any case.
_RESERVED = frozenset(
    "y yes n no true false on off null".split()
)
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\0": "\\0"}


def _printable(ch: str) -> bool:
    """YAML's printable set (c-printable), less the line breaks NEL, LS and PS."""
    o = ord(ch)
    return (
        ch in "\t\n"
        or 0x20 <= o <= 0x7E
        or 0xA0 <= o <= 0xD7FF and o not in (0x2028, 0x2029)
        or 0xE000 <= o <= 0xFFFD and o != 0xFEFF
        or 0x10000 <= o <= 0x10FFFF
    )


def _quoted(s: str) -> str:
    out = []
    for ch in s:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif _printable(ch):
            out.append(ch)
        elif ord(ch) <= 0xFF:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot write {value!r} in a manifest")
        return repr(value)
    if isinstance(value, str):
        if _PLAIN.match(value) and value.lower() not in _RESERVED:
            return value
        return _quoted(value)
    raise TypeError(f"cannot write a {type(value).__name__} in a manifest")


def _block_literal(s: str, indent: int) -> str | None:
    """``|`` or ``|-`` and the lines of ``s`` indented, when that reads back exactly."""
    if "\n" not in s.rstrip("\n") or s.endswith("\n\n") or s[0] in " \t\n":
        return None
    if not all(_printable(ch) and ch != "\t" for ch in s if ch != "\n"):
        return None
    lines = s[:-1].split("\n") if s.endswith("\n") else s.split("\n")
    if any(line != line.rstrip(" ") for line in lines):
        return None  # trailing spaces are kept, but editors strip them: quote instead
    pad = " " * indent
    body = "\n".join(pad + line if line else "" for line in lines)
    return ("|" if s.endswith("\n") else "|-") + "\n" + body


def _is_block(value: Any) -> bool:
    return isinstance(value, (Mapping, list, tuple)) and len(value) > 0


def _lines(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    out: list[str] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"manifest keys must be strings, got {key!r}")
            head = f"{pad}{_scalar(key)}:"
            if _is_block(item):
                out.append(head)
                out.extend(_lines(item, indent + 2))
            else:
                out.append(f"{head} {_inline(item, indent + 2)}")
        return out
    for item in value:
        if _is_block(item):
            inner = _lines(item, indent + 2)
            inner[0] = f"{pad}- {inner[0][indent + 2:]}"
            out.extend(inner)
        else:
            out.append(f"{pad}- {_inline(item, indent + 2)}")
    return out


def _inline(value: Any, indent: int) -> str:
    if isinstance(value, Mapping):
        return "{}"
    if isinstance(value, (list, tuple)):
        return "[]"
    if isinstance(value, str):
        literal = _block_literal(value, indent)
        if literal is not None:
            return literal
    return _scalar(value)


def dump(doc: Mapping[str, Any]) -> str:
    """One document (a mapping), ending in a newline."""
    if not isinstance(doc, Mapping):
        raise TypeError("a manifest document must be a mapping")
    return "\n".join(_lines(doc, 0)) + "\n" if doc else "{}\n"


def dump_all(docs: Iterable[Mapping[str, Any]]) -> str:
    """Documents, each opened by ``---``."""
    return "".join("---\n" + dump(doc) for doc in docs)
