"""Exceptions that name the input and the cause, so a failed Prefect state tells the user what to fix."""

from __future__ import annotations

from pathlib import Path


class YiVideoError(Exception):
    """Base of every error this pipeline raises on purpose."""

    transient = True  # retrying may help (an engine hiccup, a crashed ffmpeg); False: it fails the same again


class MediaInputError(YiVideoError, ValueError):
    """An input file is missing, empty, corrupt, of the wrong kind or too large."""

    transient = False

    def __init__(self, path: str | Path, cause: str) -> None:
        self.path = str(path)
        self.cause = cause
        super().__init__(f"{self.path!r}: {cause}")

    def __reduce__(self):  # picklable, so the error crosses process boundaries (Ray workers) as itself
        return type(self), (self.path, self.cause)


class OutputError(YiVideoError, OSError):
    """An output could not be written (disk full, read-only, not a directory): not the input's fault."""

    def __init__(self, path: str | Path, cause: str) -> None:
        self.path = str(path)
        self.cause = cause
        super().__init__(f"{self.path!r}: {cause}")

    def __reduce__(self):
        return type(self), (self.path, self.cause)

    def __str__(self) -> str:
        return f"{self.path!r}: {self.cause}"


class StageError(YiVideoError, RuntimeError):
    """A stage failed on valid input (ffmpeg died, a model could not load, a check failed)."""

    def __init__(self, stage: str, subject: str | Path, cause: str) -> None:
        self.stage = stage
        self.subject = str(subject)
        self.cause = cause
        super().__init__(f"{stage} failed for {self.subject!r}: {cause}")

    def __reduce__(self):
        return type(self), (self.stage, self.subject, self.cause)


class ConfigError(YiVideoError, ValueError):
    """A configuration value (engine, preset, stage name, model path) is unknown or unusable."""

    transient = False


def is_transient(exc: BaseException) -> bool:
    """The one retry rule: retry what may pass next time; bad input, bad configuration and failed checks
    (errors whose class says `transient = False`) fail the same way every time, so they never retry."""
    return bool(getattr(exc, "transient", True))


def retry_if_transient(task: object, task_run: object, state: object) -> bool:
    """`is_transient` as a Prefect `retry_condition_fn` (duck-typed: core knows nothing of Prefect)."""
    try:
        state.result()  # type: ignore[attr-defined]  # raises the stage's exception
    except Exception as exc:
        return is_transient(exc)
    return True


def printable(text: object) -> str:
    """A name as one log line: control characters (a newline in a file name) shown as escapes."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))
