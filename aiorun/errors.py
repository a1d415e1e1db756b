"""Engine-level errors. Each maps to the HTTP status Docker uses for the same situation.

Frontends turn them into ``{"message": ...}`` bodies; the message must name what was wrong.
"""

from __future__ import annotations


class AiorunError(Exception):
    """Base class. ``status`` is the HTTP status the API answers with."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(AiorunError):
    status = 400


class NotFound(AiorunError):
    status = 404


class Conflict(AiorunError):
    status = 409


class NotModified(AiorunError):
    status = 304


class Unavailable(AiorunError):
    """A driver or kernel feature is missing on this host."""

    status = 500
