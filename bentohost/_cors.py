"""BentoML's ``http.cors`` settings, checked and written for the C host, which
answers CORS itself (csrc/server/cors.c, after Starlette's CORSMiddleware).

The settings come from the service's effective config (the decorator's
``http={"cors": {...}}`` under the configuration file's, see ``_overrides``). A
string where BentoML takes a list is a list of one. ``enabled`` without
``access_control_allow_origins`` is an error, as in BentoML.

``access_control_allow_origin_regex`` is a Python regular expression, matched
with ``fullmatch``; C matches it with POSIX regexec, so it is translated here into
an anchored extended regular expression over single ASCII characters (an origin
with another byte never matches it). Constructs POSIX cannot express with the same
meaning (look-arounds, back-references, word boundaries, atomic groups, inline
flags on a group) are refused at startup with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, StrictBool, StrictInt, StrictStr, ValidationError, field_validator

from ._loader import TargetError

try:  # Python 3.11+
    from re import _constants as _sre  # type: ignore[attr-defined]
    from re import _parser as _sre_parse  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - Python 3.10
    import sre_constants as _sre  # type: ignore[no-redef]
    import sre_parse as _sre_parse  # type: ignore[no-redef]

__all__ = ["CorsError", "CorsSettings", "cors_for_host", "posix_ere"]

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}")
#: what C lets reach the regex: an origin's printable ASCII
_UNIVERSE = frozenset(chr(i) for i in range(0x20, 0x7F))
_ERE_SPECIAL = frozenset(".[]()*+?{}|^$\\")
_MAX_REPEAT = 255  # POSIX's least RE_DUP_MAX


class CorsError(TargetError):
    """A bad http.cors setting: one line at startup."""


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class CorsSettings(BaseModel):
    """``http.cors`` with BentoML's keys and types (configuration/v2)."""

    model_config = ConfigDict(extra="ignore")

    enabled: StrictBool = False
    access_control_allow_origins: list[StrictStr] | None = None
    access_control_allow_origin_regex: StrictStr | None = None
    access_control_allow_credentials: StrictBool | None = None
    access_control_allow_headers: list[StrictStr] | None = None
    access_control_allow_methods: list[StrictStr] | None = None
    access_control_max_age: StrictInt | None = None
    access_control_expose_headers: list[StrictStr] | None = None

    @field_validator(
        "access_control_allow_origins",
        "access_control_allow_headers",
        "access_control_allow_methods",
        "access_control_expose_headers",
        mode="before",
    )
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return _as_list(value)

    @field_validator("access_control_allow_origins")
    @classmethod
    def _origins(cls, value: list[str] | None) -> list[str] | None:
        for origin in value or ():
            if not origin or any(ch not in _UNIVERSE or ch == " " for ch in origin):
                raise ValueError(f"{origin!r} is not an origin (scheme://host[:port], or '*')")
        return value

    @field_validator("access_control_allow_headers", "access_control_allow_methods", "access_control_expose_headers")
    @classmethod
    def _tokens(cls, value: list[str] | None) -> list[str] | None:
        for item in value or ():
            if not _TOKEN.fullmatch(item):
                raise ValueError(f"{item!r} is not a header or method name (an HTTP token of at most 128 characters)")
        return value

    @field_validator("access_control_max_age")
    @classmethod
    def _max_age(cls, value: int | None) -> int | None:
        if value is not None and not 0 <= value <= 2**31 - 1:
            raise ValueError("must be an integer >= 0")
        return value


