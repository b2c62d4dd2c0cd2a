"""The Diadoc client in isolation: the shared token's timing and its one refresh on a 401, rotation without a file,
error codes from the header, and the choice among organisations (SPEC §13.1, §13.3, §13.5)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from batch.errors import AuthError, FatalAPIError
from batch.http import Reply
from batch.outcome import describe
from batch.providers.diadoc.client import DiadocClient, Organization, RefreshToken, Tokens, with_code
from batch.providers.diadoc.flows import pick


def reply(status: int, body: Any = None, headers: dict[str, str] | None = None) -> Reply:
    data = b"" if body is None else body.encode() if isinstance(body, str) else json.dumps(body).encode()
    return Reply(status=status, headers=headers or {}, body=data, request_id="trace-1", attempts=1, elapsed_ms=1.0)


class FakeHttp:
    """Answers token requests with numbered tokens and API calls from a script; records what was sent."""

    def __init__(self, api: Callable[[dict[str, str]], Reply], *, expires_in: int = 3600,
                 rotate: bool = False) -> None:
        self.api, self.expires_in, self.rotate = api, expires_in, rotate
        self.tokens = 0
        self.calls: list[tuple[str, str, dict[str, str]]] = []

    def request(self, method: str, path: str, *, mutating: bool, params: Any = None, data: Any = None,
                headers: dict[str, str] | None = None, **_: Any) -> Reply:
        self.calls.append((method, path, dict(headers or {})))
        if path == "/connect/token":
            assert not mutating and data["grant_type"] == "refresh_token"
            self.tokens += 1
            body = {"access_token": f"access-{self.tokens}", "expires_in": self.expires_in}
            if self.rotate:
                body["refresh_token"] = f"refresh-{self.tokens}"
            return reply(200, body)
        result = self.api(dict(headers or {}))
        if result.status >= 400:
            raise FatalAPIError(result.body.decode(), http_status=result.status, response=result)
        return result


def tokens(http: FakeHttp, now: list[float], refresh: RefreshToken | None = None) -> Tokens:
    return Tokens(http, "/connect/token", client_id="c", client_secret="s",  # type: ignore[arg-type]
                  refresh=refresh or RefreshToken("r", None), clock=lambda: now[0])


@pytest.mark.parametrize(("expires_in", "early"), [(100, 10.0), (3600, 60.0), (86_400, 60.0)],
                         ids=["a-tenth", "capped-60s", "a-day"])
def test_one_token_renewed_a_tenth_early_at_most_60s(expires_in: int, early: float) -> None:
    http, now = FakeHttp(lambda h: reply(200, {}), expires_in=expires_in), [0.0]
    source = tokens(http, now)
    assert source.current() == "access-1"
    now[0] = expires_in - early - 0.001
    assert source.current() == "access-1" and http.tokens == 1
    now[0] = expires_in - early
    assert source.current() == "access-2" and http.tokens == 2


def test_a_401_refreshes_once_and_repeats_a_second_stops_the_run() -> None:
    answers = iter([reply(401, "expired"), reply(200, {"Organizations": []})])
    http = FakeHttp(lambda h: next(answers))
    client = DiadocClient(http, tokens(http, [0.0]))  # type: ignore[arg-type]
    assert client.my_organizations() == []
    sent = [h["Authorization"] for m, p, h in http.calls if p != "/connect/token"]
    assert sent == ["Bearer access-1", "Bearer access-2"] and http.tokens == 2

    http = FakeHttp(lambda h: reply(401, "expired"))
    client = DiadocClient(http, tokens(http, [0.0]))  # type: ignore[arg-type]
    with pytest.raises(AuthError, match="refused a freshly issued access token"):
        client.my_organizations()
    assert http.tokens == 2


def test_a_rotated_refresh_token_without_a_file_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    http, now = FakeHttp(lambda h: reply(200, {}), expires_in=10, rotate=True), [0.0]
    refresh = RefreshToken("r", None)
    source = tokens(http, now, refresh)
    for t in (0.0, 20.0, 40.0):
        now[0] = t
        source.current()
    assert refresh.value == "refresh-3"
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "may stop working" in warnings[0] and "refresh-" not in warnings[0]


def test_calls_ask_for_json_and_send_utf8_json() -> None:
    http = FakeHttp(lambda h: reply(200, {"TaskId": "t-1"}))
    client = DiadocClient(http, tokens(http, [0.0]))  # type: ignore[arg-type]
    assert client.acquire("box", department=None, box="other", message="Привет").task_id == "t-1"
    headers = http.calls[-1][2]
    assert headers["Accept"] == "application/json"
    assert headers["Content-Type"] == "application/json; charset=utf-8"


def test_the_error_code_header_reaches_the_detail() -> None:
    err = FatalAPIError("inn must be 10 or 12 digits", http_status=400,
                        response=reply(400, "inn must be 10 or 12 digits", {"X-Diadoc-ErrorCode": "InvalidParameter"}))
    assert describe(with_code(err)) == "HTTP 400 InvalidParameter: inn must be 10 or 12 digits"


def org(box: str, *, roaming: bool = False, branch: bool = False) -> Organization:
    return Organization(inn="7702001093", kpp="", name=box, box=box, roaming=roaming, branch=branch, sociability="")


HEAD, BRANCH, TWIN, OTHER_HEAD = org("head"), org("branch", branch=True), org("twin", roaming=True), org("head-2")


@pytest.mark.parametrize(("found", "with_kpp", "expected"), [
    ([], False, None),
    ([HEAD], False, HEAD),
    ([HEAD, TWIN], False, HEAD),
    ([TWIN], False, TWIN),  # roaming only: invited, and AcquireCounteragent answers 409
    ([HEAD, BRANCH], False, HEAD),
    ([BRANCH], True, BRANCH),
    ([HEAD, BRANCH], True, [HEAD, BRANCH]),
    ([HEAD, OTHER_HEAD], False, [HEAD, OTHER_HEAD]),
    ([HEAD, HEAD], False, HEAD),
], ids=["none", "one", "roaming-twin-dropped", "roaming-only", "head-office-wins", "branch-by-kpp",
        "kpp-still-several", "two-head-offices", "same-box-twice"])
def test_pick(found: list[Organization], with_kpp: bool, expected: object) -> None:
    assert pick(found, with_kpp) == expected
