"""The user-facing flows: one module per flow, composition and command line only.

A plain Python call (a script, a notebook without `use_local_api()`) gets Prefect's temporary server, whose
telemetry job cannot reach the internet on an offline box and logs an ERROR line into every call; it is off
unless the user set PREFECT_SERVER_ANALYTICS_ENABLED (the CLI and the shared local server do the same).
"""

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
