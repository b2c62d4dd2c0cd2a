"""The HTTP session, the one classification of outcomes, the mapping of errors to ours, and the retry policy."""

from __future__ import annotations

import enum
import http.client
import http.cookiejar
import json as jsonlib
import logging
import math
import re
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlencode

import requests
import urllib3.exceptions as u3
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_random_exponential

from . import __version__
from .clock import SYSTEM
from .config import RetryPolicy, Timeouts
from .errors import (
    AmbiguousAPIError,
    APIError,
    FatalAPIError,
    RetriableAPIError,
    SessionExpiredError,
    UnreachableError,
)
from .logs import redact
from .ratelimit import RateLimiter

log = logging.getLogger(__name__)

# SPEC §7: these say "not processed, try later" on any request...
RETRIABLE_STATUSES = frozenset({429, 503})
# ...while these may come after the request was processed (an unhandled exception, a proxy that gave up
# waiting): retried on a request that changes nothing, ambiguous on one that changes something.
MAYBE_PROCESSED_STATUSES = frozenset({500, 502, 504})
DETAIL_MAX = 300  # characters of a provider's error text kept in a message


class Outcome(enum.Enum):
    """What the caller should do with one HTTP exchange."""

    SUCCESS = "success"
    RETRIABLE = "retriable"  # not processed (or safe to repeat): try again after a wait
    FATAL = "fatal"  # refused for good: the row fails
    AMBIGUOUS = "ambiguous"  # a change may have happened without an answer: never resend blindly
    SESSION_EXPIRED = "session_expired"  # log in again, then repeat


# Where a failed exchange stopped decides whether a change may have happened.
#
# With urllib3 retries off (requests' max_retries=0 is Retry(0, read=False)), urllib3 raises:
#  * MaxRetryError(reason=NewConnectionError / NameResolutionError / ConnectTimeoutError) when no
#    connection could be made, which requests turns into ConnectionError / ConnectTimeout: nothing was
#    sent, so any method may be repeated;
#  * the bare ProtocolError('Connection aborted.', RemoteDisconnected / ConnectionResetError /
#    BrokenPipeError) or ReadTimeoutError once the request was being written or answered, which requests
#    turns into ConnectionError / ReadTimeout (ChunkedEncodingError if the body broke mid-way).
# RemoteDisconnected is also what a stale pooled keep-alive connection gives when the server closed it
# just before we wrote. urllib3 re-checks pooled connections before reuse (is_connection_dropped) and
# retries idempotent methods only; it declined to retry POST on RemoteDisconnected (urllib3 PRs
# #1909/#1911), because the same error comes from a server that processed the request and then died —
# exactly what the sandbox's drop_rate does. So for a mutating call any drop after connecting is
# AMBIGUOUS; for a read it is simply RETRIABLE.
_BEFORE_SENDING: tuple[type[BaseException], ...] = (
    u3.NewConnectionError,  # includes NameResolutionError; in urllib3 2 also a ConnectTimeoutError
    u3.ConnectTimeoutError,
    u3.ProxyError,
    u3.ClosedPoolError,
    u3.EmptyPoolError,
    requests.ConnectTimeout,
    requests.exceptions.ProxyError,
    ConnectionRefusedError,
    socket.gaierror,
)
_AFTER_SENDING: tuple[type[BaseException], ...] = (
    requests.ReadTimeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
    requests.ConnectionError,
    u3.ProtocolError,
    u3.ReadTimeoutError,
    u3.SSLError,
    http.client.HTTPException,  # RemoteDisconnected, IncompleteRead, BadStatusLine
    ssl.SSLError,
    # Raw socket errors on a connected socket. Not plain OSError: every requests exception is an OSError.
    ConnectionResetError,
    ConnectionAbortedError,
    BrokenPipeError,
    TimeoutError,
)
# Raised while the request is being built, before a byte is sent: nothing can have changed.
_NOT_SENT = (
    requests.exceptions.InvalidURL,
    requests.exceptions.InvalidHeader,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.URLRequired,
    requests.exceptions.InvalidJSONError,
    u3.LocationParseError,
)
NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    requests.RequestException, u3.HTTPError, http.client.HTTPException, OSError,
)


