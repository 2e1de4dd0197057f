"""The FastAPI app: a static page, uploads, jobs started through the deployments, their state and files.

Routes: `GET /` the page; `GET /api/options` jobs by kind, engines that run here, ranges, presets;
`POST /api/check` the rows before their upload (each refused alone, in plain words); `PUT
/api/uploads/{batch}?name=` one file as the raw body (streamed, probed); `POST /api/jobs` start the runs of
the rows that pass; `GET /api/jobs` this page's runs of this user (`?all=1`: everyone's on the server),
read back from Prefect; `GET /files/{uploads|outputs}/...[?as=name]` a file under those two folders only.
Every request must name this page's host (`Host`: the bound address or a configured list): a page on
loopback without a token is otherwise reachable by DNS rebinding.
"""

from __future__ import annotations

import re
import secrets
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from deployments.web.choices import (
    JobChoice,
    JobRefused,
    Refusal,
    check_choice,
    kind_of_name,
    options,
    plain_validation,
)
from deployments.web.jobs import PAGE_TAG, USER_TAG, WEB_TAG, page_id, plan_runs, start_runs, user_slug
from deployments.web.uploads import (
    RateLimiter,
    UploadRejected,
    describe,
    human_size,
    probe_upload,
    sanitize_name,
    save_stream,
)
from deployments.web.views import SettledProgress, describe_run

STATIC = Path(__file__).parent / "static"
TOKEN_COOKIE = "yivideo_token"
USER_COOKIE = "yivideo_user"
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
_BATCH = re.compile(r"^[0-9a-f]{8,32}$")


@dataclass
class WebSettings:
    """Where uploads and outputs live, the limits, the token (None: loopback only) and who may call it."""

    data_dir: Path
    max_upload_bytes: int = 2 * 1024**3
    uploads_per_minute: int = 120
    token: str | None = None
    presets_block: str | None = None
    ui_url: str | None = None
    bind_host: str = "127.0.0.1"
    allowed_hosts: frozenset[str] = field(default_factory=frozenset)  # beside the bound address
    page: str | None = None  # this page's name on the Prefect server (default: a hash of host and folder)

    @property
    def uploads(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def outputs(self) -> Path:
        return self.data_dir / "outputs"

    def host_allowed(self, host: str) -> bool:
        """The Host header names this page: the bound address, loopback names on loopback, or the list."""
        if host.startswith("["):  # [::1]:8080
            name = host[1:].split("]")[0]
        else:
            name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        name = name.lower()
        if name in self.allowed_hosts or name == self.bind_host:
            return True
        if self.bind_host in LOOPBACK_NAMES or self.bind_host.startswith("127."):
            return name in LOOPBACK_NAMES
        return self.bind_host in ("0.0.0.0", "::") and not self.allowed_hosts  # all interfaces, no list


class StartRequest(BaseModel):
    batch: str = Field(description="the batch the files were uploaded into")
    rows: list[list[JobChoice]] = Field(description="one row per file: its jobs")


class CheckRequest(BaseModel):
    rows: list[list[JobChoice]]


def create_app(settings: WebSettings) -> FastAPI:
    app = FastAPI(title="YiVideo upload", docs_url=None, redoc_url=None)
    settings.uploads.mkdir(parents=True, exist_ok=True)
    settings.outputs.mkdir(parents=True, exist_ok=True)
    limiter = RateLimiter(settings.uploads_per_minute)
    probed: dict[str, tuple[Path, str]] = {}  # upload id -> (saved path, kind): only probed files may run
    page = page_id(settings.data_dir, settings.page)
    ui = PrefectLink(settings)
    settled = SettledProgress()  # finished runs' progress, read once (the page polls every second)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if not settings.host_allowed(request.headers.get("host", "")):
            return PlainTextResponse("this page does not answer to that host name (Host header refused)", 421)
        if settings.token and request.url.path != "/health":
            given = (
                request.headers.get("x-yivideo-token")
                or request.cookies.get(TOKEN_COOKIE)
                or request.query_params.get("token")
                or ""
            )
            if not secrets.compare_digest(given, settings.token):
                return PlainTextResponse("a token is required: open this page as /?token=<token>", 401)
        user = user_slug(request.cookies.get(USER_COOKIE))
        request.state.user = user or f"guest-{secrets.token_hex(3)}"
        response = await call_next(request)
        if settings.token and request.query_params.get("token") == settings.token:
            response.set_cookie(TOKEN_COOKIE, settings.token, httponly=True, samesite="strict")
        if not user:  # a browser's first visit: who it is, until its person gives a name
            response.set_cookie(USER_COOKIE, request.state.user, samesite="strict", max_age=365 * 86400)
        return response

    @app.exception_handler(UploadRejected)
    async def rejected(_: Request, exc: UploadRejected) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": f"not accepted: {plain_validation(list(exc.errors()))}"}, 422)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/")
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/api/options")
    async def page_options(request: Request) -> dict[str, Any]:
        library = await run_in_threadpool(_presets, settings.presets_block)
        described = {n: p.description for n, p in library.known().items()}
        offered = await run_in_threadpool(options, described, library.default_presets)
        return {
            **offered,
            "max_upload_bytes": settings.max_upload_bytes,
            "max_upload": human_size(settings.max_upload_bytes),
            "prefect_ui": await ui.url(),
            "page": page,
            "user": request.state.user,
        }

    @app.post("/api/check")
    async def check(body: CheckRequest) -> dict[str, Any]:
        library = await run_in_threadpool(_presets, settings.presets_block)
        refused = []
        for index, row in enumerate(body.rows):
            for choice in row:
                name = sanitize_name(choice.name or "upload")
                try:
                    if choice.size is not None and choice.size > settings.max_upload_bytes:
                        raise JobRefused(f"{name} is {human_size(choice.size)}, above the upload limit of "
                                         f"{human_size(settings.max_upload_bytes)}")  # fmt: skip
                    check_choice(choice, name, kind_of_name(name), set(library.known()))
                except JobRefused as exc:
                    refused.append(Refusal(index, name, str(exc)).__dict__)
                    break
        return {"refused": refused}

    @app.put("/api/uploads/{batch}")
    async def upload(batch: str, name: str, request: Request) -> dict[str, Any]:
        if not _BATCH.match(batch):
            raise HTTPException(400, "bad batch id")
        limiter.check(request.client.host if request.client else "unknown")
        safe = sanitize_name(name)
        length = request.headers.get("content-length")
        path = await save_stream(
            request.stream(), settings.uploads / batch, safe, settings.max_upload_bytes,
            int(length) if length and length.isdigit() else None,
        )  # fmt: skip
        info = await run_in_threadpool(probe_upload, path)
        upload_id = uuid.uuid4().hex
        probed[upload_id] = (path, info.kind)
        return {"upload": upload_id, "name": path.name, "kind": info.kind, "summary": describe(info)}

    @app.post("/api/jobs")
    async def start(body: StartRequest, request: Request) -> dict[str, Any]:
        missing = [c.upload for row in body.rows for c in row if c.upload not in probed]
        if missing or not any(body.rows):
            raise HTTPException(422, f"unknown uploads: {missing}" if missing else "nothing to start")
        library = await run_in_threadpool(_presets, settings.presets_block)
        rows = [[(c, *probed[c.upload]) for c in row] for row in body.rows]
        runs, refused = plan_runs(rows, settings.outputs, set(library.known()))
        tags = [f"{PAGE_TAG}{page}", f"{USER_TAG}{request.state.user}", f"web-batch:{body.batch}"]
        try:
            ids = await start_runs(runs, tags)
        except Exception as exc:  # the API is down, a deployment is missing or refused the parameters
            raise HTTPException(502, f"Prefect did not start the runs: {exc}") from exc
        return {"runs": ids, "refused": [r.__dict__ for r in refused]}

    @app.get("/api/jobs")
    async def jobs(request: Request, ids: str | None = None, limit: int = 30, all: bool = False):
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterTags
        from prefect.client.schemas.sorting import FlowRunSort

        wanted = [uuid.UUID(i) for i in ids.split(",") if i] if ids else None
        mine = [WEB_TAG] if all else [WEB_TAG, f"{PAGE_TAG}{page}", f"{USER_TAG}{request.state.user}"]
        run_filter = FlowRunFilter(id=FlowRunFilterId(any_=wanted)) if wanted else None
        run_filter = run_filter or FlowRunFilter(tags=FlowRunFilterTags(all_=mine))
        link = await ui.url()
        async with get_client() as client:
            runs = await client.read_flow_runs(
                flow_run_filter=run_filter, sort=FlowRunSort.START_TIME_DESC, limit=min(limit, 100)
            )
            views = []
            for run in runs:
                view = describe_run(run, settings.outputs, settings.uploads, link)
                view["progress"], view["progress_lines"] = await settled.read(client, run, view["final"])
                if view["final"] and run.state.is_completed():
                    view["progress"] = 100.0
                views.append(view)
        return {"jobs": views, "user": request.state.user, "page": page}

    @app.get("/files/{area}/{rel:path}")
    async def files(area: str, rel: str, request: Request) -> FileResponse:
        root = {"uploads": settings.uploads, "outputs": settings.outputs}.get(area)
        if root is None:
            raise HTTPException(404)
        path = (root / rel).resolve()
        if not path.is_relative_to(root.resolve()) or not path.is_file() or path.name.startswith("."):
            raise HTTPException(404, "no such file")
        shown = request.query_params.get("as")
        name = sanitize_name(shown) if shown else path.name
        if Path(name).suffix.lower() != path.suffix.lower():  # a download name never changes the file's type
            name = path.name
        attach = path.suffix in {".zip", ".mp4", ".json"} or name != path.name
        return FileResponse(path, filename=name if attach else None)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _presets(block: str | None):
    from blocks.presets import load_presets

    return load_presets(block)


