"""The user-facing flows: one module per flow, composition and command line only.

A plain Python call (a script, a notebook without `use_local_api()`) gets Prefect's temporary server, whose
telemetry job cannot reach the internet on an offline box and logs an ERROR line into every call; it is off
unless the user set PREFECT_SERVER_ANALYTICS_ENABLED (the CLI and the shared local server do the same).
Every flow run of a process that imports a flow ends when its work does (runtime/heartbeat.py), and its
Prefect clients share one TLS context (core/client_tls.py). A PREFECT_* value Prefect refuses is named in one
line (core/environment.py), not in Prefect's traceback at import.
"""

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from core.environment import load_prefect_settings_or_refuse  # noqa: E402 - after the setting above

load_prefect_settings_or_refuse()

from core.client_tls import share_client_tls_contexts  # noqa: E402
from runtime.heartbeat import end_runs_without_joining_heartbeats  # noqa: E402

end_runs_without_joining_heartbeats()
share_client_tls_contexts()
