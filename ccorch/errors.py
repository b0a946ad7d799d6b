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
