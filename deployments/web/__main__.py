"""python -m deployments.web: serve the upload page (127.0.0.1 by default; elsewhere only with a token)."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from pathlib import Path

from core.client_tls import share_client_tls_contexts
from deployments.web.app import WebSettings, create_app

TOKEN_ENV = "YIVIDEO_WEB_TOKEN"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="YiVideo upload page on the Prefect API (PREFECT_API_URL).")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--data-dir", type=Path, default=Path("web-data"),
                        help="uploads/ and outputs/ go here; workers must see the same path")  # fmt: skip
    parser.add_argument("--token", default=os.environ.get(TOKEN_ENV),
                        help=f"required when bound beyond loopback (or {TOKEN_ENV})")  # fmt: skip
    parser.add_argument("--max-upload-mb", type=float, default=2048, help="largest accepted file")
    parser.add_argument("--uploads-per-minute", type=int, default=120, help="per client address")
    parser.add_argument("--presets-block", default=None, help="a saved YiVideo Transcode Presets block")
    parser.add_argument("--prefect-ui", default=None,
                        help="Prefect UI address for run links, as the browsers reach it (default: the "
                        "API's address; left out when this page cannot reach it)")  # fmt: skip
    parser.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                        help="a host name this page is reached by, beside --host (repeat for several); "
                        "other Host headers are refused")  # fmt: skip
    parser.add_argument("--page-name", default=None,
                        help="this page's name on the Prefect server (its runs carry it; default: a hash of "
                        "this host and --data-dir)")  # fmt: skip
    args = parser.parse_args(argv)
    if not is_loopback(args.host) and not args.token:
        parser.error(f"--host {args.host} reaches beyond this machine: give --token (or set {TOKEN_ENV})")
    settings = WebSettings(
        data_dir=args.data_dir.resolve(),
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        uploads_per_minute=args.uploads_per_minute,
        token=args.token,
        presets_block=args.presets_block,
        ui_url=args.prefect_ui,
        bind_host=args.host,
        allowed_hosts=frozenset(h.lower() for h in args.allowed_host),
        page=args.page_name,
    )
    import uvicorn

    share_client_tls_contexts()

    print(f"upload page: http://{args.host}:{args.port}/  (data in {settings.data_dir})", flush=True)
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
