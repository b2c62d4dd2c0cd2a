"""The page's routes: upload → validate → send → progress → stop → results, and the runs found in the workdir."""

from __future__ import annotations

import bisect
import math
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..config import Config
from ..model import Status
from . import i18n
from .jobs import BUSY, EXTENSIONS, RANK, Job, JobBusyError, Jobs, Phase
from .providers import template_bytes, template_providers
from .security import Guard, allowed_hosts, csrf_token, same

HERE = Path(__file__).resolve().parent
PAGE_SIZE = 100
FORM_OVERHEAD = 64 * 1024  # multipart boundaries and the small fields, on top of the file itself
_env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                          undefined=jinja2.StrictUndefined)


def create_app(configs: Mapping[str, Config], workdir: Path, *, token: str, port: int,
               hosts: tuple[str, ...] = ()) -> Starlette:
    """The page for `configs` (name → config) over `workdir`, reachable only at 127.0.0.1/localhost:`port`."""
    jobs = Jobs(workdir, configs)
    csrf = csrf_token(token)
    max_upload = max(c.limits.max_file_size for c in configs.values())

    def render(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
        lang = i18n.choose(request.query_params.get("lang"), request.cookies.get("ib_lang"),
                           request.headers.get("accept-language", ""))
        t = i18n.translator(lang)
        other = "en" if lang == "uk" else "uk"
        switch = request.url.include_query_params(lang=other)  # the same view (and page) in the other language
        html = _env.get_template(name).render(t=t, lang=lang, other=other, csrf=csrf,
                                              switch=f"{switch.path}?{switch.query}", **context)
        response = Response(html, status_code=status_code, media_type="text/html; charset=utf-8",
                            headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                                     "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
                                     "Referrer-Policy": "no-referrer"})
        if request.query_params.get("lang") in i18n.LANGUAGES:
            response.set_cookie("ib_lang", lang, samesite="strict", path="/")
        return response

    async def checked_form(request: Request, *, upload: bool = False) -> FormData:
        """The request's form, once its CSRF token (field `csrf` or header X-CSRF-Token) is right; 403 otherwise."""
        if upload:
            length = request.headers.get("content-length")
            if length is None or not length.isdigit():
                raise HTTPException(411, "an upload needs a Content-Length")
            if int(length) > max_upload + FORM_OVERHEAD:
                raise HTTPException(413, "the file is larger than any configuration allows")
        form = await request.form(max_files=1 if upload else 0, max_fields=8)
        if not (same(request.headers.get("x-csrf-token"), csrf) or same(_text(form.get("csrf")), csrf)):
            await form.close()
            raise HTTPException(403, "missing or wrong CSRF token; reload the page and try again")
        return form

    def job_or_404(request: Request) -> Job:
        job = jobs.get(request.path_params["job_id"])
        if job is None:
            raise HTTPException(404, "no such run")
        return job

    async def index(request: Request) -> Response:
        return render(request, "index.html", configs=list(configs), providers=template_providers(),
                      jobs=jobs.all(), when=_when, error=None)

    async def upload(request: Request) -> Response:
        form = await checked_form(request, upload=True)
        t = i18n.translator(i18n.choose(None, request.cookies.get("ib_lang"),
                                        request.headers.get("accept-language", "")))
        name, file = _text(form.get("config")) or "", form.get("file")
        config = configs.get(name)
        error = None
        if config is None:
            error = t["bad_config"]
        elif not isinstance(file, UploadFile) or not file.filename:
            error = t["no_file"]
        elif Path(file.filename).suffix.lower() not in EXTENSIONS:
            error = t["bad_type"]
        elif (file.size or 0) > config.limits.max_file_size:
            error = t["too_large"].format(limit=config.limits.max_file_size)
        if error is not None or not isinstance(file, UploadFile):
            await form.close()
            return render(request, "index.html", status_code=400, configs=list(configs),
                          providers=template_providers(), jobs=jobs.all(), when=_when, error=error)
        await file.seek(0)
        try:  # streamed from the parser's spool file: a 200 MB upload is never held in memory whole
            job = await run_in_threadpool(jobs.create, file.filename or "", name, file.file)
        finally:
            await form.close()
        jobs.validate(job)
        return RedirectResponse(f"/jobs/{job.id}", status_code=303)

    async def job_page(request: Request) -> Response:
        job = job_or_404(request)
        rows = job.ordered
        pages = max(1, math.ceil(len(rows) / PAGE_SIZE))
        page = min(max(_int(request.query_params.get("page"), 1), 1), pages)
        shown = rows[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
        # Problems come first, so failed and unknown rows sit right after the invalid ones.
        start = bisect.bisect_left(rows, RANK[Status.FAILED], key=lambda r: RANK[r.status])
        attention = [r for r in rows[start:start + PAGE_SIZE] if r.status in (Status.FAILED, Status.UNKNOWN)]
        return render(request, "job.html", job=job, progress=job.progress(), line=status_line(job),
                      busy=job.phase in BUSY, rows=shown, page=page, pages=pages, attention=attention,
                      headers=job.watch.headers[:3], when=_when)

    async def progress(request: Request) -> Response:
        job = job_or_404(request)
        return JSONResponse(job.progress() | {"line": status_line(job)}, headers={"Cache-Control": "no-store"})

    def action(start: Callable[[Job], None]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            await checked_form(request)
            job = job_or_404(request)
            try:
                start(job)
            except JobBusyError as err:
                raise HTTPException(409, str(err)) from None
            return RedirectResponse(f"/jobs/{job.id}", status_code=303)
        return endpoint

    async def results(request: Request) -> Response:
        job = job_or_404(request)
        if not job.results.is_file() or job.phase in BUSY:
            raise HTTPException(404, "no results yet")
        name = f"{Path(job.filename).stem or 'partners'}.results{job.results.suffix}"
        return FileResponse(job.results, filename=name, headers={"Cache-Control": "no-store"})

    async def template(request: Request) -> Response:
        provider = request.path_params["provider"]
        if provider not in template_providers():
            raise HTTPException(404, "no such provider")
        return Response(template_bytes(provider), headers={
            "Content-Disposition": f'attachment; filename="{provider}-partners.xlsx"'},
            media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")

    routes = [
        Route("/", index),
        Route("/upload", upload, methods=["POST"]),
        Route("/jobs/{job_id}", job_page),
        Route("/jobs/{job_id}/progress", progress),
        Route("/jobs/{job_id}/validate", action(jobs.validate), methods=["POST"]),
        Route("/jobs/{job_id}/send", action(jobs.send), methods=["POST"]),
        Route("/jobs/{job_id}/stop", action(jobs.stop), methods=["POST"]),
        Route("/jobs/{job_id}/results", results),
        Route("/template/{provider}", template),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes)
    app.state.jobs = jobs
    app.add_middleware(Guard, token=token, hosts=allowed_hosts(port, hosts), cookie=f"ib_session_{port}")
    return app


def status_line(job: Job) -> str:
    """The summary line's words, then where the job is: `sent 22, …, pending 0 — finished`."""
    counts = job.live_counts()
    text = ", ".join(f"{s.value} {counts.get(s.value, 0)}" for s in Status)
    return f"{text} — {job.phase}"


def _text(value: str | UploadFile | None) -> str | None:
    return value if isinstance(value, str) else None


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M") if epoch else ""


__all__ = ["create_app", "status_line", "Phase"]
