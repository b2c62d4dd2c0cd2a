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
            self._tokens: Counter[str] = Counter()
            self._counteragents: dict[str, Counter[str]] = {}
            self._counteragent_box: dict[str, str] = {}

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

    def token(self, what: str) -> None:
        """Count a token request: `issued`, `rotated` or `refused`."""
        with self._lock:
            self._tokens[what] += 1

    def counteragent(self, key: str, box: str | None, what: str) -> None:
        """Count for a Diadoc counterparty (INN/KPP): `acquires` processed, and what each did."""
        with self._lock:
            self._counteragents.setdefault(key, Counter())[what] += 1
            if box is not None:
                self._counteragent_box[key] = box

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
                "diadoc": _diadoc(self._tokens, self._counteragents, self._counteragent_box),
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


COUNTERAGENT_COUNTS = ("acquires", "invitations", "accepted", "unchanged", "failed")


def _diadoc(tokens: Counter[str], per_key: dict[str, Counter[str]], boxes: dict[str, str]) -> dict[str, Any]:
    """Tokens issued; per counterparty (INN/KPP, and per box) the AcquireCounteragent calls and their effects."""
    counteragents = {key: {"box": boxes.get(key), **{k: c[k] for k in COUNTERAGENT_COUNTS}}
                     for key, c in sorted(per_key.items())}
    by_box = {v["box"]: {"counteragent": key, **{k: v[k] for k in COUNTERAGENT_COUNTS}}
              for key, v in counteragents.items() if v["box"]}
    return {"tokens": {k: tokens[k] for k in ("issued", "rotated", "refused")},
            "counteragents": counteragents, "boxes": dict(sorted(by_box.items()))}
