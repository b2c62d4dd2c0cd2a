"""EDIN DOCflow as its documentation describes it: two-step login, SID sessions, partners, invitations, marks."""

from __future__ import annotations

import dataclasses
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from ..config import SandboxOptions
from .ledger import Ledger
from .partners import DEMO_ACCOUNT_ID, Partner, load_partners
from .wire import Request, Response, empty, error, field_error, json_response

# email → (password, accountId). The second account exists so per-account limits can be told apart.
ACCOUNTS = {"demo@example.com": ("demo-password", DEMO_ACCOUNT_ID),
            "demo2@example.com": ("demo-password", DEMO_ACCOUNT_ID + 1)}
CAPTCHA_EMAIL = "captcha@example.com"  # always asks for a captcha, which no unattended job can pass
MAX_LIMIT = 500  # the docs give no cap; one keeps a careless `limit` from dumping the whole list
MARKED_STATUS = 2  # the only value the docs' examples show


@dataclass(slots=True)
class _Session:
    email: str
    account_id: int
    last_seen: float
    route: str | None = None  # the load balancer's cookie, when `route_cookie` is on


class Edin:
    """EDIN state (partners, login tokens, sessions) and one method per documented call."""

    # Login is not here: SPEC §7 counts it among the calls that change nothing (a lost session is
    # harmless), so it gets 503s and drops but never an ambiguous 500/502/504.
    changing = frozenset({("POST", "/bdoc/partner"), ("POST", "/bdoc/partner/invitation"),
                          ("POST", "/bdoc/partner/status")})
    never_dropped: frozenset[tuple[str, str]] = frozenset()
    request_id_header = "X-Request-Id"

    def __init__(self, options: SandboxOptions, ledger: Ledger, clock: Callable[[], float],
                 wall: Callable[[], float] = time.time) -> None:
        self._idle = options.session_idle
        self._page_cap = options.page_cap
        self._route_cookie = options.route_cookie
        self._date_on_mark = options.invitation_date_on == "mark"
        self._ledger, self._clock, self._wall = ledger, clock, wall
        self._preload = load_partners(options.partners) if options.partners else []
        self._lock = threading.Lock()
        self._issued: list[str] = []
        self.reset()
        self.routes = {
            ("POST", "/bdoc/auth_uuid"): self.auth_uuid,
            ("POST", "/bdoc/auth"): self.auth,
            ("GET", "/bdoc/partners"): self.partners,
            ("POST", "/bdoc/partner"): self.create_partner,
            ("POST", "/bdoc/partner/invitation"): self.invite,
            ("POST", "/bdoc/partner/status"): self.mark,
            ("GET", "/bdoc/logout"): self.logout,
        }

    def reset(self) -> None:
        """Back to the preloaded partners, with no sessions or pending login tokens."""
        with self._lock:
            self._partners = {p.partnerId: dataclasses.replace(p) for p in sorted(self._preload,
                                                                              key=lambda p: p.partnerId)}
            self._by_code = {p.code: p.partnerId for p in self._partners.values()}
            self._next_id = max([*self._partners, 1_000_000]) + 1
            self._tokens: dict[str, str] = {}
            self._sessions: dict[str, _Session] = {}

    def set_idle(self, seconds: float) -> None:
        self._idle = seconds

    def issued_sids(self) -> list[str]:
        with self._lock:
            return list(self._issued)

    def partner_codes(self) -> list[tuple[int, str]]:
        with self._lock:
            return [(pid, p.code) for pid, p in self._partners.items()]

    def all_partners(self) -> list[dict[str, object]]:
        with self._lock:
            return [p.to_json() for p in self._partners.values()]

    def owns(self, path: str) -> bool:
        return path.startswith("/bdoc/")

    def problem(self, status: int, code: str | None, message: str,
                headers: list[tuple[str, str]] | None = None) -> Response:
        return error(status, code, message, headers=headers)

    def account(self, req: Request) -> str | None:
        """Whose rate limit a request counts against: the session's user; a login, the e-mail it names."""
        email: str | None = None
        if req.path == "/bdoc/auth_uuid":
            email = (req.form or {}).get("email")
        elif req.path == "/bdoc/auth":
            with self._lock:
                email = self._tokens.get((req.form or {}).get("token", ""))
        elif (session := self._session(req)) is not None:
            email = session.email
        return f"edin:{email.strip().lower()}" if email else None

    def _session(self, req: Request) -> _Session | None:
        """The live session named by the SID cookie, touched; an idle one is forgotten.

        With `route_cookie`, a call without the login's `route` cookie lands on a backend that
        does not know the session, so it finds none (and leaves the session alone).
        """
        sid = req.cookie("SID")
        if not sid:
            return None
        now = self._clock()
        with self._lock:
            session = self._sessions.get(sid)
            if session is None or session.route != (req.cookie("route") if self._route_cookie else None):
                return None
            if now - session.last_seen > self._idle:
                del self._sessions[sid]
                return None
            session.last_seen = max(session.last_seen, now)
            return session

    # ------------------------------------------------------------ login

    def auth_uuid(self, req: Request) -> Response:
        form = _form(req)
        if isinstance(form, Response):
            return form
        email = form.get("email", "").strip().lower()
        if not email:
            return error(400, "validation", "email is required", [field_error("email", "required", "required")])
        token = str(uuid.uuid4())  # unknown e-mails get one too, so accounts cannot be probed
        with self._lock:
            self._tokens[token] = email
        return json_response(200, {"isCaptcha": email == CAPTCHA_EMAIL, "token": token})

    def auth(self, req: Request) -> Response:
        form = _form(req)
        if isinstance(form, Response):
            return form
        token, password = form.get("token", ""), form.get("password", "")
        with self._lock:
            email = self._tokens.pop(token, None)  # a login token works once
        account = ACCOUNTS.get(email or "")
        if email is None or email == CAPTCHA_EMAIL or account is None or password != account[0]:
            return error(401, "unauthorized", "wrong login token, e-mail or password")
        sid = secrets.token_hex(16)
        route = f"{secrets.token_hex(8)}.backend{secrets.randbelow(4) + 1}" if self._route_cookie else None
        with self._lock:
            self._sessions[sid] = _Session(email, account[1], self._clock(), route)
            self._issued.append(sid)
        self._ledger.login()
        headers = [("Set-Cookie", f"SID={sid}; Path=/; HttpOnly; SameSite=Lax")]
        if route is not None:  # a second Set-Cookie header, as a load balancer adds its own
            headers.append(("Set-Cookie", f"route={route}; Path=/"))
        return Response(200, headers=headers)

    def logout(self, req: Request) -> Response:
        if self._session(req) is None:
            return _unauthorized()
        with self._lock:
            self._sessions.pop(req.cookie("SID") or "", None)
        return empty()

    # ------------------------------------------------------------ partners

    def partners(self, req: Request) -> Response:
        if self._session(req) is None:
            return _unauthorized()
        try:
            limit = min(_whole(req.arg("limit"), 20), MAX_LIMIT, self._page_cap or MAX_LIMIT)
            offset = _whole(req.arg("offset"), 0)
            registered = _flag(req.arg("is_registered"))
        except ValueError:
            return error(400, "bad_request", "limit and offset must be whole numbers ≥ 0, is_registered 0/1")
        pattern = (req.arg("search_pattern") or "").strip()
        with self._lock:
            hits = [p for p in self._partners.values()
                    if (not pattern or p.matches(pattern))
                    and (registered is None or (p.contractStatus == 1) == registered)]
            page = [p.to_json() for p in hits[offset:offset + limit]]
        return json_response(200, page)

    def create_partner(self, req: Request) -> Response:
        session = self._session(req)
        if session is None:
            return _unauthorized()
        body = _json_body(req)
        if isinstance(body, Response):
            return body
        if not isinstance(body, dict):
            return error(400, "bad_request", "the body must be a JSON object")
        problems = [field_error(k, "required", f"{k} is required") for k in ("code", "name", "contactEmail")
                    if not isinstance(body.get(k), str) or not body[k].strip()]
        problems += [field_error(k, "wrong_value", f"{k} must be text") for k in
                     ("contactPerson", "contactPhone", "comment") if body.get(k) is not None
                     and not isinstance(body[k], str)]
        if problems:
            return error(400, "validation", "the partner is incomplete", problems)
        code = body["code"].strip()
        with self._lock:
            # Undocumented, assumed: the platform keeps one partner per code and refuses a second.
            if code in self._by_code:
                return error(409, "conflict", f"a partner with code {code} already exists")
            partner = Partner(partnerId=self._next_id, code=code, name=body["name"].strip(),
                              accountId=session.account_id, contactEmail=body["contactEmail"].strip(),
                              contactPerson=body.get("contactPerson"), contactPhone=body.get("contactPhone"),
                              comment=body.get("comment"))
            self._next_id += 1
            self._partners[partner.partnerId] = partner
            self._by_code[code] = partner.partnerId
            answer = partner.to_json()
        self._ledger.partner(partner.partnerId, "created")
        return json_response(200, answer)

    def invite(self, req: Request) -> Response:
        if self._session(req) is None:
            return _unauthorized()
        form = _form(req)
        if isinstance(form, Response):
            return form
        partner_id = _positive(form.get("partner_id"))
        if partner_id is None:
            return error(400, "validation", "partner_id must be a positive integer",
                         [field_error("partner_id", "wrong_value", "a positive integer is required")])
        given = [k for k in ("contract_template_id", "owner_company_id") if form.get(k, "").strip()]
        if len(given) != 1:
            return error(400, "validation", "give exactly one of contract_template_id and owner_company_id")
        if _positive(form[given[0]]) is None:
            return error(400, "validation", f"{given[0]} must be a positive integer",
                         [field_error(given[0], "wrong_value", "a positive integer is required")])
        with self._lock:
            partner = self._partners.get(partner_id)
            if partner is None:
                return error(404, "not_found", f"no partner {partner_id}")
            if not self._date_on_mark:
                partner.invitationDate = int(self._wall())
        self._ledger.partner(partner_id, "invitations")
        return empty()

    def mark(self, req: Request) -> Response:
        if self._session(req) is None:
            return _unauthorized()
        ids = _json_body(req)
        if isinstance(ids, Response):
            return ids
        if not isinstance(ids, list) or not ids or not all(
                isinstance(i, int) and not isinstance(i, bool) for i in ids):
            return error(400, "bad_request", "the body must be a non-empty JSON array of partner ids")
        with self._lock:
            unknown = sorted({i for i in ids if i not in self._partners})
            if unknown:
                return error(400, "not_found", f"unknown partner ids: {unknown[:20]}")
            now = int(self._wall())
            for i in ids:
                self._partners[i].status = MARKED_STATUS
                if self._date_on_mark:
                    self._partners[i].invitationDate = now
        for i in ids:
            self._ledger.partner(i, "marks")
        return empty()


