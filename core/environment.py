"""The YIVIDEO_* environment settings, checked when a command line starts, each error naming its variable.

A bad value used to surface deep inside a stage as "could not convert string to float" (the variable not
named, the stage retried three times, exit 4). `check_environment()` reads every setting below once, before
any server starts or any file is read, and raises ConfigError ("YIVIDEO_TRANSCODE_TIMEOUT_S: '10m' is not a
number of seconds": exit 2). Unset or empty means the default, as where each is read.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from core.errors import ConfigError

if TYPE_CHECKING:
    from pydantic import ValidationError


def _seconds(text: str) -> str | None:
    try:
        value = float(text)
    except ValueError:
        return "is not a number of seconds"
    return None if 0 < value < float("inf") else "must be a number of seconds above 0"


def _count(minimum: int) -> Callable[[str], str | None]:
    def check(text: str) -> str | None:
        try:
            value = int(text)
        except ValueError:
            return "is not a whole number"
        return None if value >= minimum else f"must be at least {minimum}"

    return check


def _one_of(*choices: str) -> Callable[[str], str | None]:
    def check(text: str) -> str | None:
        return None if text.strip().lower() in choices else f"is not one of {', '.join(choices)}"

    return check


SETTINGS: dict[str, Callable[[str], str | None]] = {
    "YIVIDEO_TRANSCODE_TIMEOUT_S": _seconds,
    "YIVIDEO_LOCAL_SERVER_IDLE_S": _seconds,
    "YIVIDEO_WORKER_SHUTDOWN_SECONDS": _seconds,
    "YIVIDEO_MAX_INPUT_BYTES": _count(1),
    "YIVIDEO_RESIDENT_MODELS_MB": _count(1),
    "YIVIDEO_NVENC_SESSIONS": _count(1),
    "YIVIDEO_MAX_CRASH_RERUNS": _count(0),
    "YIVIDEO_GPU_GATE": _one_of("auto", "always", "never"),
    "YIVIDEO_RUNNER": _one_of("local", "ray"),
    "YIVIDEO_STAGE_CACHE": _one_of("0", "1"),
    "YIVIDEO_LOCAL_SERVER": _one_of("on", "off", "1", "0", "true", "false", "yes", "no"),
}


def check_environment(environ: dict[str, str] | None = None) -> None:
    """Every YIVIDEO_* setting above that is set holds a usable value; the first bad one raises."""
    environ = os.environ if environ is None else environ
    for name, check in SETTINGS.items():
        text = environ.get(name, "").strip()
        if text and (problem := check(text)) is not None:
            raise ConfigError(f"{name}: {text!r} {problem}")


def starting_module() -> str | None:
    """The module `python -m` is starting while its package imports (argv[0] is still "-m" then), else None
    (an import from a notebook, a script or a test)."""
    import sys

    if sys.argv[:1] != ["-m"] or "-m" not in sys.orig_argv[:-1]:
        return None
    return sys.orig_argv[sys.orig_argv.index("-m") + 1]


def load_prefect_settings_or_refuse() -> None:
    """`load_prefect_settings` as a package of entry points imports: on the command line (`python -m
    flows.<name>`, `python -m deployments.<name>`) one line and exit 2, else it raises."""
    try:
        load_prefect_settings()
    except ConfigError as exc:
        if starting_module() is None:
            raise
        import sys

        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None  # core/cli.py's EXIT_BAD_INPUT (core.cli imports this module)


def load_prefect_settings() -> None:
    """Prefect's settings built from the environment (and profile), as importing `prefect.context` does once
    per process; a PREFECT_* value Prefect refuses raises ConfigError naming the variable. Prefect's import
    reports such a value on stderr itself, over many lines, and a CLI then ended in a 60-line traceback: its
    report is held back for the one line (and let through where the settings load)."""
    import contextlib
    import io
    import sys

    from pydantic import ValidationError

    report, refused = io.StringIO(), None
    try:
        with contextlib.redirect_stderr(report):
            import prefect.context  # noqa: F401 - its import builds the settings
    except ValidationError as exc:
        refused = exc
    finally:
        if refused is None:  # loaded, or failed otherwise: Prefect's words go out as they came
            sys.stderr.write(report.getvalue())
    if refused is not None:
        raise ConfigError(_prefect_setting_refused(refused, os.environ)) from None


def _prefect_setting_refused(exc: ValidationError, environ: Mapping[str, str]) -> str:
    """'PREFECT_LOGGING_LEVEL: 'verbose' is not a value Prefect takes (Input should be ...)' for the first
    value pydantic refused; the variable is the PREFECT_* one set to it whose name ends with the field's."""
    errors = exc.errors(include_url=False)
    error = next((e for e in errors if e["type"] != "default_factory_not_called"), errors[0])
    field, given = str(error["loc"][-1]).upper(), str(error["input"])
    for name, text in environ.items():
        named = name.startswith("PREFECT_") and name.endswith(f"_{field}")
        if named and text.strip().lower() == given.lower():
            return f"{name}: {text!r} is not a value Prefect takes ({error['msg']})"
    return f"Prefect's setting {exc.title}.{field.lower()}: {given!r} is refused ({error['msg']})"
