"""Misbehaviour on demand: seeded random faults and a per-account sliding-window rate limit."""

from __future__ import annotations

import math
import random
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ..config import RateWindow, SandboxOptions

ERROR_STATUS = 503  # SPEC §8: --error-rate is "unavailable, nothing processed", safe to retry anywhere
AMBIGUOUS_STATUSES = (500, 502, 504)  # answers that say nothing about whether the change happened


@dataclass(frozen=True, slots=True)
class Draw:
    """What the dice say for one request: throttle it, fail it with a status, or drop its answer.

    `ambiguous` (a 500/502/504) and `process_first` only count for requests that change something.
    """

    throttle: bool = False
    error: int | None = None
    drop: bool = False
    ambiguous: int | None = None
    process_first: bool = False


class Faults:
    """One `random.Random(seed)` behind a lock, so a seed replays the same faults in arrival order."""

    def __init__(self, options: SandboxOptions) -> None:
        self._options = options
        self._lock = threading.Lock()
        self._rng = random.Random(options.seed)
        self._rng_ambiguous = _ambiguous_rng(options.seed)

    def configure(self, options: SandboxOptions) -> None:
        with self._lock:
            self._options = options

    def reseed(self) -> None:
        with self._lock:
            self._rng = random.Random(self._options.seed)
            self._rng_ambiguous = _ambiguous_rng(self._options.seed)

    def draw(self) -> Draw:
        """Every request draws the same numbers, so one fault's rate never shifts another's sequence.

        The ambiguous coins come from a second stream, so the first replays what it did before they existed.
        """
        o = self._options
        with self._lock:
            t, e, d = self._rng.random(), self._rng.random(), self._rng.random()
            status = self._rng.choice(AMBIGUOUS_STATUSES)
            a, p = self._rng_ambiguous.random(), self._rng_ambiguous.random()
        return Draw(throttle=t < o.throttle_rate, error=ERROR_STATUS if e < o.error_rate else None,
                    drop=d < o.drop_rate, ambiguous=status if a < o.ambiguous_rate else None,
                    process_first=p < 0.5)


def _ambiguous_rng(seed: int | None) -> random.Random:
    return random.Random(None if seed is None else f"ambiguous-{seed}")


class RateLimiter:
    """Every window enforced together, per account; only admitted requests fill a window."""

    def __init__(self, windows: tuple[RateWindow, ...], clock: Callable[[], float]) -> None:
        self._windows, self._clock = windows, clock
        self._lock = threading.Lock()
        self._hits: dict[str, list[deque[float]]] = {}

    def clear(self) -> None:
        with self._lock:
            self._hits.clear()

    def acquire(self, account: str) -> float | None:
        """Admit and record a request (None), or refuse it: the seconds until a slot frees up."""
        if not self._windows:
            return None
        with self._lock:
            now = self._clock()  # read under the lock, so each window's times stay sorted
            hits = self._hits.setdefault(account, [deque() for _ in self._windows])
            wait = 0.0
            for window, times in zip(self._windows, hits, strict=True):
                while times and times[0] <= now - window.seconds:
                    times.popleft()
                if len(times) >= window.limit:
                    wait = max(wait, times[0] + window.seconds - now)
            if wait > 0:
                return wait
            for times in hits:
                times.append(now)
            return None


def retry_after(wait: float) -> str:
    """Retry-After in whole seconds, at least 1, never earlier than the slot frees up."""
    return str(max(1, math.ceil(wait)))
