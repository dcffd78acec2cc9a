"""Typed errors. Each carries a message (what is wrong) and a fix (what to do); the CLI prints both
as one paragraph and exits non-zero without a traceback (``--debug`` or ``STREETVISION_DEBUG=1`` shows it)."""

from __future__ import annotations


class StreetVisionError(Exception):
    """Base class for every error the CLI reports as a clear message instead of a traceback."""

    exit_code = 1
    kind = "error"

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return self.message if not self.fix else f"{self.message} Fix: {self.fix}"


class ConfigError(StreetVisionError):
    """A config key, value, type or phase name is invalid."""

    exit_code = 2
    kind = "config error"


class DataError(StreetVisionError):
    """Input data is unusable: too many bad files, an empty class, leaking splits."""

    kind = "data error"


class MissingArtifactError(StreetVisionError):
    """A phase needs an artifact that neither exists nor will be produced by this run."""

    kind = "missing artifact"


class ValidationFailure(StreetVisionError):
    """A check on produced artifacts failed (merge parity, ONNX parity, probe outputs)."""

    kind = "validation failure"


class IntegrityError(StreetVisionError):
    """A file's checksum, path or schema does not match what was recorded."""

    kind = "integrity error"


class LockError(StreetVisionError):
    """Another process holds the run directory."""

    kind = "run locked"


class UsageError(StreetVisionError):
    """A command-line argument is invalid: a bad value, or an output path that cannot be written."""

    exit_code = 2
    kind = "argument error"


class HubError(StreetVisionError):
    """The Hugging Face Hub refused a request or could not be reached."""

    kind = "hub error"
