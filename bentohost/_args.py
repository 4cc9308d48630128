"""Bento arguments: ``serve --arg KEY=VALUE`` and ``--arg-file FILE``, read by
:func:`use_arguments` in the user's service file, as BentoML 1.4's
``bentoml.use_arguments`` reads them.

The launcher writes the ``--arg`` pairs (strings) into ``BENTOHOST_ARGUMENTS``;
the supervisor lays them over the file's map (YAML or JSON, read and checked in C
before any worker starts, csrc/common/yamlconf.c) and every worker inherits the
merged JSON. Outside a server nothing was given: the arguments are ``{}``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
from typing import Any, TypeVar, overload

from .exceptions import InvalidArgument

__all__ = ["ArgumentsError", "use_arguments", "arguments", "ARGUMENTS_ENV"]

ARGUMENTS_ENV = "BENTOHOST_ARGUMENTS"

T = TypeVar("T")


class ArgumentsError(InvalidArgument):
    """The arguments do not fit the schema: the server stops at startup with this one line."""


def arguments() -> dict[str, Any]:
    """The bento arguments of this server (a copy): ``{}`` when none were given."""
    text = os.environ.get(ARGUMENTS_ENV)
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        raise ArgumentsError(f"{ARGUMENTS_ENV} is not valid JSON") from None
    if not isinstance(value, dict):
        raise ArgumentsError(f"{ARGUMENTS_ENV} must be a JSON object")
    return value


def _one_line(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        parts = []
        for err in errors():
            where = ".".join(str(p) for p in err.get("loc", ())) or "(arguments)"
            parts.append(f"{where}: {err.get('msg', '')}")
        return "; ".join(parts)
    return " ".join(str(exc).split())


@overload
def use_arguments(model: type[T]) -> T: ...


@overload
def use_arguments(model: None = None) -> types.SimpleNamespace: ...


def use_arguments(model: type[Any] | None = None) -> Any:
    """The bento arguments given to ``serve --arg`` / ``--arg-file``.

    With a pydantic model (or a dataclass, validated through pydantic) they are
    validated into an instance, its defaults filling what was not given; without
    one, a ``types.SimpleNamespace`` of the raw values (``--arg`` values are
    strings). A validation error raises :class:`ArgumentsError`, an
    ``InvalidArgument``, with every problem on one line.
    """
    values = arguments()
    if model is None:
        return types.SimpleNamespace(**values)
    from pydantic import BaseModel, TypeAdapter, ValidationError

    try:
        if isinstance(model, type) and issubclass(model, BaseModel):
            return model(**values)
        if dataclasses.is_dataclass(model):
            return TypeAdapter(model).validate_python(values)
    except (ValidationError, TypeError) as exc:
        raise ArgumentsError(
            f"Argument error. Please provide correct arguments via --arg option: {_one_line(exc)}"
        ) from None
    raise TypeError(f"use_arguments() takes a pydantic model or a dataclass, got {model!r}")
