"""The shared limiter: windows never exceeded, ≥95% utilisation, pause and AIMD after 429s."""

from __future__ import annotations

import threading
from bisect import bisect_left
from typing import Any

import pytest
from pyrate_limiter import Rate, validate_rate_list
from support import FakeClock

from batch.config import RateWindow, RetryPolicy, Timeouts, parse_rate
from batch.http import HttpClient
from batch.providers.invoicebox.client import InvoiceboxClient
from batch.ratelimit import MIN_FACTOR, RateLimiter, effective_windows


def max_in_window(times: list[float], seconds: float) -> int:
    """Most timestamps in any closed window of `seconds`."""
    times = sorted(times)
    return max(i - bisect_left(times, t - seconds) + 1 for i, t in enumerate(times))


def run(limiter: RateLimiter, clock: FakeClock, n: int) -> list[float]:
    out = []
    for _ in range(n):
        limiter.acquire()
        out.append(clock.monotonic())
    return out


def limiter_on(clock: FakeClock, windows: list[RateWindow]) -> RateLimiter:
    return RateLimiter(windows, clock=clock.monotonic, sleep=clock.sleep)


@pytest.mark.parametrize(
    ("rates", "expected"),
    [
        (["20/s"], [(20, 1030)]),
        (["5/s", "200/min"], [(5, 1030), (200, 61200)]),
        (["5/s", "150/30s"], [(5, 1030)]),  # 150/30s is implied by 5/s
        (["100/s", "50/min"], [(50, 61200)]),  # 100/s is implied by 50/min
        (["5/s", "8/1.5s"], [(5, 1030), (7, 1530)]),  # a denser longer window is tightened
        (["10/s", "4/s"], [(4, 1030)]),  # the same window twice: the tighter one
        ([], []),
    ],
    ids=["single", "second-and-minute", "implied-long", "implied-short", "dense-long", "duplicate", "none"],
)
def test_effective_windows(rates: list[str], expected: list[tuple[int, int]]) -> None:
    got = effective_windows([parse_rate(r) for r in rates])
    assert got == expected
    if got:
        assert validate_rate_list([Rate(limit, interval) for limit, interval in got])


@pytest.mark.parametrize(
    ("rates", "n"),
    [(["20/s"], 400), (["5/s", "12/3s"], 120), (["100/30s"], 350), (["3/s", "200/min"], 250)],
    ids=["20-per-second", "two-short-windows", "invoicebox-default", "edin-style"],
)
def test_never_over_any_window(rates: list[str], n: int) -> None:
    clock = FakeClock(zero_waits=False)
    windows = [parse_rate(r) for r in rates]
    times = run(limiter_on(clock, windows), clock, n)
    for w in windows:
        assert max_in_window(times, w.seconds) <= w.limit, w


def test_utilisation_at_least_95_percent() -> None:
    clock = FakeClock(zero_waits=False)
    times = run(limiter_on(clock, [RateWindow(limit=20, seconds=1.0)]), clock, 401)
    rate = 400 / (times[-1] - times[0])
    assert 19.0 <= rate <= 20.0


def test_paced_evenly_not_in_bursts() -> None:
    clock = FakeClock(zero_waits=False)
    times = run(limiter_on(clock, [RateWindow(limit=20, seconds=1.0)]), clock, 30)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert all(g == pytest.approx(1.03 / 20, rel=0.02) for g in gaps)


def test_a_late_waker_keeps_the_schedule() -> None:
    clock = FakeClock(zero_waits=False)

    def late_sleep(seconds: float) -> None:
        clock.sleep(seconds + 0.004)  # every wake-up 4 ms late, as real sleeps are

    limiter = RateLimiter([RateWindow(limit=20, seconds=1.0)], clock=clock.monotonic, sleep=late_sleep)
    times = run(limiter, clock, 101)
    assert 100 / (times[-1] - times[0]) >= 19.3  # lateness is not added up slot after slot


