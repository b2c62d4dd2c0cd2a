"""The Diadoc sandbox over plain HTTP: tokens, every method and relation, tasks, removed versions, faults, ledger."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from stdnum.ru import inn as ru_inn
from support import sandbox_process
from test_sandbox import Clock

from batch.config import SandboxOptions, parse_config
from batch.errors import ConfigError
from batch.sandbox import SandboxServer
from batch.sandbox.diadoc_orgs import DEFAULT_SEED, RELATIONS, load_seed

Factory = Callable[..., SandboxServer]

MY_BOX = "7bb2de7a-c2a0-5113-8dc8-9cee0e2ae0be"
DEMO = {"grant_type": "refresh_token", "client_id": "sandbox-client", "client_secret": "sandbox-secret",
        "refresh_token": "sandbox-refresh"}
# The seed's cases (batch/sandbox/README.md has the table).
CONNECTED, INVITED, INVITES_ME, REJECTS_ME, REJECTED_BY_ME = (
    "7702001015", "7702001022", "7702001030", "7702001047", "7702001054")
OPEN_DOORS, ROAMING_ONLY, TWIN, HEAD_AND_BRANCHES, TWO_HEADS = (
    "7702001061", "7702001079", "7702001086", "7702001093", "7702001103")
PERSON, LEADING_ZERO, FIRST_PLAIN = "770200111103", "0274001239", "7703000014"
EGRUL_ONLY, NOWHERE = "7704002014", "7704999991"


def plain(n: int) -> str:
    """The INN of the seed's n-th counterparty without a relation, ООО «Контрагент NN» (1..40)."""
    base = f"7703{n:05d}"
    return base + ru_inn.calc_company_check_digit(base)


def get_token(url: str, **change: str) -> requests.Response:
    return requests.post(url + "/connect/token", data={**DEMO, **change}, timeout=5)


def api(url: str, token: str | None = None) -> requests.Session:
    """A session that sends what the docs ask: the Bearer token and Accept: application/json."""
    s = requests.Session()
    token = token or get_token(url).json()["access_token"]
    s.headers.update({"Authorization": f"Bearer {token}", "Accept": "application/json"})
    return s


def find(s: requests.Session, url: str, inn: str, kpp: str | None = None) -> list[dict[str, Any]]:
    params = {"inn": inn, **({"kpp": kpp} if kpp else {})}
    r = s.get(url + "/GetOrganizationsByInnKpp", params=params)
    assert r.status_code == 200, r.text
    orgs = r.json()["Organizations"]
    assert isinstance(orgs, list)
    return orgs


def box_of(s: requests.Session, url: str, inn: str, kpp: str | None = None) -> str:
    """The one non-roaming head office (or the only organisation) for an INN."""
    orgs = [o for o in find(s, url, inn, kpp) if not o["IsRoaming"]]
    heads = [o for o in orgs if not o["IsBranch"]] or orgs
    assert len(heads) == 1, heads
    return str(heads[0]["Boxes"][0]["BoxIdGuid"])


def relation(s: requests.Session, url: str, box: str) -> str | None:
    r = s.get(url + "/V3/GetCounteragent", params={"myBoxId": MY_BOX, "counteragentBoxId": box})
    if r.status_code == 404:
        return None
    assert r.status_code == 200, r.text
    return str(r.json()["CurrentStatus"])


def acquire(s: requests.Session, url: str, body: dict[str, Any], **params: str) -> requests.Response:
    return s.post(url + "/V3/AcquireCounteragent", params={"myBoxId": MY_BOX, **params}, json=body)


def result(s: requests.Session, url: str, task_id: str) -> requests.Response:
    return s.get(url + "/V3/AcquireCounteragentResult", params={"myBoxId": MY_BOX, "taskId": task_id})


def invite(s: requests.Session, url: str, body: dict[str, Any]) -> requests.Response:
    """Acquire and wait for the result (tasks are ready at once by default)."""
    r = acquire(s, url, body)
    assert r.status_code == 200, r.text
    return result(s, url, r.json()["TaskId"])


# ---------------------------------------------------------------- tokens

def test_refresh_token_flow(sandbox: SandboxServer) -> None:
    r = get_token(sandbox.url)
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    body = r.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 86_400
    assert body["refresh_token"] == "sandbox-refresh"  # without rotation the same one comes back
    assert get_token(sandbox.url).status_code == 200  # and keeps working
    s = api(sandbox.url, body["access_token"])
    assert s.get(sandbox.url + "/GetMyOrganizations", params={"autoRegister": "false"}).status_code == 200
    assert sandbox.ledger()["diadoc"]["tokens"] == {"issued": 2, "rotated": 0, "refused": 0}
    assert body["access_token"] in sandbox.issued_tokens()


def test_client_credentials_may_come_as_http_basic(sandbox: SandboxServer) -> None:
    data = {"grant_type": "refresh_token", "refresh_token": "sandbox-refresh"}
    r = requests.post(sandbox.url + "/connect/token", data=data, auth=("sandbox-client", "sandbox-secret"))
    assert r.status_code == 200 and r.json()["access_token"]


