"""The FastAPI app: a static page, uploads, jobs started through the deployments, their state and files.

Routes: `GET /` the page; `GET /api/options` jobs, engines and the presets of the presets block;
`PUT /api/uploads/{batch}?name=` one file as the raw body (streamed, probed); `POST /api/jobs` start the
runs of a batch; `GET /api/jobs` the runs the page started (latest first, or `?ids=`), read back from Prefect;
`GET /files/{uploads|outputs}/...` a file under those two folders only.
"""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from deployments.web.jobs import (
    WEB_TAG,
    JobChoice,
    JobError,
    describe_run,
    plan_runs,
    progress_of,
    start_runs,
)
from deployments.web.uploads import (
    RateLimiter,
    UploadRejected,
    describe,
    human_size,
    probe_upload,
    sanitize_name,
    save_stream,
)

STATIC = Path(__file__).parent / "static"
TOKEN_COOKIE = "yivideo_token"
_BATCH = re.compile(r"^[0-9a-f]{8,32}$")


@dataclass
class WebSettings:
    """Where uploads and outputs live, the limits, and the token (None: loopback only, no token)."""

    data_dir: Path
    max_upload_bytes: int = 2 * 1024**3
    uploads_per_minute: int = 120
    token: str | None = None
    presets_block: str | None = None
    ui_url: str | None = None

    @property
    def uploads(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def outputs(self) -> Path:
        return self.data_dir / "outputs"


class StartRequest(BaseModel):
    batch: str = Field(description="the batch the files were uploaded into")
    items: list[JobChoice]


def create_app(settings: WebSettings) -> FastAPI:
    app = FastAPI(title="YiVideo upload", docs_url=None, redoc_url=None)
    settings.uploads.mkdir(parents=True, exist_ok=True)
    settings.outputs.mkdir(parents=True, exist_ok=True)
    limiter = RateLimiter(settings.uploads_per_minute)
    probed: dict[str, tuple[Path, str]] = {}  # upload id -> (saved path, kind): only probed files may run

    @app.middleware("http")
    async def require_token(request: Request, call_next):
        if settings.token and request.url.path != "/health":
            given = (
                request.headers.get("x-yivideo-token")
                or request.cookies.get(TOKEN_COOKIE)
                or request.query_params.get("token")
                or ""
            )
            if not secrets.compare_digest(given, settings.token):
                return PlainTextResponse("a token is required: open this page as /?token=<token>", 401)
        response = await call_next(request)
        if settings.token and request.query_params.get("token") == settings.token:
            response.set_cookie(TOKEN_COOKIE, settings.token, httponly=True, samesite="strict")
        return response

    @app.exception_handler(UploadRejected)
    async def rejected(_: Request, exc: UploadRejected) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=exc.status)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/")
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/api/options")
    async def options() -> dict[str, Any]:
        library = await run_in_threadpool(_presets, settings.presets_block)
        return {
            "presets": [{"name": n, "description": p.description} for n, p in library.known().items()],
            "default_presets": library.default_presets,
            "engines": ["realesrgan-ncnn", "opencv-classic", "gfpgan"],
            "max_upload_bytes": settings.max_upload_bytes,
            "max_upload": human_size(settings.max_upload_bytes),
            "prefect_ui": await _ui_url(settings),
        }

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
    async def start(body: StartRequest) -> dict[str, Any]:
        missing = [c.upload for c in body.items if c.upload not in probed]
        if missing or not body.items:
            raise HTTPException(422, f"unknown uploads: {missing}" if missing else "nothing to start")
        library = await run_in_threadpool(_presets, settings.presets_block)
        triples = [(c, *probed[c.upload]) for c in body.items]
        try:
            runs = plan_runs(triples, settings.outputs, set(library.known()))
        except JobError as exc:
            raise HTTPException(422, str(exc)) from exc
        try:
            ids = await start_runs(runs, body.batch)
        except Exception as exc:  # the API is down, a deployment is missing or refused the parameters
            raise HTTPException(502, f"Prefect did not start the runs: {exc}") from exc
        return {"runs": ids}

    @app.get("/api/jobs")
    async def jobs(ids: str | None = None, limit: int = 30) -> dict[str, Any]:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterTags
        from prefect.client.schemas.sorting import FlowRunSort

        wanted = [uuid.UUID(i) for i in ids.split(",") if i] if ids else None
        run_filter = (
            FlowRunFilter(id=FlowRunFilterId(any_=wanted))
            if wanted
            else FlowRunFilter(tags=FlowRunFilterTags(all_=[WEB_TAG]))
        )
        ui = await _ui_url(settings)
        async with get_client() as client:
            runs = await client.read_flow_runs(
                flow_run_filter=run_filter, sort=FlowRunSort.START_TIME_DESC, limit=min(limit, 100)
            )
            views = []
            for run in runs:
                view = describe_run(run, settings.outputs, settings.uploads, ui)
                view["progress"], view["progress_text"] = await progress_of(client, [run.id])
                if view["final"] and run.state.is_completed():
                    view["progress"] = 100.0
                views.append(view)
        return {"jobs": views}

    @app.get("/files/{area}/{rel:path}")
    async def files(area: str, rel: str) -> FileResponse:
        root = {"uploads": settings.uploads, "outputs": settings.outputs}.get(area)
        if root is None:
            raise HTTPException(404)
        path = (root / rel).resolve()
        if not path.is_relative_to(root.resolve()) or not path.is_file() or path.name.startswith("."):
            raise HTTPException(404, "no such file")
        return FileResponse(path, filename=path.name if path.suffix in {".zip", ".mp4", ".json"} else None)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _presets(block: str | None):
    from blocks.presets import load_presets

    return load_presets(block)


async def _ui_url(settings: WebSettings) -> str:
    """The Prefect UI's address for run links: given, else PREFECT_UI_URL, else the API URL minus /api."""
    if settings.ui_url:
        return settings.ui_url.rstrip("/")
    from prefect.settings import get_current_settings

    current = get_current_settings()
    ui = getattr(current, "ui_url", None) or ""
    api = current.api.url or ""
    return (ui or re.sub(r"/api/?$", "", api)).rstrip("/")
