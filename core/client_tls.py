"""Prefect's API clients of a process share one verified TLS context per CA file.

Prefect 3.8 builds a new `ssl.SSLContext` from certifi's bundle (or PREFECT_API_SSL_CERT_FILE) for every
`PrefectClient` and `SyncPrefectClient` it makes, even for an http:// API that never uses it: 22-24 ms of
CPU each (parsing ~150 certificates; 0.4 ms shared). A process makes one per flow run, per start of its
events and logs workers and of its concurrency service, per web request that reads runs, per server version
check: 2.4 a test in three flow test modules (counted), so ~1800 over a suite run's 766 tests (py-spy's
121 s there overstated it: it counts threads waiting in native code as busy).
One context per file, built on first use, serves them all; SSLContext is made to be shared. A context
asked for without a CA file (Prefect's PREFECT_API_TLS_INSECURE_SKIP_VERIFY branch changes what it gets)
is built anew each time, as before; a CA file edited on disk gets a new context (keyed by its mtime).
"""

from __future__ import annotations

import functools
import os
import ssl
from typing import Any

# the Prefect modules that build a client's context with `ssl.create_default_context(cafile=...)`
CLIENT_TLS_MODULES = ("prefect.client.orchestration", "prefect._internal.version_checking")


@functools.lru_cache(maxsize=8)
def _verified_context(purpose: ssl.Purpose, cafile: str, stamp: tuple[int, int]) -> ssl.SSLContext:
    return ssl.create_default_context(purpose, cafile=cafile)


class SharedVerifiedContexts:
    """The `ssl` module as a client-building Prefect module sees it: a context with a CA file is shared."""

    def __getattr__(self, name: str) -> Any:
        return getattr(ssl, name)

    @staticmethod
    def create_default_context(
        purpose: ssl.Purpose = ssl.Purpose.SERVER_AUTH,
        *,
        cafile: str | None = None,
        capath: str | None = None,
        cadata: Any = None,
    ) -> ssl.SSLContext:
        if cafile is None or capath is not None or cadata is not None:
            return ssl.create_default_context(purpose, cafile=cafile, capath=capath, cadata=cadata)
        stat = os.stat(cafile)
        return _verified_context(purpose, os.fspath(cafile), (stat.st_mtime_ns, stat.st_size))


def share_client_tls_contexts() -> None:
    """Prefect clients made in this process from now on share their TLS context. Idempotent."""
    import importlib

    for name in CLIENT_TLS_MODULES:
        module = importlib.import_module(name)
        if not isinstance(module.ssl, SharedVerifiedContexts):
            module.ssl = SharedVerifiedContexts()