@pytest.mark.parametrize(("change", "status", "error"), [
    ({"client_secret": "wrong"}, 401, "invalid_client"),
    ({"client_id": "someone-else"}, 401, "invalid_client"),
    ({"refresh_token": "never-issued"}, 400, "invalid_grant"),
    ({"refresh_token": ""}, 400, "invalid_grant"),
    ({"grant_type": "password"}, 400, "unsupported_grant_type"),
], ids=["secret", "client", "unknown-refresh", "empty-refresh", "grant-type"])
def test_token_refusals(sandbox: SandboxServer, change: dict[str, str], status: int, error: str) -> None:
    r = get_token(sandbox.url, **change)
    assert r.status_code == status
    assert r.json()["error"] == error
    assert sandbox.ledger()["diadoc"]["tokens"]["issued"] == 0


def test_token_request_must_be_form_urlencoded(sandbox: SandboxServer) -> None:
    r = requests.post(sandbox.url + "/connect/token", json=DEMO)
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"


def test_rotation_makes_every_refresh_token_single_use(sandbox_factory: Factory) -> None:
    server = sandbox_factory(rotate_refresh=True)
    first = get_token(server.url).json()
    assert first["refresh_token"] != "sandbox-refresh"
    assert get_token(server.url).json()["error"] == "invalid_grant"  # the demo token is spent
    second = get_token(server.url, refresh_token=first["refresh_token"]).json()
    assert second["refresh_token"] not in ("sandbox-refresh", first["refresh_token"])
    assert get_token(server.url, refresh_token=first["refresh_token"]).status_code == 400
    for token in (first["access_token"], second["access_token"]):  # access tokens live on until they expire
        assert api(server.url, token).get(server.url + "/GetMyOrganizations").status_code == 200
    assert server.ledger()["diadoc"]["tokens"] == {"issued": 2, "rotated": 2, "refused": 2}
    assert {first["refresh_token"], second["refresh_token"]} <= set(server.issued_tokens())
    server.reset(everything=True)  # back to the demo refresh token
    assert get_token(server.url).status_code == 200


def test_access_tokens_expire_after_token_ttl(sandbox_factory: Factory) -> None:
    clock = Clock()
    server = sandbox_factory(token_ttl=60, clock=clock)
    body = get_token(server.url).json()
    assert body["expires_in"] == 60
    s = api(server.url, body["access_token"])
    clock.advance(59.9)
    assert s.get(server.url + "/GetMyOrganizations").status_code == 200
    clock.advance(0.1)
    r = s.get(server.url + "/GetMyOrganizations")
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
    assert r.headers["Content-Type"].startswith("text/plain")
    assert api(server.url).get(server.url + "/GetMyOrganizations").status_code == 200  # a fresh one works


@pytest.mark.parametrize("auth", [None, "Bearer nope", "Basic c2FuZGJveDp4", "sandbox-refresh"],
                         ids=["none", "unknown", "basic", "bare"])
def test_every_api_call_needs_a_live_bearer(sandbox: SandboxServer, auth: str | None) -> None:
    headers = {"Accept": "application/json", **({"Authorization": auth} if auth else {})}
    for path in ("/GetMyOrganizations", "/V3/GetCounteragent", "/GetOrganizationsByInnKpp"):
        assert requests.get(sandbox.url + path, headers=headers).status_code == 401
    r = requests.post(sandbox.url + "/V3/AcquireCounteragent", params={"myBoxId": MY_BOX},
                      json={"Inn": FIRST_PLAIN}, headers=headers)
    assert r.status_code == 401
    assert sandbox.ledger()["diadoc"]["counteragents"] == {}


def test_json_needs_accept_application_json(sandbox: SandboxServer) -> None:
    token = get_token(sandbox.url).json()["access_token"]
    for accept in (None, "*/*", "application/x-protobuf"):
        headers = {"Authorization": f"Bearer {token}", **({"Accept": accept} if accept else {})}
        r = requests.get(sandbox.url + "/GetMyOrganizations", headers=headers)
        assert r.status_code == 406 and "Accept: application/json" in r.text


# ---------------------------------------------------------------- look-ups

def test_my_organizations_is_the_one_demo_box(sandbox: SandboxServer) -> None:
    r = api(sandbox.url).get(sandbox.url + "/GetMyOrganizations", params={"autoRegister": "false"})
    orgs = r.json()["Organizations"]
    assert len(orgs) == 1
    box = orgs[0]["Boxes"][0]
    assert box["BoxIdGuid"] == MY_BOX and box["BoxId"] == MY_BOX.replace("-", "") + "@diadoc.ru"
    assert orgs[0]["Inn"] == "7701001005" and orgs[0]["Kpp"] == "770101001"


@pytest.mark.parametrize(("inn", "kpp", "shape"), [
    (CONNECTED, None, [(False, False)]),
    (TWIN, None, [(False, False), (True, False)]),
    (ROAMING_ONLY, None, [(True, False)]),
    (HEAD_AND_BRANCHES, None, [(False, False), (False, True), (False, True)]),
    (HEAD_AND_BRANCHES, "772643001", [(False, True)]),
    (HEAD_AND_BRANCHES, "770201001", [(False, False)]),
    (TWO_HEADS, None, [(False, False), (False, False)]),
    (PERSON, None, [(False, False)]),
    (LEADING_ZERO, "027401001", [(False, False)]),
    (EGRUL_ONLY, None, []),
    (NOWHERE, None, []),
    (CONNECTED, "999901001", []),
], ids=["one", "roaming-twin", "roaming-only", "head-and-branches", "branch-kpp", "head-kpp", "two-heads",
        "individual", "leading-zero", "egrul-only", "nowhere", "wrong-kpp"])
