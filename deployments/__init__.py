"""The deployed stack: its entry points are `python -m deployments.<name>`.

A PREFECT_* value Prefect refuses is one line naming it (core/environment.py) when one of the entry points
starts (`deployments.server` before it hands over to Prefect's CLI, which words it in a traceback), not on
every import: the package's light modules (the inbox ledger, the zygote's client) stay free of Prefect's
~2 s import."""

from core.environment import load_prefect_settings_or_refuse, starting_module

ENTRY_POINTS = ("web", "worker", "inbox", "bootstrap", "server")

if starting_module() in {f"deployments.{name}" for name in ENTRY_POINTS}:
    load_prefect_settings_or_refuse()