class PrefectLink:
    """The Prefect UI's address for run links, or None where the person's browser cannot reach it.

    Given (`--prefect-ui`), else the API URL minus /api (the server this page already talks to); a derived
    loopback address is dropped when the page is served beyond loopback (a remote browser's 127.0.0.1 is its
    own machine), and a given address this page cannot reach is dropped (checked again after 30 s).
    """

    def __init__(self, settings: WebSettings) -> None:
        self.settings = settings
        self.checked: tuple[float, str | None] | None = None

    async def url(self) -> str | None:
        if self.settings.ui_url is None:
            return self.candidate()
        if self.checked and time.monotonic() - self.checked[0] < 30:
            return self.checked[1]
        candidate = self.candidate()
        if candidate and not await _reachable(candidate):
            candidate = None
        self.checked = (time.monotonic(), candidate)
        return candidate

    def candidate(self) -> str | None:
        if self.settings.ui_url:
            return self.settings.ui_url.rstrip("/")
        from urllib.parse import urlparse

        from prefect.settings import get_current_settings

        derived = re.sub(r"/api/?$", "", get_current_settings().api.url or "").rstrip("/")
        host = urlparse(derived).hostname or ""
        page_local = self.settings.bind_host in LOOPBACK_NAMES or self.settings.bind_host.startswith("127.")
        if not page_local and (host in LOOPBACK_NAMES or host.startswith("127.")):
            return None
        return derived or None


async def _reachable(url: str) -> bool:
    import httpx

    try:
        async with httpx.AsyncClient(timeout=5) as client:
            await client.get(url)
        return True
    except httpx.HTTPError:
        return False