def test_organizations_by_inn_kpp(sandbox: SandboxServer, inn: str, kpp: str | None,
                                  shape: list[tuple[bool, bool]]) -> None:
    orgs = find(api(sandbox.url), sandbox.url, inn, kpp)
    assert [(o["IsRoaming"], o["IsBranch"]) for o in orgs] == shape
    assert all(o["Inn"] == inn and o["Boxes"][0]["BoxIdGuid"] for o in orgs)


@pytest.mark.parametrize("params", [{}, {"inn": "123"}, {"inn": "77020010x5"}, {"inn": CONNECTED, "kpp": "12"}],
                         ids=["no-inn", "short", "letters", "bad-kpp"])
def test_look_up_refuses_malformed_parameters(sandbox: SandboxServer, params: dict[str, str]) -> None:
    r = api(sandbox.url).get(sandbox.url + "/GetOrganizationsByInnKpp", params=params)
    assert r.status_code == 400 and r.headers["X-Diadoc-ErrorCode"] == "InvalidParameter"


@pytest.mark.parametrize(("inn", "status"), [
    (CONNECTED, "IsMyCounteragent"), (INVITED, "IsInvitedByMe"), (INVITES_ME, "InvitesMe"),
    (REJECTS_ME, "RejectsMe"), (REJECTED_BY_ME, "IsRejectedByMe"), (FIRST_PLAIN, None), (OPEN_DOORS, None),
])
def test_get_counteragent_shows_the_seeded_relation(sandbox: SandboxServer, inn: str, status: str | None) -> None:
    s = api(sandbox.url)
    box = box_of(s, sandbox.url, inn)
    assert relation(s, sandbox.url, box) == status
    if status:
        body = s.get(sandbox.url + "/V3/GetCounteragent", params={"myBoxId": MY_BOX, "counteragentBoxId": box}).json()
        assert body["Organization"]["Inn"] == inn and body["Organization"]["Boxes"][0]["BoxIdGuid"] == box


def test_get_counteragent_404_is_plain_text(sandbox: SandboxServer) -> None:
    s = api(sandbox.url)
    r = s.get(sandbox.url + "/V3/GetCounteragent",
              params={"myBoxId": MY_BOX, "counteragentBoxId": box_of(s, sandbox.url, FIRST_PLAIN)})
    assert r.status_code == 404 and r.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert r.headers["X-Diadoc-ErrorCode"] and r.headers["X-Kontur-Trace-Id"]


@pytest.mark.parametrize(("my_box", "status"), [
    (MY_BOX.replace("-", "") + "@diadoc.ru", 400), ("not-a-guid", 400), (None, 400),
    ("6bd37f49-d19b-54a8-96c7-5e8a162115f9", 403),
], ids=["at-diadoc-form", "not-guid", "missing", "someone-elses"])
def test_my_box_id_must_be_my_box_guid(sandbox: SandboxServer, my_box: str | None, status: int) -> None:
    s = api(sandbox.url)
    params = {"counteragentBoxId": box_of(s, sandbox.url, CONNECTED), **({"myBoxId": my_box} if my_box else {})}
    assert s.get(sandbox.url + "/V3/GetCounteragent", params=params).status_code == status
    r = s.post(sandbox.url + "/V3/AcquireCounteragent", params=params | {"counteragentBoxId": ""},
               json={"Inn": FIRST_PLAIN})
    assert r.status_code == status
    assert sandbox.ledger()["diadoc"]["counteragents"] == {}


# ---------------------------------------------------------------- invitations

@pytest.mark.parametrize(("inn", "after", "effect"), [
    (FIRST_PLAIN, "IsInvitedByMe", "invitations"),
    (REJECTS_ME, "IsInvitedByMe", "invitations"),
    (REJECTED_BY_ME, "IsInvitedByMe", "invitations"),
    (OPEN_DOORS, "IsMyCounteragent", "invitations"),
    (INVITES_ME, "IsMyCounteragent", "accepted"),
    (INVITED, "IsInvitedByMe", "unchanged"),
    (CONNECTED, "IsMyCounteragent", "unchanged"),
    (PERSON, "IsInvitedByMe", "invitations"),
], ids=["no-relation", "rejects-me", "rejected-by-me", "all-organizations", "invites-me", "invited",
        "connected", "individual"])
def test_acquire_by_box_moves_the_relation_as_the_docs_say(sandbox: SandboxServer, inn: str, after: str,
                                                           effect: str) -> None:
    s = api(sandbox.url)
    box = box_of(s, sandbox.url, inn)
    r = invite(s, sandbox.url, {"BoxId": box, "MessageToCounteragent": "Приглашаем"})
    assert r.status_code == 200 and r.json() == {"BoxId": box}
    assert relation(s, sandbox.url, box) == after
    entry = sandbox.ledger()["diadoc"]["counteragents"][f"{inn}/{find(s, sandbox.url, inn)[0]['Kpp']}"]
    assert entry["box"] == box and entry["acquires"] == 1 and entry[effect] == 1
    assert sum(entry[k] for k in ("invitations", "accepted", "unchanged", "failed")) == 1
    assert sandbox.ledger()["diadoc"]["boxes"][box]["acquires"] == 1