def test_utilisation_of_a_long_window() -> None:
    clock = FakeClock(zero_waits=False)
    times = run(limiter_on(clock, [parse_rate("100/30s")]), clock, 501)
    assert 500 / (times[-1] - times[0]) >= 0.95 * 100 / 30


def test_no_windows_is_unlimited() -> None:
    clock = FakeClock(zero_waits=False)
    run(limiter_on(clock, []), clock, 1000)
    assert clock.waits == []


def test_throttled_pauses_everyone_even_without_windows() -> None:
    clock = FakeClock(zero_waits=False)
    limiter = limiter_on(clock, [])
    limiter.throttled(7.5)
    start = clock.monotonic()
    limiter.acquire()
    assert clock.monotonic() - start == pytest.approx(7.5)


def test_throttled_without_retry_after_pauses_a_second() -> None:
    clock = FakeClock(zero_waits=False)
    limiter = limiter_on(clock, [RateWindow(limit=10, seconds=1.0)])
    limiter.throttled(None)
    start = clock.monotonic()
    limiter.acquire()
    assert clock.monotonic() - start == pytest.approx(1.0)


def test_429_halves_the_rate_then_paces_evenly() -> None:
    clock = FakeClock(zero_waits=False)
    limiter = limiter_on(clock, [RateWindow(limit=20, seconds=1.0)])
    limiter.throttled(2.0)
    assert limiter.factor == 0.5
    times = run(limiter, clock, 11)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    # Half of the sustained 20 per 1.03 s, evenly spaced (no burst right after the pause).
    assert all(g == pytest.approx(2 * 1.03 / 20, rel=0.02) for g in gaps)


def test_a_burst_of_429s_cuts_once() -> None:
    clock = FakeClock(zero_waits=False)
    limiter = limiter_on(clock, [RateWindow(limit=20, seconds=1.0)])
    for _ in range(4):  # four workers' requests in flight all come back 429
        limiter.throttled(1.0)
    assert limiter.factor == 0.5
    clock.advance(1.5)  # a later 429, after the pause: the new rate is still too fast
    limiter.throttled(1.0)
    assert limiter.factor == 0.25


def test_factor_has_a_floor() -> None:
    clock = FakeClock(zero_waits=False)
    limiter = limiter_on(clock, [RateWindow(limit=20, seconds=1.0)])
    for _ in range(20):
        clock.advance(1.0)  # each 429 comes after the previous pause, before a calm window passed
        limiter.throttled(0.5)
    assert limiter.factor == MIN_FACTOR


def test_recovers_ten_percent_per_calm_window() -> None:
    clock = FakeClock(zero_waits=False)
    limiter = limiter_on(clock, [RateWindow(limit=5, seconds=1.0), RateWindow(limit=100, seconds=30.0)])
    limiter.throttled(1.0)
    assert limiter.factor == 0.5
    clock.advance(1.0 + 29.0)  # the pause, then not yet a whole longest window (30 s) of calm
    assert limiter.factor == 0.5
    clock.advance(1.0)
    assert limiter.factor == pytest.approx(0.6)
    clock.advance(30.0 * 10)
    assert limiter.factor == 1.0


def test_a_new_429_restarts_the_calm_period() -> None:
    clock = FakeClock(zero_waits=False)
    limiter = limiter_on(clock, [RateWindow(limit=5, seconds=1.0)])
    limiter.throttled(1.0)
    clock.advance(0.9)
    limiter.throttled(0.5)  # same burst: no second cut, but the calm period starts again after it
    clock.advance(0.5 + 0.9)
    assert limiter.factor == 0.5
    clock.advance(0.1)
    assert limiter.factor == pytest.approx(0.6)


