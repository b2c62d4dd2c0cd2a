"""SPEC §8's readings of what the docs leave open: ambiguous answers, page caps, route cookies, invitationDate.

Raw `requests` calls against the real sandbox server, never through the clients.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from support import sandbox_process
from test_sandbox import IB_BODY, IB_HEADERS, IB_PATH, create, form, invite, login

from batch.config import SandboxOptions, parse_config
from batch.errors import ConfigError
from batch.sandbox import SandboxServer

Factory = Callable[..., SandboxServer]
INVITE = "POST /bdoc/partner/invitation"
IB_CALL = f"POST {IB_PATH}"


def ib_invite(url: str, email: str) -> requests.Response:
    return requests.post(url + IB_PATH, json={**IB_BODY, "identifier": email}, headers=IB_HEADERS, timeout=5)


def partners_file(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "partners.json"
    path.write_text(json.dumps([{"code": f"{40000000 + i}", "name": f"Firma {i}"} for i in range(n)]), "utf-8")
    return path


# ---------------------------------------------------------------- --ambiguous-rate

def test_ambiguous_answers_are_500_502_504_and_about_half_were_processed(sandbox_factory: Factory) -> None:
    server = sandbox_factory(ambiguous_rate=1.0, seed=4)
    emails = [f"shop{i}@example.com" for i in range(40)]
    statuses = [ib_invite(server.url, e).status_code for e in emails]
    assert set(statuses) == {500, 502, 504}
    ledger = server.ledger()
    done = ledger["invoicebox"]["emails"]
    assert 8 <= len(done) <= 32  # "about half": 40 fair coins, outside 8..32 is ~1e-5
    assert all(v == {"invitations": 1} for v in done.values())
    amb = ledger["ambiguous"]
    assert amb["total"] == 40 and amb["processed"] == len(done) and amb["drops"] == 0
    assert amb["calls"] == {IB_CALL: {"total": 40, "processed": len(done), "drops": 0}}
    assert sum(ledger["responses"].values()) == 40


def test_ambiguous_rate_spares_requests_that_change_nothing(sandbox_factory: Factory) -> None:
    """Look-ups and the login (SPEC §7: changes nothing) answer normally; only the three EDIN writes are hit."""
    server = sandbox_factory(ambiguous_rate=1.0, seed=2)
    s = login(server.url)  # both login calls get through
    for _ in range(5):
        assert s.get(server.url + "/bdoc/partners").status_code == 200
    r = s.post(server.url + "/bdoc/partner", json={"code": "04533319", "name": "A", "contactEmail": "a@b.ua"})
    assert r.status_code in (500, 502, 504)
    created = [p for p in server.app.edin.all_partners() if p["code"] == "04533319"]
    amb = server.ledger()["ambiguous"]
    assert amb["calls"] == {"POST /bdoc/partner": {"total": 1, "processed": len(created), "drops": 0}}


def test_ambiguous_edin_invitation_and_mark_processed_or_not(sandbox_factory: Factory) -> None:
    server = sandbox_factory(seed=8)
    s = login(server.url)
    pids = [create(s, server.url, f"4000000{i}") for i in range(8)]
    server.configure(ambiguous_rate=1.0)
    for pid in pids:
        assert invite(s, server.url, pid).status_code in (500, 502, 504)
    assert s.post(server.url + "/bdoc/partner/status", json=pids).status_code in (500, 502, 504)
    ledger = server.ledger()
    invited = {pid for pid in pids if ledger["edin"]["partners"][str(pid)]["invitations"]}
    dated = {p["partnerId"] for p in s.get(server.url + "/bdoc/partners").json() if p["invitationDate"]}
    assert invited == dated  # processed means the effect is there, and only then
    calls = ledger["ambiguous"]["calls"]
    assert calls[INVITE] == {"total": 8, "processed": len(invited), "drops": 0}
    assert calls["POST /bdoc/partner/status"]["total"] == 1
    assert ledger["ambiguous"]["total"] == 9


def test_drops_of_changing_requests_count_as_ambiguous_and_others_do_not(sandbox_factory: Factory) -> None:
    server = sandbox_factory(seed=1)
    s = login(server.url)
    pid = create(s, server.url, "04533319")
    server.configure(drop_rate=1.0)
    for call in (lambda: invite(s, server.url, pid), lambda: s.get(server.url + "/bdoc/partners"),
                 lambda: ib_invite(server.url, "x@example.com")):
        with pytest.raises(requests.ConnectionError):
            call()
    ledger = server.ledger()
    assert ledger["drops"] == 3
    amb = ledger["ambiguous"]
    assert (amb["total"], amb["processed"], amb["drops"]) == (2, 2, 2)
    assert set(amb["calls"]) == {INVITE, IB_CALL}


def test_a_seed_replays_the_same_ambiguous_answers_and_effects(sandbox_factory: Factory) -> None:
    def play() -> tuple[list[int], dict[str, Any]]:
        server = sandbox_factory(ambiguous_rate=0.4, error_rate=0.1, drop_rate=0.25, seed=20)
        statuses = []
        for i in range(30):
            try:
                statuses.append(ib_invite(server.url, f"s{i}@example.com").status_code)
            except requests.ConnectionError:
                statuses.append(0)
        ledger = server.ledger()
        return statuses, {"emails": ledger["invoicebox"]["emails"], "ambiguous": ledger["ambiguous"]}

    first = play()
    assert {0, 200, 503} <= set(first[0]) and set(first[0]) & {500, 502, 504}
    assert play() == first


def test_ambiguous_rate_is_tunable_and_checked(sandbox: SandboxServer) -> None:
    r = requests.post(sandbox.url + "/_sandbox/faults", json={"ambiguous_rate": 1})
    assert r.status_code == 200 and r.json()["ambiguous_rate"] == 1
    assert ib_invite(sandbox.url, "a@example.com").status_code in (500, 502, 504)
    assert requests.post(sandbox.url + "/_sandbox/faults", json={"ambiguous_rate": 1.5}).status_code == 400


def test_reset_clears_the_ambiguous_counts(sandbox_factory: Factory) -> None:
    server = sandbox_factory(ambiguous_rate=1.0, seed=3)
    ib_invite(server.url, "a@example.com")
    assert server.ledger()["ambiguous"]["total"] == 1
    assert requests.post(server.url + "/_sandbox/reset").status_code == 200
    assert server.ledger()["ambiguous"] == {"total": 0, "processed": 0, "drops": 0, "calls": {}}


# ---------------------------------------------------------------- --page-cap

def test_page_cap_returns_at_most_n_partners_whatever_limit_asks(sandbox_factory: Factory, tmp_path: Path) -> None:
    server = sandbox_factory(page_cap=7, partners=partners_file(tmp_path, 25))
    s = login(server.url)
    sizes, seen, offset = [], [], 0
    while True:
        page = s.get(server.url + "/bdoc/partners", params={"limit": 20, "offset": offset}).json()
        if not page:
            break
        sizes.append(len(page))
        seen += [p["code"] for p in page]
        offset += len(page)
    assert sizes == [7, 7, 7, 4]
    assert seen == [f"{40000000 + i}" for i in range(25)]
    assert len(s.get(server.url + "/bdoc/partners", params={"limit": 3}).json()) == 3  # below the cap: as asked


def test_without_a_page_cap_limit_is_honoured(sandbox_factory: Factory, tmp_path: Path) -> None:
    server = sandbox_factory(partners=partners_file(tmp_path, 25))
    s = login(server.url)
    assert len(s.get(server.url + "/bdoc/partners", params={"limit": 20}).json()) == 20


# ---------------------------------------------------------------- --route-cookie

def test_route_cookie_is_set_at_login_and_needed_afterwards(sandbox_factory: Factory) -> None:
    server = sandbox_factory(route_cookie=True)
    s = requests.Session()
    token = s.post(server.url + "/bdoc/auth_uuid", files=form(email="demo@example.com")).json()["token"]
    r = s.post(server.url + "/bdoc/auth", files=form(token=token, password="demo-password"))
    assert r.status_code == 200
    set_cookies = [v for k, v in r.raw.headers.items() if k.lower() == "set-cookie"]
    assert len(set_cookies) == 2 and any(c.startswith("route=") and "Path=/" in c for c in set_cookies)
    sid, route = s.cookies["SID"], s.cookies["route"]
    assert s.get(server.url + "/bdoc/partners").status_code == 200  # a browser-like client sends both
    only_sid = requests.get(server.url + "/bdoc/partners", cookies={"SID": sid})
    assert only_sid.status_code == 401
    wrong = requests.get(server.url + "/bdoc/partners", cookies={"SID": sid, "route": route + "x"})
    assert wrong.status_code == 401
    assert s.get(server.url + "/bdoc/partners").status_code == 200  # the session itself lives on
    assert requests.get(server.url + "/bdoc/partners", cookies={"route": route}).status_code == 401


def test_without_route_cookie_login_sets_only_the_sid(sandbox: SandboxServer) -> None:
    s = login(sandbox.url)
    assert set(s.cookies.keys()) == {"SID"}


# ---------------------------------------------------------------- --invitation-date-on

@pytest.mark.parametrize(("on", "after_invite", "after_mark"), [
    ("invite", True, True), ("mark", False, True),
])
def test_which_call_sets_the_invitation_date(sandbox_factory: Factory, on: str, after_invite: bool,
                                             after_mark: bool) -> None:
    server = sandbox_factory(invitation_date_on=on)
    s = login(server.url)
    pid = create(s, server.url, "04533319")

    def dated() -> bool:
        return bool(s.get(server.url + "/bdoc/partners").json()[0]["invitationDate"])

    assert invite(s, server.url, pid).status_code == 200
    assert dated() is after_invite
    assert s.post(server.url + "/bdoc/partner/status", json=[pid]).status_code == 200
    assert dated() is after_mark
    assert server.ledger()["edin"]["partners"][str(pid)] == {"code": "04533319", "created": 1,
                                                             "invitations": 1, "marks": 1}


def test_under_the_mark_reading_a_mark_alone_sets_the_date(sandbox_factory: Factory) -> None:
    server = sandbox_factory(invitation_date_on="mark")
    s = login(server.url)
    pid = create(s, server.url, "04533319")
    assert s.post(server.url + "/bdoc/partner/status", json=[pid]).status_code == 200
    assert s.get(server.url + "/bdoc/partners").json()[0]["invitationDate"] > 0


# ---------------------------------------------------------------- config keys and the command

EDIN = {"provider": "edin", "auth": {"email": "a@b.ua", "password": "p"}, "invite": {"contract_template_id": 1}}


def test_sandbox_config_keys() -> None:
    config = parse_config({**EDIN, "sandbox": {"ambiguous_rate": 0.06, "page_cap": 20, "route_cookie": True,
                                               "invitation_date_on": "mark"}}, env={})
    assert config.sandbox == SandboxOptions(ambiguous_rate=0.06, page_cap=20, route_cookie=True,
                                            invitation_date_on="mark")
    assert parse_config(EDIN, env={}).sandbox == SandboxOptions()


@pytest.mark.parametrize(("sandbox", "message"), [
    ({"ambiguous_rate": 1.5}, "sandbox.ambiguous_rate: must be a number between 0 and 1"),
    ({"page_cap": 0}, "sandbox.page_cap: must be a whole number ≥ 1"),
    ({"route_cookie": "sometimes"}, "sandbox.route_cookie: must be true or false"),
    ({"invitation_date_on": "login"}, "sandbox.invitation_date_on: must be invite or mark"),
    ({"page_capp": 5}, "sandbox.page_capp: unknown key"),
], ids=["ambiguous", "page-cap", "route-cookie", "date-on", "unknown"])
def test_sandbox_config_problems(sandbox: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config({**EDIN, "sandbox": sandbox}, env={})
    assert any(p.startswith(message) for p in exc.value.problems), exc.value.problems


def test_the_sandbox_command_takes_the_new_options(tmp_path: Path) -> None:
    with sandbox_process("--page-cap", "2", "--route-cookie", "--invitation-date-on", "mark", "--ambiguous-rate", "1",
                         "--seed", "3", "--partners", str(partners_file(tmp_path, 3))) as url:
        s = login(url)
        assert "route" in s.cookies
        assert requests.get(url + "/bdoc/partners", cookies={"SID": s.cookies["SID"]}, timeout=5).status_code == 401
        page = s.get(url + "/bdoc/partners", params={"limit": 50}).json()
        assert len(page) == 2
        assert invite(s, url, page[0]["partnerId"]).status_code in (500, 502, 504)
        assert requests.get(url + "/_sandbox/ledger", timeout=5).json()["ambiguous"]["calls"][INVITE]["total"] == 1


@pytest.mark.parametrize("args", [["--ambiguous-rate", "2"], ["--page-cap", "0"],
                                  ["--invitation-date-on", "login"]], ids=["rate", "cap", "date-on"])
def test_the_sandbox_command_refuses_bad_values(args: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "batch", "sandbox", *args], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and args[0] in proc.stderr


# ---------------------------------------------------------------- Invoicebox's /l3/ accounts

@pytest.mark.parametrize(("token", "prefix", "status"), [
    ("sandbox-token", "v3", 200), ("sandbox-token-l3", "l3", 200),
    ("sandbox-token", "l3", 401), ("sandbox-token-l3", "v3", 401),
], ids=["v3-on-v3", "l3-on-l3", "v3-on-l3", "l3-on-v3"])
def test_business_cabinet_accounts_use_the_l3_prefix(sandbox: SandboxServer, token: str, prefix: str,
                                                     status: int) -> None:
    r = requests.post(f"{sandbox.url}/{prefix}/notification/api/invite", json=IB_BODY,
                      headers={**IB_HEADERS, "Authorization": f"Bearer {token}"}, timeout=5)
    assert r.status_code == status
    emails = sandbox.ledger()["invoicebox"]["emails"]
    assert emails == ({"shop@example.com": {"invitations": 1}} if status == 200 else {})


def test_l3_invitations_can_be_ambiguous_too(sandbox_factory: Factory) -> None:
    server = sandbox_factory(ambiguous_rate=1.0, seed=1)
    r = requests.post(f"{server.url}/l3/notification/api/invite", json=IB_BODY,
                      headers={**IB_HEADERS, "Authorization": "Bearer sandbox-token-l3"}, timeout=5)
    assert r.status_code in (500, 502, 504)
    assert server.ledger()["ambiguous"]["calls"]["POST /l3/notification/api/invite"]["total"] == 1
