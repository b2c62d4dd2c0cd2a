"""The sandbox over plain HTTP: every endpoint, every documented refusal, every fault, the ledger."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from support import sandbox_process
from urllib3.util import SKIP_HEADER

from batch.config import SandboxOptions
from batch.errors import ConfigError
from batch.sandbox import SandboxServer
from batch.sandbox.wire import parse_multipart

Factory = Callable[..., SandboxServer]

DEMO = ("demo@example.com", "demo-password")
IB_PATH = "/v3/notification/api/invite"
IB_HEADERS = {"Authorization": "Bearer sandbox-token", "Accept": "application/json",
              "User-Agent": "invite-batch/0.1 (tests)"}
IB_BODY = {"partnerId": "01771534-1a57-f184-dee3-ebeb91dded76", "type": "email", "identifier": "Shop@Example.com"}


class Clock:
    """A hand-moved monotonic clock, so windows and session idleness need no sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def form(**fields: object) -> dict[str, tuple[None, str]]:
    """Fields that `requests` sends as multipart/form-data (no file names)."""
    return {k: (None, str(v)) for k, v in fields.items()}


def login(url: str, email: str = DEMO[0], password: str = DEMO[1]) -> requests.Session:
    s = requests.Session()
    r = s.post(f"{url}/bdoc/auth_uuid", files=form(email=email))
    assert r.status_code == 200
    r = s.post(f"{url}/bdoc/auth", files=form(token=r.json()["token"], password=password))
    assert r.status_code == 200, r.text
    return s


def ib_post(url: str, body: Any = None, headers: dict[str, Any] | None = None) -> requests.Response:
    return requests.post(url + IB_PATH, json=IB_BODY if body is None else body,
                         headers={**IB_HEADERS, **(headers or {})})


def create(s: requests.Session, url: str, code: str, name: str = "ТОВ Тест") -> int:
    r = s.post(f"{url}/bdoc/partner", json={"code": code, "name": name, "contactEmail": f"{code}@example.com"})
    assert r.status_code == 200, r.text
    return int(r.json()["partnerId"])


def invite(s: requests.Session, url: str, partner_id: int, **extra: object) -> requests.Response:
    fields = {"partner_id": partner_id, **(extra or {"contract_template_id": 5551})}
    return s.post(f"{url}/bdoc/partner/invitation", files=form(**fields))


def error_of(r: requests.Response) -> dict[str, Any]:
    err = r.json()["error"]
    assert isinstance(err, dict)
    return err


@pytest.fixture
def preload(tmp_path: Path) -> Path:
    partners = [{"partnerId": 501, "code": "04533319", "name": "ТОВ Партнер Нуль", "contactEmail": "p0@firma.ua",
                 "invitationDate": 1_700_000_000, "contractStatus": 1, "companyId": 42}]
    partners += [{"code": f"{40000000 + i}", "name": f"Firma {i}"} for i in range(1, 25)]
    path = tmp_path / "partners.json"
    path.write_text(json.dumps(partners, ensure_ascii=False), encoding="utf-8")
    return path


# ---------------------------------------------------------------- the server itself

@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com", "::", "10.0.0.1"])
def test_refuses_hosts_that_are_not_loopback(host: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        SandboxServer(host=host)


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.parametrize(("host", "prefix"), [
    ("localhost", "http://127.0.0.1:"),
    ("127.0.0.1", "http://127.0.0.1:"),
    pytest.param("::1", "http://[::1]:", marks=pytest.mark.skipif(not _has_ipv6(), reason="no IPv6 loopback")),
])
def test_serves_on_loopback_hosts(host: str, prefix: str) -> None:
    with SandboxServer(host=host) as server:
        assert server.url.startswith(prefix)
        assert requests.get(server.url + "/_sandbox/ledger").json()["requests"] == 0


def test_keep_alive_with_exact_lengths_and_a_request_id_on_every_answer(sandbox: SandboxServer) -> None:
    host, port = sandbox.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port))
    ids, sockets = [], set()
    try:
        for path in ("/bdoc/partners", "/bdoc/nothing-here", IB_PATH):
            conn.request("GET", path)
            r = conn.getresponse()
            body = r.read()
            assert r.version == 11 and not r.will_close
            assert int(r.headers["Content-Length"]) == len(body)
            ids.append(r.headers["X-Request-Id"])
            sockets.add(id(conn.sock))
        assert len(sockets) == 1  # one connection served all three
    finally:
        conn.close()
    assert len(set(ids)) == 3 and all(uuid.UUID(i) for i in ids)
    assert sandbox.ledger()["responses"] == {"401": 1, "404": 1, "405": 1}


def test_stop_releases_the_port_and_closes_kept_connections() -> None:
    server = SandboxServer()
    url = server.start()
    s = requests.Session()
    assert s.get(url + "/_sandbox/ledger").status_code == 200
    server.stop()
    with pytest.raises(requests.ConnectionError):
        s.get(url + "/_sandbox/ledger", timeout=2)
    server.stop()  # idempotent


