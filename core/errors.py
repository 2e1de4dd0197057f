"""Exceptions that name the input and the cause, so a failed Prefect state tells the user what to fix."""

from __future__ import annotations

from pathlib import Path


class YiVideoError(Exception):
    """Base of every error this pipeline raises on purpose."""

    transient = False  # True only where a retry may help (a crashed ffmpeg): see is_transient


class MediaInputError(YiVideoError, ValueError):
    """An input file is missing, empty, corrupt, of the wrong kind or too large."""

    def __init__(self, path: str | Path, cause: str) -> None:
        self.path = str(path)
        self.cause = cause
        super().__init__(f"{self.path!r}: {cause}")

    def __reduce__(self):  # picklable, so the error crosses process boundaries (Ray workers) as itself
        return type(self), (self.path, self.cause)


class OutputError(YiVideoError, OSError):
    """An output could not be written (disk full, read-only, not a directory): not the input's fault, and
    not retried (a full disk stays full for the seconds of a backoff; the run fails at once saying so)."""

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

    transient = True  # a crashed ffmpeg or engine may pass next time; deterministic subclasses say False

    def __init__(self, stage: str, subject: str | Path, cause: str) -> None:
        self.stage = stage
        self.subject = str(subject)
        self.cause = cause
        super().__init__(f"{stage} failed for {self.subject!r}: {cause}")

    def __reduce__(self):
        return type(self), (self.stage, self.subject, self.cause)


class PartlyDone(StageError):
    """A run failed after publishing some of its outputs: they stay, listed in its manifest, and the exit
    status says "partly done" (1), not "nothing written"."""

    transient = False  # the finished part is kept; a retry of the failed part is the user's call


class StageTimeout(StageError, TimeoutError):
    """A stage's own time limit passed (ffmpeg killed after its timeout): told apart by type, not words."""


class ConfigError(YiVideoError, ValueError):
    """A configuration value (engine, preset, stage name, model path) is unknown or unusable."""


class MissingModelFile(ConfigError):
    """A model file that must be on disk is not (nothing is ever downloaded): `path` is the file looked for,
    so a caller names it without reading the message."""

    def __init__(self, what: str, path: Path, hint: str = "") -> None:
        self.what, self.path = what, path
        super().__init__(f"{what} not found: looked for {path}{hint}")


# Errors from outside this package that may pass on a retry: a dropped connection or a timeout (the Prefect
# API or a database restarting). httpx's transport errors (Prefect's client) are added where httpx imports.
TRANSIENT_TYPES: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)


def _transient_types() -> tuple[type[BaseException], ...]:
    try:
        import httpx
    except ImportError:  # pragma: no cover - httpx comes with Prefect
        return TRANSIENT_TYPES
    return (*TRANSIENT_TYPES, httpx.TransportError)


def is_transient(exc: BaseException) -> bool:
    """The one retry rule: retry only what is named transient by type: our errors whose class says
    `transient = True` (StageError: a crashed ffmpeg or engine) and dropped connections or timeouts.
    Anything else (a bug such as KeyError, bad input, bad configuration, a full disk, a failed check)
    fails the same way every time, so it fails at once, never by matching its message. Nothing is retried
    once the user stopped the run (Ctrl-C, SIGTERM: core/interrupt.py): its ffmpeg died of that signal."""
    from core.interrupt import stop_requested

    if stop_requested():
        return False
    if isinstance(exc, YiVideoError):
        return bool(exc.transient)
    return isinstance(exc, _transient_types())


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