def test_the_message_is_kept_with_a_new_invitation(sandbox: SandboxServer) -> None:
    s = api(sandbox.url)
    box = box_of(s, sandbox.url, FIRST_PLAIN)
    invite(s, sandbox.url, {"BoxId": box, "MessageToCounteragent": "x" * 2000})
    body = s.get(sandbox.url + "/V3/GetCounteragent", params={"myBoxId": MY_BOX, "counteragentBoxId": box}).json()
    assert body["MessageToCounteragent"] == "x" * 2000


def test_a_second_acquire_changes_nothing_but_is_counted(sandbox: SandboxServer) -> None:
    s = api(sandbox.url)
    box = box_of(s, sandbox.url, FIRST_PLAIN)
    invite(s, sandbox.url, {"BoxId": box})
    invite(s, sandbox.url, {"BoxId": box})
    entry = sandbox.ledger()["diadoc"]["boxes"][box]
    assert (entry["acquires"], entry["invitations"], entry["unchanged"]) == (2, 1, 1)


def test_roaming_counterparty_is_409_and_nothing_is_processed(sandbox: SandboxServer) -> None:
    s = api(sandbox.url)
    roaming = find(s, sandbox.url, ROAMING_ONLY)[0]["Boxes"][0]["BoxIdGuid"]
    twin = next(o for o in find(s, sandbox.url, TWIN) if o["IsRoaming"])["Boxes"][0]["BoxIdGuid"]
    for body in ({"BoxId": roaming}, {"BoxId": twin}, {"Inn": ROAMING_ONLY}):
        r = acquire(s, sandbox.url, body)
        assert r.status_code == 409 and "roaming" in r.text
        assert r.headers["X-Diadoc-ErrorCode"] == "RoamingCounteragent"
    assert sandbox.ledger()["diadoc"]["counteragents"] == {}
    assert relation(s, sandbox.url, box_of(s, sandbox.url, TWIN)) is None  # the twin beside it is untouched


def test_acquire_by_inn_of_an_organisation_on_diadoc_goes_to_the_head_office(sandbox: SandboxServer) -> None:
    s = api(sandbox.url)
    r = invite(s, sandbox.url, {"Inn": HEAD_AND_BRANCHES})
    head = box_of(s, sandbox.url, HEAD_AND_BRANCHES)
    assert r.json() == {"BoxId": head}
    assert relation(s, sandbox.url, head) == "IsInvitedByMe"
    branches = [o["Boxes"][0]["BoxIdGuid"] for o in find(s, sandbox.url, HEAD_AND_BRANCHES) if o["IsBranch"]]
    assert [relation(s, sandbox.url, b) for b in branches] == [None, None]


def test_acquire_by_inn_with_two_head_offices_goes_to_the_newest(sandbox: SandboxServer) -> None:
    s = api(sandbox.url)
    newest = find(s, sandbox.url, TWO_HEADS, "770301001")[0]["Boxes"][0]["BoxIdGuid"]
    assert invite(s, sandbox.url, {"Inn": TWO_HEADS}).json() == {"BoxId": newest}


def test_acquire_by_inn_only_in_egrul_opens_a_box_holding_the_invitation(sandbox: SandboxServer) -> None:
    s = api(sandbox.url)
    assert find(s, sandbox.url, EGRUL_ONLY) == []
    r = invite(s, sandbox.url, {"Inn": EGRUL_ONLY, "MessageToCounteragent": "Добро пожаловать"})
    assert r.status_code == 200
    box = r.json()["BoxId"]
    orgs = find(s, sandbox.url, EGRUL_ONLY)
    assert [(o["Boxes"][0]["BoxIdGuid"], o["IsBranch"], o["Kpp"]) for o in orgs] == [(box, False, "770401001")]
    assert relation(s, sandbox.url, box) == "IsInvitedByMe"
    entry = sandbox.ledger()["diadoc"]["counteragents"][f"{EGRUL_ONLY}/770401001"]
    assert (entry["box"], entry["acquires"], entry["invitations"]) == (box, 1, 1)
    # A second invitation by INN now finds the box: nothing new happens.
    assert invite(s, sandbox.url, {"Inn": EGRUL_ONLY}).json() == {"BoxId": box}
    assert sandbox.ledger()["diadoc"]["boxes"][box]["unchanged"] == 1


def test_acquire_by_an_inn_nobody_knows_fails_in_the_task(sandbox: SandboxServer) -> None:
    s = api(sandbox.url)
    r = acquire(s, sandbox.url, {"Inn": NOWHERE})
    assert r.status_code == 200  # accepted: the failure comes with the result
    done = result(s, sandbox.url, r.json()["TaskId"])
    assert done.status_code == 409 and NOWHERE in done.text and "ЕГРЮЛ" in done.text
    assert done.headers["Content-Type"].startswith("text/plain")
    entry = sandbox.ledger()["diadoc"]["counteragents"][f"{NOWHERE}/"]
    assert (entry["box"], entry["acquires"], entry["failed"]) == (None, 1, 1)


@pytest.mark.parametrize(("body", "params", "content_type"), [
    ({"BoxId": "B", "Inn": FIRST_PLAIN}, {}, None),
    ({}, {}, None),
    ({"MessageToCounteragent": "hi"}, {}, None),
    ({"Inn": FIRST_PLAIN, "MessageToCounteragent": "x" * 2001}, {}, None),
    ({"Inn": FIRST_PLAIN, "MessageToCounteragent": 5}, {}, None),
    ({"Inn": "12345"}, {}, None),
    ({"BoxId": "not-a-guid"}, {}, None),
    ({"BoxId": MY_BOX}, {}, None),
    ({"Inn": FIRST_PLAIN}, {"myDepartmentId": "dept-1"}, None),
    ({"Inn": FIRST_PLAIN}, {}, "text/plain"),
], ids=["both", "neither", "message-only", "message-2001", "message-not-text", "inn-short", "box-not-guid",
        "myself", "department-not-guid", "not-json"])
