"""Exceptions users raise from their APIs; ``error_code`` decides the HTTP status."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any, ClassVar

__all__ = [
    "BentoMLException",
    "BentohostException",
    "InvalidArgument",
    "BadInput",
    "NotFound",
    "UnprocessableEntity",
    "ServiceUnavailable",
    "InternalServerError",
    "Unauthorized",
    "Forbidden",
    "MissingDependencyException",
]


class BentoMLException(Exception):
    """Base class of every bentohost error; ``error_code`` is the HTTP status sent back.

    ``error_mapping`` maps a status to the first subclass that declares it as its
    ``error_code`` (as in BentoML): a service-to-service call raises that class for
    a dependency's error status (see :meth:`from_status`).
    """

    error_code: HTTPStatus = HTTPStatus.INTERNAL_SERVER_ERROR
    error_mapping: ClassVar[dict[HTTPStatus, type[BentoMLException]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        code = cls.__dict__.get("error_code")
        if code is not None:
            BentoMLException.error_mapping.setdefault(HTTPStatus(code), cls)

    @classmethod
    def from_status(cls, status: int, message: str = "") -> BentoMLException:
        """The exception for an HTTP error ``status``: the mapped subclass, else ``BentoMLException(error_code=status)``."""
        try:
            code = HTTPStatus(status)
        except ValueError:
            code = None
        klass = BentoMLException.error_mapping.get(code) if code is not None else None
        if klass is not None:
            return klass(message)
        exc = BentoMLException(message)
        exc.error_code = code if code is not None else HTTPStatus.INTERNAL_SERVER_ERROR
        return exc

    def __init__(self, message: str = "", *, error_code: HTTPStatus | int | None = None) -> None:
        self.message = message
        if error_code is not None:
            self.error_code = HTTPStatus(error_code)
        super().__init__(message)


BentohostException = BentoMLException


class InvalidArgument(BentoMLException):
    """The request's input is not acceptable (400)."""

    error_code = HTTPStatus.BAD_REQUEST


class BadInput(InvalidArgument):
    """The request's input could not be used (400)."""


class NotFound(BentoMLException):
    """The requested resource does not exist (404)."""

    error_code = HTTPStatus.NOT_FOUND


class UnprocessableEntity(BentoMLException):
    """The request is well formed but cannot be processed (422)."""

    error_code = HTTPStatus.UNPROCESSABLE_ENTITY


class ServiceUnavailable(BentoMLException):
    """The service cannot take the request now (503)."""

    error_code = HTTPStatus.SERVICE_UNAVAILABLE


class InternalServerError(BentoMLException):
    """An error on the server side (500)."""

    error_code = HTTPStatus.INTERNAL_SERVER_ERROR


class Unauthorized(BentoMLException):
    """Authentication required (401)."""

    error_code = HTTPStatus.UNAUTHORIZED


class Forbidden(BentoMLException):
    """Not allowed (403)."""

    error_code = HTTPStatus.FORBIDDEN


class MissingDependencyException(BentoMLException):
    """An optional package needed by a feature is not installed (500)."""