def _causes(error: BaseException) -> Iterator[BaseException]:
    """The error and everything it wraps: args, MaxRetryError.reason, __cause__, __context__."""
    seen: set[int] = set()
    todo = [error]
    while todo:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo.extend(a for a in getattr(e, "args", ()) if isinstance(a, BaseException))
        reason = getattr(e, "reason", None)
        if isinstance(reason, BaseException):
            todo.append(reason)
        todo.extend(c for c in (e.__cause__, e.__context__) if c is not None)


def classify(*, status: int | None = None, error: BaseException | None = None, mutating: bool,
             session: bool = False) -> Outcome:
    """Classify one exchange by its HTTP status or by the exception that ended it (SPEC §7, §10).

    `mutating`: the request changes something at the provider and repeating it could change it twice (a
    creation, an invitation, a one-time login token); a lost answer or a 500/502/504 to it is AMBIGUOUS.
    """
    if status is not None:
        if 200 <= status < 300:
            return Outcome.SUCCESS
        if status in RETRIABLE_STATUSES:
            return Outcome.RETRIABLE
        if status in MAYBE_PROCESSED_STATUSES:
            return Outcome.AMBIGUOUS if mutating else Outcome.RETRIABLE
        # EDIN documents no error format: a call needing the session that is refused, or redirected
        # (to a login page), means the session is gone. Without a session these are plain refusals.
        if session and (status in (401, 403) or 300 <= status < 400):
            return Outcome.SESSION_EXPIRED
        return Outcome.FATAL
    if error is None:
        raise ValueError("classify needs a status or an error")
    causes = list(_causes(error))
    if any(isinstance(e, ssl.SSLCertVerificationError) for e in causes):
        return Outcome.FATAL  # a certificate problem does not heal by retrying
    if any(isinstance(e, _BEFORE_SENDING) for e in causes):
        return Outcome.RETRIABLE
    if any(isinstance(e, _AFTER_SENDING) for e in causes):
        return Outcome.AMBIGUOUS if mutating else Outcome.RETRIABLE
    if any(isinstance(e, _NOT_SENT) for e in causes):
        return Outcome.FATAL  # the request could not be built: retrying cannot help, and nothing went out
    # Unrecognised (TooManyRedirects, a new library error...): it may have come after sending, so a change may
    # have happened; a read is simply not repeated.
    return Outcome.AMBIGUOUS if mutating else Outcome.FATAL


def describe_error(error: BaseException) -> str:
    """A short, secret-free account of a network error: what happened and the innermost cause."""
    causes = list(_causes(error))
    inner = causes[-1] if causes else error
    cert = next((e for e in causes if isinstance(e, ssl.SSLCertVerificationError)), None)
    if cert is not None:  # not a dropped connection: say so, and what fixes it
        reason = getattr(cert, "verify_message", None) or "certificate verify failed"
        return f"TLS certificate not trusted ({reason}); behind a TLS-inspecting proxy, set ca_bundle"
    if isinstance(error, requests.ConnectTimeout):
        what = "connect timeout"
    elif isinstance(error, requests.ReadTimeout):
        what = "no answer within the read timeout"
    elif any(isinstance(e, _BEFORE_SENDING) for e in causes):
        what = "could not connect"
    elif any(isinstance(e, _AFTER_SENDING) for e in causes):
        what = "connection dropped before an answer"
    else:
        what = "request failed"
    name = type(inner).__name__
    return what if name in ("ConnectTimeout", "ReadTimeout") else f"{what} ({name})"


