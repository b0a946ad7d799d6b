"""The exception tree: everything ccorch raises on purpose derives from CcorchError.

The Rust extension maps its errors onto these classes once, at the binding's edge
(``core-rs/py``), so Python callers catch one tree whatever layer failed.
"""

from __future__ import annotations


class CcorchError(Exception):
    """Root of every error ccorch raises on purpose."""


class ConfigError(CcorchError):
    """A configuration value is missing, malformed or out of range."""

    def __init__(self, key: str, value: object, expected: str, source: str) -> None:
        self.key = key
        self.value = value
        self.expected = expected
        self.source = source
        super().__init__(f"{key} = {value!r} (from {source}): expected {expected}")


class DatabaseError(CcorchError):
    """The database could not be started, reached or used."""


class MigrationError(DatabaseError):
    """A schema migration failed; the database is left as it was before that file."""

    def __init__(self, file: str, reason: str) -> None:
        self.file = file
        self.reason = reason
        super().__init__(f"migration {file} failed: {reason}")


class CodecError(CcorchError, ValueError):
    """Audio data or a codec name that the media engine cannot use."""


class AcdError(CcorchError):
    """The ACD refused an event; its state is unchanged."""


class UnknownEntity(AcdError, LookupError):
    """No such agent (logged in), call (queued or in service) or queue."""


class IllegalTransition(AcdError):
    """The event is not allowed in the current state (e.g. log out during a call)."""


class QueueFull(AcdError):
    """The queue is at its configured maximum length."""


class AcdConfigError(AcdError, ValueError):
    """A queue configuration or skill expression is invalid."""


class QueueMathError(CcorchError, ValueError):
    """Erlang/staffing input outside the formula's domain."""


class DialerParamError(CcorchError, ValueError):
    """A dialer pacing or campaign-simulation parameter outside its domain."""


class MediaError(CcorchError):
    """The media engine refused a request (unknown leg or room, no free port, bad prompt)."""


_ERROR_CODES = {400: "bad_request", 403: "forbidden", 404: "not_found", 409: "conflict"}


class RequestRefused(CcorchError):
    """A request the state of things or the user's roles do not allow: answered with
    ``status`` and a JSON ``{"error": code, "message": ...}`` by the HTTP room."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        self.status, self.message = status, message
        self.code = code or _ERROR_CODES.get(status, "invalid")
        super().__init__(message)
