"""EdinClient unit tests against a small `responses`-backed fake of the EDIN API."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.client import RemoteDisconnected
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
import urllib3.exceptions as u3
from requests import PreparedRequest
from support import FakeClock

from batch.config import RetryPolicy, Timeouts
from batch.errors import AmbiguousAPIError, AuthError, RetriableAPIError
from batch.http import HttpClient
from batch.logs import redact
from batch.providers.edin.client import PAGE_SIZE, EdinClient, Partner

BASE = "https://edin.example.test"
EMAIL, PASSWORD = "ops@example.com", "Edin-Pa55-word!"
Answer = tuple[int, dict[str, str], str]


def _form(request: PreparedRequest) -> dict[str, str]:
    """Fields of a multipart/form-data body (enough for our small text fields)."""
    ctype = request.headers["Content-Type"]
    assert ctype.startswith("multipart/form-data; boundary=")
    boundary = ctype.split("boundary=")[1]
    body = request.body if isinstance(request.body, bytes) else str(request.body).encode()
    out = {}
    for part in body.split(f"--{boundary}".encode())[1:-1]:
        head, _, value = part.partition(b"\r\n\r\n")
        name = head.split(b'name="')[1].split(b'"')[0].decode()
        out[name] = value.rstrip(b"\r\n").decode()
    return out


class FakeEdin:
    """Enough of EDIN for the client: login, partners (substring search, paging), create, invite, mark."""

    def __init__(self, mock: responses.RequestsMock) -> None:
        self.partners: list[Any] = []
        self.valid_sid: str | None = None
        self.logins = 0
        self.captcha = False
        self.password = PASSWORD
        self.expired_answer: Answer = (401, {}, "")  # what a call with a stale SID gets
        self.ignore_offset = False
        self.tokens: list[str] = []
        self.spent: set[str] = set()
        self.drop_auth = 0
        self.expiry_barrier: threading.Barrier | None = None  # hold stale-SID answers until all have come
        self.invitations: list[dict[str, str]] = []
        self.marks: list[list[int]] = []
        self.lock = threading.Lock()
        m = mock
        m.add_callback("POST", BASE + "/bdoc/auth_uuid", callback=self.auth_uuid)
        m.add_callback("POST", BASE + "/bdoc/auth", callback=self.auth)
        m.add_callback("GET", BASE + "/bdoc/partners", callback=self.search)
        m.add_callback("POST", BASE + "/bdoc/partner", callback=self.create)
        m.add_callback("POST", BASE + "/bdoc/partner/invitation", callback=self.invite)
        m.add_callback("POST", BASE + "/bdoc/partner/status", callback=self.mark)
        m.add_callback("GET", BASE + "/bdoc/logout", callback=self.logout)

    def add(self, partner_id: int, code: Any, name: str = "Firm", **extra: Any) -> None:
        self.partners.append({"partnerId": partner_id, "code": code, "name": name, **extra})

    def auth_uuid(self, request: PreparedRequest) -> Answer:
        assert _form(request) == {"email": EMAIL}
        with self.lock:
            token = f"tok-{len(self.tokens) + 1}-uuid"
            self.tokens.append(token)
        return 200, {}, json.dumps({"isCaptcha": self.captcha, "token": token})

    def auth(self, request: PreparedRequest) -> Answer:
        form = _form(request)
        with self.lock:
            if form["token"] in self.spent or form["token"] not in self.tokens:
                return 401, {}, "<html>wrong token</html>"
            self.spent.add(form["token"])  # a login token works once
        if form["password"] != self.password:
            return 401, {}, "<html>wrong password</html>"
        with self.lock:
            self.logins += 1
            self.valid_sid = f"sid-{self.logins}-abcdef"
        if self.drop_auth > 0:  # logged in, but the answer is lost
            self.drop_auth -= 1
            raise requests.ConnectionError(u3.ProtocolError("Connection aborted.", RemoteDisconnected("closed")))
        return 200, {"Set-Cookie": f"SID={self.valid_sid}; Path=/; HttpOnly"}, ""

    def _session_ok(self, request: PreparedRequest) -> bool:
        return request.headers.get("Cookie") == f"SID={self.valid_sid}"

    def search(self, request: PreparedRequest) -> Answer:
        if not self._session_ok(request):
            if self.expiry_barrier is not None and request.headers.get("Cookie") == "SID=sid-1-abcdef":
                self.expiry_barrier.wait(timeout=5)
            return self.expired_answer
        q = parse_qs(urlsplit(request.url or "").query)
        pattern = q.get("search_pattern", [""])[0]
        limit, offset = int(q["limit"][0]), 0 if self.ignore_offset else int(q["offset"][0])
        found = [p for p in self.partners
                 if not isinstance(p, dict) or pattern in str(p.get("code")) or pattern in p.get("name", "")]
        return 200, {}, json.dumps(found[offset:offset + limit])

    def create(self, request: PreparedRequest) -> Answer:
        if not self._session_ok(request):
            return self.expired_answer
        body = json.loads(request.body or b"{}")
        partner = {"partnerId": 9000 + len(self.partners), "code": body["code"], "name": body["name"],
                   "contactEmail": body["contactEmail"], "invitationDate": 0}
        self.partners.append(partner)
        return 200, {}, json.dumps(partner)

    def invite(self, request: PreparedRequest) -> Answer:
        if not self._session_ok(request):
            return self.expired_answer
        self.invitations.append(_form(request))
        return 200, {}, ""

    def mark(self, request: PreparedRequest) -> Answer:
        if not self._session_ok(request):
            return self.expired_answer
        self.marks.append(json.loads(request.body or b"[]"))
        return 200, {}, ""

    def logout(self, request: PreparedRequest) -> Answer:
        assert self._session_ok(request)
        self.valid_sid = None
        return 200, {}, ""


@pytest.fixture
def mock() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as m:
        yield m


@pytest.fixture
def fake(mock: responses.RequestsMock) -> FakeEdin:
    return FakeEdin(mock)


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def edin(sleeps: list[float]) -> Iterator[EdinClient]:
    http = HttpClient(BASE, timeouts=Timeouts(), retry=RetryPolicy(attempts=3), limiter=None, workers=4,
                      sleep=sleeps.append)
    yield EdinClient(http, email=EMAIL, password=PASSWORD)
    http.close()


# ------------------------------------------------------------------ login

def test_login_keeps_sid_and_masks_it(edin: EdinClient, fake: FakeEdin) -> None:
    edin.login()
    assert fake.logins == 1
    assert redact(f"cookie {fake.valid_sid} and {PASSWORD}") == "cookie *** and ***"


def test_first_call_logs_in_by_itself(edin: EdinClient, fake: FakeEdin) -> None:
    fake.add(1, "12345678")
    assert edin.find_partner_by_code("12345678") is not None
    assert fake.logins == 1


def test_captcha_stops_with_auth_error(edin: EdinClient, fake: FakeEdin) -> None:
    fake.captcha = True
    with pytest.raises(AuthError, match="captcha") as err:
        edin.login()
    assert EMAIL in str(err.value) and PASSWORD not in str(err.value)
    assert err.value.exit_code == 3


def test_wrong_password(fake: FakeEdin, sleeps: list[float]) -> None:
    http = HttpClient(BASE, timeouts=Timeouts(), retry=RetryPolicy(attempts=3), limiter=None, workers=1,
                      sleep=sleeps.append)
    client = EdinClient(http, email=EMAIL, password="not-the-password")
    with pytest.raises(AuthError, match="wrong e-mail or password") as err:
        client.login()
    assert EMAIL in str(err.value) and "not-the-password" not in str(err.value)
    assert sleeps == []  # a refused login is not retried


def test_lost_login_answer_starts_over_with_a_fresh_token(edin: EdinClient, fake: FakeEdin) -> None:
    fake.drop_auth = 1
    edin.login()
    assert fake.logins == 2 and len(fake.tokens) == 2  # the spent token was not sent again
    edin.mark_invited([1])
    assert fake.marks == [[1]]


def test_login_answers_lost_every_time(edin: EdinClient, fake: FakeEdin) -> None:
    fake.drop_auth = 10
    with pytest.raises(RetriableAPIError, match="EDIN login"):
        edin.login()
    assert len(fake.tokens) == 3


def test_login_answer_without_sid(edin: EdinClient, fake: FakeEdin, mock: responses.RequestsMock) -> None:
    mock.replace(responses.POST, BASE + "/bdoc/auth", status=200, body="")
    with pytest.raises(AuthError, match="no SID cookie"):
        edin.login()


# ------------------------------------------------------------------ finding partners

def test_exact_code_among_substring_matches(edin: EdinClient, fake: FakeEdin) -> None:
    fake.add(1, "123456789", "Longer code")
    fake.add(2, "0012345678", "Another")
    fake.add(3, "12345678", "Exact", invitationDate=1700000000, status=2, unknownField={"x": 1})
    assert edin.find_partner_by_code("12345678") == Partner(partner_id=3, code="12345678", name="Exact",
                                                             invitation_date=1700000000)


def test_code_returned_as_number_gets_its_zeros_back(edin: EdinClient, fake: FakeEdin) -> None:
    fake.add(5, 123456, "Numeric code")
    assert edin.find_partner_by_code("00123456") is None  # substring search on "00123456" finds nothing
    fake.partners[0]["name"] = "x 00123456"  # ... unless the name matches; then the code is padded back
    found = edin.find_partner_by_code("00123456")
    assert found is not None and found.partner_id == 5


def test_tolerant_of_missing_fields(edin: EdinClient, fake: FakeEdin) -> None:
    fake.partners.extend([{"code": "11111111"}, "junk", {"partnerId": "17", "code": "11111111",
                                                         "invitationDate": 0}])
    assert edin.find_partner_by_code("11111111") == Partner(partner_id=17, code="11111111", name="",
                                                             invitation_date=None)


def test_pages_until_a_short_page(edin: EdinClient, fake: FakeEdin, mock: responses.RequestsMock) -> None:
    for i in range(PAGE_SIZE + 30):
        fake.add(i + 1, f"4{i:07d}", f"Firm {i}")  # all match "4"
    fake.add(999, "4", "Exact")
    found = edin.find_partner_by_code("4")
    assert found is not None and found.partner_id == 999
    offsets = [parse_qs(urlsplit(c.request.url or "").query)["offset"][0]
               for c in mock.calls if "/bdoc/partners" in (c.request.url or "")]
    assert offsets == ["0", str(PAGE_SIZE)]


def test_not_found(edin: EdinClient, fake: FakeEdin) -> None:
    fake.add(1, "87654321")
    assert edin.find_partner_by_code("12345678") is None


def test_server_ignoring_offset_does_not_loop(edin: EdinClient, fake: FakeEdin) -> None:
    fake.ignore_offset = True
    for i in range(PAGE_SIZE):
        fake.add(i + 1, f"5{i:07d}")
    assert edin.find_partner_by_code("5") is None


def test_find_by_id(edin: EdinClient, fake: FakeEdin, mock: responses.RequestsMock) -> None:
    fake.add(7, "12345678", invitationDate=1710000000)
    fake.add(8, "87654321")
    assert edin.find_partner_by_id(7, "12345678") == Partner(partner_id=7, code="12345678", name="Firm",
                                                             invitation_date=1710000000)
    found = edin.find_partner_by_id(8)  # no code: the whole list
    assert found is not None and found.code == "87654321"
    assert "search_pattern" not in (mock.calls[-1].request.url or "")
    assert edin.find_partner_by_id(404, "12345678") is None


# ------------------------------------------------------------------ session expiry

@pytest.mark.parametrize(
    "expired",
    [(401, {}, ""), (403, {}, "{}"), (200, {"Content-Type": "text/html"}, "<html>Login</html>"),
     (302, {"Location": "/login"}, "")],
    ids=["401", "403", "login-page-200", "redirect"],
)
def test_session_expiry_logs_in_once_and_repeats(edin: EdinClient, fake: FakeEdin, expired: Answer) -> None:
    fake.add(1, "12345678")
    edin.login()
    fake.valid_sid = "expired-on-server"
    fake.expired_answer = expired
    found = edin.find_partner_by_code("12345678")
    assert found is not None and fake.logins == 2


def test_expired_again_after_login_is_auth_error(edin: EdinClient, fake: FakeEdin,
                                                 mock: responses.RequestsMock) -> None:
    edin.login()
    mock.replace(responses.GET, BASE + "/bdoc/partners", status=401)
    with pytest.raises(AuthError, match="right after logging in") as err:
        edin.find_partner_by_code("12345678")
    assert fake.logins == 2 and PASSWORD not in str(err.value)


def test_mutating_call_repeated_after_401(edin: EdinClient, fake: FakeEdin) -> None:
    edin.login()
    fake.valid_sid = "expired"
    edin.send_invitation(42, contract_template_id=5551)
    assert fake.invitations == [{"partner_id": "42", "contract_template_id": "5551"}]


def test_threads_expiring_together_log_in_once(edin: EdinClient, fake: FakeEdin) -> None:
    fake.add(1, "12345678")
    edin.login()
    fake.valid_sid = "expired"
    fake.expiry_barrier = threading.Barrier(6)  # all six see the expiry before anyone logs in again
    errors: list[BaseException] = []

    def work() -> None:
        try:
            edin.find_partner_by_code("12345678")
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert errors == [] and fake.logins == 2


# ------------------------------------------------------------------ create, invite, mark

def test_create_partner(edin: EdinClient, fake: FakeEdin, mock: responses.RequestsMock) -> None:
    partner = edin.create_partner(code="12345678", name="New Firm", email="firm@example.com",
                                  contact_person="Olena", phone=None)
    assert partner == Partner(partner_id=9000, code="12345678", name="New Firm", invitation_date=None)
    body = json.loads(mock.calls[-1].request.body or b"")
    assert body == {"code": "12345678", "name": "New Firm", "contactEmail": "firm@example.com",
                    "contactPerson": "Olena"}


def test_create_after_unreadable_answer_looks_first(edin: EdinClient, fake: FakeEdin) -> None:
    edin.login()
    fake.valid_sid = "expired"
    fake.add(77, "12345678")  # as if the first POST had gone through
    fake.expired_answer = (200, {}, "<html>login</html>")
    partner = edin.create_partner(code="12345678", name="X", email="x@example.com")
    assert partner.partner_id == 77 and len(fake.partners) == 1


def test_create_after_expiry_creates_when_not_there(edin: EdinClient, fake: FakeEdin) -> None:
    edin.login()
    fake.valid_sid = "expired"
    partner = edin.create_partner(code="12345678", name="X", email="x@example.com")
    assert partner.partner_id == 9000 and len(fake.partners) == 1


def test_send_invitation_with_owner_company(edin: EdinClient, fake: FakeEdin) -> None:
    reply = edin.send_invitation(42, owner_company_id=77)
    assert reply.status == 200 and fake.invitations == [{"partner_id": "42", "owner_company_id": "77"}]


@pytest.mark.parametrize("kw", [{}, {"contract_template_id": 1, "owner_company_id": 2}], ids=["none", "both"])
def test_send_invitation_needs_exactly_one(edin: EdinClient, kw: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        edin.send_invitation(42, **kw)


def test_dropped_invitation_is_ambiguous(edin: EdinClient, fake: FakeEdin, mock: responses.RequestsMock) -> None:
    edin.login()
    mock.replace(responses.POST, BASE + "/bdoc/partner/invitation",
                 body=requests.ConnectionError("Connection aborted."))
    with pytest.raises(AmbiguousAPIError):
        edin.send_invitation(42, contract_template_id=5551)


def test_mark_invited(edin: EdinClient, fake: FakeEdin) -> None:
    assert edin.mark_invited([3, 1, 2]).status == 200
    assert fake.marks == [[3, 1, 2]]
    with pytest.raises(ValueError):
        edin.mark_invited([])


def test_logout(edin: EdinClient, fake: FakeEdin) -> None:
    edin.login()
    edin.logout()
    assert fake.valid_sid is None
    edin.logout()  # no session: nothing to do, no error


# ------------------------------------------------------------------ against the real sandbox

DEMO_EMAIL, DEMO_PASSWORD = "demo@example.com", "demo-password"


def _sandbox_client(url: str, sleeps: list[float], *, email: str = DEMO_EMAIL,
                    password: str = DEMO_PASSWORD) -> tuple[HttpClient, EdinClient]:
    http = HttpClient(url, timeouts=Timeouts(connect=2, read=5), retry=RetryPolicy(attempts=4), limiter=None,
                      workers=4, sleep=sleeps.append)
    return http, EdinClient(http, email=email, password=password)


def test_sandbox_whole_flow(sandbox: Any, sleeps: list[float]) -> None:
    http, client = _sandbox_client(sandbox.url, sleeps)
    try:
        client.login()
        assert client.find_partner_by_code("12345678") is None
        created = client.create_partner(code="12345678", name="ТОВ Ромашка", email="romashka@example.com",
                                        contact_person="Олена", phone="+380441234567", comment="from tests")
        assert created.code == "12345678" and created.invitation_date is None
        client.create_partner(code="123456789", name="Substring twin", email="twin@example.com")
        found = client.find_partner_by_code("12345678")
        assert found == created
        client.send_invitation(created.partner_id, contract_template_id=5551)
        client.mark_invited([created.partner_id])
        after = client.find_partner_by_id(created.partner_id, "12345678")
        assert after is not None and after.invitation_date is not None and after.invitation_date > 0
        ledger = sandbox.ledger()
        counts = ledger["edin"]["partners"][str(created.partner_id)]
        assert (counts["created"], counts["invitations"], counts["marks"]) == (1, 1, 1)
        assert ledger["edin"]["logins"] == 1
        client.logout()
        assert set(sandbox.issued_sids()) and all(redact(s) == "***" for s in sandbox.issued_sids())
    finally:
        http.close()
    assert sleeps == []


def test_sandbox_session_expiry_relogs_in(sandbox_factory: Any, sleeps: list[float]) -> None:
    clock = FakeClock()  # moved by hand: session idleness needs no sleeping
    server = sandbox_factory(session_idle=600, clock=clock.monotonic)
    http, client = _sandbox_client(server.url, sleeps)
    try:
        partner = client.create_partner(code="87654321", name="Firm", email="firm@example.com")
        clock.advance(601)  # ten minutes without requests: EDIN forgets the SID
        client.send_invitation(partner.partner_id, owner_company_id=77)
        ledger = server.ledger()
        assert ledger["edin"]["logins"] == 2
        assert ledger["edin"]["partners"][str(partner.partner_id)]["invitations"] == 1
        assert ledger["responses"].get("401") == 1
    finally:
        http.close()


@pytest.mark.parametrize(("email", "password", "match"),
                         [("captcha@example.com", DEMO_PASSWORD, "captcha"),
                          (DEMO_EMAIL, "wrong-password-123", "wrong e-mail or password")],
                         ids=["captcha", "wrong-password"])
def test_sandbox_login_refused(sandbox: Any, sleeps: list[float], email: str, password: str, match: str) -> None:
    http, client = _sandbox_client(sandbox.url, sleeps, email=email, password=password)
    try:
        with pytest.raises(AuthError, match=match) as err:
            client.login()
        assert email in str(err.value) and password not in str(err.value)
    finally:
        http.close()


def test_sandbox_drop_after_sending_is_ambiguous(sandbox: Any, sleeps: list[float]) -> None:
    http, client = _sandbox_client(sandbox.url, sleeps)
    try:
        partner = client.create_partner(code="11223344", name="Firm", email="f@example.com")
        sandbox.configure(drop_rate=1.0)
        with pytest.raises(AmbiguousAPIError):
            client.send_invitation(partner.partner_id, contract_template_id=5551)
        # The invitation did go through: exactly the case that must never be resent blindly.
        assert sandbox.ledger()["edin"]["partners"][str(partner.partner_id)]["invitations"] == 1
        with pytest.raises(RetriableAPIError, match="connection dropped") as err:  # a read is simply retried
            client.find_partner_by_code("11223344")
        assert err.value.attempts == 4
        sandbox.configure(drop_rate=0.0)
        found = client.find_partner_by_code("11223344")  # after drops, fresh connections work
        assert found is not None and found.invitation_date is not None
    finally:
        http.close()
    assert len(sleeps) == 3
