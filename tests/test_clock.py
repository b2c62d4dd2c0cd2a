"""The tests' FakeClock (support.py): one schedule for all threads, a stop ends a wait, no real sleeping."""

from __future__ import annotations

import threading
from collections.abc import Callable

from support import T0, FakeClock

from batch.clock import Clock, iso_utc


def start(name: str, target: Callable[[], object]) -> threading.Thread:
    thread = threading.Thread(target=target, name=name)
    thread.start()
    return thread


def test_it_is_a_clock() -> None:
    clock: Clock = FakeClock()  # what run_batch(clock=...) takes
    assert clock.now() == T0 and clock.monotonic() == 1000.0
    assert iso_utc(FakeClock(tick=1.0).now()) == "2024-05-01T10:00:01Z"


def test_waits_at_once_share_the_schedule() -> None:
    """Three workers waiting together end at their own deadlines: the time moves as far as the longest wait."""
    clock = FakeClock()
    woke: dict[str, float] = {}
    ready = threading.Barrier(3)

    def waiter(seconds: float) -> Callable[[], None]:
        def run() -> None:
            clock.monotonic()  # a worker takes part from its first reading on
            ready.wait(10)
            clock.sleep(seconds)
            woke[threading.current_thread().name] = clock.monotonic()
        return run

    threads = [start(f"worker-{s}", waiter(s)) for s in (0.2, 0.05, 0.1)]
    for t in threads:
        t.join(timeout=10)
    assert woke == {"worker-0.2": 1000.2, "worker-0.05": 1000.05, "worker-0.1": 1000.1}
    assert clock.elapsed == 0.2 and sorted(clock.waits) == [0.05, 0.1, 0.2] and clock.stalls == 0


def test_time_stands_still_while_a_worker_works() -> None:
    """A worker that read the clock and has not waited yet (a request on the wire) holds the time."""
    clock = FakeClock(grace=10)
    working, done, waited = threading.Event(), threading.Event(), threading.Event()

    def busy() -> None:
        clock.monotonic()  # e.g. the limiter let a request go
        working.set()
        done.wait(10)  # the answer has not come yet

    def sleeper() -> None:
        working.wait(10)
        clock.sleep(1.0)
        waited.set()

    threads = [start("worker-0", busy), start("worker-1", sleeper)]
    assert not waited.wait(0.05)  # time cannot move while worker-0 works
    assert clock.elapsed == 0.0
    done.set()  # worker-0 ends: it no longer holds the schedule
    for t in threads:
        t.join(timeout=10)
    assert waited.is_set() and clock.elapsed == 1.0 and clock.stalls == 0


def test_a_set_event_ends_a_wait_at_once_without_moving_time() -> None:
    clock = FakeClock(grace=10)
    stop, busy, entered = threading.Event(), threading.Event(), threading.Event()
    got: list[bool] = []

    def keep_busy() -> None:  # another worker holds the time, so only the event can end the wait
        clock.monotonic()
        busy.set()
        stop.wait(10)

    def waiter() -> None:
        busy.wait(10)
        entered.set()
        got.append(clock.wait(stop, 30.0))

    threads = [start("worker-1", keep_busy), start("worker-0", waiter)]
    entered.wait(10)
    stop.set()
    for t in threads:
        t.join(timeout=10)
    assert got == [True] and clock.waits == [30.0] and clock.elapsed == 0.0
    assert clock.wait(stop, 5.0) is True and clock.elapsed == 0.0  # already set: no wait at all


def test_an_unset_event_waits_the_whole_time() -> None:
    clock = FakeClock()
    assert clock.wait(threading.Event(), 2.5) is False
    assert clock.elapsed == 2.5


def test_a_stalled_schedule_moves_on_after_the_grace() -> None:
    """A worker blocked on a lock that a waiting worker holds must not stop the time for ever."""
    clock = FakeClock(grace=0.02)
    lock, read, holding = threading.Lock(), threading.Event(), threading.Event()

    def blocked() -> None:
        clock.monotonic()
        read.set()
        holding.wait(10)
        with lock:
            pass

    def holder() -> None:
        read.wait(10)
        with lock:
            holding.set()
            clock.sleep(1.0)  # e.g. a login waiting for the limiter while it holds the client's lock

    threads = [start("worker-1", blocked), start("worker-0", holder)]
    for t in threads:
        t.join(timeout=10)
    assert not any(t.is_alive() for t in threads)
    assert clock.elapsed == 1.0 and clock.stalls >= 1


def test_only_workers_and_waiters_take_part() -> None:
    """The main thread and servers' threads read the clock too, but never hold the schedule."""
    clock = FakeClock(grace=10)
    clock.monotonic()  # this thread (not a worker) read it
    reader = start("sandbox-request", clock.monotonic)
    reader.join()
    clock.sleep(3.0)  # nobody else is waited for
    assert clock.elapsed == 3.0 and clock.stalls == 0
