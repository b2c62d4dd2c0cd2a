"""SPEC §11's guards: the Host check, the session token (URL, then cookie) and the CSRF token.

The Host check and the session token are one ASGI middleware in front of every route, static files included.
The CSRF token is checked by `batch.ui.app.checked_form`, the only way a state-changing route reads its form.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qsl, urlencode

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse, RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

FORBIDDEN = "Forbidden: open the page from the link that `invite-batch ui` printed.\n"


def csrf_token(session_token: str) -> str:
    """Bound to the session, yet neither the cookie nor the URL's token: a page we served is the only source."""
    return hmac.new(session_token.encode(), b"invite-batch ui csrf", hashlib.sha256).hexdigest()


def same(a: str | None, b: str) -> bool:
    return a is not None and hmac.compare_digest(a.encode(), b.encode())


def allowed_hosts(port: int, extra: Iterable[str] = ()) -> frozenset[str]:
    """`127.0.0.1:PORT` and `localhost:PORT` (and the served host's own name): nothing a rebinding DNS name sends."""
    return frozenset(f"[{h}]:{port}" if ":" in h else f"{h}:{port}" for h in ("127.0.0.1", "localhost", *extra))


class Guard:
    """403 for a foreign Host header or a missing session token; a token in the URL becomes a cookie."""

    def __init__(self, app: ASGIApp, *, token: str, hosts: frozenset[str], cookie: str) -> None:
        self.app, self.token, self.hosts, self.cookie = app, token, hosts, cookie

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if headers.get("host") not in self.hosts:
            await PlainTextResponse(FORBIDDEN, status_code=403)(scope, receive, send)
            return
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        from_url = next((v for k, v in query if k == "token"), None)
        if same(from_url, self.token):
            if scope["method"] in ("GET", "HEAD"):
                # Into a cookie, and out of the address bar, the history and any Referer.
                rest = urlencode([(k, v) for k, v in query if k != "token"])
                path = "/" + scope["path"].lstrip("/")  # never `//host`: a redirect stays on this server
                response = RedirectResponse(path + (f"?{rest}" if rest else ""), status_code=303)
                response.set_cookie(self.cookie, self.token, httponly=True, samesite="strict", path="/")
                await response(scope, receive, send)
                return
        elif not same(_cookie(headers, self.cookie), self.token):
            await PlainTextResponse(FORBIDDEN, status_code=403)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _cookie(headers: Headers, name: str) -> str | None:
    jar: SimpleCookie = SimpleCookie()
    for raw in headers.getlist("cookie"):
        try:
            jar.load(raw)
        except CookieError:  # a malformed Cookie header is simply no session
            return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None else None