def test_acquire_refusals_are_400(sandbox: SandboxServer, body: dict[str, Any], params: dict[str, str],
                                  content_type: str | None) -> None:
    s = api(sandbox.url)
    if content_type:
        r = s.post(sandbox.url + "/V3/AcquireCounteragent", params={"myBoxId": MY_BOX},
                   data=json.dumps(body), headers={"Content-Type": content_type})
    else:
        r = acquire(s, sandbox.url, body, **params)
    assert r.status_code == 400, r.text
    assert sandbox.ledger()["diadoc"]["counteragents"] == {}


def test_acquire_of_an_unknown_box_is_404(sandbox: SandboxServer) -> None:
    r = acquire(api(sandbox.url), sandbox.url, {"BoxId": "00000000-0000-0000-0000-000000000001"})
    assert r.status_code == 404


def test_a_department_id_is_accepted(sandbox: SandboxServer) -> None:
    s = api(sandbox.url)
    r = acquire(s, sandbox.url, {"Inn": FIRST_PLAIN}, myDepartmentId="3f1c1a5e-0000-4000-8000-000000000001")
    assert r.status_code == 200


# ---------------------------------------------------------------- tasks

def raw_get(url: str, path: str, headers: dict[str, str]) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n{head}Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def test_a_task_answers_204_with_retry_after_until_it_is_done(sandbox_factory: Factory) -> None:
    clock = Clock()
    server = sandbox_factory(task_ms=1500, clock=clock)
    s = api(server.url)
    task = acquire(s, server.url, {"BoxId": box_of(s, server.url, FIRST_PLAIN)}).json()["TaskId"]
    r = result(s, server.url, task)
    assert r.status_code == 204 and r.headers["Retry-After"] == "2" and r.content == b""
    raw = raw_get(server.url, f"/V3/AcquireCounteragentResult?myBoxId={MY_BOX}&taskId={task}",
                  {"Authorization": s.headers["Authorization"], "Accept": "application/json"})
    assert raw.startswith(b"HTTP/1.1 204 ") and b"content-length" not in raw.lower()
    clock.advance(1.0)
    assert result(s, server.url, task).headers["Retry-After"] == "1"
    clock.advance(0.5)
    r = result(s, server.url, task)
    assert r.status_code == 200 and r.json()["BoxId"] == box_of(s, server.url, FIRST_PLAIN)
    assert result(s, server.url, task).status_code == 200  # a finished task keeps its answer


def test_a_failing_task_also_waits_before_its_409(sandbox_factory: Factory) -> None:
    clock = Clock()
    server = sandbox_factory(task_ms=800, clock=clock)
    s = api(server.url)
    task = acquire(s, server.url, {"Inn": NOWHERE}).json()["TaskId"]
    assert result(s, server.url, task).status_code == 204
    clock.advance(0.8)
    assert result(s, server.url, task).status_code == 409


@pytest.mark.parametrize("task", ["", "6a1d3c2e-0000-4000-8000-00000000abcd", "nonsense"])
def test_an_unknown_task_is_404(sandbox: SandboxServer, task: str) -> None:
    r = result(api(sandbox.url), sandbox.url, task)
    assert r.status_code == 404 and r.headers["X-Diadoc-ErrorCode"] == "TaskNotFound"


@pytest.mark.parametrize(("visible_on", "before_done"), [("send", "IsInvitedByMe"), ("result", None)])
def test_when_the_relation_becomes_visible(sandbox_factory: Factory, visible_on: str,
                                           before_done: str | None) -> None:
    clock = Clock()
    server = sandbox_factory(task_ms=1000, relation_visible_on=visible_on, clock=clock)
    s = api(server.url)
    box = box_of(s, server.url, FIRST_PLAIN)
    egrul_task = acquire(s, server.url, {"Inn": EGRUL_ONLY}).json()["TaskId"]
    acquire(s, server.url, {"BoxId": box})
    assert relation(s, server.url, box) == before_done
    assert bool(find(s, server.url, EGRUL_ONLY)) is (before_done is not None)  # the opened box, likewise
    clock.advance(1.0)
    assert relation(s, server.url, box) == "IsInvitedByMe"  # visible once done, even if nobody polled
    assert result(s, server.url, egrul_task).status_code == 200
    assert len(find(s, server.url, EGRUL_ONLY)) == 1
    assert server.ledger()["diadoc"]["boxes"][box]["invitations"] == 1


def test_under_the_result_reading_two_sends_before_the_end_make_one_invitation(sandbox_factory: Factory) -> None:
    clock = Clock()
    server = sandbox_factory(task_ms=1000, relation_visible_on="result", clock=clock)
    s = api(server.url)
    box = box_of(s, server.url, FIRST_PLAIN)
    acquire(s, server.url, {"BoxId": box})
    acquire(s, server.url, {"BoxId": box})  # a client that trusted the empty look-up and sent again
    clock.advance(1.0)
    entry = server.ledger()["diadoc"]["boxes"][box]
    assert (entry["acquires"], entry["invitations"], entry["unchanged"]) == (2, 1, 1)


