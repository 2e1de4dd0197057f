"""How a flow's command line ends: its result, or one plain line naming the input and the cause.

Exit statuses (the same for every flow's CLI; README "Errors and exit statuses"):
  0  done                      1  partly done (enhance: some images failed; stderr lists them)
  2  bad arguments or input    3  processing failed on valid input (ffmpeg, a model, the output disk)
  4  unexpected error (a bug: run again with --debug for the traceback)
  130  interrupted (Ctrl-C)        143  terminated (SIGTERM): within seconds, one line (core/interrupt.py)
A bad input is found before the Prefect API starts where the CLI can (`preflight_*`), cheaply; a main calls
`api_ready()` once its values are checked: the shared local Prefect server (core/local_server.py) is found
or started then, or the API the user named is checked to answer.
`--debug` (or YIVIDEO_DEBUG=1) keeps the tracebacks; without it the console log shows messages only
(the run's log in the Prefect API keeps its tracebacks either way).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import errno
import logging
import os
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NoReturn

from prefect.exceptions import TerminationSignal

from core.environment import check_environment
from core.errors import (
    ConfigError,
    MediaInputError,
    OutputError,
    PartlyDone,
    StageError,
    YiVideoError,
    printable,
)
from core.interrupt import leave, stop_on_signals, stop_requested
from core.local_server import LocalApi

EXIT_OK, EXIT_PARTIAL, EXIT_BAD_INPUT, EXIT_FAILED, EXIT_BUG = 0, 1, 2, 3, 4
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143
MIN_FREE_BYTES = 16 << 20  # below this an output root counts as full
DEBUG_FLAG = "--debug"
DEBUG_ENV = "YIVIDEO_DEBUG"
# For the temporary Prefect server a CLI starts when no PREFECT_API_URL is set (a child process reading
# these at its start): no telemetry job (it cannot reach the internet, and on a busy SQLite file its
# "database is locked" tracebacks filled the user's terminal), and only the server's critical lines.
QUIET_EMBEDDED_SERVER = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_LOGGING_LEVEL": "CRITICAL",
}
# Prefect waits 20 s for it by default; a first start (database migrations) on a busy machine took longer.
EMBEDDED_STARTUP_TIMEOUT_ENV = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
EMBEDDED_STARTUP_SECONDS = 180
EPILOG = (
    "exit status: 0 done, 1 partly done, 2 bad arguments or input, 3 processing failed, 4 unexpected "
    f"error. {DEBUG_FLAG} shows tracebacks. A file name starting with '-' goes after '--'."
)


class _MessageOnly(logging.Formatter):
    """Formats a record as its handler always did, minus the traceback."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        bare = copy.copy(record)
        bare.exc_info, bare.exc_text, bare.stack_info = None, None, None
        return self.inner.format(bare)


def quiet_tracebacks() -> Callable[[], None]:
    """Console handlers (Prefect's included) print messages only; API and file handlers are untouched.

    Returns a function that puts the formatters back (for callers inside a longer-lived process)."""
    changed: list[tuple[logging.Handler, logging.Formatter | None]] = []
    loggers = [logging.getLogger(), *[logging.getLogger(n) for n in list(logging.root.manager.loggerDict)]]
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            to_file = isinstance(handler, logging.FileHandler)
            console = isinstance(handler, logging.StreamHandler) and not to_file
            if console and not isinstance(handler.formatter, _MessageOnly):
                changed.append((handler, handler.formatter))
                handler.setFormatter(_MessageOnly(handler.formatter))

    def restore() -> None:
        for handler, formatter in changed:
            handler.setFormatter(formatter)  # type: ignore[arg-type]

    return restore


_CANNOT_WRITE = (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS)


def error_line(exc: BaseException) -> tuple[str, int]:
    """The one line a user sees for an error, and the exit status."""
    if isinstance(exc, MediaInputError):
        return f"{printable(exc.path)}: {exc.cause}", EXIT_BAD_INPUT
    if isinstance(exc, ConfigError):
        return str(exc), EXIT_BAD_INPUT
    if isinstance(exc, OutputError):
        return f"{printable(exc.path)}: {exc.cause}", EXIT_FAILED
    if isinstance(exc, PartlyDone):
        return f"{exc.stage} partly done for {printable(exc.subject)}: {exc.cause}", EXIT_PARTIAL
    if isinstance(exc, StageError):
        return f"{exc.stage} failed for {printable(exc.subject)}: {exc.cause}", EXIT_FAILED
    if isinstance(exc, YiVideoError):
        return str(exc), EXIT_FAILED
    if isinstance(exc, OSError) and exc.errno in _CANNOT_WRITE:
        where = printable(exc.filename) if exc.filename else "output"
        return f"{where}: cannot write ({os.strerror(exc.errno)})", EXIT_FAILED
    return f"unexpected {type(exc).__name__}: {exc} (run with {DEBUG_FLAG} for the traceback)", EXIT_BUG


def run_cli(main: Callable[[list[str]], int], argv: Sequence[str] | None = None) -> int:
    """Run a flow's `main(argv)`; turn any error into one line on stderr and a documented status."""
    args = list(sys.argv[1:] if argv is None else argv)
    head = args[: args.index("--")] if "--" in args else args
    debug = DEBUG_FLAG in head or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    if DEBUG_FLAG in head:
        args.remove(DEBUG_FLAG)
    restore = (lambda: None) if debug else quiet_tracebacks()
    quieted = {} if debug else {k: v for k, v in QUIET_EMBEDDED_SERVER.items() if k not in os.environ}
    os.environ.update(quieted)
    try:
        check_environment()
        with stop_on_signals(), cli_run_tags(main), _patient_embedded_server(), _serving(LocalApi()):
            return main(args)
    except KeyboardInterrupt:
        if stop_requested():  # our handler: leave now, without waiting for stage threads
            leave(EXIT_INTERRUPTED, "error: interrupted")
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except TerminationSignal:
        leave(EXIT_TERMINATED, "error: terminated (SIGTERM)")
    except Exception as exc:
        if debug:
            raise
        line, status = error_line(exc)
        print(f"error: {line}", file=sys.stderr)
        return status
    finally:
        restore()
        for key in quieted:
            os.environ.pop(key, None)


