"""InvoiceboxClient unit tests with `responses`."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import responses
from support import FakeClock

from batch.config import RateWindow, RetryPolicy, Timeouts
from batch.errors import AmbiguousAPIError, FatalAPIError, RetriableAPIError
from batch.http import HttpClient
from batch.logs import redact
from batch.providers.invoicebox.client import INVITE_PATH, Invitation, InvoiceboxClient
from batch.ratelimit import RateLimiter

BASE = "https://ib.example.test"
URL = BASE + INVITE_PATH.format(prefix="v3")
TOKEN = "ib-token-0f9e8d7c6b5a"
PARTNER = "01771534-1a57-f184-dee3-ebeb91dded76"


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock() as r:
        yield r


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def ib(sleeps: list[float]) -> Iterator[InvoiceboxClient]:
    http = HttpClient(BASE, timeouts=Timeouts(), retry=RetryPolicy(attempts=3), limiter=None, workers=2,
                      sleep=sleeps.append)
    yield InvoiceboxClient(http, token=TOKEN)
    http.close()


def test_invite_sends_the_documented_request(ib: InvoiceboxClient, mocked: responses.RequestsMock) -> None:
    mocked.post(URL, json={"data": {"id": "a1b2c3d4-0000-4000-8000-000000000001"}},
                headers={"X-Request-Id": "req-1"})
    got = ib.invite(partner_id=PARTNER, email="shop@example.com")
    assert got == Invitation(invitation_id="a1b2c3d4-0000-4000-8000-000000000001", request_id="req-1",
                             http_status=200, attempts=1)
    sent = mocked.calls[0].request
    assert json.loads(sent.body or b"") == {"partnerId": PARTNER, "type": "email", "identifier": "shop@example.com"}
    assert sent.headers["Authorization"] == f"Bearer {TOKEN}"
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.headers["Accept"] == "application/json"
    assert re.fullmatch(r"invite-batch/\d+\.\d+\.\d+\S* \(.+\)", sent.headers["User-Agent"])


def test_integer_id_is_kept_as_text(ib: InvoiceboxClient, mocked: responses.RequestsMock) -> None:
    mocked.post(URL, json={"data": {"id": 123456}})
    assert ib.invite(partner_id=PARTNER, email="a@example.com").invitation_id == "123456"


def test_answer_without_id(ib: InvoiceboxClient, mocked: responses.RequestsMock,
                           caplog: pytest.LogCaptureFixture) -> None:
    mocked.post(URL, body="ok")
    with caplog.at_level(logging.WARNING):
        got = ib.invite(partner_id=PARTNER, email="a@example.com")
    assert got.invitation_id == "" and got.http_status == 200
    assert "no data.id" in caplog.text


def test_token_is_registered_as_secret(ib: InvoiceboxClient) -> None:
    assert redact(f"token={TOKEN}") == "token=***"


def test_validation_error_is_fatal_with_detail(ib: InvoiceboxClient, mocked: responses.RequestsMock,
                                               sleeps: list[float]) -> None:
    mocked.post(URL, status=422, headers={"X-Request-Id": "req-422"}, json={"error": {
        "code": "validation_error", "message": "Invalid request",
        "fields": [{"name": "identifier", "code": "wrong_value", "message": "Invalid e-mail"}]}})
    with pytest.raises(FatalAPIError) as err:
        ib.invite(partner_id=PARTNER, email="bad@")
    e = err.value
    assert (e.http_status, e.code, e.request_id) == (422, "validation_error", "req-422")
    assert "identifier wrong_value: Invalid e-mail" in str(e)
    assert sleeps == []


def test_refused_token(ib: InvoiceboxClient, mocked: responses.RequestsMock) -> None:
    mocked.post(URL, status=401, json={"error": {"code": "unauthorized", "message": "Unauthorized"}})
    with pytest.raises(FatalAPIError) as err:  # the flow turns it into AuthError after un-charging its row
        ib.invite(partner_id=PARTNER, email="a@example.com")
    assert (err.value.http_status, err.value.code) == (401, "unauthorized")
    assert TOKEN not in str(err.value) and len(mocked.calls) == 1


def test_forbidden_fails_the_row(ib: InvoiceboxClient, mocked: responses.RequestsMock) -> None:
    mocked.post(URL, status=403, json={"error": {"code": "forbidden", "message": "Forbidden"}})
    with pytest.raises(FatalAPIError, match="Forbidden") as err:
        ib.invite(partner_id=PARTNER, email="a@example.com")
    assert (err.value.http_status, err.value.code) == (403, "forbidden")


def test_throttled_then_accepted(ib: InvoiceboxClient, mocked: responses.RequestsMock, sleeps: list[float]) -> None:
    mocked.post(URL, status=429, headers={"Retry-After": "3"})
    mocked.post(URL, json={"data": {"id": 7}})
    got = ib.invite(partner_id=PARTNER, email="a@example.com")
    assert got.attempts == 2 and sleeps == [3.0]


def test_server_errors_run_out(ib: InvoiceboxClient, mocked: responses.RequestsMock) -> None:
    mocked.post(URL, status=503)
    with pytest.raises(RetriableAPIError) as err:
        ib.invite(partner_id=PARTNER, email="a@example.com")
    assert err.value.attempts == 3 and len(mocked.calls) == 3


def test_a_500_is_an_unhandled_exception_and_may_have_invited(ib: InvoiceboxClient,
                                                              mocked: responses.RequestsMock) -> None:
    mocked.post(URL, status=500)  # documented as an unhandled exception: the invitation may well have gone
    with pytest.raises(AmbiguousAPIError) as err:
        ib.invite(partner_id=PARTNER, email="a@example.com")
    assert err.value.http_status == 500 and len(mocked.calls) == 1


def test_timeout_after_sending_is_ambiguous(ib: InvoiceboxClient, mocked: responses.RequestsMock) -> None:
    mocked.post(URL, body=requests.ReadTimeout("read timed out"))
    with pytest.raises(AmbiguousAPIError):
        ib.invite(partner_id=PARTNER, email="a@example.com")
    assert len(mocked.calls) == 1


# ------------------------------------------------------------------ against the real sandbox

def _client(url: str, sleep: Any, *, token: str = "sandbox-token", attempts: int = 3,
            limiter: RateLimiter | None = None) -> tuple[HttpClient, InvoiceboxClient]:
    http = HttpClient(url, timeouts=Timeouts(connect=2, read=5), retry=RetryPolicy(attempts=attempts),
                      limiter=limiter, workers=4, sleep=sleep)
    return http, InvoiceboxClient(http, token=token)


def test_sandbox_invite(sandbox: Any) -> None:
    http, ib = _client(sandbox.url, [].append)
    try:
        got = ib.invite(partner_id=PARTNER, email="shop@example.com")
        assert len(got.invitation_id) == 36 and len(got.request_id) == 36 and got.http_status == 200
        with pytest.raises(FatalAPIError) as err:
            ib.invite(partner_id=PARTNER, email="not-an-address")
        assert err.value.http_status == 422 and "identifier wrong_value" in str(err.value)
        assert err.value.request_id
    finally:
        http.close()
    assert sandbox.ledger()["invoicebox"]["emails"] == {"shop@example.com": {"invitations": 1}}


def test_sandbox_wrong_token(sandbox: Any) -> None:
    http, ib = _client(sandbox.url, [].append, token="not-a-valid-token")
    try:
        with pytest.raises(FatalAPIError) as err:
            ib.invite(partner_id=PARTNER, email="shop@example.com")
        assert err.value.http_status == 401 and "not-a-valid-token" not in str(err.value)
    finally:
        http.close()


def test_sandbox_429_storm_honours_retry_after(sandbox_factory: Any) -> None:
    server = sandbox_factory(throttle_rate=0.5, seed=3)  # 12 tries, all throttled: 1 in 4,096 a row
    clock = FakeClock()  # our side's: waits are recorded and only move it
    limiter = RateLimiter([RateWindow(limit=50, seconds=1.0)], clock=clock.monotonic, sleep=clock.sleep)
    http, ib = _client(server.url, clock.sleep, attempts=12, limiter=limiter)
    emails = [f"shop{i}@example.com" for i in range(20)]
    try:
        for email in emails:
            ib.invite(partner_id=PARTNER, email=email)
    finally:
        http.close()
    ledger = server.ledger()
    throttled = ledger["responses"]["429"]
    assert throttled >= 5
    # Every invitation arrived exactly once: a 429 is "not processed", so repeating was safe.
    assert ledger["invoicebox"]["emails"] == {e: {"invitations": 1} for e in emails}
    # The sandbox says Retry-After: 1; each retry waited at least that (in the limiter's pause or ours).
    assert len([s for s in clock.waits if s >= 1.0]) >= throttled
    assert limiter.factor < 1.0


def test_sandbox_drop_is_ambiguous(sandbox_factory: Any) -> None:
    server = sandbox_factory(drop_rate=1.0)
    sleeps: list[float] = []
    http, ib = _client(server.url, sleeps.append)
    try:
        with pytest.raises(AmbiguousAPIError):
            ib.invite(partner_id=PARTNER, email="shop@example.com")
    finally:
        http.close()
    assert sleeps == [] and server.ledger()["invoicebox"]["emails"] == {"shop@example.com": {"invitations": 1}}