# ---------------------------------------------------------------- removed versions, headers

@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/V2/AcquireCounteragent"), ("POST", "/AcquireCounteragent"), ("POST", "/V1/AcquireCounteragent"),
    ("GET", "/V2/GetCounteragent"), ("GET", "/GetCounteragent"), ("GET", "/V1/GetCounteragent"),
    ("GET", "/V2/AcquireCounteragentResult"), ("GET", "/AcquireCounteragentResult"),
    ("GET", "/V3/Authenticate"), ("GET", "/V2/GetOrganizationsByInnKpp"),
])
def test_v1_v2_and_other_methods_are_404(sandbox: SandboxServer, method: str, path: str) -> None:
    s = api(sandbox.url)
    r = s.request(method, sandbox.url + path, params={"myBoxId": MY_BOX}, json={"Inn": FIRST_PLAIN})
    assert r.status_code == 404
    assert r.headers["Content-Type"].startswith("text/plain") and r.headers["X-Kontur-Trace-Id"]
    assert sandbox.ledger()["diadoc"]["counteragents"] == {}


def test_every_answer_carries_a_trace_id(sandbox_factory: Factory) -> None:
    server = sandbox_factory(task_ms=5000)
    s = api(server.url)
    task = acquire(s, server.url, {"Inn": FIRST_PLAIN}).json()["TaskId"]
    answers = [result(s, server.url, task), s.get(server.url + "/GetMyOrganizations"),
               requests.get(server.url + "/GetMyOrganizations"), get_token(server.url),
               get_token(server.url, client_secret="x"), s.get(server.url + "/V2/GetCounteragent")]
    assert [a.status_code for a in answers] == [204, 200, 401, 200, 401, 404]
    ids = [a.headers["X-Kontur-Trace-Id"] for a in answers]
    assert len(set(ids)) == len(ids)
    assert "X-Request-Id" not in answers[1].headers


# ---------------------------------------------------------------- faults

def test_throttle_and_error_faults_apply_to_diadoc(sandbox_factory: Factory) -> None:
    server = sandbox_factory(seed=3)
    s = api(server.url)
    server.configure(throttle_rate=1.0)
    r = s.get(server.url + "/GetMyOrganizations")
    assert r.status_code == 429 and r.headers["Retry-After"] == "1" and r.headers["X-Kontur-Trace-Id"]
    server.configure(throttle_rate=0.0, error_rate=1.0)
    assert acquire(s, server.url, {"Inn": FIRST_PLAIN}).status_code == 503
    assert get_token(server.url).status_code == 503
    assert server.ledger()["diadoc"]["counteragents"] == {}


def test_ambiguous_acquires_are_processed_about_half_of_the_time(sandbox_factory: Factory) -> None:
    server = sandbox_factory(seed=6)
    s = api(server.url)
    boxes = [box_of(s, server.url, plain(n)) for n in range(1, 31)]
    server.configure(ambiguous_rate=1.0)
    assert relation(s, server.url, boxes[0]) is None  # a look-up is never ambiguous
    statuses = [acquire(s, server.url, {"BoxId": b}).status_code for b in boxes]
    assert set(statuses) <= {500, 502, 504} and len(set(statuses)) > 1
    server.configure(ambiguous_rate=0.0)
    invited = [b for b in boxes if relation(s, server.url, b) == "IsInvitedByMe"]
    assert 5 <= len(invited) <= 25
    ledger = server.ledger()
    assert ledger["ambiguous"]["calls"]["POST /V3/AcquireCounteragent"] == {
        "total": 30, "processed": len(invited), "drops": 0}
    assert sorted(ledger["diadoc"]["boxes"]) == sorted(invited)
    five_hundred = s.post(server.url + "/V3/AcquireCounteragent", params={"myBoxId": MY_BOX}, json={})
    assert five_hundred.status_code == 400  # faults off again


def test_a_500_from_diadoc_is_plain_text(sandbox_factory: Factory) -> None:
    server = sandbox_factory(seed=2)
    s = api(server.url)
    server.configure(ambiguous_rate=1.0)
    seen = {}
    for n in range(20):
        r = acquire(s, server.url, {"Inn": NOWHERE, "MessageToCounteragent": str(n)})
        seen[r.status_code] = r.headers["Content-Type"]
    assert seen[500].startswith("text/plain") and seen[502] == seen[504] == "text/html"


def test_drops_spare_the_token_endpoint_but_not_the_api(sandbox_factory: Factory) -> None:
    server = sandbox_factory(rotate_refresh=True, seed=1)
    s = api(server.url)  # spends the demo refresh token; the rotated one is the last token issued
    box = box_of(s, server.url, FIRST_PLAIN)
    server.configure(drop_rate=1.0)
    with pytest.raises(requests.ConnectionError):
        acquire(s, server.url, {"BoxId": box})
    with pytest.raises(requests.ConnectionError):
        s.get(server.url + "/GetMyOrganizations")
    # A dropped rotation would strand any client: the token endpoint always answers.
    assert get_token(server.url, refresh_token=server.issued_tokens()[-1]).status_code == 200
    server.configure(drop_rate=0.0)
    assert relation(s, server.url, box) == "IsInvitedByMe"  # the dropped acquire was processed
    amb = server.ledger()["ambiguous"]
    assert amb["calls"] == {"POST /V3/AcquireCounteragent": {"total": 1, "processed": 1, "drops": 1}}


