"""Exceptions users raise from their APIs; ``error_code`` decides the HTTP status."""

from __future__ import annotations

from http import HTTPStatus

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
    """Base class of every bentohost error; ``error_code`` is the HTTP status sent back."""

    error_code: HTTPStatus = HTTPStatus.INTERNAL_SERVER_ERROR

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
