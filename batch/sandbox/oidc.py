"""The OpenID Connect token endpoint Diadoc uses, reduced to the Refresh Token Flow (RFC 6749 §6).

Rotation (`rotate_refresh`): every refresh answers a new refresh token and the one it presented
is revoked at once — single use, as IdentityServer's `OneTimeOnly` and most OIDC servers do it.
There is no grace period: a client that loses the answer has lost its refresh token, so drops and
ambiguous answers never touch this endpoint (in reality another host, identity.kontur.ru).
Without rotation the same refresh token comes back, as a server with `ReUse` answers.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote_plus

from .ledger import Ledger
from .wire import Request, Response, json_response

CLIENT_ID, CLIENT_SECRET = "sandbox-client", "sandbox-secret"
DEMO_REFRESH_TOKEN = "sandbox-refresh"
DEMO_USER = "diadoc-demo"


@dataclass(slots=True)
class _Access:
    user: str
    expires: float


class TokenIssuer:
    """Refresh tokens in, Bearer access tokens out; `user_of` checks a Bearer on every API call."""

    def __init__(self, ledger: Ledger, clock: Callable[[], float], *, ttl: int, rotate: bool) -> None:
        self._ledger, self._clock = ledger, clock
        self._ttl, self._rotate = ttl, rotate
        self._lock = threading.Lock()
        self._issued: list[str] = []
        self.reset()

    def reset(self) -> None:
        """Back to the one demo refresh token; every access token forgotten."""
        with self._lock:
            self._refresh: dict[str, str] = {DEMO_REFRESH_TOKEN: DEMO_USER}
            self._access: dict[str, _Access] = {}

    def issued(self) -> list[str]:
        """Every access and refresh token ever issued, for tests that prove no output leaks one."""
        with self._lock:
            return list(self._issued)

    def user_of(self, req: Request) -> str | None:
        """The user behind a live `Authorization: Bearer` token; None for none, an unknown or an expired one."""
        scheme, _, token = (req.header("Authorization") or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        with self._lock:
            access = self._access.get(token.strip())
            if access is None or self._clock() >= access.expires:
                return None
            return access.user

    def client_of(self, req: Request) -> str | None:
        """The client id a token request names (for its rate limit)."""
        return _client(req, _form(req))[0]

    def token(self, req: Request) -> Response:
        form = _form(req)
        if form is None:
            return _oauth_error(400, "invalid_request", "the body must be application/x-www-form-urlencoded")
        client_id, client_secret = _client(req, form)
        if client_id != CLIENT_ID or client_secret != CLIENT_SECRET:
            self._ledger.token("refused")
            return _oauth_error(401, "invalid_client", "unknown client or wrong secret",
                                [("WWW-Authenticate", 'Basic realm="identity"')])
        if form.get("grant_type") != "refresh_token":
            return _oauth_error(400, "unsupported_grant_type", "only grant_type=refresh_token is served here")
        presented = form.get("refresh_token", "")
        with self._lock:
            user = self._refresh.get(presented)
            if user is None:
                refused = True
            else:
                refused = False
                access = secrets.token_urlsafe(32)
                self._access[access] = _Access(user, self._clock() + self._ttl)
                refresh = presented
                if self._rotate:
                    del self._refresh[presented]  # single use: the old one is dead from now on
                    refresh = secrets.token_urlsafe(32)
                    self._refresh[refresh] = user
                self._issued += [access, refresh] if self._rotate else [access]
        if refused:
            self._ledger.token("refused")
            return _oauth_error(400, "invalid_grant", "the refresh token is unknown, expired or revoked")
        self._ledger.token("issued")
        if self._rotate:
            self._ledger.token("rotated")
        return json_response(200, {"access_token": access, "expires_in": self._ttl, "token_type": "Bearer",
                                   "refresh_token": refresh, "scope": "Diadoc.PublicAPI offline_access"},
                             headers=[("Cache-Control", "no-store"), ("Pragma", "no-cache")])


def _form(req: Request) -> dict[str, str] | None:
    if req.media_type != "application/x-www-form-urlencoded":
        return None
    try:
        text = req.body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return {k: v[0] for k, v in parse_qs(text, keep_blank_values=True).items()}


def _client(req: Request, form: dict[str, str] | None) -> tuple[str | None, str | None]:
    """Client credentials from HTTP Basic (RFC 6749 §2.3.1, form-encoded inside) or from the form."""
    scheme, _, value = (req.header("Authorization") or "").strip().partition(" ")
    if scheme.lower() == "basic":
        try:
            user, sep, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None, None
        return (unquote_plus(user), unquote_plus(password)) if sep else (None, None)
    form = form or {}
    return form.get("client_id"), form.get("client_secret")


def _oauth_error(status: int, code: str, description: str,
                 headers: list[tuple[str, str]] | None = None) -> Response:
    """RFC 6749 §5.2: a JSON object with `error` (and a description)."""
    return json_response(status, {"error": code, "error_description": description},
                         headers=[("Cache-Control", "no-store"), *(headers or [])])