def test_serve_prints_the_url_and_stops_on_sigterm() -> None:
    with sandbox_process() as url:
        assert requests.get(url + "/_sandbox/ledger", timeout=5).status_code == 200


def exchange(url: str, data: bytes) -> bytes:
    """Send raw bytes, read until the server closes the connection."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=3) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def ib_raw(extra_headers: bytes, body: bytes, *, version: bytes = b"HTTP/1.1") -> bytes:
    return (b"POST " + IB_PATH.encode() + b" " + version + b"\r\nHost: x\r\nAuthorization: Bearer sandbox-token\r\n"
            b"Accept: application/json\r\nUser-Agent: raw/1.0\r\nContent-Type: application/json\r\n"
            + extra_headers + b"\r\n" + body)


BODY = json.dumps(IB_BODY).encode()
RAW_CASES = [
    ("close", ib_raw(b"Connection: close\r\nContent-Length: %d\r\n" % len(BODY), BODY), b"HTTP/1.1 200 "),
    ("http-1.0", ib_raw(b"Content-Length: %d\r\n" % len(BODY), BODY, version=b"HTTP/1.0"), b"HTTP/1.1 200 "),
    ("chunked", ib_raw(b"Connection: close\r\nTransfer-Encoding: chunked\r\n",
                       b"%x\r\n%s\r\n0\r\n\r\n" % (len(BODY), BODY)), b"HTTP/1.1 200 "),
    ("expect-100", ib_raw(b"Connection: close\r\nExpect: 100-continue\r\nContent-Length: %d\r\n" % len(BODY),
                          BODY), b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 "),
    ("bad-request-line", b"HELLO\r\n\r\n", b"HTTP/1.1 400 "),
    ("folded-header", ib_raw(b"X-Long: a\r\n  b\r\nContent-Length: 0\r\n", b""), b"HTTP/1.1 400 "),
    ("too-large", ib_raw(b"Content-Length: %d\r\n" % (2 * 1024 * 1024), b""), b"HTTP/1.1 413 "),
    ("bad-length", ib_raw(b"Content-Length: lots\r\n", b""), b"HTTP/1.1 400 "),
]


@pytest.mark.parametrize(("data", "start"), [c[1:] for c in RAW_CASES], ids=[c[0] for c in RAW_CASES])
def test_http_framing(sandbox: SandboxServer, data: bytes, start: bytes) -> None:
    answer = exchange(sandbox.url, data)  # returns only because the server closes
    assert answer.startswith(start)
    if b" 200 " in start:
        assert b"Connection: close" in answer and answer.endswith(b"}}")


def test_parse_multipart_details() -> None:
    body = (b"--x y\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n"
            b"--x y\r\nContent-Disposition: form-data; name=\"b\"; filename=\"f.txt\"\r\n"
            b"Content-Type: text/plain; charset=cp1251\r\n\r\n" + "Київ".encode("cp1251") +
            b"\r\n--x y\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n2\r\n--x y--\r\n")
    assert parse_multipart('multipart/form-data; boundary="x y"', body) == {"a": "1", "b": "Київ"}
    assert parse_multipart("multipart/form-data; boundary=x", body) is None
    assert parse_multipart("multipart/form-data", body) is None
    assert parse_multipart('multipart/form-data; boundary="x y"', body[:-9]) is None  # no closing line


def test_malformed_multipart_is_400_not_415(sandbox: SandboxServer) -> None:
    r = requests.post(sandbox.url + "/bdoc/auth_uuid", data=b"--b\r\nno headers--b--",
                      headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert r.status_code == 400


# ---------------------------------------------------------------- EDIN login and sessions

def test_login_sets_a_sid_cookie_and_counts(sandbox: SandboxServer) -> None:
    r = requests.post(sandbox.url + "/bdoc/auth_uuid", files=form(email="demo@example.com"))
    assert r.status_code == 200
    assert r.json()["isCaptcha"] is False
    token = r.json()["token"]
    r = requests.post(sandbox.url + "/bdoc/auth", files=form(token=token, password="demo-password"))
    assert r.status_code == 200
    assert r.cookies["SID"] in sandbox.issued_sids()
    assert sandbox.ledger()["edin"]["logins"] == 1


@pytest.mark.parametrize("how", ["json", "urlencoded"])
def test_login_refuses_a_body_that_is_not_multipart(sandbox: SandboxServer, how: str) -> None:
    kw: dict[str, Any] = {"json" if how == "json" else "data": {"email": "demo@example.com"}}
    assert requests.post(sandbox.url + "/bdoc/auth_uuid", **kw).status_code == 415


@pytest.mark.parametrize(("email", "password", "captcha"), [
    ("nobody@example.com", "demo-password", False),
    ("demo@example.com", "wrong", False),
    ("captcha@example.com", "demo-password", True),
], ids=["unknown-email", "wrong-password", "captcha"])
def test_login_failures(sandbox: SandboxServer, email: str, password: str, captcha: bool) -> None:
    r = requests.post(sandbox.url + "/bdoc/auth_uuid", files=form(email=email))
    assert r.status_code == 200 and r.json()["token"]  # accounts are not revealed at step 1
    assert r.json()["isCaptcha"] is captcha
    r = requests.post(sandbox.url + "/bdoc/auth", files=form(token=r.json()["token"], password=password))
    assert r.status_code == 401
    assert "SID" not in r.cookies
    assert sandbox.ledger()["edin"]["logins"] == 0


def test_login_token_works_once_and_email_is_required(sandbox: SandboxServer) -> None:
    token = requests.post(sandbox.url + "/bdoc/auth_uuid", files=form(email="demo@example.com")).json()["token"]
    auth = form(token=token, password="demo-password")
    assert requests.post(sandbox.url + "/bdoc/auth", files=auth).status_code == 200
    assert requests.post(sandbox.url + "/bdoc/auth", files=auth).status_code == 401
    assert requests.post(sandbox.url + "/bdoc/auth_uuid", files=form(other="x")).status_code == 400


SESSION_CALLS = [
    ("GET", "/bdoc/partners", {}),
    ("POST", "/bdoc/partner", {"json": {"code": "12345678", "name": "N", "contactEmail": "a@b.ua"}}),
    ("POST", "/bdoc/partner/invitation", {"files": form(partner_id=1, contract_template_id=1)}),
    ("POST", "/bdoc/partner/status", {"json": [1]}),
    ("GET", "/bdoc/logout", {}),
]


@pytest.mark.parametrize(("method", "path", "kw"), SESSION_CALLS, ids=[c[1] for c in SESSION_CALLS])
def test_calls_without_a_session_get_401(sandbox: SandboxServer, method: str, path: str,
                                         kw: dict[str, Any]) -> None:
    assert requests.request(method, sandbox.url + path, **kw).status_code == 401
    sid = login(sandbox.url).cookies["SID"]
    # The SID must come as a cookie; the same value in a header of its own does not count.
    assert requests.request(method, sandbox.url + path, headers={"SID": sid}, **kw).status_code == 401
    assert requests.request(method, sandbox.url + path, cookies={"SID": "forged"}, **kw).status_code == 401


def test_session_expires_after_idle_seconds_and_requests_keep_it_alive(sandbox_factory: Factory) -> None:
    clock = Clock()
    server = sandbox_factory(session_idle=60, clock=clock)
    s = login(server.url)
    for _ in range(3):
        clock.advance(59)
        assert s.get(server.url + "/bdoc/partners").status_code == 200
    clock.advance(61)
    assert s.get(server.url + "/bdoc/partners").status_code == 401
    clock.advance(1)
    assert s.get(server.url + "/bdoc/partners").status_code == 401  # gone for good
    assert login(server.url).get(server.url + "/bdoc/partners").status_code == 200


def test_logout_ends_the_session(sandbox: SandboxServer) -> None:
    s = login(sandbox.url)
    assert s.get(sandbox.url + "/bdoc/logout").status_code == 200
    assert s.get(sandbox.url + "/bdoc/partners").status_code == 401


# ---------------------------------------------------------------- EDIN partners

def test_search_is_a_bare_array_of_partner_objects(sandbox_factory: Factory, preload: Path) -> None:
    server = sandbox_factory(partners=preload)
    found = login(server.url).get(server.url + "/bdoc/partners", params={"search_pattern": "04533319"}).json()
    assert isinstance(found, list) and len(found) == 1
    p = found[0]
    assert p["partnerId"] == 501 and isinstance(p["partnerId"], int)
    assert p["invitationDate"] == 1_700_000_000
    assert (p["contractStatus"], p["companyId"]) == (1, 42)
    assert "status" in p and p["code"] == "04533319"


@pytest.mark.parametrize(("params", "count"), [
    ({}, 20),
    ({"search_pattern": "4000001"}, 10),  # 40000010..19 (substring of the code)
    ({"search_pattern": "40000011"}, 1),
    ({"search_pattern": "firma 1"}, 11),  # name, case-insensitively: Firma 1, 10..19
    ({"search_pattern": "партнер"}, 1),
    ({"search_pattern": "nothing"}, 0),
    ({"limit": "5"}, 5),
    ({"limit": "100"}, 25),
    ({"limit": "100", "offset": "20"}, 5),
    ({"is_registered": "1"}, 1),
    ({"is_registered": "0", "limit": "100"}, 24),
], ids=["default-limit-20", "code-substring", "code-exact", "name-ci", "name-cyrillic", "no-match", "limit",
        "limit-above-total", "offset", "registered", "not-registered"])
def test_search_rules(sandbox_factory: Factory, preload: Path, params: dict[str, str], count: int) -> None:
    server = sandbox_factory(partners=preload)
    r = login(server.url).get(server.url + "/bdoc/partners", params=params)
    assert r.status_code == 200
    assert len(r.json()) == count


def test_search_limit_is_capped_and_checked(sandbox: SandboxServer) -> None:
    s = login(sandbox.url)
    for i in range(3):
        create(s, sandbox.url, f"1000000{i}")
    assert len(s.get(sandbox.url + "/bdoc/partners", params={"limit": "100000"}).json()) == 3
    for bad in ({"limit": "-1"}, {"limit": "many"}, {"offset": "-5"}, {"is_registered": "maybe"}):
        assert s.get(sandbox.url + "/bdoc/partners", params=bad).status_code == 400


def test_create_partner_answers_it_with_a_new_integer_id(sandbox: SandboxServer) -> None:
    s = login(sandbox.url)
    body = {"code": "04533319", "name": "ТОВ Партнер", "contactEmail": "a@firma.ua",
            "contactPerson": "Петренко Іван", "contactPhone": "+380501234500", "comment": "from tests"}
    r = s.post(sandbox.url + "/bdoc/partner", json=body)
    assert r.status_code == 200
    p = r.json()
    assert isinstance(p["partnerId"], int) and p["partnerId"] > 0
    assert {k: p[k] for k in body} == body
    assert p["invitationDate"] == 0
    assert s.get(sandbox.url + "/bdoc/partners", params={"search_pattern": "0453"}).json() == [p]
    assert sandbox.ledger()["edin"]["partners"][str(p["partnerId"])] == {
        "code": "04533319", "created": 1, "invitations": 0, "marks": 0}


@pytest.mark.parametrize("missing", ["code", "name", "contactEmail"])
def test_create_partner_requires_fields(sandbox: SandboxServer, missing: str) -> None:
    body = {"code": "04533319", "name": "N", "contactEmail": "a@b.ua"}
    body[missing] = " " if missing == "name" else ""
    r = login(sandbox.url).post(sandbox.url + "/bdoc/partner", json={k: v for k, v in body.items() if v})
    assert r.status_code == 400
    assert [f["name"] for f in error_of(r)["fields"]] == [missing]
    assert sandbox.ledger()["edin"]["partners"] == {}


def test_create_partner_refuses_a_second_partner_with_the_same_code(sandbox: SandboxServer) -> None:
    s = login(sandbox.url)
    create(s, sandbox.url, "04533319")
    r = s.post(sandbox.url + "/bdoc/partner", json={"code": "04533319", "name": "Другий", "contactEmail": "x@y.ua"})
    assert r.status_code == 409
    assert len(sandbox.ledger()["edin"]["partners"]) == 1


def test_create_partner_wants_json(sandbox: SandboxServer) -> None:
    s = login(sandbox.url)
    r = s.post(sandbox.url + "/bdoc/partner", files=form(code="04533319", name="N", contactEmail="a@b.ua"))
    assert r.status_code == 415
    r = s.post(sandbox.url + "/bdoc/partner", data=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400


# ---------------------------------------------------------------- EDIN invitations and marks

@pytest.mark.parametrize("extra", [{"contract_template_id": 5551}, {"owner_company_id": 77}],
                         ids=["template", "owner"])
def test_invitation_sets_the_date_and_a_second_one_is_counted(sandbox: SandboxServer,
                                                              extra: dict[str, int]) -> None:
    s = login(sandbox.url)
    pid = create(s, sandbox.url, "04533319")
    before = int(time.time())
    r = invite(s, sandbox.url, pid, **extra)
    assert r.status_code == 200 and r.content == b""
    found = s.get(sandbox.url + "/bdoc/partners", params={"search_pattern": "04533319"}).json()
    assert before <= found[0]["invitationDate"] <= int(time.time())
    assert invite(s, sandbox.url, pid, **extra).status_code == 200  # no dedupe: that is the client's job
    assert sandbox.ledger()["edin"]["partners"][str(pid)]["invitations"] == 2


@pytest.mark.parametrize(("fields", "status"), [
    ({"contract_template_id": 5551, "owner_company_id": 77}, 400),
    ({}, 400),
    ({"contract_template_id": "abc"}, 400),
    ({"contract_template_id": 0}, 400),
    ({"partner_id": "x", "contract_template_id": 1}, 400),
    ({"partner_id": "", "contract_template_id": 1}, 400),
    ({"partner_id": 999, "contract_template_id": 1}, 404),
], ids=["both", "neither", "template-not-int", "template-zero", "partner-not-int", "partner-empty",
        "unknown-partner"])
def test_invitation_refusals(sandbox: SandboxServer, fields: dict[str, object], status: int) -> None:
    s = login(sandbox.url)
    pid = create(s, sandbox.url, "04533319")
    r = s.post(sandbox.url + "/bdoc/partner/invitation", files=form(**{"partner_id": pid, **fields}))
    assert r.status_code == status, r.text
    assert sandbox.ledger()["edin"]["partners"][str(pid)]["invitations"] == 0


@pytest.mark.parametrize("how", ["json", "urlencoded"])
def test_invitation_must_be_multipart(sandbox: SandboxServer, how: str) -> None:
    s = login(sandbox.url)
    pid = create(s, sandbox.url, "04533319")
    fields = {"partner_id": pid, "contract_template_id": 5551}
    r = s.post(sandbox.url + "/bdoc/partner/invitation", json=fields) if how == "json" else \
        s.post(sandbox.url + "/bdoc/partner/invitation", data=fields)
    assert r.status_code == 415
    assert sandbox.ledger()["edin"]["partners"][str(pid)]["invitations"] == 0


def test_status_marks_known_partners(sandbox: SandboxServer) -> None:
    s = login(sandbox.url)
    ids = [create(s, sandbox.url, f"1000000{i}") for i in range(3)]
    r = s.post(sandbox.url + "/bdoc/partner/status", json=ids[:2])
    assert r.status_code == 200
    partners = sandbox.ledger()["edin"]["partners"]
    assert [partners[str(i)]["marks"] for i in ids] == [1, 1, 0]
    assert {p["partnerId"]: p["status"] for p in s.get(sandbox.url + "/bdoc/partners").json()}[ids[0]] == 2


STATUS_REFUSALS: list[tuple[str, Callable[[int], dict[str, Any]], int]] = [
    ("empty", lambda pid: {"json": []}, 400),
    ("object", lambda pid: {"json": {"ids": [pid]}}, 400),
    ("strings", lambda pid: {"json": [str(pid)]}, 400),
    ("bool", lambda pid: {"json": [True]}, 400),
    ("unknown-id", lambda pid: {"json": [pid, 999]}, 400),
    ("form", lambda pid: {"files": form(partner_id=pid)}, 415),
    ("broken-json", lambda pid: {"data": b"[1,", "headers": {"Content-Type": "application/json"}}, 400),
]


@pytest.mark.parametrize(("kw", "status"), [c[1:] for c in STATUS_REFUSALS], ids=[c[0] for c in STATUS_REFUSALS])
def test_status_refusals(sandbox: SandboxServer, kw: Callable[[int], dict[str, Any]], status: int) -> None:
    s = login(sandbox.url)
    pid = create(s, sandbox.url, "04533319")
    assert s.post(sandbox.url + "/bdoc/partner/status", **kw(pid)).status_code == status
    assert sandbox.ledger()["edin"]["partners"][str(pid)]["marks"] == 0


# ---------------------------------------------------------------- Invoicebox

def test_invoicebox_invitation(sandbox: SandboxServer) -> None:
    r = ib_post(sandbox.url)
    assert r.status_code == 200
    assert uuid.UUID(r.json()["data"]["id"])
    assert r.headers["X-Request-Id"]
    assert ib_post(sandbox.url, {**IB_BODY, "identifier": "shop@example.com"}).status_code == 200  # no dedupe
    assert sandbox.ledger()["invoicebox"]["emails"] == {"shop@example.com": {"invitations": 2}}


@pytest.mark.parametrize("auth", [None, "Bearer wrong-token", "sandbox-token", "Basic c2FuZGJveC10b2tlbg==",
                                  "Bearer "], ids=["missing", "wrong", "no-scheme", "basic", "empty"])
def test_invoicebox_needs_the_bearer_token(sandbox: SandboxServer, auth: str | None) -> None:
    r = ib_post(sandbox.url, headers={"Authorization": auth})
    assert r.status_code == 401
    assert error_of(r)["code"] == "unauthorized"
    assert r.headers["X-Request-Id"]


@pytest.mark.parametrize(("headers", "bad"), [
    ({"User-Agent": SKIP_HEADER}, "User-Agent"),  # else urllib3 adds its own
    ({"User-Agent": "my script"}, "User-Agent"),
    ({"Accept": None}, "Accept"),
    ({"Accept": "text/html"}, "Accept"),
    ({"Content-Type": "text/plain"}, "Content-Type"),
], ids=["no-user-agent", "free-form-user-agent", "no-accept", "accept-html", "content-type"])
def test_invoicebox_header_rules(sandbox: SandboxServer, headers: dict[str, Any], bad: str) -> None:
    r = ib_post(sandbox.url, headers=headers)
    assert r.status_code == 400
    assert [f["name"] for f in error_of(r)["fields"]] == [bad]
    assert sandbox.ledger()["invoicebox"]["emails"] == {}


@pytest.mark.parametrize("agent", ["App/1.0", "App/1.0 (ops@example.com)", "python-requests/2.32.3"])
def test_invoicebox_accepts_product_style_user_agents(sandbox: SandboxServer, agent: str) -> None:
    assert ib_post(sandbox.url, headers={"User-Agent": agent}).status_code == 200


@pytest.mark.parametrize(("change", "field", "code"), [
    ({"partnerId": "01771534-1a57-f184-dee3"}, "partnerId", "wrong_value"),
    ({"partnerId": "x" * 36}, "partnerId", "wrong_value"),
    ({"partnerId": None}, "partnerId", "required"),
    ({"type": "sms"}, "type", "wrong_value"),
    ({"type": None}, "type", "required"),
    ({"identifier": "a" * 89 + "@example.com"}, "identifier", "wrong_value"),
    ({"identifier": "not-an-address"}, "identifier", "wrong_value"),
    ({"identifier": 42}, "identifier", "wrong_value"),
    ({"identifier": ""}, "identifier", "required"),
], ids=["partner-short", "partner-not-uuid", "partner-missing", "type-sms", "type-missing", "identifier-101",
        "identifier-not-address", "identifier-number", "identifier-empty"])
def test_invoicebox_validation(sandbox: SandboxServer, change: dict[str, Any], field: str, code: str) -> None:
    body = {k: v for k, v in {**IB_BODY, **change}.items() if v is not None}
    r = ib_post(sandbox.url, body)
    assert r.status_code == 422
    err = error_of(r)
    assert err["code"] == "validation" and err["message"]
    assert [(f["name"], f["code"]) for f in err["fields"]] == [(field, code)]


def test_invoicebox_identifier_of_exactly_100_is_fine(sandbox: SandboxServer) -> None:
    assert ib_post(sandbox.url, {**IB_BODY, "identifier": "a" * 88 + "@example.com"}).status_code == 200


def test_invoicebox_refuses_a_form_or_a_broken_body(sandbox: SandboxServer) -> None:
    r = requests.post(sandbox.url + IB_PATH, data=IB_BODY, headers=IB_HEADERS)
    assert r.status_code == 400
    r = requests.post(sandbox.url + IB_PATH, data=b"{", headers={**IB_HEADERS, "Content-Type": "application/json"})
    assert r.status_code == 400
    assert ib_post(sandbox.url, ["not", "an", "object"]).status_code == 400


# ---------------------------------------------------------------- faults

def test_throttle_rate_1_answers_429_with_retry_after_and_processes_nothing(sandbox_factory: Factory) -> None:
    server = sandbox_factory(throttle_rate=1.0, seed=3)
    for _ in range(5):
        r = ib_post(server.url)
        assert r.status_code == 429
        assert r.headers["Retry-After"] == "1"
        assert r.headers["X-Request-Id"]
    assert requests.post(server.url + "/bdoc/auth_uuid", files=form(email=DEMO[0])).status_code == 429
    ledger = requests.get(server.url + "/_sandbox/ledger").json()  # not faulted
    assert ledger["invoicebox"]["emails"] == {}
    assert ledger["responses"] == {"429": 6}


def test_error_rate_answers_503_and_processes_nothing(sandbox_factory: Factory) -> None:
    """SPEC §8: --error-rate is 503 only (500/502/504 belong to --ambiguous-rate)."""
    server = sandbox_factory(error_rate=1.0, seed=11)
    assert {ib_post(server.url).status_code for _ in range(12)} == {503}
    r = ib_post(server.url)
    assert r.headers["Content-Type"] == "text/html" and r.headers["X-Request-Id"]
    ledger = server.ledger()
    assert ledger["invoicebox"]["emails"] == {}
    assert ledger["responses"] == {"503": 13}
    assert ledger["ambiguous"]["total"] == 0


def test_seeded_mixed_faults_repeat_exactly(sandbox_factory: Factory) -> None:
    def run() -> list[int]:
        server = sandbox_factory(error_rate=0.3, throttle_rate=0.3, seed=5)
        return [ib_post(server.url).status_code for _ in range(30)]

    first = run()
    assert {200, 429, 503} <= set(first)
    assert run() == first


def test_drop_rate_1_processes_then_closes_without_answering(sandbox_factory: Factory) -> None:
    server = sandbox_factory(drop_rate=1.0, seed=1)
    with pytest.raises(requests.ConnectionError):
        ib_post(server.url)
    host, port = server.url.removeprefix("http://").split(":")
    body = b'--b\r\nContent-Disposition: form-data; name="email"\r\n\r\nx\r\n--b--\r\n'
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"POST /bdoc/auth_uuid HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b"
                     b"\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        assert sock.recv(1024) == b""  # closed, not a byte of an answer
    ledger = server.ledger()
    assert ledger["invoicebox"]["emails"] == {"shop@example.com": {"invitations": 1}}
    assert ledger["drops"] == 2 and ledger["responses"] == {}


def test_a_dropped_invitation_still_counts_and_the_next_connection_works(sandbox: SandboxServer) -> None:
    s = login(sandbox.url)
    pid = create(s, sandbox.url, "04533319")
    sandbox.configure(drop_rate=1.0)  # from here on: process, then hang up
    with pytest.raises(requests.ConnectionError):
        invite(s, sandbox.url, pid)
    r = requests.post(sandbox.url + "/_sandbox/faults", json={"drop_rate": 0})
    assert r.json()["drop_rate"] == 0
    found = s.get(sandbox.url + "/bdoc/partners").json()
    assert found[0]["invitationDate"] > 0
    assert sandbox.ledger()["edin"]["partners"][str(pid)]["invitations"] == 1


@pytest.mark.parametrize("body", [{"drop_rate": 2}, {"colour": 1}, [1], {"error_rate": "high"}],
                         ids=["out-of-range", "unknown", "not-an-object", "not-a-number"])
def test_fault_settings_are_checked(sandbox: SandboxServer, body: Any) -> None:
    assert requests.post(sandbox.url + "/_sandbox/faults", json=body).status_code == 400
    assert sandbox.options.drop_rate == 0 == sandbox.options.error_rate


def test_latency_delays_api_answers(sandbox_factory: Factory) -> None:
    server = sandbox_factory(latency_ms=120)
    started = time.perf_counter()
    assert ib_post(server.url).status_code == 200
    assert time.perf_counter() - started >= 0.12


def test_rate_limit_is_a_sliding_window_per_account(sandbox_factory: Factory) -> None:
    clock = Clock()
    server = sandbox_factory(rate_limit="3/s", clock=clock)
    other = {"Authorization": "Bearer sandbox-token-2"}
    for step in (0.0, 0.5, 0.4):  # t = 0, 0.5, 0.9
        clock.advance(step)
        assert ib_post(server.url).status_code == 200
    r = ib_post(server.url)
    assert r.status_code == 429
    assert int(r.headers["Retry-After"]) >= 1
    assert ib_post(server.url, headers=other).status_code == 200  # another account has its own window
    clock.advance(0.3)  # t = 1.2: the request at 0 has left the window
    assert ib_post(server.url).status_code == 200
    clock.advance(0.1)  # t = 1.3: 0.5, 0.9, 1.2 are inside
    assert ib_post(server.url).status_code == 429
    assert server.ledger()["invoicebox"]["emails"]["shop@example.com"]["invitations"] == 5


def test_rate_limit_windows_all_apply(sandbox_factory: Factory) -> None:
    clock = Clock()
    server = sandbox_factory(rate_limit=["2/s", "3/10s"], clock=clock)
    codes = []
    for _ in range(4):
        codes.append(ib_post(server.url).status_code)
        clock.advance(0.6)
    assert codes == [200, 200, 200, 429]
    r = ib_post(server.url)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 8  # the 10 s window holds it back


def test_rate_limit_counts_edin_per_user_including_logins(sandbox_factory: Factory) -> None:
    clock = Clock()
    server = sandbox_factory(rate_limit="3/s", clock=clock)
    s = login(server.url)  # two login calls
    assert s.get(server.url + "/bdoc/partners").status_code == 200
    r = s.get(server.url + "/bdoc/partners")
    assert r.status_code == 429 and r.headers["Retry-After"] == "1"
    assert login(server.url, "demo2@example.com").get(server.url + "/bdoc/partners").status_code == 200
    clock.advance(1)
    assert s.get(server.url + "/bdoc/partners").status_code == 200


# ---------------------------------------------------------------- ledger and reset

def test_ledger_counts_arrivals_peaks_and_answers(sandbox_factory: Factory) -> None:
    clock = Clock()
    server = sandbox_factory(clock=clock)
    for gap in (0, 0.1, 0.1, 0.1, 2.0, 0.5, 0.6):  # 4 inside one second; 2 later; then 1
        clock.advance(gap)
        ib_post(server.url, headers={"Authorization": "Bearer nope"} if gap == 2.0 else None)
    requests.get(server.url + "/_sandbox/ledger")  # admin calls are not counted
    ledger = requests.get(server.url + "/_sandbox/ledger", params={"window": "3"}).json()
    assert ledger["requests"] == 7
    assert ledger["max_requests_per_second"] == 4
    assert ledger["max_requests_per_window"] == 6
    assert ledger["responses"] == {"200": 6, "401": 1}
    assert ledger["invoicebox"]["emails"]["shop@example.com"]["invitations"] == 6
    assert server.ledger(window=3) == ledger
    assert requests.get(server.url + "/_sandbox/ledger", params={"window": "zero"}).status_code == 400


def test_max_per_second_under_real_concurrency(sandbox: SandboxServer) -> None:
    def worker() -> None:
        with requests.Session() as s:
            for _ in range(10):
                s.get(sandbox.url + "/bdoc/partners")

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ledger = sandbox.ledger(window=60)
    assert ledger["requests"] == 40 == ledger["max_requests_per_window"]
    assert 1 <= ledger["max_requests_per_second"] <= 40


def test_preloaded_partners_appear_with_created_0(sandbox_factory: Factory, preload: Path) -> None:
    server = sandbox_factory(partners=preload)
    partners = server.ledger()["edin"]["partners"]
    assert len(partners) == 25
    assert partners["501"] == {"code": "04533319", "created": 0, "invitations": 0, "marks": 0}
    assert all(int(pid) > 501 for pid in partners if pid != "501")  # ids continue after the highest given


def test_reset_clears_the_ledger_and_reset_all_restores_the_start(sandbox_factory: Factory,
                                                                  preload: Path) -> None:
    server = sandbox_factory(partners=preload)
    s = login(server.url)
    pid = create(s, server.url, "12345678")
    assert invite(s, server.url, 501).status_code == 200
    assert requests.post(server.url + "/_sandbox/reset").json() == {"reset": "ledger"}
    ledger = server.ledger()
    assert (ledger["requests"], ledger["edin"]["logins"], ledger["responses"]) == (0, 0, {})
    assert ledger["edin"]["partners"][str(pid)]["created"] == 0  # kept, no longer counted
    assert s.get(server.url + "/bdoc/partners").status_code == 200  # the session survives
    assert requests.post(server.url + "/_sandbox/reset", params={"all": "1"}).json() == {"reset": "all"}
    assert s.get(server.url + "/bdoc/partners").status_code == 401
    partners = requests.get(server.url + "/_sandbox/partners").json()
    assert len(partners) == 25 and str(pid) not in server.ledger()["edin"]["partners"]
    assert {p["partnerId"]: p["invitationDate"] for p in partners}[501] == 1_700_000_000


def test_reset_method_matches_the_endpoint(sandbox: SandboxServer) -> None:
    ib_post(sandbox.url)
    sandbox.reset()
    assert sandbox.ledger()["invoicebox"]["emails"] == {}
    assert sandbox.ledger()["requests"] == 0


# ---------------------------------------------------------------- preload files

def test_preload_from_a_semicolon_csv(sandbox_factory: Factory, tmp_path: Path) -> None:
    path = tmp_path / "partners.csv"
    path.write_text("code;name;contact_email;invitation_date;partnerId\n"
                    "04533319;ТОВ \"Партнер 0\";p0@firma.ua;2024-03-01T10:00:00+00:00;\n"
                    "47893285;ТОВ \"Партнер 1\";;;9000\n", encoding="utf-8-sig")
    server = sandbox_factory(partners=path)
    found = login(server.url).get(server.url + "/bdoc/partners").json()
    assert [(p["code"], p["invitationDate"]) for p in found] == [("47893285", 0), ("04533319", 1709287200)]
    assert found[0]["partnerId"] == 9000 and "contactEmail" not in found[0]
    assert found[1]["partnerId"] > 9000 and found[1]["contactEmail"] == "p0@firma.ua"


@pytest.mark.parametrize(("content", "suffix", "problem"), [
    ("[{\"code\": \"1\"}]", "json", "name is required"),
    ("[{\"code\": \"1\", \"name\": \"a\"}, {\"code\": \"1\", \"name\": \"b\"}]", "json", "appears twice"),
    ("[{\"code\": \"1\", \"name\": \"a\", \"colour\": \"red\"}]", "json", "unknown field"),
    ("{\"code\": \"1\"}", "json", "expected a JSON list"),
    ("[{", "json", "not valid JSON"),
    ("code,name,invitationDate\n1,a,yesterday\n", "csv", "whole number"),
], ids=["no-name", "repeated-code", "unknown-field", "not-a-list", "broken-json", "bad-date"])
def test_preload_problems_are_config_errors(tmp_path: Path, content: str, suffix: str, problem: str) -> None:
    path = tmp_path / f"partners.{suffix}"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=problem):
        SandboxServer(SandboxOptions(partners=str(path)))


def test_a_missing_preload_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        SandboxServer(SandboxOptions(partners=str(tmp_path / "nope.json")))


def test_ledger_counts_calls_per_endpoint(sandbox: SandboxServer) -> None:
    for _ in range(2):
        requests.get(f"{sandbox.url}/bdoc/partners", timeout=5)
    requests.post(f"{sandbox.url}/v3/notification/api/invite", timeout=5)
    calls = sandbox.ledger()["calls"]
    assert calls == {"GET /bdoc/partners": 2, "POST /v3/notification/api/invite": 1}
