"""The deployed stack: its entry points are `python -m deployments.<name>`.

A PREFECT_* value Prefect refuses is one line naming it (core/environment.py) for the entry points that
import Prefect themselves. Only when one of them starts: the package's light modules (the inbox ledger, the
zygote's client) stay free of Prefect's ~2 s import, and `deployments.server` hands over to Prefect's CLI."""

import sys

PREFECT_ENTRY_POINTS = {"deployments.web", "deployments.worker", "deployments.inbox", "deployments.bootstrap"}


def _starting_module() -> str | None:
    """The module `python -m` is starting (argv[0] is still "-m" while its package imports), else None."""
    if sys.argv[:1] != ["-m"] or "-m" not in sys.orig_argv[:-1]:
        return None
    return sys.orig_argv[sys.orig_argv.index("-m") + 1]


if _starting_module() in PREFECT_ENTRY_POINTS:
    from core.environment import load_prefect_settings_or_refuse

    load_prefect_settings_or_refuse()
