"""Small helpers several test files share (pytest puts tests/ on the import path)."""

from __future__ import annotations

import contextlib
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from batch import providers
from batch.providers.base import Identity
from batch.providers.edin.rules import edrpou_valid

IB_PARTNER = "01771534-1a57-f184-dee3-ebeb91dded76"  # the Invoicebox partner write_config invites for
FAST_RETRY = {"attempts": 4, "initial_wait": 0.01, "max_wait": 0.05, "max_retry_after": 1}


def fields_of(provider: str) -> dict[str, Any]:
    """`read_table`'s field arguments for a registered provider: `read_table(path, **fields_of("edin"))`."""
    profile = providers.get(provider)
    return {"fields": profile.fields, "required": profile.required}


def identity_of(provider: str, **values: str) -> Identity:
    """The identity the provider's profile gives a valid row with these values."""
    return providers.get(provider).identity(values)


def edrpou_codes(n: int, rng: random.Random) -> list[str]:
    """`n` distinct EDRPOU codes with valid check digits (no leading zero, so no padding notes)."""
    codes: list[str] = []
    while len(codes) < n:
        stem = str(rng.randint(1_000_000, 9_999_999))
        code = next((stem + d for d in "0123456789" if edrpou_valid(stem + d)), None)
        if code and code not in codes:
            codes.append(code)
    return codes


def write_config(path: Path, url: str, provider: str = "edin", **sections: Any) -> Path:
    """A config for `provider` at `url` (the sandbox's demo account, fast retries); `sections` override keys."""
    data: dict[str, Any] = {"provider": provider, "base_url": url, "retry": dict(FAST_RETRY),
                            "limits": {"workers": 4, "rate": []}}
    if provider == "edin":
        data["auth"] = {"email": "demo@example.com", "password": "demo-password"}
        data["invite"] = {"contract_template_id": 5551}
    elif provider == "diadoc":
        data["auth"] = {"client_id": "sandbox-client", "client_secret": "sandbox-secret",
                        "refresh_token": "sandbox-refresh"}
        data["invite"] = {"result_timeout": 5}
    else:
        data["auth"] = {"token": "sandbox-token"}
        data["invite"] = {"partner_id": IB_PARTNER}
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


@contextlib.contextmanager
def sandbox_process(*options: str) -> Iterator[str]:
    """`invite-batch sandbox OPTIONS` in its own process: yields the URL it prints; at the end it must stop on
    SIGTERM with exit 0 (killed if it does not)."""
    proc = subprocess.Popen([sys.executable, "-m", "batch", "sandbox", *options], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), url
        yield url
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


T0 = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)  # FakeClock's default start


class FakeClock:
    """`batch.clock.Clock` for tests: time moves only when threads wait, so no test sleeps for real.

    Several threads share one schedule, a small discrete-event simulation, so rate windows stay exact:

    * a wait registers its deadline (now + seconds) and blocks;
    * time moves only when every participant is waiting, and then only to the earliest deadline, whose
      thread wakes (several waits at once end at their own deadlines: two 50 ms waits take 50 ms, not 100);
    * while any participant is working (a request on the wire, a journal write) time stands still, so a
      request the limiter lets go at t reaches the sandbox's ledger (on this clock) stamped t, and the
      windows the ledger counts are the windows the limiter kept, without the scheduler's jitter;
    * a participant is a live thread named `worker-*` (the runner's workers; name test threads alike) that
      has read this clock, or any thread while it waits; a thread that ends drops out;
    * a set event ends a wait at once (a stop), without moving time.

    A participant blocked elsewhere (on a lock a waiting thread holds, as workers wait for EDIN's re-login)
    would stall the schedule: after `grace` real seconds of that, time moves anyway and `stalls` counts it.
    `grace` is long against a request on loopback (a few ms), so a request in flight does not see time move.

    `waits` records every wait asked for, in order; `advance` moves time by hand; `tick` moves it at each
    `now()` reading (journals that need distinct stamps); `zero_waits=False` fails a wait of zero or less,
    which would spin for ever on a clock that only waits move.
    """

    POLL_S = 0.002  # how often a blocked waiter looks at its event and at participants that ended

    def __init__(self, start: datetime = T0, *, tick: float = 0.0, grace: float = 0.25,
                 zero_waits: bool = True, workers: str = "worker-") -> None:
        self._start, self._tick, self._grace = start, tick, grace
        self._zero_waits, self._prefix = zero_waits, workers
        self._t = 0.0  # seconds since `start`
        self._cond = threading.Condition()
        self._waiting: dict[int, tuple[float, threading.Event]] = {}  # thread id → (deadline, its event)
        self._participants: dict[int, threading.Thread] = {}
        self._never = threading.Event()
        self.waits: list[float] = []
        self.stalls = 0  # times the schedule moved on after `grace` (see above)

    # -- Clock
    def now(self) -> datetime:
        with self._cond:
            self._join()
            self._t += self._tick
            return self._start + timedelta(seconds=self._t)

    def monotonic(self) -> float:
        with self._cond:
            self._join()
            return 1000.0 + self._t

    def wait(self, event: threading.Event, seconds: float) -> bool:
        with self._cond:
            assert self._zero_waits or seconds > 0, f"a wait of {seconds} s: the caller would busy-spin"
            self._join()
            self.waits.append(seconds)
            if event.is_set():
                return True
            me, deadline = threading.get_ident(), self._t + max(seconds, 0.0)
            self._waiting[me] = (deadline, event)
            stalled = time.monotonic()  # real time, only to notice a stalled schedule
            try:
                while True:
                    if event.is_set():
                        return True
                    if self._t >= deadline:
                        return False
                    if self._may_move() or time.monotonic() - stalled > self._grace:
                        if not self._may_move():
                            self.stalls += 1
                        self._t = max(self._t, min(d for d, _ in self._waiting.values() if d > self._t))
                        stalled = time.monotonic()
                        self._cond.notify_all()
                    else:
                        self._cond.wait(self.POLL_S)
            finally:
                del self._waiting[me]
                self._cond.notify_all()

    # -- for tests
    def sleep(self, seconds: float) -> None:
        """A wait nothing interrupts: the `sleep` of RateLimiter and HttpClient."""
        self.wait(self._never, seconds)

    def advance(self, seconds: float) -> None:
        """Move time by hand (an idle session expiring, a Retry-After date passing)."""
        with self._cond:
            self._t += seconds
            self._cond.notify_all()

    @property
    def elapsed(self) -> float:
        """Fake seconds since the start."""
        with self._cond:
            return self._t

    # -- the schedule; the condition's lock held
    def _join(self) -> None:
        thread = threading.current_thread()
        if thread.name.startswith(self._prefix):
            self._participants[thread.ident or 0] = thread

    def _may_move(self) -> bool:
        """Every participant waits and none is due to wake (a due thread runs before time moves on)."""
        if any(d <= self._t or e.is_set() for d, e in self._waiting.values()):
            return False
        for ident, thread in list(self._participants.items()):
            if not thread.is_alive():
                del self._participants[ident]
            elif ident not in self._waiting:
                return False
        return True