def test_rate_limit_counts_per_diadoc_user_and_token_requests_per_client(sandbox_factory: Factory) -> None:
    clock = Clock()
    server = sandbox_factory(rate_limit="3/s", clock=clock)
    token = get_token(server.url).json()["access_token"]
    other = get_token(server.url).json()["access_token"]  # the same user: one budget
    statuses = [api(server.url, t).get(server.url + "/GetMyOrganizations").status_code
                for t in (token, other, token, other)]
    assert statuses == [200, 200, 200, 429]
    assert get_token(server.url).status_code == 200  # the client id has a budget of its own (2 of 3 used)
    assert get_token(server.url).status_code == 429
    clock.advance(1.0)
    assert api(server.url, token).get(server.url + "/GetMyOrganizations").status_code == 200


def test_a_seed_replays_the_same_diadoc_faults(sandbox_factory: Factory) -> None:
    def play() -> tuple[list[int], dict[str, Any]]:
        server = sandbox_factory(seed=9)
        s = api(server.url)
        server.configure(ambiguous_rate=0.4, error_rate=0.2, throttle_rate=0.1)
        codes = [acquire(s, server.url, {"Inn": plain(n)}).status_code for n in range(1, 21)]
        return codes, server.ledger()["diadoc"]["counteragents"]

    first = play()
    assert {200, 429, 503} <= set(first[0]) and set(first[0]) & {500, 502, 504}
    assert play() == first


# ---------------------------------------------------------------- ledger, reset, admin

def test_ledger_counts_calls_tokens_and_counteragents(sandbox: SandboxServer) -> None:
    s = api(sandbox.url)
    box = box_of(s, sandbox.url, FIRST_PLAIN)
    invite(s, sandbox.url, {"BoxId": box})
    ledger = sandbox.ledger()
    assert ledger["calls"] == {"POST /connect/token": 1, "GET /GetOrganizationsByInnKpp": 1,
                               "POST /V3/AcquireCounteragent": 1, "GET /V3/AcquireCounteragentResult": 1}
    assert ledger["diadoc"] == {
        "tokens": {"issued": 1, "rotated": 0, "refused": 0},
        "counteragents": {f"{FIRST_PLAIN}/770301001": {"box": box, "acquires": 1, "invitations": 1, "accepted": 0,
                                                       "unchanged": 0, "failed": 0}},
        "boxes": {box: {"counteragent": f"{FIRST_PLAIN}/770301001", "acquires": 1, "invitations": 1,
                        "accepted": 0, "unchanged": 0, "failed": 0}}}


def test_reset_clears_the_ledger_and_reset_all_the_diadoc_state(sandbox: SandboxServer) -> None:
    s = api(sandbox.url)
    box = box_of(s, sandbox.url, FIRST_PLAIN)
    invite(s, sandbox.url, {"BoxId": box})
    invite(s, sandbox.url, {"Inn": EGRUL_ONLY})
    assert requests.post(sandbox.url + "/_sandbox/reset").status_code == 200
    assert sandbox.ledger()["diadoc"]["counteragents"] == {}
    assert relation(s, sandbox.url, box) == "IsInvitedByMe"  # state kept
    assert requests.post(sandbox.url + "/_sandbox/reset?all=1").status_code == 200
    r = s.get(sandbox.url + "/GetMyOrganizations")
    assert r.status_code == 401  # access tokens are gone with the rest
    s = api(sandbox.url)
    assert relation(s, sandbox.url, box) is None
    assert find(s, sandbox.url, EGRUL_ONLY) == []


def test_admin_lists_the_organisations_with_their_relations(sandbox: SandboxServer) -> None:
    data = requests.get(sandbox.url + "/_sandbox/diadoc").json()
    assert data["my_organization"]["Boxes"][0]["BoxIdGuid"] == MY_BOX
    relations = {o["Inn"]: o["Relation"] for o in data["organizations"] if o["Relation"]}
    assert relations == {CONNECTED: "IsMyCounteragent", INVITED: "IsInvitedByMe", INVITES_ME: "InvitesMe",
                         REJECTS_ME: "RejectsMe", REJECTED_BY_ME: "IsRejectedByMe"}


# ---------------------------------------------------------------- the seed

def test_the_built_in_seed_covers_every_case_with_valid_inns() -> None:
    seed = load_seed()
    inns = [seed.me.inn] + [o.inn for o in seed.organizations] + [r.inn for r in seed.egrul] + seed.nowhere
    assert all(ru_inn.is_valid(i) for i in inns)
    assert set(seed.relations.values()) == set(RELATIONS)
    by_inn: dict[str, list[Any]] = {}
    for o in seed.organizations:
        by_inn.setdefault(o.inn, []).append(o)
    assert [o.roaming for o in by_inn[ROAMING_ONLY]] == [True]
    assert sorted(o.roaming for o in by_inn[TWIN]) == [False, True]
    assert sorted(o.branch for o in by_inn[HEAD_AND_BRANCHES]) == [False, True, True]
    assert [o.branch for o in by_inn[TWO_HEADS]] == [False, False]
    assert by_inn[OPEN_DOORS][0].sociability == "AllOrganizations"
    assert by_inn[PERSON][0].kpp == "" and LEADING_ZERO.startswith("0")
    assert sum(1 for o in seed.organizations if o.box not in seed.relations and not o.roaming) >= 40
    assert EGRUL_ONLY in {r.inn for r in seed.egrul} and seed.nowhere == [NOWHERE]


