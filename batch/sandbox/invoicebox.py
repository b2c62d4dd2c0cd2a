"""The Invoicebox invitation call as documented: Bearer token, strict headers, 422 validation errors."""

from __future__ import annotations

import re
import uuid
from typing import Any

from .ledger import Ledger
from .wire import Request, Response, error, field_error, json_response

# token → the path prefix its account uses. The second v3 token exists so per-account limits can be
# told apart; the l3 one is an account registered through the business cabinet (SPEC §10), which the
# /v3/ API does not know, nor the /l3/ API a v3 account (undocumented, assumed: a 401 either way).
TOKENS = {"sandbox-token": "v3", "sandbox-token-2": "v3", "sandbox-token-l3": "l3"}
PATHS = {prefix: f"/{prefix}/notification/api/invite" for prefix in ("v3", "l3")}
# `AppName/1.0 (extra)`, the comment optional; a missing or free-form User-Agent is refused.
_USER_AGENT = re.compile(r"^[A-Za-z][\w.+-]*/\d[\w.+-]*(?: \([^()]*\))?$")
_ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")


class Invoicebox:
    """Stateless apart from the ledger: the API has no look-up, so nothing else is kept."""

    changing = frozenset(("POST", path) for path in PATHS.values())
    never_dropped: frozenset[tuple[str, str]] = frozenset()
    request_id_header = "X-Request-Id"

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self.routes = {("POST", path): self.invite for path in PATHS.values()}

    def owns(self, path: str) -> bool:
        return path.startswith(("/v3/", "/l3/"))

    def problem(self, status: int, code: str | None, message: str,
                headers: list[tuple[str, str]] | None = None) -> Response:
        return error(status, code, message, headers=headers)  # a 500 is documented without a code

    def account(self, req: Request) -> str | None:
        token = _bearer(req)
        return f"invoicebox:{token}" if token in TOKENS else None

    def invite(self, req: Request) -> Response:
        if PATHS.get(TOKENS.get(_bearer(req) or "", "")) != req.path:
            return error(401, "unauthorized", "a valid Authorization: Bearer token is required")
        problems = _header_problems(req)
        if problems:
            return error(400, "bad_request", "required headers are missing or wrong", problems)
        try:
            body = req.json()
        except ValueError:
            return error(400, "bad_request", "the body is not valid JSON")
        if not isinstance(body, dict):
            return error(400, "bad_request", "the body must be a JSON object")
        problems = _field_problems(body)
        if problems:
            return error(422, "validation", "validation failed", problems)
        self._ledger.email(body["identifier"])
        return json_response(200, {"data": {"id": str(uuid.uuid4())}})


def _bearer(req: Request) -> str | None:
    scheme, _, token = (req.header("Authorization") or "").strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _header_problems(req: Request) -> list[dict[str, str]]:
    """Header problems are answered 400 (the request is malformed), field problems 422."""
    out = []
    if req.media_type != "application/json":
        out.append(field_error("Content-Type", "wrong_value", "must be application/json"))
    accept = req.header("Accept") or ""
    if "application/json" not in accept.lower():
        out.append(field_error("Accept", "wrong_value", "must be application/json"))
    agent = (req.header("User-Agent") or "").strip()
    if not agent:
        out.append(field_error("User-Agent", "required", "like AppName/1.0 (extra)"))
    elif not _USER_AGENT.match(agent):
        out.append(field_error("User-Agent", "wrong_value", "like AppName/1.0 (extra)"))
    return out


def _field_problems(body: dict[str, Any]) -> list[dict[str, str]]:
    out = []
    for name in ("partnerId", "type", "identifier"):
        if body.get(name) in (None, ""):
            out.append(field_error(name, "required", f"{name} is required"))
    partner_id, kind, identifier = body.get("partnerId"), body.get("type"), body.get("identifier")
    if partner_id not in (None, "") and not _is_uuid(partner_id):
        out.append(field_error("partnerId", "wrong_value", "must be a UUID of 36 characters"))
    if kind not in (None, "") and kind != "email":
        out.append(field_error("type", "wrong_value", "only email is supported"))
    if identifier not in (None, "") and not (
            isinstance(identifier, str) and len(identifier) <= 100 and _ADDRESS.match(identifier)):
        out.append(field_error("identifier", "wrong_value", "must be an e-mail address of at most 100 characters"))
    return out


def _is_uuid(value: Any) -> bool:
    if not isinstance(value, str) or len(value) != 36:
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