def parse_retry_after(value: str | None, *, date: str | None = None,
                      now: Callable[[], datetime] = SYSTEM.now) -> float | None:
    """Seconds to wait from a Retry-After of delta-seconds or an HTTP-date (against the answer's Date, or `now`)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    when = _http_date(value)
    if when is None:
        return None
    # Measured against the server's own Date header when present, so clock skew between us cancels out.
    ref = _http_date(date) if date else None
    return max(0.0, (when - (ref or now())).total_seconds())


def _http_date(value: str) -> datetime | None:
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def error_detail(body: bytes) -> tuple[str | None, str]:
    """(code, message) from a provider's error body: Invoicebox's {"error": {...}} or any JSON or text."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = jsonlib.loads(text)
    except ValueError:
        text = re.sub(r"<[^>]*>", " ", text)  # an HTML error page: keep its words
        return None, _short(text)
    code: Any = None
    message: Any = None
    if isinstance(data, dict):
        err = data.get("error")
        src = err if isinstance(err, dict) else data
        code = src.get("code") if isinstance(src.get("code"), str | int) else None
        message = src.get("message") or src.get("description") or src.get("detail")
        if isinstance(err, str):
            message = message or err
        fields = src.get("fields")
        if isinstance(fields, list) and fields:
            parts = [_field_text(f) for f in fields if isinstance(f, dict)]
            message = "; ".join(p for p in [str(message) if message else "", *parts] if p)
    if not message:
        message = jsonlib.dumps(data, ensure_ascii=False) if data not in (None, "", {}) else ""
    return (str(code) if code is not None else None), _short(str(message))


def _field_text(f: Mapping[str, Any]) -> str:
    name, code, message = f.get("name"), f.get("code"), f.get("message")
    head = " ".join(str(x) for x in (name, code) if x)
    return f"{head}: {message}" if message else head


def _short(text: str) -> str:
    text = redact(" ".join(text.split()))
    return text if len(text) <= DETAIL_MAX else text[: DETAIL_MAX - 1] + "…"


@dataclass(frozen=True)
class Reply:
    """A successful answer, with what the results file wants to know about it."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    request_id: str
    attempts: int
    elapsed_ms: float  # of the last attempt
    cookies: Mapping[str, str] = field(default_factory=dict, repr=False)

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not JSON."""
        return jsonlib.loads(self.body.decode("utf-8-sig"))