_APIS: list[LocalApi] = []  # the local API of the run_cli call in progress


@contextlib.contextmanager
def _serving(api: LocalApi) -> Iterator[None]:
    with api:
        _APIS.append(api)
        try:
            yield
        finally:
            _APIS.remove(api)


def api_ready() -> None:
    """A CLI's values are checked: make sure its Prefect API answers (the shared local server, started now
    if none runs; or the PREFECT_API_URL the user set: exit 3 with one line when it does not answer)."""
    if _APIS:
        _APIS[-1].ready()


def _patient_embedded_server() -> contextlib.AbstractContextManager:
    """Wait up to EMBEDDED_STARTUP_SECONDS for a temporary server, unless the user set the timeout."""
    if EMBEDDED_STARTUP_TIMEOUT_ENV in os.environ:
        return contextlib.nullcontext()
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, temporary_settings

    return temporary_settings({PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: EMBEDDED_STARTUP_SECONDS})


def cli_run_tags(main: Callable) -> contextlib.AbstractContextManager:
    """Tags the flow runs of a CLI call (`yivideo`, `cli`, the flow module's name): every run has tags."""
    from prefect import tags

    module = str(getattr(main, "__module__", ""))
    if module == "__main__":  # `python -m flows.subtitles`: the module's own name is in its spec
        module = getattr(getattr(sys.modules["__main__"], "__spec__", None), "name", "") or ""
    job = module.rpartition(".")[2]
    return tags("yivideo", "cli", *([job] if job and job != "__main__" else []))


def preflight_media(path: str, *kinds: str):
    """Probe and check the kind before the Prefect API starts (a bad file costs ~0.3 s, not ~10)."""
    from core.media import probe_media, require_kind

    return require_kind(probe_media(path), *kinds)


def preflight_files(paths: Sequence[str]) -> None:
    """Batch flows (enhance) let each bad file fail alone; but when none is even a readable file, say so."""
    from core.media import check_input_file

    failures = []
    for path in paths:
        try:
            check_input_file(path)
        except MediaInputError as exc:
            failures.append(exc)
    if paths and len(failures) == len(paths):
        raise failures[0]


def preflight_output_dir(output_dir: str | Path) -> Path:
    """The output root can be created and written to."""
    from core.media import shown_name, utf8_name

    root = Path(output_dir)
    if not utf8_name(root):
        raise ConfigError(f"--output-dir {shown_name(root)}: the folder name is not valid UTF-8")
    existing = next((p for p in (root, *root.parents) if p.exists()), Path("."))
    if not existing.is_dir():
        raise OutputError(existing, "is not a directory (output root)")
    if not os.access(existing, os.W_OK | os.X_OK) or _read_only(existing):
        raise OutputError(existing, "is not writable (output root)")
    free = shutil.disk_usage(existing).free
    if free < MIN_FREE_BYTES:
        raise OutputError(existing, f"no space left on device ({free:,} bytes free, output root)")
    return root


def _read_only(folder: Path) -> bool:
    return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)


def positive(kind: Callable[[str], float] = float) -> Callable[[str], float]:
    """argparse type: a number above zero (`--sample-fps 0` is refused before anything runs)."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError as exc:
            what = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from exc
        if not value > 0 or value != value or value == float("inf"):
            raise argparse.ArgumentTypeError(f"{text!r} must be above 0")
        return value

    return parse


_LIMIT_WORDS = {"greater_than_equal": "at least", "less_than_equal": "at most", "greater_than": "above",
                "less_than": "below"}  # fmt: skip


def allowed_by(model: type, name: str, kind: Callable[[str], float] = float) -> Callable[[str], float]:
    """argparse type: a number above 0 that the settings model accepts for field `name` (its own limits, so
    `--scale 100` or `--speakers 0` is refused in one line before anything starts, not by the flow after
    the server started, as a pydantic dump). `model`: a pydantic model, or a settings dataclass whose
    fields carry their limits as `Annotated[..., Field(...)]`."""
    from typing import Annotated, get_type_hints

    from pydantic import TypeAdapter, ValidationError

    if hasattr(model, "model_fields"):
        field = model.model_fields[name]
        adapter = TypeAdapter(Annotated[field.annotation, *field.metadata])
    else:
        adapter = TypeAdapter(get_type_hints(model, include_extras=True)[name])
    above_zero = positive(kind)

    def parse(text: str) -> float:
        value = above_zero(text)
        try:
            return adapter.validate_python(value)
        except ValidationError as exc:
            error = exc.errors()[0]
            words = _LIMIT_WORDS.get(error["type"])
            limit = next(iter((error.get("ctx") or {}).values()), None)
            shown = f"{limit:g}" if isinstance(limit, int | float) else limit
            cause = f"must be {words} {shown}" if words else error["msg"].lower()
            raise argparse.ArgumentTypeError(f"{text!r} {cause}") from None

    return parse


class CliParser(argparse.ArgumentParser):
    """A flow's argument parser whose refusal is one line like every other error (`--help` shows usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"error: {message} (see {self.prog} --help)\n")