def test_threads_share_the_windows() -> None:
    """pyrate-limiter's bucket under real threads sharing one schedule: a short window, never exceeded."""
    clock = FakeClock(zero_waits=False)
    limiter = limiter_on(clock, [RateWindow(limit=5, seconds=0.1)])
    times: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(5):
            limiter.acquire()
            with lock:
                times.append(clock.monotonic())

    threads = [threading.Thread(target=worker, name=f"worker-{i}") for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len(times) == 20
    assert max_in_window(times, 0.1) <= 5
    # Paced one per (0.1 s + 30 ms margin) / 5: 19 gaps of 26 ms, give or take the bucket's whole milliseconds
    # (no scheduler's jitter on this clock).
    assert 19 * 0.026 * 0.98 <= times[-1] - times[0] <= 19 * 0.026 + 0.005
    assert all(0.024 <= b - a <= 0.03 for a, b in zip(times, times[1:], strict=False))


# ------------------------------------------------------------------ against the real sandbox

IB_PARTNER = "01771534-1a57-f184-dee3-ebeb91dded76"


def _invite_all(url: str, clock: FakeClock, limiter: RateLimiter, emails: list[str], workers: int = 4
                ) -> list[float]:
    """Invite every address from `workers` threads through one client on `clock`; the completion times."""
    http = HttpClient(url, timeouts=Timeouts(connect=2, read=5), retry=RetryPolicy(attempts=8, max_wait=2),
                      limiter=limiter, workers=workers, sleep=clock.sleep, clock=clock.monotonic)
    client = InvoiceboxClient(http, token="sandbox-token")
    todo, done, errors = iter(emails), [], []
    lock = threading.Lock()

    def worker() -> None:  # named worker-*, so it takes part in the clock's schedule
        while True:
            with lock:
                email = next(todo, None)
            if email is None:
                return
            try:
                client.invite(partner_id=IB_PARTNER, email=email)
            except Exception as err:
                errors.append(err)
                return
            with lock:
                done.append(clock.monotonic())

    threads = [threading.Thread(target=worker, name=f"worker-{i}") for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    http.close()
    assert not errors and not any(t.is_alive() for t in threads)
    return sorted(done)


def test_sandbox_never_sees_more_than_the_limit_and_most_of_it_is_used(sandbox_factory: Any) -> None:
    clock = FakeClock()
    server = sandbox_factory(clock=clock.monotonic)  # the ledger stamps arrivals on our fake time
    limiter = RateLimiter([RateWindow(limit=20, seconds=1.0)], clock=clock.monotonic, sleep=clock.sleep)
    n = 50
    done = _invite_all(server.url, clock, limiter, [f"s{i}@example.com" for i in range(n)], workers=6)
    ledger = server.ledger(window=1.0)
    assert ledger["requests"] == n
    assert ledger["max_requests_per_window"] <= 20
    assert ledger["max_requests_per_second"] <= 20
    # Evenly paced: at least 95% of 20/s from the first to the last.
    assert (n - 1) / (done[-1] - done[0]) >= 19.0
    assert clock.waits and all(w > 0 for w in clock.waits)  # the pace came from waits, not from slow requests


def test_sandbox_limit_below_ours_converges(sandbox_factory: Any) -> None:
    """The provider allows 10/s, we were told 40/s: a few 429s, then the pace settles under the limit."""
    clock = FakeClock()
    server = sandbox_factory(rate_limit="10/s", clock=clock.monotonic)
    limiter = RateLimiter([RateWindow(limit=40, seconds=1.0)], clock=clock.monotonic, sleep=clock.sleep)
    emails = [f"c{i}@example.com" for i in range(24)]
    _invite_all(server.url, clock, limiter, emails)
    ledger = server.ledger()
    assert ledger["invoicebox"]["emails"] == {e: {"invitations": 1} for e in emails}
    throttled = ledger["responses"].get("429", 0)
    assert 1 <= throttled <= 12  # it slowed down instead of hammering
    assert limiter.factor < 1.0
    # The sandbox says Retry-After: 1 (or more): every 429 was followed by a wait at least that long.
    assert len([w for w in clock.waits if w >= 1.0]) >= throttled
