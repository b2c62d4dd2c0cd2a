"""EDIN DOCflow client: login with SID cookie, partner search/creation, invitations, status marks."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ...errors import AmbiguousAPIError, AuthError, FatalAPIError, RetriableAPIError, SessionExpiredError
from ...http import HttpClient, Reply
from ...logs import register_secret

log = logging.getLogger(__name__)

PAGE_SIZE = 100
MAX_PAGES = 10_000  # a million partners; beyond that the server is ignoring `offset`
LOGIN_TRIES = 3  # whole logins started over after an unanswered `auth`


@dataclass(frozen=True)
class Partner:
    """An EDIN counterparty as far as the invitation job cares."""

    partner_id: int
    code: str
    name: str
    invitation_date: int | None  # unix seconds; None when absent or 0 (never invited)


class EdinClient:
    """One EDIN account; safe to share between worker threads (one re-login per expiry)."""

    def __init__(self, http: HttpClient, *, email: str, password: str) -> None:
        self._http = http
        self._email = email
        self._password = password
        register_secret(password)
        self._lock = threading.RLock()
        # Every cookie EDIN (or a load balancer in front of it) has set, sent back as a browser would (SPEC §10);
        # None until logged in. The SID is one of them.
        self._cookies: dict[str, str] | None = None
        self._generation = 0  # bumped by every login, so threads that saw the same expiry log in once

    # ------------------------------------------------------------------ session

    def login(self) -> None:
        """Log in (auth_uuid, then auth) and keep the SID; AuthError on captcha or bad credentials."""
        with self._lock:
            for attempt in range(1, LOGIN_TRIES + 1):
                jar: dict[str, str] = {}
                token = self._login_token(jar)
                try:
                    self._session_id(token, jar)
                except AmbiguousAPIError as e:
                    # A login token works once: if `auth` went through unanswered, repeating it would be
                    # refused as a wrong password. Start over with a fresh token instead.
                    if attempt == LOGIN_TRIES:  # a network problem, not a row's: nothing was changed
                        raise RetriableAPIError(f"EDIN login: {e.message}", attempts=LOGIN_TRIES) from e
                    log.info("EDIN login answer lost (%s); starting the login again", e.message)
                    continue
                self._cookies = jar
                self._generation += 1
                break
        log.info("logged in to EDIN as %s", self._email)

    def _login_token(self, jar: dict[str, str]) -> str:
        """Step 1, POST /bdoc/auth_uuid: the one-time login token."""
        who = self._email
        try:
            reply = self._http.request("POST", "/bdoc/auth_uuid", mutating=False, files={"email": (None, who)})
        except FatalAPIError as e:
            raise AuthError(f"EDIN refused the login of {who}: {e.message}") from None
        _keep(jar, reply)
        answer = _json(reply)
        if not isinstance(answer, dict):
            raise AuthError(f"EDIN login of {who}: unexpected answer to auth_uuid (HTTP {reply.status})")
        if answer.get("isCaptcha"):
            raise AuthError(f"EDIN wants a captcha to log in {who}; an unattended run cannot pass it — "
                            "log in once in a browser, then run again")
        token = answer.get("token")
        if not isinstance(token, str) or not token:
            raise AuthError(f"EDIN login of {who}: no login token in the answer to auth_uuid")
        register_secret(token)
        return token

    def _session_id(self, token: str, jar: dict[str, str]) -> None:
        """Step 2, POST /bdoc/auth with the token and password: the SID cookie (and any other) into `jar`."""
        who = self._email
        try:
            # mutating: a drop after sending must not be retried with the same (spent) token.
            reply = self._http.request("POST", "/bdoc/auth", mutating=True, cookies=dict(jar),
                                       files={"token": (None, token), "password": (None, self._password)})
        except FatalAPIError as e:
            raise AuthError(f"EDIN login failed for {who}: wrong e-mail or password ({e.message})") from None
        _keep(jar, reply)
        if not jar.get("SID"):
            raise AuthError(f"EDIN login failed for {who}: no SID cookie in the answer "
                            f"(HTTP {reply.status}; wrong e-mail or password?)")

    def logout(self) -> None:
        """End the session; best effort, errors only logged."""
        with self._lock:
            cookies, self._cookies = self._cookies, None
        if cookies is None:
            return
        try:
            self._http.request("GET", "/bdoc/logout", mutating=False, session=True, cookies=cookies)
        except Exception as e:  # a failed logout must not turn a finished run into a failed one
            log.debug("EDIN logout failed: %s", e)

    def _relogin(self, seen_generation: int) -> None:
        """Log in again unless another thread already did since `seen_generation`."""
        with self._lock:
            if self._generation == seen_generation:
                self.login()

    def _call(self, method: str, path: str, *, mutating: bool, expect: type | None = None,
              repeat: bool = True, **kw: Any) -> tuple[Reply, Any]:
        """A call with the session: on expiry log in again once and repeat; twice in a row → AuthError.

        Repeating is safe: a 401/403 or a login page means EDIN did not process the call. With
        repeat=False the fresh login is made and the SessionExpiredError passes to the caller.
        """
        for retried in (False, True):
            with self._lock:
                if self._cookies is None:
                    self.login()
                cookies, generation = dict(self._cookies or {}), self._generation
            try:
                reply = self._http.request(method, path, mutating=mutating, session=True, cookies=cookies, **kw)
                if reply.cookies:  # a cookie set or renewed later (a load balancer's, say) is kept too
                    with self._lock:
                        if self._generation == generation and self._cookies is not None:
                            _keep(self._cookies, reply)
                return reply, (_expect(reply, expect) if expect is not None else None)
            except SessionExpiredError as e:
                if retried:
                    raise AuthError(f"EDIN rejects the session of {self._email} even right after logging in "
                                    f"({e.message})") from None
                log.info("EDIN session expired (%s); logging in again", e.message)
                self._relogin(generation)
                if not repeat:
                    raise
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ partners

    def _pages(self, pattern: str | None) -> Iterator[list[Any]]:
        """Pages of GET /bdoc/partners until the list ends (SPEC §10).

        A server may cap a page below the `limit` asked for, so a page shorter than `limit` ends the list only
        once it is also shorter than the largest page the server has given: until then the next page is asked
        for, and an empty one ends it. A page that repeats the last one (a server ignoring `offset`) ends it too.
        """
        offset, last_ids, server_page = 0, None, 0
        for _ in range(MAX_PAGES):
            params: dict[str, Any] = {"search_pattern": pattern} if pattern else {}
            params.update(limit=PAGE_SIZE, offset=offset)
            _, page = self._call("GET", "/bdoc/partners", mutating=False, params=params, expect=list)
            yield page
            ids = [item.get("partnerId") if isinstance(item, dict) else None for item in page]
            if not page or ids == last_ids or len(page) < min(server_page, PAGE_SIZE):
                return
            server_page = max(server_page, len(page))
            last_ids, offset = ids, offset + len(page)
        log.warning("EDIN partner list did not end after %d pages; stopped reading it", MAX_PAGES)

    def find_partner_by_code(self, code: str) -> Partner | None:
        """The partner whose code equals `code` exactly (the search itself matches substrings)."""
        for page in self._pages(code):
            for item in page:
                if isinstance(item, dict) and _same_code(item.get("code"), code):
                    partner = partner_from_json(item)
                    if partner is not None:
                        return partner
        return None

    def find_partner_by_id(self, partner_id: int, code: str | None = None) -> Partner | None:
        """The partner with this id: searched by `code` when given, else (or if not found) in the whole list."""
        for pattern in ([code] if code else []) + [None]:
            for page in self._pages(pattern):
                for item in page:
                    if isinstance(item, dict) and as_int(item.get("partnerId")) == partner_id:
                        return partner_from_json(item)
        return None

    def create_partner(self, *, code: str, name: str, email: str, contact_person: str | None = None,
                       phone: str | None = None, comment: str | None = None) -> Partner:
        """POST /bdoc/partner; FatalAPIError if EDIN answers without a usable partner."""
        body: dict[str, Any] = {"code": code, "name": name, "contactEmail": email}
        for key, value in (("contactPerson", contact_person), ("contactPhone", phone), ("comment", comment)):
            if value:
                body[key] = value
        try:
            reply, data = self._call("POST", "/bdoc/partner", mutating=True, json=body, expect=dict, repeat=False)
        except SessionExpiredError:
            # Creating is not idempotent, and "expired" may have been a 200 we could not read:
            # look first (the fresh login is already made), create only if it is not there.
            found = self.find_partner_by_code(code)
            if found is not None:
                return found
            reply, data = self._call("POST", "/bdoc/partner", mutating=True, json=body, expect=dict)
        partner = partner_from_json(data)
        if partner is None:
            raise FatalAPIError("EDIN created the partner but its answer has no partnerId",
                                http_status=reply.status, request_id=reply.request_id or None,
                                response=reply, attempts=reply.attempts)
        return partner

    # ------------------------------------------------------------------ invitations

    def send_invitation(self, partner_id: int, *, contract_template_id: int | None = None,
                        owner_company_id: int | None = None) -> Reply:
        """POST /bdoc/partner/invitation (multipart) with exactly one of template or owner company."""
        if (contract_template_id is None) == (owner_company_id is None):
            raise ValueError("give exactly one of contract_template_id and owner_company_id")
        fields = {"partner_id": (None, str(partner_id))}
        if contract_template_id is not None:
            fields["contract_template_id"] = (None, str(contract_template_id))
        else:
            fields["owner_company_id"] = (None, str(owner_company_id))
        reply, _ = self._call("POST", "/bdoc/partner/invitation", mutating=True, files=fields)
        return reply

    def mark_invited(self, partner_ids: Sequence[int]) -> Reply:
        """POST /bdoc/partner/status with the ids to mark "invitation sent"."""
        if not partner_ids:
            raise ValueError("mark_invited needs at least one partner id")
        # Marking sets a status: repeating it changes nothing more, so it is retried like a read.
        reply, _ = self._call("POST", "/bdoc/partner/status", mutating=False, json=[int(i) for i in partner_ids])
        return reply


def _keep(jar: dict[str, str], reply: Reply) -> None:
    """Add the cookies an answer set to `jar`; their values are secrets (a session) and never logged."""
    for name, value in reply.cookies.items():
        register_secret(value)
        jar[name] = value


def _same_code(value: Any, code: str) -> bool:
    """Exact match; a code EDIN returns as a JSON number has lost its leading zeros, so pad it back."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value).zfill(len(code)) == code
    return isinstance(value, str) and value.strip() == code


def _json(reply: Reply) -> Any:
    try:
        return reply.json()
    except ValueError:
        return None


def _expect(reply: Reply, kind: type) -> Any:
    """The body as JSON of the expected kind; a 200 with anything else is a login page → session expired."""
    data = _json(reply)
    if not isinstance(data, kind):
        raise SessionExpiredError(f"HTTP {reply.status} but the answer is not the expected JSON (a login page?)",
                                  http_status=reply.status, request_id=reply.request_id or None,
                                  response=reply, attempts=reply.attempts)
    return data


def as_int(value: Any) -> int | None:
    """An integer from an int or a digit string; None for anything else (bools, floats with a fraction)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def partner_from_json(item: Any) -> Partner | None:
    """A Partner from one element of EDIN's answer; None when it has no usable partnerId."""
    if not isinstance(item, Mapping):
        return None
    partner_id = as_int(item.get("partnerId"))
    if partner_id is None or partner_id <= 0:
        return None
    code, name = item.get("code"), item.get("name")
    invited = as_int(item.get("invitationDate"))
    return Partner(
        partner_id=partner_id,
        code="" if code is None else str(code).strip(),
        name="" if name is None else str(name).strip(),
        invitation_date=invited if invited else None,
    )