def _one_line(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"] if not isinstance(p, int)) or "cors"
        parts.append(f"http.cors.{where}: {err['msg']}")
    return "; ".join(parts)


def cors_for_host(config: Mapping[str, Any], service: str) -> dict[str, Any] | None:
    """The ``cors`` object of the service description C reads (csrc/server/cors.c),
    or None when CORS is off. Starlette's defaults fill what is unset, as BentoML
    passes only the settings given. Raises :class:`CorsError`."""
    http = config.get("http") or {}
    if not isinstance(http, Mapping):
        raise CorsError(f"service {service}: http must be a mapping, got {type(http).__name__}")
    raw = http.get("cors") or {}
    if not isinstance(raw, Mapping):
        raise CorsError(f"service {service}: http.cors must be a mapping, got {type(raw).__name__}")
    try:
        cors = CorsSettings.model_validate(dict(raw))
    except ValidationError as exc:
        raise CorsError(f"service {service}: {_one_line(exc)}") from None
    if not cors.enabled:
        return None
    if cors.access_control_allow_origins is None:
        raise CorsError(
            f"service {service}: http.cors.access_control_allow_origins must be set when http.cors.enabled is "
            "true (the origins allowed, or '*')"
        )
    regex = None
    if cors.access_control_allow_origin_regex is not None:
        try:
            regex = posix_ere(cors.access_control_allow_origin_regex)
        except ValueError as exc:
            raise CorsError(f"service {service}: http.cors.access_control_allow_origin_regex: {exc}") from None
    return {
        "allow_origins": cors.access_control_allow_origins,
        "allow_origin_regex": regex,
        "allow_methods": cors.access_control_allow_methods if cors.access_control_allow_methods is not None
        else ["GET"],
        "allow_headers": cors.access_control_allow_headers or [],
        "allow_credentials": bool(cors.access_control_allow_credentials),
        "expose_headers": cors.access_control_expose_headers or [],
        "max_age": 600 if cors.access_control_max_age is None else cors.access_control_max_age,
    }


# ---- Python regular expression -> POSIX ERE -----------------------------------------


def _category(cat: Any, flags: int) -> set[str]:
    escape = {"CATEGORY_DIGIT": r"\d", "CATEGORY_NOT_DIGIT": r"\D", "CATEGORY_SPACE": r"\s",
              "CATEGORY_NOT_SPACE": r"\S", "CATEGORY_WORD": r"\w", "CATEGORY_NOT_WORD": r"\W"}.get(str(cat))
    if escape is None:
        raise ValueError(f"the class {cat} is not supported")
    return {ch for ch in _UNIVERSE if re.fullmatch(escape, ch, flags & re.ASCII)}


def _chars(op: str, av: Any, flags: int) -> set[str]:
    """The characters of the universe that one single-character node matches."""
    negate = op == "NOT_LITERAL"
    if op in ("LITERAL", "NOT_LITERAL"):
        chars = {chr(av)}
    elif op == "ANY":
        chars = set(_UNIVERSE)
    elif op == "CATEGORY":
        chars = _category(av, flags)
    else:  # IN
        chars = set()
        for item_op, item in av:
            kind = str(item_op)
            if kind == "NEGATE":
                negate = True
            elif kind == "LITERAL":
                chars.add(chr(item))
            elif kind == "RANGE":
                chars |= {ch for ch in _UNIVERSE if item[0] <= ord(ch) <= item[1]}
            elif kind == "CATEGORY":
                chars |= _category(item, flags)
            else:
                raise ValueError(f"{kind} in a character class is not supported")
    if flags & re.IGNORECASE:
        chars |= {ch.lower() for ch in chars} | {ch.upper() for ch in chars}
    chars &= _UNIVERSE
    return set(_UNIVERSE) - chars if negate else chars


def _bracket(chars: set[str]) -> str:
    """One ERE atom for a set of characters. In a bracket expression ']' goes first
    and '-' last, '[' never before '.', '=' or ':', and '^' never first."""
    if not chars:
        return "(.^)"  # '^' after a character: nothing matches
    if chars == _UNIVERSE:
        return "."
    if len(chars) == 1:
        ch = next(iter(chars))
        return "\\" + ch if ch in _ERE_SPECIAL else ch
    body = ("]" if "]" in chars else "") + "".join(sorted(chars - set("]^[-")))
    body += ("[" if "[" in chars else "") + ("^" if "^" in chars else "") + ("-" if "-" in chars else "")
    if body.startswith("^"):  # only '^' and '-': "-^"
        body = body[1:] + "^"
    return f"[{body}]"


def _seq(items: Any, flags: int) -> str:
    return "".join(_node(str(op), av, flags) for op, av in items)


def _node(op: str, av: Any, flags: int) -> str:
    if op in ("LITERAL", "NOT_LITERAL", "ANY", "IN", "CATEGORY"):
        return _bracket(_chars(op, av, flags))
    if op in ("MAX_REPEAT", "MIN_REPEAT"):  # lazy or greedy: the same strings fullmatch
        lo, hi, sub = av
        body = _seq(sub, flags)
        unbounded = hi == _sre.MAXREPEAT
        if lo > _MAX_REPEAT or (not unbounded and hi > _MAX_REPEAT):
            raise ValueError(f"repeat counts above {_MAX_REPEAT} are not supported")
        if not body or (lo, hi) == (0, 0):
            return ""
        if (lo, hi) == (1, 1):
            return body
        quant = ("*" if lo == 0 else "+" if lo == 1 else f"{{{lo},}}") if unbounded else (
            "?" if (lo, hi) == (0, 1) else f"{{{lo}}}" if lo == hi else f"{{{lo},{hi}}}")
        return f"({body}){quant}"
    if op == "SUBPATTERN":
        _group, add, remove, sub = av
        if (add | remove) & re.IGNORECASE:
            raise ValueError("inline flags on a group ((?i:...)) are not supported; put (?i) at the start")
        body = _seq(sub, flags)
        return f"({body})" if body else ""
    if op == "BRANCH":
        parts = [_seq(alt, flags) for alt in av[1]]
        filled = [p for p in parts if p]
        if not filled:
            return ""
        return "(" + "|".join(filled) + (")?" if len(filled) < len(parts) else ")")
    if op == "AT":
        where = str(av)
        if where in ("AT_BEGINNING", "AT_BEGINNING_STRING"):
            return "^"
        if where in ("AT_END", "AT_END_STRING"):
            return "$"
        raise ValueError(f"{where} (\\b, \\B) is not supported")
    what = {"GROUPREF": "back-references", "GROUPREF_EXISTS": "conditional groups", "ASSERT": "look-arounds",
            "ASSERT_NOT": "look-arounds", "ATOMIC_GROUP": "atomic groups",
            "POSSESSIVE_REPEAT": "possessive repeats"}.get(op, op)
    raise ValueError(f"{what} are not supported")


def posix_ere(pattern: str) -> str:
    """``pattern`` (Python syntax, as Starlette's ``re.fullmatch`` reads it) as an
    anchored POSIX extended regular expression with the same matches among strings
    of printable ASCII. ``ValueError`` with the reason when it cannot be."""
    try:
        flags = re.compile(pattern).flags
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None
    body = _seq(_sre_parse.parse(pattern, flags), flags)
    return f"^({body})$" if body else "^$"