def _unauthorized() -> Response:
    return error(401, "unauthorized", "no session: log in first (or the session expired)")


def _form(req: Request) -> dict[str, str] | Response:
    """The multipart form's fields, or the error to answer: 415 for another body type, 400 if malformed."""
    if req.media_type != "multipart/form-data":
        return error(415, "unsupported_media_type", "the body must be multipart/form-data")
    if req.form is None:
        return error(400, "bad_request", "the multipart/form-data body is malformed")
    return req.form


def _json_body(req: Request) -> object:
    """The parsed JSON body, or the error Response to answer with."""
    if req.media_type != "application/json":
        return error(415, "unsupported_media_type", "the body must be application/json")
    try:
        return req.json()
    except ValueError:
        return error(400, "bad_request", "the body is not valid JSON")


def _whole(text: str | None, default: int) -> int:
    if text is None or not text.strip():
        return default
    n = int(text)
    if n < 0:
        raise ValueError
    return n


def _positive(text: str | None) -> int | None:
    try:
        n = int((text or "").strip())
    except ValueError:
        return None
    return n if n > 0 else None


def _flag(text: str | None) -> bool | None:
    if text is None or not text.strip():
        return None
    value = text.strip().lower()
    if value in ("1", "true"):
        return True
    if value in ("0", "false"):
        return False
    raise ValueError
