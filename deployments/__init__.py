"""The deployed stack: its entry points are `python -m deployments.<name>`.

A PREFECT_* value Prefect refuses is one line naming it (core/environment.py) for the entry points that
import Prefect themselves. Only when one of them starts: the package's light modules (the inbox ledger, the
zygote's client) stay free of Prefect's ~2 s import, and `deployments.server` hands over to Prefect's CLI."""

from core.environment import load_prefect_settings_or_refuse, starting_module

PREFECT_ENTRY_POINTS = {"deployments.web", "deployments.worker", "deployments.inbox", "deployments.bootstrap"}

if starting_module() in PREFECT_ENTRY_POINTS:
    load_prefect_settings_or_refuse()