def test_the_readme_table_is_the_seed() -> None:
    readme = (Path(__file__).parent.parent / "batch" / "sandbox" / "README.md").read_text("utf-8")
    table = readme.split("### Seeded organisations", 1)[1]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()
            if re.match(r"^\| \d", line)]
    listed = {(r[0], r[1].replace("—", "")) for r in rows if "…" not in r[0]}
    seed = load_seed()
    plain = [o for o in seed.organizations if o.name.startswith("ООО «Контрагент")]
    expected = {(o.inn, o.kpp) for o in [seed.me, *seed.organizations] if o not in plain}
    expected |= {(r.inn, r.kpp) for r in seed.egrul} | {(n, "") for n in seed.nowhere}
    assert listed == expected
    assert ", ".join(o.inn for o in plain) + "." in table


@pytest.mark.parametrize(("change", "problem"), [
    (lambda d: d["organizations"][0].update(Inn="7702001016"), "not a valid INN"),
    (lambda d: d["organizations"][0].update(Relation="Friends"), "Relation must be one of"),
    (lambda d: d["organizations"][0].update(Kpp="12"), "must be 9 characters"),
    (lambda d: d["organizations"][1].update(BoxIdGuid=d["organizations"][0]["BoxIdGuid"]), "appears twice"),
    (lambda d: d["egrul"].append({"Inn": CONNECTED}), "also an organisation on Diadoc"),
    (lambda d: d.update(colour="red"), "unknown key"),
    (lambda d: d.pop("my_organization"), "my_organization"),
], ids=["inn", "relation", "kpp", "box-twice", "egrul-on-diadoc", "unknown-key", "no-me"])
def test_seed_problems_are_config_errors(tmp_path: Path, change: Callable[[dict[str, Any]], Any],
                                         problem: str) -> None:
    data = json.loads(DEFAULT_SEED.read_text("utf-8"))
    change(data)
    path = tmp_path / "orgs.json"
    path.write_text(json.dumps(data, ensure_ascii=False), "utf-8")
    with pytest.raises(ConfigError) as exc:
        SandboxServer(SandboxOptions(diadoc_organizations=str(path)))
    assert any(problem in p for p in exc.value.problems), exc.value.problems


def test_a_seed_of_ones_own(sandbox_factory: Factory, tmp_path: Path) -> None:
    path = tmp_path / "orgs.json"
    path.write_text(json.dumps({
        "my_organization": {"Inn": "7701001005", "Kpp": "770101001", "FullName": "Me"},
        "organizations": [{"Inn": FIRST_PLAIN, "Kpp": "770301001", "FullName": "Them", "Relation": "InvitesMe"}],
    }), "utf-8")
    server = sandbox_factory(diadoc_organizations=path)
    s = api(server.url)
    me = s.get(server.url + "/GetMyOrganizations").json()["Organizations"][0]["Boxes"][0]["BoxIdGuid"]
    them = box_of(s, server.url, FIRST_PLAIN)
    r = s.get(server.url + "/V3/GetCounteragent", params={"myBoxId": me, "counteragentBoxId": them})
    assert r.json()["CurrentStatus"] == "InvitesMe"
    assert find(s, server.url, CONNECTED) == []


# ---------------------------------------------------------------- config keys and the command

EDIN = {"provider": "edin", "auth": {"email": "a@b.ua", "password": "p"}, "invite": {"contract_template_id": 1}}


def test_diadoc_sandbox_config_keys(tmp_path: Path) -> None:
    config = parse_config({**EDIN, "sandbox": {"token_ttl": 30, "task_ms": 250, "rotate_refresh": True,
                                               "relation_visible_on": "result",
                                               "diadoc_organizations": "/x/orgs.json"}}, env={})
    assert config.sandbox == SandboxOptions(token_ttl=30, task_ms=250, rotate_refresh=True,
                                            relation_visible_on="result", diadoc_organizations="/x/orgs.json")


@pytest.mark.parametrize(("sandbox", "message"), [
    ({"token_ttl": 0}, "sandbox.token_ttl: must be a whole number ≥ 1"),
    ({"task_ms": -1}, "sandbox.task_ms: must be a number between 0 and 3.6e+06"),
    ({"rotate_refresh": "often"}, "sandbox.rotate_refresh: must be true or false"),
    ({"relation_visible_on": "never"}, "sandbox.relation_visible_on: must be send or result"),
], ids=["ttl", "task-ms", "rotate", "visible-on"])
def test_diadoc_sandbox_config_problems(sandbox: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config({**EDIN, "sandbox": sandbox}, env={})
    assert any(p.startswith(message) for p in exc.value.problems), exc.value.problems


def test_the_sandbox_command_takes_the_diadoc_options() -> None:
    with sandbox_process("--token-ttl", "5", "--rotate-refresh", "--task-ms", "60000",
                         "--relation-visible-on", "result") as url:
        body = get_token(url).json()
        assert body["expires_in"] == 5 and body["refresh_token"] != "sandbox-refresh"
        s = api(url, body["access_token"])
        box = box_of(s, url, FIRST_PLAIN)
        task = acquire(s, url, {"BoxId": box}).json()["TaskId"]
        assert result(s, url, task).headers["Retry-After"] in ("60", "59")
        assert relation(s, url, box) is None
