"""The shared multi-window rate limiter (SPEC §7): every window at once, across all workers, slowed by 429s.

Two layers:

* The configured windows are counted by pyrate-limiter's sliding-window log (`InMemoryBucket`), the part
  of the library that decides "may one more go now, and if not, how long until it may". We drive the
  bucket directly instead of through `pyrate_limiter.Limiter` because the Limiter reads its own clock and
  sleeps with `time.sleep`, while our tests inject both; the bucket takes the timestamps we give it.
* Requests are paced evenly at the windows' sustained rate, times a factor that a 429 halves (after a
  pause of the Retry-After) and every calm window raises by 10% again. This AIMD pacing is written by
  hand: pyrate-limiter's rates are static and it has no notion of a server pushing back.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence

from pyrate_limiter import InMemoryBucket, Rate, RateItem

from .config import RateWindow

log = logging.getLogger(__name__)

# A server counts by arrival time, and arrivals jitter by some milliseconds (threads, GIL, scheduling).
# Each window is widened by this much, so a window of the server's length never sees limit+1; it costs
# about 3% of a 1-second window's throughput and 2% of longer ones.
MARGIN_MIN_S = 0.030
MARGIN_FRACTION = 0.02
DEFAULT_PAUSE_S = 1.0  # a 429 without Retry-After
MIN_FACTOR = 1 / 64  # never slower than this share of the configured rate
RECOVERY_STEP = 0.10  # share of the configured rate regained per calm window


def effective_windows(windows: Sequence[RateWindow]) -> list[tuple[int, int]]:
    """(limit, interval in ms) per window, widened by the safety margin, redundant ones dropped.

    pyrate-limiter wants a list ordered by strictly growing interval and limit with non-growing density.
    A window implied by another is dropped; a longer window denser than a shorter one (rare, e.g. 5/s
    with 8/1.5s) is tightened to the shorter one's density, which only ever makes the limiter stricter.
    """
    widened = sorted(
        ((w.limit, math.ceil(1000 * (w.seconds + max(MARGIN_MIN_S, w.seconds * MARGIN_FRACTION))))
         for w in windows),
        key=lambda lw: (lw[1], lw[0]),
    )
    out: list[tuple[int, int]] = []
    for limit, interval in widened:
        # Implied by a shorter window: any `interval` is covered by ceil(interval/i) of its windows.
        if any(limit >= lim * math.ceil(interval / i) for lim, i in out):
            continue
        while True:
            while out and out[-1][0] >= limit:  # the shorter window is implied by this longer, tighter one
                out.pop()
            if out and limit * out[-1][1] > out[-1][0] * interval:
                limit = out[-1][0] * interval // out[-1][1]
                continue
            break
        out.append((limit, interval))
    return out


class RateLimiter:
    """Blocks each caller until one more request fits every window; shared by all worker threads."""

    def __init__(
        self,
        windows: Sequence[RateWindow],
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.windows = tuple(windows)
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        limits = effective_windows(windows)
        self._bucket = InMemoryBucket([Rate(limit, interval) for limit, interval in limits]) if limits else None
        # Requests per second the windows allow when sustained; the pace after a 429 is a share of it.
        self._sustained = min(limit * 1000 / interval for limit, interval in limits) if limits else None
        self._calm_period = max(w.seconds for w in windows) if windows else DEFAULT_PAUSE_S
        self._factor = 1.0
        self._paused_until = -math.inf
        self._next_paced = -math.inf
        self._last_cut = -math.inf
        self._cut_gap = 0.0
        self._calm_since = -math.inf

    @property
    def factor(self) -> float:
        """Share of the configured rate currently allowed (1.0 unless a 429 slowed us down)."""
        with self._lock:
            self._recover(self._clock())
            return self._factor

    def acquire(self) -> None:
        """Block until a request may go now; all threads share the windows."""
        while True:
            with self._lock:
                wait = self._try(self._clock())
            if wait <= 0:
                return
            self._sleep(wait)

    def _try(self, now: float) -> float:
        """Take a slot (0.0) or tell how many seconds to wait before trying again; lock held."""
        self._recover(now)
        wait = max(self._paused_until, self._next_paced) - now
        if wait > 0:
            return wait
        if self._bucket is not None:
            item = RateItem("request", math.floor(now * 1000))
            if not self._bucket.put(item):
                waiting = self._bucket.waiting(item)
                assert isinstance(waiting, int) and waiting >= 0  # weight 1 always fits eventually
                return max(waiting, 1) / 1000
            self._bucket.leak(item.timestamp)
        if self._sustained is not None:
            # Evenly spaced, never in bursts: bunched requests contend for the GIL and the network and
            # arrive with uneven delays, which is how a server's window sees limit+1. A slightly late
            # waker keeps the schedule (sleep overshoot must not cost throughput); after idling it restarts.
            spacing = 1.0 / (self._factor * self._sustained)
            on_time = now - self._next_paced < spacing / 2
            self._next_paced = (self._next_paced if on_time else now) + spacing
        return 0.0

    def throttled(self, retry_after: float | None) -> None:
        """A 429 came: pause everyone for `retry_after` (or a second) and halve the rate for a while."""
        pause = retry_after if retry_after is not None and retry_after > 0 else DEFAULT_PAUSE_S
        with self._lock:
            now = self._clock()
            self._paused_until = max(self._paused_until, now + pause)
            self._calm_since = self._paused_until  # calm is counted from when sending resumes
            # The other workers' requests already in flight will bring 429s of the same burst: one cut for them.
            if now - self._last_cut < self._cut_gap:
                return
            self._factor = max(MIN_FACTOR, self._factor / 2)
            self._last_cut, self._cut_gap = now, max(pause, DEFAULT_PAUSE_S)
            self._next_paced = -math.inf
            factor = self._factor
        log.warning("provider throttled (429): pausing %.1f s, then sending at %.0f%% of the configured rate",
                    pause, factor * 100)

    def _recover(self, now: float) -> None:
        """Give back RECOVERY_STEP of the rate per full calm window since sending resumed; lock held."""
        if self._factor >= 1.0:
            return
        steps = math.floor((now - self._calm_since) / self._calm_period)
        if steps > 0:
            self._factor = min(1.0, self._factor + RECOVERY_STEP * steps)
            self._calm_since += steps * self._calm_period
