"""HttpClient unit tests with `responses`: classification, retries, Retry-After, error details, session bits."""

from __future__ import annotations

import http.client
import logging
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
import responses
import urllib3.exceptions as u3
from support import FakeClock

from batch.config import RetryPolicy, Timeouts
from batch.errors import AmbiguousAPIError, FatalAPIError, Interrupted, RetriableAPIError, SessionExpiredError
from batch.http import HttpClient, Outcome, classify, error_detail, parse_retry_after

BASE = "https://api.example.test"
URL = BASE + "/v1/thing"


class Recorder:
    """Stands in for time.sleep and the RateLimiter: records, never waits."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []
        self.acquired = 0
        self.throttles: list[float | None] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def acquire(self) -> None:
        self.acquired += 1

    def throttled(self, retry_after: float | None) -> None:
        self.throttles.append(retry_after)


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
def client(rec: Recorder) -> Iterator[HttpClient]:
    c = HttpClient(BASE, timeouts=Timeouts(connect=1, read=2), workers=4, limiter=rec,  # type: ignore[arg-type]
                   retry=RetryPolicy(attempts=5, initial_wait=0.5, max_wait=30, max_retry_after=120),
                   sleep=rec.sleep)
    yield c
    c.close()


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock() as r:
        yield r


# ------------------------------------------------------------------ classification

def _refused() -> requests.ConnectionError:
    inner = u3.NewConnectionError(None, "Failed to establish a new connection: [Errno 111] Connection refused")  # type: ignore[arg-type]
    return requests.ConnectionError(u3.MaxRetryError(None, URL, inner))  # type: ignore[arg-type]


def _dropped() -> requests.ConnectionError:
    inner = http.client.RemoteDisconnected("Remote end closed connection without response")
    return requests.ConnectionError(u3.ProtocolError("Connection aborted.", inner))


def _reset() -> requests.ConnectionError:
    return requests.ConnectionError(u3.ProtocolError("Connection aborted.", ConnectionResetError(104, "reset")))


def _cert() -> requests.exceptions.SSLError:
    inner = u3.SSLError(ssl.SSLCertVerificationError(1, "certificate verify failed"))
    return requests.exceptions.SSLError(u3.MaxRetryError(None, URL, inner))  # type: ignore[arg-type]


STATUS_CASES = [
    (200, False, False, Outcome.SUCCESS),
    (201, True, False, Outcome.SUCCESS),
    (204, True, True, Outcome.SUCCESS),
    (429, True, False, Outcome.RETRIABLE),
    (429, False, True, Outcome.RETRIABLE),
    (503, True, True, Outcome.RETRIABLE),
    (503, False, False, Outcome.RETRIABLE),
    # SPEC §7: a 500/502/504 may come after the change was made: retried on a read, ambiguous on a change.
    (500, False, False, Outcome.RETRIABLE),
    (500, True, False, Outcome.AMBIGUOUS),
    (502, False, True, Outcome.RETRIABLE),
    (502, True, True, Outcome.AMBIGUOUS),
    (504, False, False, Outcome.RETRIABLE),
    (504, True, False, Outcome.AMBIGUOUS),
    (400, True, False, Outcome.FATAL),
    (404, False, False, Outcome.FATAL),
    (409, True, True, Outcome.FATAL),
    (422, True, False, Outcome.FATAL),
    (401, True, False, Outcome.FATAL),
    (403, False, False, Outcome.FATAL),
    (401, True, True, Outcome.SESSION_EXPIRED),
    (403, False, True, Outcome.SESSION_EXPIRED),
    (302, False, True, Outcome.SESSION_EXPIRED),
    (302, False, False, Outcome.FATAL),
    (501, True, False, Outcome.FATAL),  # "not implemented": refused, not processed
    (505, False, False, Outcome.FATAL),
    (408, False, False, Outcome.FATAL),
]


@pytest.mark.parametrize(
    ("status", "mutating", "session", "expected"), STATUS_CASES,
    ids=[f"{s}-{'post' if m else 'get'}{'-session' if se else ''}" for s, m, se, _ in STATUS_CASES],
)
def test_classify_status(status: int, mutating: bool, session: bool, expected: Outcome) -> None:
    assert classify(status=status, mutating=mutating, session=session) is expected


ERROR_CASES: list[tuple[str, BaseException, bool, Outcome]] = [
    ("connect-timeout-post", requests.ConnectTimeout("connect timed out"), True, Outcome.RETRIABLE),
    ("refused-post", _refused(), True, Outcome.RETRIABLE),
    ("refused-raw-post", ConnectionRefusedError(111, "refused"), True, Outcome.RETRIABLE),
    ("dns-post", requests.ConnectionError(u3.MaxRetryError(None, URL, u3.NameResolutionError(  # type: ignore[arg-type]
        "x.test", None, OSError("no such host")))), True, Outcome.RETRIABLE),  # type: ignore[arg-type]
    ("proxy-post", requests.exceptions.ProxyError("proxy refused"), True, Outcome.RETRIABLE),
    ("read-timeout-post", requests.ReadTimeout("read timed out"), True, Outcome.AMBIGUOUS),
    ("read-timeout-get", requests.ReadTimeout("read timed out"), False, Outcome.RETRIABLE),
    ("dropped-post", _dropped(), True, Outcome.AMBIGUOUS),
    ("dropped-get", _dropped(), False, Outcome.RETRIABLE),
    ("reset-post", _reset(), True, Outcome.AMBIGUOUS),
    ("reset-raw-get", ConnectionResetError(104, "reset"), False, Outcome.RETRIABLE),
    ("remote-disconnected-raw-post", http.client.RemoteDisconnected("closed"), True, Outcome.AMBIGUOUS),
    ("chunked-post", requests.exceptions.ChunkedEncodingError("broken body"), True, Outcome.AMBIGUOUS),
    ("chunked-get", requests.exceptions.ChunkedEncodingError("broken body"), False, Outcome.RETRIABLE),
    ("urllib3-read-timeout-post", u3.ReadTimeoutError(None, URL, "timed out"), True,  # type: ignore[arg-type]
     Outcome.AMBIGUOUS),
    ("cert-invalid-get", _cert(), False, Outcome.FATAL),
    ("cert-invalid-post", _cert(), True, Outcome.FATAL),
    ("invalid-url-get", requests.exceptions.InvalidURL("bad url"), False, Outcome.FATAL),
    ("invalid-url-post", requests.exceptions.InvalidURL("bad url"), True, Outcome.FATAL),  # never sent
    ("invalid-header-post", requests.exceptions.InvalidHeader("bad header"), True, Outcome.FATAL),
    ("too-many-redirects-get", requests.TooManyRedirects("loop"), False, Outcome.FATAL),
    ("too-many-redirects-post", requests.TooManyRedirects("loop"), True, Outcome.AMBIGUOUS),  # sent at least once
    ("broken-pipe-raw-post", BrokenPipeError(32, "broken pipe"), True, Outcome.AMBIGUOUS),
    # SPEC §10: an unrecognised error on a change may have come after sending; on a read nothing changed.
    ("any-other-requests-error-post", requests.RequestException("odd"), True, Outcome.AMBIGUOUS),
    ("any-other-requests-error-get", requests.RequestException("odd"), False, Outcome.FATAL),
    ("any-other-oserror-post", OSError(5, "I/O error"), True, Outcome.AMBIGUOUS),
    ("bug-in-our-code", TypeError("not a network problem"), False, Outcome.FATAL),
]


@pytest.mark.parametrize(("error", "mutating", "expected"), [c[1:] for c in ERROR_CASES],
                         ids=[c[0] for c in ERROR_CASES])
def test_classify_error(error: BaseException, mutating: bool, expected: Outcome) -> None:
    assert classify(error=error, mutating=mutating) is expected


def test_classify_needs_something() -> None:
    with pytest.raises(ValueError):
        classify(mutating=False)


# ------------------------------------------------------------------ Retry-After and error bodies

DATE = "Wed, 21 Oct 2026 07:28:00 GMT"
AT_DATE = datetime(2026, 10, 21, 7, 28, 0, tzinfo=UTC)  # the moment DATE names


@pytest.mark.parametrize(
    ("value", "date", "expected"),
    [
        ("7", None, 7.0),
        (" 2.5 ", None, 2.5),
        ("-3", None, 0.0),
        ("Wed, 21 Oct 2026 07:28:30 GMT", DATE, 30.0),
        ("Wed, 21 Oct 2026 07:27:00 GMT", DATE, 0.0),
        ("soon", None, None),
        ("", None, None),
        (None, None, None),
        ("inf", None, None),
    ],
    ids=["seconds", "fraction", "negative", "http-date", "date-in-past", "garbage", "empty", "absent", "inf"],
)
def test_parse_retry_after(value: str | None, date: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, date=date) == expected


def test_retry_after_date_without_date_header_uses_now() -> None:
    got = parse_retry_after("Fri, 01 Jan 2100 00:00:00 GMT")
    assert got is not None and got > 365 * 24 * 3600
    assert parse_retry_after("Wed, 21 Oct 2026 07:28:45 GMT", now=FakeClock(AT_DATE).now) == 45.0


def test_retry_after_http_date_without_date_header_waits_until_then(mocked: responses.RequestsMock) -> None:
    """Without a Date header the wait is measured on the client's clock: the run's one clock, injected."""
    clock = FakeClock(AT_DATE)
    client = HttpClient(BASE, timeouts=Timeouts(), retry=RetryPolicy(attempts=3, initial_wait=0.5), limiter=None,
                        workers=1, sleep=clock.sleep, clock=clock.monotonic, now=clock.now)
    mocked.get(URL, status=503, headers={"Retry-After": "Wed, 21 Oct 2026 07:28:45 GMT"})
    mocked.get(URL, status=200)
    assert client.request("GET", "/v1/thing", mutating=False).attempts == 2
    client.close()
    assert clock.waits == [45.0] and clock.elapsed == 45.0


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (b'{"error": {"code": "unauthorized", "message": "Bad token"}}', "unauthorized", "Bad token"),
        (b'{"error": {"code": "validation", "message": "Invalid", "fields": [{"name": "identifier", '
         b'"code": "wrong_value", "message": "not an e-mail"}]}}', "validation",
         "Invalid; identifier wrong_value: not an e-mail"),
        (b'{"message": "Partner exists", "code": 17}', "17", "Partner exists"),
        (b'{"error": "no such partner"}', None, "no such partner"),
        (b"<html><body><h1>Bad   request</h1></body></html>", None, "Bad request"),
        (b"plain failure", None, "plain failure"),
        (b"", None, ""),
        (b'["odd"]', None, '["odd"]'),
    ],
    ids=["invoicebox", "invoicebox-fields", "flat-json", "error-string", "html", "text", "empty", "json-list"],
)
def test_error_detail(body: bytes, code: str | None, message: str) -> None:
    assert error_detail(body) == (code, message)


def test_error_detail_is_short() -> None:
    code, message = error_detail(b"x" * 5000)
    assert code is None and len(message) <= 300


# ------------------------------------------------------------------ retries through the client

def test_retries_5xx_then_succeeds(client: HttpClient, mocked: responses.RequestsMock, rec: Recorder) -> None:
    mocked.get(URL, status=503)
    mocked.get(URL, status=502)
    mocked.get(URL, json={"ok": True}, headers={"X-Request-Id": "r-3"})
    reply = client.request("GET", "/v1/thing", mutating=False)
    assert (reply.status, reply.attempts, reply.request_id, reply.json()) == (200, 3, "r-3", {"ok": True})
    assert len(rec.sleeps) == 2 and rec.acquired == 3
    # Full jitter: each wait in [0, initial_wait * 2**(n-1)].
    assert 0 <= rec.sleeps[0] <= 0.5 and 0 <= rec.sleeps[1] <= 1.0


def test_gives_up_after_attempts(client: HttpClient, mocked: responses.RequestsMock, rec: Recorder) -> None:
    mocked.post(URL, status=503, body="oops", headers={"X-Request-Id": "r-last"})
    with pytest.raises(RetriableAPIError) as err:
        client.request("POST", "/v1/thing", mutating=True, json={})
    e = err.value
    assert (e.http_status, e.attempts, e.request_id) == (503, 5, "r-last")
    assert str(e) == "oops"
    assert len(mocked.calls) == 5 and len(rec.sleeps) == 4 and rec.acquired == 5
    caps = [0.5, 1.0, 2.0, 4.0]
    assert all(0 <= s <= cap for s, cap in zip(rec.sleeps, caps, strict=True))


@pytest.mark.parametrize("status", [500, 502, 504])
def test_a_500_502_or_504_to_a_change_is_ambiguous_and_not_repeated(
        client: HttpClient, mocked: responses.RequestsMock, rec: Recorder, status: int) -> None:
    mocked.post(URL, status=status, body="oops", headers={"X-Request-Id": "r-1"})
    with pytest.raises(AmbiguousAPIError) as err:
        client.request("POST", "/v1/thing", mutating=True, json={})
    assert (err.value.http_status, err.value.attempts, err.value.request_id) == (status, 1, "r-1")
    assert "may have been processed" in str(err.value)
    assert len(mocked.calls) == 1 and rec.sleeps == []


def test_a_500_to_a_read_is_retried(client: HttpClient, mocked: responses.RequestsMock, rec: Recorder) -> None:
    mocked.get(URL, status=500, body="oops")
    mocked.get(URL, status=200, json=[])
    assert client.request("GET", "/v1/thing", mutating=False).attempts == 2
    assert len(rec.sleeps) == 1


def test_wait_is_capped_by_max_wait(rec: Recorder, mocked: responses.RequestsMock) -> None:
    client = HttpClient(BASE, timeouts=Timeouts(), workers=1, limiter=None, sleep=rec.sleep,
                        retry=RetryPolicy(attempts=8, initial_wait=10, max_wait=15, max_retry_after=120))
    mocked.get(URL, status=503)
    with pytest.raises(RetriableAPIError):
        client.request("GET", "/v1/thing", mutating=False)
    assert len(rec.sleeps) == 7 and max(rec.sleeps) <= 15


def test_retry_after_seconds_on_429(client: HttpClient, mocked: responses.RequestsMock, rec: Recorder) -> None:
    mocked.post(URL, status=429, headers={"Retry-After": "7"})
    mocked.post(URL, json={"data": {"id": 1}})
    reply = client.request("POST", "/v1/thing", mutating=True, json={})
    assert reply.attempts == 2
    assert rec.sleeps == [7.0]  # at least the Retry-After; the jitter (≤ 0.5 s) is below it
    assert rec.throttles == [7.0]


def test_retry_after_http_date(client: HttpClient, mocked: responses.RequestsMock, rec: Recorder) -> None:
    mocked.get(URL, status=503, headers={"Retry-After": "Wed, 21 Oct 2026 07:28:45 GMT", "Date": DATE})
    mocked.get(URL, status=200)
    client.request("GET", "/v1/thing", mutating=False)
    assert rec.sleeps == [45.0]
    assert rec.throttles == []  # only a 429 slows the limiter down


def test_retry_after_is_capped(client: HttpClient, mocked: responses.RequestsMock, rec: Recorder) -> None:
    mocked.get(URL, status=429, headers={"Retry-After": "3600"})
    mocked.get(URL, status=200)
    client.request("GET", "/v1/thing", mutating=False)
    assert rec.sleeps == [120.0]
    assert rec.throttles == [120.0]  # nor does the shared pause exceed the cap


def test_empty_error_body_gives_the_reason_phrase(client: HttpClient, mocked: responses.RequestsMock) -> None:
    mocked.delete(URL, status=404, body="")
    with pytest.raises(FatalAPIError) as err:
        client.request("DELETE", "/v1/thing", mutating=True)
    assert (str(err.value), err.value.http_status, err.value.code) == ("Not Found", 404, None)


def test_429_without_retry_after(client: HttpClient, mocked: responses.RequestsMock, rec: Recorder) -> None:
    mocked.get(URL, status=429)
    mocked.get(URL, status=200)
    client.request("GET", "/v1/thing", mutating=False)
    assert rec.throttles == [None] and 0 <= rec.sleeps[0] <= 0.5


def test_fatal_4xx_carries_provider_detail(client: HttpClient, mocked: responses.RequestsMock,
                                           rec: Recorder) -> None:
    mocked.post(URL, status=422, headers={"X-Request-Id": "req-422"}, json={"error": {
        "code": "validation", "message": "Bad data",
        "fields": [{"name": "identifier", "code": "wrong_value", "message": "not an e-mail"}]}})
    with pytest.raises(FatalAPIError) as err:
        client.request("POST", "/v1/thing", mutating=True, json={})
    e = err.value
    assert (e.http_status, e.code, e.request_id, e.attempts) == (422, "validation", "req-422", 1)
    assert str(e) == "Bad data; identifier wrong_value: not an e-mail"
    assert rec.sleeps == [] and len(mocked.calls) == 1


def test_post_read_timeout_is_ambiguous(client: HttpClient, mocked: responses.RequestsMock,
                                        rec: Recorder) -> None:
    mocked.post(URL, body=requests.ReadTimeout("read timed out"))
    with pytest.raises(AmbiguousAPIError) as err:
        client.request("POST", "/v1/thing", mutating=True, json={})
    assert err.value.attempts == 1 and "may have been processed" in str(err.value)
    assert len(mocked.calls) == 1 and rec.sleeps == []


def test_post_drop_is_ambiguous(client: HttpClient, mocked: responses.RequestsMock) -> None:
    mocked.post(URL, body=_dropped())
    with pytest.raises(AmbiguousAPIError, match="connection dropped"):
        client.request("POST", "/v1/thing", mutating=True)
    assert len(mocked.calls) == 1


def test_get_read_timeout_is_retried(client: HttpClient, mocked: responses.RequestsMock) -> None:
    mocked.get(URL, body=requests.ReadTimeout("read timed out"))
    mocked.get(URL, json=[])
    assert client.request("GET", "/v1/thing", mutating=False).attempts == 2


def test_post_refused_is_retried(client: HttpClient, mocked: responses.RequestsMock) -> None:
    mocked.post(URL, body=_refused())
    mocked.post(URL, status=201)
    assert client.request("POST", "/v1/thing", mutating=True).status == 201


def test_refused_every_time(client: HttpClient, mocked: responses.RequestsMock) -> None:
    mocked.post(URL, body=_refused())
    with pytest.raises(RetriableAPIError) as err:
        client.request("POST", "/v1/thing", mutating=True)
    assert err.value.attempts == 5 and err.value.http_status is None
    assert str(err.value) == "could not connect (NewConnectionError)"


@pytest.mark.parametrize(("session", "error"), [(True, SessionExpiredError), (False, FatalAPIError)],
                         ids=["with-session", "without-session"])
def test_401(client: HttpClient, mocked: responses.RequestsMock, session: bool, error: type[Exception]) -> None:
    mocked.get(URL, status=401, body="<html>login</html>")
    with pytest.raises(error):
        client.request("GET", "/v1/thing", mutating=False, session=session)
    assert len(mocked.calls) == 1


def test_redirect_is_not_followed(client: HttpClient, mocked: responses.RequestsMock) -> None:
    mocked.get(URL, status=302, headers={"Location": BASE + "/login"})
    with pytest.raises(SessionExpiredError):
        client.request("GET", "/v1/thing", mutating=False, session=True)
    assert len(mocked.calls) == 1


# ------------------------------------------------------------------ the session itself

def test_cookies_are_per_call_not_kept(client: HttpClient, mocked: responses.RequestsMock) -> None:
    mocked.post(BASE + "/login", headers={"Set-Cookie": "SID=s3cr3t-sid; Path=/; HttpOnly"})
    mocked.get(URL, json=[])
    reply = client.request("POST", "/login", mutating=False)
    assert reply.cookies["SID"] == "s3cr3t-sid"
    client.request("GET", "/v1/thing", mutating=False)
    assert "Cookie" not in mocked.calls[1].request.headers  # nothing leaked into the shared jar
    client.request("GET", "/v1/thing", mutating=False, cookies={"SID": "mine"})
    assert mocked.calls[2].request.headers["Cookie"] == "SID=mine"


def test_adapter_and_defaults(client: HttpClient, mocked: responses.RequestsMock,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)  # requests would put it in place of True
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    mocked.get(URL)
    client.request("GET", "/v1/thing", mutating=False, headers={"Accept": "application/json"})
    sent = mocked.calls[0].request
    assert sent.headers["User-Agent"].startswith("invite-batch/")
    assert sent.headers["Accept"] == "application/json"
    kwargs: dict[str, Any] = sent.req_kwargs  # type: ignore[attr-defined]
    assert kwargs["verify"] is True and kwargs["timeout"] == (1, 2)
    adapter = client._session.get_adapter(BASE)
    assert adapter._pool_maxsize >= 4 and adapter._pool_block is True  # type: ignore[attr-defined]
    assert adapter.max_retries.total == 0  # type: ignore[attr-defined]
    assert client._session.trust_env is True


def test_ca_bundle_is_used(mocked: responses.RequestsMock, tmp_path: Any) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    client = HttpClient(BASE, timeouts=Timeouts(), retry=RetryPolicy(), limiter=None, workers=1,
                        ca_bundle=str(bundle))
    mocked.get(URL)
    client.request("GET", "/v1/thing", mutating=False)
    assert mocked.calls[0].request.req_kwargs["verify"] == str(bundle)  # type: ignore[attr-defined]


def test_debug_line_per_attempt_without_secrets(client: HttpClient, mocked: responses.RequestsMock,
                                                caplog: pytest.LogCaptureFixture) -> None:
    mocked.post(BASE + "/auth", status=503)
    mocked.post(BASE + "/auth", status=200, headers={"X-Request-Id": "rid-9"})
    with caplog.at_level(logging.DEBUG, logger="batch.http"):
        client.request("POST", "/auth", mutating=False, files={"password": (None, "hunter2-pass")},
                       params={"search_pattern": "12345678"})
    lines = [r.getMessage() for r in caplog.records if r.name == "batch.http"]
    assert "POST /auth?search_pattern=12345678 -> 200 in" in lines[-1]
    assert "request id rid-9, attempt 2" in lines[-1]
    assert any("-> 503" in line and "attempt 1" in line for line in lines)
    assert any(line.startswith("retrying POST /auth") for line in lines)
    assert "hunter2-pass" not in caplog.text


def test_interrupt_during_a_wait_passes_through(mocked: responses.RequestsMock) -> None:
    """The runner's sleep raises Interrupted on SIGINT; it must leave at once, not count as a failed try."""
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        raise Interrupted("stop")

    client = HttpClient(BASE, timeouts=Timeouts(), retry=RetryPolicy(attempts=5), limiter=None, workers=1,
                        sleep=sleep)
    mocked.post(URL, status=503)
    with pytest.raises(Interrupted):
        client.request("POST", "/v1/thing", mutating=True)
    assert len(waits) == 1 and len(mocked.calls) == 1


def test_interrupt_in_the_limiter_passes_through(client: HttpClient, rec: Recorder,
                                                 mocked: responses.RequestsMock) -> None:
    def acquire() -> None:
        raise Interrupted("stop")

    rec.acquire = acquire  # type: ignore[method-assign]
    with pytest.raises(Interrupted):
        client.request("GET", "/v1/thing", mutating=False)
    assert len(mocked.calls) == 0
