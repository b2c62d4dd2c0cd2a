"""What the sandbox received: arrivals, answers, logins, and per-partner / per-address effects."""

from __future__ import annotations

import threading
from array import array
from collections import Counter, deque
from collections.abc import Callable, Iterable
from typing import Any

PARTNER_COUNTS = ("created", "invitations", "marks")


class Ledger:
    """Thread-safe counters; arrival times are kept so any window's peak can be asked for later."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        with self._lock:
            self._arrivals = array("d")
            self._last_second: deque[float] = deque()
            self._max_per_second = 0
            self._drops = 0
            self._responses: Counter[int] = Counter()
            self._logins = 0
            self._partners: dict[int, Counter[str]] = {}
            self._emails: Counter[str] = Counter()
            self._calls: Counter[str] = Counter()
            self._ambiguous: dict[str, Counter[str]] = {}

    def arrive(self, call: str = "") -> float:
        """Record one API request's arrival (`call` is "METHOD /path"); returns its time, taken under the lock."""
        with self._lock:
            if call:
                self._calls[call] += 1
            now = self._clock()
            self._arrivals.append(now)
            recent = self._last_second
            while recent and recent[0] <= now - 1.0:
                recent.popleft()
            recent.append(now)
            self._max_per_second = max(self._max_per_second, len(recent))
            return now

    def answered(self, status: int) -> None:
        with self._lock:
            self._responses[status] += 1

    def dropped(self) -> None:
        with self._lock:
            self._drops += 1

    def ambiguous(self, call: str, *, processed: bool, drop: bool = False) -> None:
        """An answer to a changing request that says nothing about whether it was done: 500/502/504 or a drop."""
        with self._lock:
            c = self._ambiguous.setdefault(call, Counter())
            c["total"] += 1
            c["processed"] += processed
            c["drops"] += drop

    def login(self) -> None:
        with self._lock:
            self._logins += 1

    def partner(self, partner_id: int, what: str, n: int = 1) -> None:
        """Count `created`, `invitations` or `marks` for a partner."""
        with self._lock:
            self._partners.setdefault(partner_id, Counter())[what] += n

    def email(self, identifier: str) -> None:
        with self._lock:
            self._emails[identifier.lower()] += 1

    def max_in_window(self, seconds: float) -> int:
        """The most arrivals in any `seconds`-long sliding window."""
        with self._lock:
            times = self._arrivals.tolist()
        best, start = 0, 0
        for end, t in enumerate(times):
            while times[start] <= t - seconds:
                start += 1
            best = max(best, end - start + 1)
        return best

    def snapshot(self, partners: Iterable[tuple[int, str]], window: float | None = None) -> dict[str, Any]:
        """The ledger JSON; `partners` are (id, code) of every partner the EDIN store holds."""
        with self._lock:
            counts = {pid: Counter(c) for pid, c in self._partners.items()}
            data: dict[str, Any] = {
                "requests": len(self._arrivals),
                "max_requests_per_second": self._max_per_second,
                "drops": self._drops,
                "responses": {str(k): v for k, v in sorted(self._responses.items())},
                "calls": dict(sorted(self._calls.items())),
                "ambiguous": _ambiguous(self._ambiguous),
                "edin": {"logins": self._logins, "partners": {}},
                "invoicebox": {"emails": {k: {"invitations": v} for k, v in sorted(self._emails.items())}},
            }
        out = data["edin"]["partners"]
        for pid, code in partners:
            c = counts.get(pid, Counter())
            out[str(pid)] = {"code": code, **{k: c[k] for k in PARTNER_COUNTS}}
        if window is not None:
            data["window_seconds"] = window
            data["max_requests_per_window"] = self.max_in_window(window)
        return data


def _ambiguous(per_call: dict[str, Counter[str]]) -> dict[str, Any]:
    """Totals over every call, and per call: answers given, how many were processed, how many were drops."""
    keys = ("total", "processed", "drops")
    calls = {call: {k: c[k] for k in keys} for call, c in sorted(per_call.items())}
    return {**{k: sum(c[k] for c in calls.values()) for k in keys}, "calls": calls}
