"""What every page shares: templates, the sign-in, the live stream and the static files.

A page is rendered whole on a load, and only its `<main>` when the page's script asks again
after an event (header `X-Eventflow-Fragment: 1`): the server stays the one place that knows how
to show the history, and no page polls on a timer.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from ..api.auth import COOKIE, cookie_reads, matches, read_pass
from ..events import encode
from ..operations import Operations, selected

HERE = Path(__file__).parent
FRAGMENT = "x-eventflow-fragment"
#: Scripts and styles of this site only, never framed: whatever a page shows of the data (a
#: log line, metadata) cannot run as script even if it escaped the templates' escaping. Inline
#: styles stay allowed for the timeline's bar positions.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


class SignIn(Exception):
    """The page needs the token: the browser is sent to the sign-in page."""


class Site:
    """The operations, the templates and the token, for the pages' handlers."""

    def __init__(self, ops: Operations, token: str) -> None:
        self.ops = ops
        self.app = ops.app
        self.history = ops.history
        self.settings = ops.settings
        self.token = token
        self.templates = Jinja2Templates(directory=HERE / "templates")
        env = self.templates.env
        env.filters["ago"] = ago
        env.filters["when"] = when
        env.filters["duration"] = duration
        env.globals["quote"] = quote

    def page(
        self,
        request: Request,
        template: str,
        *,
        title: str,
        stream: dict[str, str | list[str]] | None = None,
        status_code: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        """`template` whole, or its `main` block only for the live refresh. `stream`: the
        filters of the events that change the page (`{}`: every event; None: none)."""
        query = urllib.parse.urlencode({k: v for k, v in (stream or {}).items() if v}, doseq=True)
        response = self.templates.TemplateResponse(
            request,
            template,
            {
                "title": title,
                "fragment": request.headers.get(FRAGMENT) == "1",
                "stream": None if stream is None else f"/ui/stream?{query}",
                "open_reads": self.settings.api_open_reads,
                **context,
            },
            status_code=status_code,
        )
        response.headers["Content-Security-Policy"] = CSP
        return response

    def missing(
        self, request: Request, what: str, *, back: tuple[str, str] | None = None
    ) -> HTMLResponse:
        """The 404 page, in the site's frame, with the way back (a link and its words)."""
        return self.page(
            request, "missing.html", title="Not found", what=what, back=back, status_code=404
        )


def quote(part: object) -> str:
    """A URL part: every reserved character escaped, `/` too."""
    return urllib.parse.quote(str(part), safe="")


def ago(value: datetime | float | None, now: datetime | None = None) -> str:
    """`3 s ago`, `5 min ago`, `2 h ago`, `4 d ago`."""
    if value is None:
        return "—"
    seconds = value if isinstance(value, float | int) else _seconds_since(value, now)
    return f"{duration(seconds)} ago"


def _seconds_since(value: datetime, now: datetime | None) -> float:
    return ((now or datetime.now(UTC)) - value).total_seconds()


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def when(value: datetime | None) -> str:
    """UTC, to the millisecond: runs of one cascade are milliseconds apart."""
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def mount(api: FastAPI, ops: Operations, token: str) -> None:
    """The UI's pages under `/ui` of `api`, `/` sending there."""
    from . import views

    site = Site(ops, token)

    async def viewer(request: Request) -> None:
        """Pages need the sign-in's cookie unless reads are open."""
        if not site.settings.api_open_reads and not cookie_reads(request, token):
            raise SignIn()

    @api.exception_handler(SignIn)
    async def sign_in(request: Request, _: SignIn) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        refused = "&refused=1" if request.cookies.get(COOKIE) else ""
        query = urllib.parse.urlencode({"next": target})
        return RedirectResponse(f"/ui/login?{query}{refused}", status.HTTP_303_SEE_OTHER)

    open_pages = APIRouter(prefix="/ui", include_in_schema=False)
    pages = APIRouter(prefix="/ui", include_in_schema=False, dependencies=[Depends(viewer)])

    @api.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/ui/", status.HTTP_303_SEE_OTHER)

    @open_pages.get("/login")
    async def login(request: Request, next: str = "/ui/", refused: bool = False) -> HTMLResponse:
        return site.page(request, "login.html", title="Sign in", next=local(next), refused=refused)

    @open_pages.post("/login")
    async def signed_in(request: Request) -> Response:
        """The token from the sign-in form, kept in an HttpOnly cookie if it is the right one."""
        form = urllib.parse.parse_qs((await request.body()).decode("utf-8", "replace"))
        given = form.get("token", [""])[0].strip()
        target = local(form.get("next", ["/ui/"])[0])
        if not given or not matches(given, token):
            return site.page(
                request,
                "login.html",
                title="Sign in",
                next=target,
                refused=True,
                status_code=status.HTTP_403_FORBIDDEN,
            )
        response = RedirectResponse(target, status.HTTP_303_SEE_OTHER)
        response.set_cookie(
            COOKIE,
            read_pass(token),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return response

    @pages.get("/stream", response_class=EventSourceResponse)
    async def stream(
        type: Annotated[list[str] | None, Query()] = None,
        pipeline: str | None = None,
        dataset: str | None = None,
        partition: str | None = None,
    ) -> AsyncIterator[ServerSentEvent]:
        """Events once the history holds them, for pages to re-read themselves on. Opens with
        a `ready` event once it follows the history: a page reads itself again then, for what
        arrived between its rendering and that moment."""
        feed = ops.stored()
        try:
            yield ServerSentEvent(event="ready", raw_data="following")
            async for event in feed:
                if selected(
                    event, types=type, pipeline=pipeline, dataset=dataset, partition=partition
                ):
                    yield ServerSentEvent(raw_data=encode(event).decode(), id=event.id)
        finally:
            feed.close()

    views.add(pages, site)
    api.include_router(open_pages)
    api.include_router(pages)
    api.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")


def local(target: str) -> str:
    """Only a page of this UI: a sign-in link cannot send the browser elsewhere."""
    parsed = urllib.parse.urlsplit(target)
    odd = any(c == "\\" or ord(c) < 0x20 or ord(c) == 0x7F for c in target)
    if odd or parsed.scheme or parsed.netloc or not target.startswith("/ui/"):
        return "/ui/"
    return target


def not_found(what: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, what)