class _Wait:
    """Full-jitter exponential back-off, but never shorter than a server's Retry-After (capped)."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._jitter = wait_random_exponential(multiplier=policy.initial_wait, max=policy.max_wait)
        self._cap = policy.max_retry_after

    def __call__(self, state: RetryCallState) -> float:
        wait = self._jitter(state)
        error = state.outcome.exception() if state.outcome else None
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self._cap))
        return wait


class HttpClient:
    """One requests.Session for all workers: pooled, verified, rate-limited, retried, classified."""

    def __init__(
        self,
        base_url: str,
        *,
        timeouts: Timeouts,
        retry: RetryPolicy,
        limiter: RateLimiter | None,
        workers: int,
        ca_bundle: str | None = None,
        user_agent: str = f"invite-batch/{__version__}",
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = SYSTEM.now,
        request_id_header: str = "X-Request-Id",
        answers: Counter[str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = (timeouts.connect, timeouts.read)
        self._retry = retry
        self._limiter = limiter
        self._sleep, self._clock, self._now = sleep, clock, now  # `now`: a Retry-After date without a Date header
        self._request_id_header = request_id_header
        # Every attempt's answer by status code ("none": no answer), for the run's metrics.
        self.answers: Counter[str] = Counter() if answers is None else answers
        self._answers_lock = threading.Lock()
        self._verify: bool | str = ca_bundle or True
        session = requests.Session()  # trust_env stays on: HTTPS_PROXY / NO_PROXY / REQUESTS_CA_BUNDLE work
        # ...except for plain http, which config allows on loopback only (the sandbox): a proxy from HTTP_PROXY
        # cannot reach our loopback, so the variables must not capture it.
        session.trust_env = not self.base_url.lower().startswith("http://")
        # A pool at least as large as the workers (plus the marker and a login), blocking rather than
        # opening throw-away connections; max_retries=0 because every retry decision is ours.
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=max(1, workers) + 2, pool_block=True,
                              max_retries=0)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        session.headers["User-Agent"] = user_agent
        # Cookies (EDIN's SID) are passed per call by their owner; a shared jar would silently keep a
        # stale session for every thread, so the session's jar accepts nothing.
        session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        self._session = session
        self._adapter = adapter
        # Session.request works these out again for every call (the environment's proxies and CA bundle, the
        # merged settings) at about 40 % of a request's CPU; the environment does not change during a run, so
        # _send settles them at the first call and prepares each call by hand. (Its netrc look-up is left out
        # on purpose: credentials come from the config, and a netrc entry would replace the Bearer header.)
        self._send_options: dict[str, Any] | None = None
        self._prepared_urls: dict[str, str | None] = {}
        self._prepared_headers: dict[tuple[tuple[Any, ...], tuple[Any, ...]], CaseInsensitiveDict[Any]] = {}

    def request(self, method: str, path: str, *, mutating: bool, session: bool = False, params: Any = None,
                json: Any = None, data: Any = None, files: Any = None, headers: Mapping[str, str] | None = None,
                cookies: Mapping[str, str] | None = None) -> Reply:
        """Send one call: limiter before every try, retries for RETRIABLE, our errors for the rest."""
        attempt = 0
        shown = path + (f"?{urlencode(params, doseq=True)}" if params else "")

        def once() -> Reply:
            nonlocal attempt
            attempt += 1
            if self._limiter is not None:
                self._limiter.acquire()
            started = self._clock()
            try:
                resp = self._send(method, self.base_url + path, params=params, json=json, data=data, files=files,
                                  headers=headers, cookies=cookies)
            except NETWORK_ERRORS as e:
                self._count("none")
                outcome = classify(error=e, mutating=mutating, session=session)
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("%s %s -> %s (attempt %d)", method, redact(shown), type(e).__name__, attempt)
                raise self._network_error(outcome, e, attempt) from e
            elapsed_ms = (self._clock() - started) * 1000
            self._count(str(resp.status_code))
            reply = Reply(status=resp.status_code, headers=resp.headers, body=resp.content,
                          request_id=resp.headers.get(self._request_id_header, ""), attempts=attempt,
                          elapsed_ms=elapsed_ms, cookies=_cookies(resp))
            if log.isEnabledFor(logging.DEBUG):  # redact() is not free, and this runs for every request
                log.debug("%s %s -> %d in %.0f ms (request id %s, attempt %d)", method, redact(shown),
                          reply.status, elapsed_ms, reply.request_id or "-", attempt)
            outcome = classify(status=reply.status, mutating=mutating, session=session)
            if outcome is Outcome.SUCCESS:
                return reply
            raise self._status_error(outcome, reply)

        # Most calls succeed at once: tenacity's machinery (a tenth of a request's CPU) is set up only after a
        # first retriable failure, which it is handed as its own first attempt, so waits, logs and the
        # attempt count are exactly what they would be had it made every try.
        try:
            return once()
        except RetriableAPIError as error:
            first: list[RetriableAPIError] = [error]

        def again() -> Reply:
            if first:
                raise first.pop()
            return once()

        retrying = Retrying(
            stop=stop_after_attempt(max(1, self._retry.attempts)),
            wait=_Wait(self._retry),
            retry=retry_if_exception_type(RetriableAPIError),
            sleep=self._sleep,
            before_sleep=lambda state: _log_retry(method, shown, state),
            reraise=True,
        )
        return retrying(again)

    def _count(self, code: str) -> None:
        with self._answers_lock:
            self.answers[code] += 1

    def _send(self, method: str, url: str, *, params: Any, json: Any, data: Any, files: Any,
              headers: Mapping[str, str] | None, cookies: Mapping[str, str] | None) -> requests.Response:
        """Session.request(..., allow_redirects=False) for our calls, without its per-call merging."""
        prep = requests.PreparedRequest()
        prep.prepare_method(method)
        # A client calls a handful of URLs with a handful of header sets: each is parsed and checked once.
        if params or (prepared_url := self._prepared_urls.get(url)) is None:
            prep.prepare_url(url, params)
            if not params:
                _remember(self._prepared_urls, url, prep.url)
        else:
            prep.url = prepared_url
        key = (tuple(headers.items()) if headers else (), tuple(cookies.items()) if cookies else ())
        prepared_headers = self._prepared_headers.get(key)
        if prepared_headers is None:
            merged = CaseInsensitiveDict(self._session.headers)
            merged.update(key[0])
            if cookies:  # the Cookie header a jar of plain name=value cookies gives
                merged["Cookie"] = "; ".join(f"{name}={value}" for name, value in key[1])
            prep.prepare_headers(merged)
            _remember(self._prepared_headers, key, prep.headers.copy())
        else:
            prep.headers = prepared_headers.copy()  # prepare_body adds to it
        prep.prepare_body(data, files, json)
        options = self._send_options
        if options is None:  # several workers may get here at once: they all work out the same thing
            env = self._session.merge_environment_settings(self.base_url, {}, None, self._verify, None)
            options = self._send_options = {"stream": False, "timeout": self._timeout, "verify": env["verify"],
                                            "cert": env["cert"], "proxies": env["proxies"]}
        resp = self._adapter.send(prep, **options)
        _ = resp.content  # read whole, as Session does without stream=True: the connection returns to the pool
        return resp

    def _status_error(self, outcome: Outcome, reply: Reply) -> APIError:
        code, message = error_detail(reply.body)
        # The message is the provider's own words (or the reason phrase); status and code travel beside it.
        text = message or http.client.responses.get(reply.status, f"HTTP {reply.status}")
        kw: dict[str, Any] = {"http_status": reply.status, "code": code, "request_id": reply.request_id or None,
                              "response": reply, "attempts": reply.attempts}
        if outcome is Outcome.RETRIABLE:
            retry_after = parse_retry_after(reply.headers.get("Retry-After"), date=reply.headers.get("Date"),
                                            now=self._now)
            if reply.status == 429 and self._limiter is not None:
                capped = None if retry_after is None else min(retry_after, self._retry.max_retry_after)
                self._limiter.throttled(capped)
            return RetriableAPIError(text, retry_after=retry_after, **kw)
        if outcome is Outcome.SESSION_EXPIRED:
            return SessionExpiredError(text, **kw)
        if outcome is Outcome.AMBIGUOUS:
            return AmbiguousAPIError(f"{text}; the request may have been processed", **kw)
        return FatalAPIError(text, **kw)

    def _network_error(self, outcome: Outcome, error: BaseException, attempt: int) -> APIError | UnreachableError:
        text = describe_error(error)
        kw: dict[str, Any] = {"attempts": attempt}
        if outcome is Outcome.RETRIABLE:
            return RetriableAPIError(text, **kw)
        if outcome is Outcome.AMBIGUOUS:
            return AmbiguousAPIError(f"{text}; the request may have been processed", **kw)
        # No request gets through safely, and none will: stop the run instead of failing every row alike.
        unsent = any(isinstance(e, (*_NOT_SENT, ssl.SSLCertVerificationError)) for e in _causes(error))
        return UnreachableError(f"cannot reach {self.base_url}: {text}{'; nothing was sent' if unsent else ''}")

    def wait(self, seconds: float) -> None:
        """The run's stop-aware sleep, for a provider's own waits (a task poll's Retry-After)."""
        self._sleep(seconds)

    def close(self) -> None:
        """Close pooled connections."""
        self._session.close()


def _remember(cache: dict[Any, Any], key: Any, value: Any, limit: int = 64) -> None:
    """A small memo: forgets everything past `limit` entries (EDIN's session cookie changes on each login)."""
    if len(cache) >= limit:
        cache.clear()
    cache[key] = value


def _cookies(resp: requests.Response) -> dict[str, str]:
    """Cookies the answer set, from the parsed jar or, failing that, the raw Set-Cookie headers."""
    out = {c.name: c.value for c in resp.cookies if c.value is not None}
    getlist = getattr(getattr(resp.raw, "headers", None), "getlist", None)
    for header in getlist("Set-Cookie") if callable(getlist) else ():
        parsed: SimpleCookie = SimpleCookie()
        try:
            parsed.load(header)
        except Exception:  # a malformed cookie from a server is not our crash
            continue
        for name, morsel in parsed.items():
            out.setdefault(name, morsel.value)
    return out


def _log_retry(method: str, shown: str, state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    log.info("retrying %s %s in %.1f s after %s (attempt %d failed)", method, redact(shown), wait,
             error.message if isinstance(error, APIError) else error, state.attempt_number)
