"""The pipeline: read → validate → plan → send (N workers) → record → mark → write results."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import signal
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from types import FrameType

from . import __version__, plan
from .checkpoint import ItemState, Journal, set_aside
from .clock import SYSTEM, Clock
from .config import Config
from .errors import (
    APIError,
    AuthError,
    CircuitOpenError,
    Interrupted,
    OutputError,
    ResultsNotWritten,
    RunStopped,
)
from .http import HttpClient
from .model import PROBLEM_STATUSES, Row, RowResult, Status, Summary, Table
from .outcome import Task, Verdict, describe
from .providers.base import Session
from .ratelimit import RateLimiter
from .reader import paused_gc, read_table
from .results import check_output, default_output_path, write_results
from .validation import validate_rows

log = logging.getLogger("batch.runner")


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """What the command line asks of one run (each overrides the config where both speak)."""

    input: Path
    output: Path | None = None
    checkpoint: Path | None = None
    sheet: str | None = None
    dry_run: bool = False
    limit: int | None = None
    retry_failed: bool = False
    resend_unknown: bool = False
    fresh: bool = False
    summary_json: Path | None = None
    progress: bool = False


@dataclass(frozen=True)
class RunReport:
    summary: Summary
    output: Path
    exit_code: int


@dataclass
class Watch:
    """Hooks for a caller that runs the job in a thread (the web page): stop it from outside, read its progress.

    `results` is the run's list of row results once planned: workers change their statuses in place, so
    counting them gives live counts. `done` counts rows attempted of `total` to send this run.
    """

    stop: threading.Event = field(default_factory=threading.Event)
    headers: tuple[str, ...] = ()
    results: Sequence[RowResult] = ()
    total: int = 0
    done: int = 0
    requests: Counter[str] = field(default_factory=Counter)  # HTTP answers by status code ("none": no answer)
    report: RunReport | None = None  # once the results are written, also when the run then stops


def default_checkpoint_path(input_path: Path) -> Path:
    return input_path.with_name(f"{input_path.stem}.checkpoint.sqlite")


def exit_code_for(counts: Counter[str]) -> int:
    return 1 if any(counts[s] for s in PROBLEM_STATUSES) else 0


def snapshot_key(table: Table, config: Config) -> str:
    """What a saved input snapshot's identities depend on: the file's bytes and sheet, the settings, the version.

    A later run with the same key may trust the snapshot instead of validating the rows again (plan.settle).
    """
    parts = [__version__, table.sha256, table.sheet or "", config.fingerprint(), *table.headers]
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()


def run_batch(config: Config, opts: RunOptions, *, clock: Clock = SYSTEM, watch: Watch | None = None) -> RunReport:
    """Run the whole job once; RunStopped (exit 3) is raised after the results are written.

    `clock` is the run's one source of time: the journal, the flows, the limiter, the HTTP client's waits
    and the summary all read it, so tests move time by hand instead of sleeping. `watch` lets a caller in
    another thread stop the run gracefully and read its progress.
    """
    watch = watch or Watch()
    started = clock.now()
    profile = config.profile
    table = read_table(opts.input, fields=profile.fields, required=profile.required, sheet=opts.sheet,
                       aliases=config.columns, max_rows=config.limits.max_rows,
                       max_cell_length=config.limits.max_cell_length, max_file_size=config.limits.max_file_size)
    key = snapshot_key(table, config)
    watch.headers = table.headers
    output = opts.output or default_output_path(opts.input)
    check_output(output)  # a results file that cannot be written is found before anything is sent
    checkpoint = opts.checkpoint or default_checkpoint_path(opts.input)
    summary = Summary(started=started, finished=started, input_path=str(opts.input), provider=config.provider,
                      action=config.action, dry_run=opts.dry_run)

    if opts.dry_run:
        journal = Journal.open_readonly(checkpoint) if checkpoint.exists() else None
        try:
            the_plan, _, _ = _plan(table, config, opts, journal,
                                   same_input=journal is not None and journal.rows_saved_under(key))
        finally:
            if journal is not None:
                journal.close()
        for task in the_plan.tasks:
            detail = task.result.detail
            task.result.detail = f"would send; {detail}" if detail else "would send"
        watch.results = the_plan.results
        return _finish(summary, the_plan.results, table, output, opts, None, clock, dry_run=True)

    if opts.fresh and (aside := set_aside(checkpoint, clock=clock.now)) is not None:
        log.info("old checkpoint kept as %s", aside)
    with Journal.open(checkpoint, clock=clock.now) as journal:
        info = journal.start_run(input_path=str(opts.input), input_sha256=table.sha256,
                                 config_fingerprint=config.fingerprint(), provider=config.provider,
                                 action=config.action, headers=table.headers)
        if info.input_changed:
            log.info("the input changed since the last run; rows are matched by partner, so only new ones are sent")
        # A resume of the same file need not write its rows again, nor validate those an earlier run finished.
        the_plan, rows, settled = _plan(table, config, opts, journal, same_input=journal.keep_rows(key))
        results, tasks = the_plan.results, the_plan.tasks
        for ident in the_plan.lost:
            journal.finish(ident, state=ItemState.UNKNOWN, detail="in flight when an earlier run stopped")
        if settled is None:
            # The identities as planned: a row naming a partner an earlier run resolved is saved under that
            # item's identity, so `report` finds its outcome even if this run is killed.
            journal.save_rows([(r.line, r.identity.key if r.identity is not None else None, r.cells) for r in rows],
                              key)
        if opts.limit is not None:
            tasks = tasks[: opts.limit]
        watch.results, watch.total = results, len(tasks)
        stopped: RunStopped | None = None
        try:
            stopped = _send(config, opts, journal, clock, tasks, the_plan.followups, results, watch)
        finally:
            # Settled rows go unrecorded: `report` derives the very same results from their items.
            recorded = results if settled is None else [r for r in results if r.line not in settled.results]
            try:
                watch.report = _finish(summary, results, table, output, opts, journal, clock, stopped=stopped,
                                       recorded=recorded)
            except OutputError as err:  # the rows were worked: not "nothing was sent" (exit 2)
                raise ResultsNotWritten(f"{err}; every outcome is in the checkpoint: write the results with "
                                        f"`invite-batch report {checkpoint} -o FILE`") from None
        if stopped is not None:
            raise stopped
        return RunReport(summary=summary, output=output, exit_code=exit_code_for(summary.counts))


def _plan(table: Table, config: Config, opts: RunOptions, journal: Journal | None, *, same_input: bool
          ) -> tuple[plan.Plan, list[Row], plan.Settled | None]:
    """Validate and plan; with the same input as the saved snapshot, only the rows it does not settle."""
    settled = None
    if journal is not None and same_input:
        with paused_gc():  # a million tuples from the journal: see reader.paused_gc
            settled = plan.settle(table, journal.saved_rows(), config)
    rows = validate_rows(table, config, skip=settled.results if settled is not None else ())
    the_plan = plan.plan(rows, config, journal, settled=settled, retry_failed=opts.retry_failed,
                         resend_unknown=opts.resend_unknown)
    return the_plan, rows, settled


def _finish(summary: Summary, results: list[RowResult], table: Table, output: Path, opts: RunOptions,
            journal: Journal | None, clock: Clock, *, dry_run: bool = False,
            stopped: RunStopped | None = None, recorded: Sequence[RowResult] = ()) -> RunReport:
    """Count, write the journal's record of this run, the results file and the summary."""
    summary.finished = clock.now()
    # Counted by member, then keyed by text: Enum.value is a Python-level property, slow a million times.
    by_status = Counter(map(attrgetter("status"), results))
    summary.counts = Counter({status.value: n for status, n in by_status.items()})
    summary.stopped = str(stopped) if stopped else ""
    if journal is not None:  # first: a results file that cannot be written must not lose the record
        journal.record_results(recorded)
        journal.end_run(summary)
    write_results(output, table.headers, results, summary)
    if opts.summary_json is not None:
        data = summary.as_dict() | {"results": str(output)}
        opts.summary_json.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    # A dry run judges the file only: rows that failed in earlier runs do not make it fail.
    code = (1 if summary.counts[Status.INVALID] else 0) if dry_run else exit_code_for(summary.counts)
    return RunReport(summary=summary, output=output, exit_code=code)


class _Stop:
    """The run's stop flag: set by a signal, the circuit breaker or a failed login."""

    def __init__(self, clock: Clock, event: threading.Event | None = None) -> None:
        self.clock = clock
        self.event = event or threading.Event()
        self.reason: RunStopped | None = None
        self._lock = threading.Lock()

    def set(self, reason: RunStopped) -> None:
        with self._lock:
            if self.reason is None:
                self.reason = reason
        self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set()

    def sleep(self, seconds: float) -> None:
        """An interruptible sleep for retries and the limiter: a stop ends the wait at once."""
        if self.clock.wait(self.event, seconds):
            raise Interrupted("stopping")


@contextlib.contextmanager
def _signals(stop: _Stop) -> Iterator[None]:
    """SIGINT/SIGTERM: take no new rows, let in-flight requests finish (SPEC §6)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now, in-flight rows are reconciled next run
        log.warning("%s received: finishing in-flight requests, then stopping", name)
        stop.set(Interrupted(f"stopped by {name}; run the same command again to resume"))

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


class _Breaker:
    """Counts rows failing in a row for server or network reasons (SPEC §7)."""

    def __init__(self, limit: int, stop: _Stop) -> None:
        self.limit, self.stop, self.streak = limit, stop, 0
        self._lock = threading.Lock()

    def record(self, verdict: Verdict) -> None:
        with self._lock:
            self.streak = self.streak + 1 if verdict is Verdict.BROKEN else 0
            if self.streak >= self.limit:
                self.stop.set(CircuitOpenError(
                    f"{self.streak} rows in a row failed for server or network reasons; "
                    "the rest are pending, run again to resume"))


def _send(config: Config, opts: RunOptions, journal: Journal, clock: Clock, tasks: Sequence[Task],
          followups: Sequence[Task], results: Sequence[RowResult], watch: Watch) -> RunStopped | None:
    """Drive the workers over the tasks; return why the run stopped early, if it did."""
    if not tasks and not followups:
        return None
    stop = _Stop(clock, watch.stop)
    breaker = _Breaker(config.stop_after_consecutive_failures, stop)
    with _signals(stop), _session(config, journal, clock, stop, watch.requests) as session:
        try:
            session.open()
        except RunStopped as err:
            return err
        except APIError as err:  # 429/5xx/network outlasted the retries: nothing was sent, so stop resumably (exit 3)
            return AuthError(f"could not log in: {describe(err)}; run again to resume")
        session.owed(followups)
        progress = _Progress(len(tasks), results, enabled=opts.progress, clock=clock, watch=watch)
        _work(tasks, session.handle, breaker, stop, progress, workers=config.limits.workers)
        progress.close()
        if stop.is_set() and stop.reason is None:  # the caller's Watch.stop: the graceful stop of SPEC §6
            stop.set(Interrupted("stopped on request; run again to resume"))
        if not isinstance(stop.reason, AuthError):
            try:
                session.finish()
            except (AuthError, Interrupted) as err:
                stop.set(err)
        with contextlib.suppress(Exception):  # a failed logout must not turn a finished run into a failed one
            session.close()
    return stop.reason


@contextlib.contextmanager
def _session(config: Config, journal: Journal, clock: Clock, stop: _Stop,
             answers: Counter[str]) -> Iterator[Session]:
    """The limiter, the HTTP session and the provider's session; the embedded sandbox too, if asked."""
    with contextlib.ExitStack() as stack:
        if config.embedded:
            from .sandbox import SandboxServer

            server = stack.enter_context(SandboxServer(config.sandbox))
            log.info("embedded sandbox listening on %s", server.url)
            config = dataclasses.replace(config, base_url=server.url)
        limiter = RateLimiter(config.limits.rate, clock=clock.monotonic, sleep=stop.sleep)
        http = HttpClient(config.base_url, timeouts=config.limits.timeout, retry=config.retry, limiter=limiter,
                          workers=config.limits.workers, ca_bundle=config.ca_bundle, sleep=stop.sleep,
                          clock=clock.monotonic, now=clock.now, request_id_header=config.profile.request_id_header,
                          answers=answers)
        stack.callback(http.close)
        yield config.profile.session(config, http, journal, clock, stop.is_set)


def _work(tasks: Sequence[Task], handle: Callable[[Task], Verdict], breaker: _Breaker, stop: _Stop,
          progress: _Progress, *, workers: int) -> None:
    """N threads take rows from one shared iterator until it is empty or the run stops."""
    it = iter(tasks)
    lock = threading.Lock()

    def worker() -> None:
        while not stop.is_set():
            with lock:
                task = next(it, None)
            if task is None:
                return
            try:
                verdict = handle(task)
            except Interrupted:
                return
            except RunStopped as err:  # a failed login, an unreachable provider
                stop.set(err)
                return
            except Exception as err:  # a bug must not lose the rest of the run's bookkeeping
                log.exception("row %d: unexpected error", task.result.line)
                task.result.status, task.result.detail = Status.UNKNOWN, f"internal error: {err.__class__.__name__}"
                verdict = Verdict.BROKEN
            breaker.record(verdict)
            progress.update()

    threads = [threading.Thread(target=worker, name=f"worker-{i}", daemon=True)
               for i in range(max(1, min(workers, len(tasks))))]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(timeout=0.2)  # short joins keep the main thread responsive to signals


class _Progress:
    """A tqdm bar with counts by status, on a terminal only."""

    def __init__(self, total: int, results: Sequence[RowResult], *, enabled: bool, clock: Clock,
                 watch: Watch) -> None:
        self.results, self.bar, self._n, self.clock, self.watch = results, None, 0, clock, watch
        self._lock = threading.Lock()
        if enabled and total and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="row", file=sys.stderr, dynamic_ncols=True)
        self._last = 0.0

    def update(self) -> None:
        with self._lock:
            self.watch.done += 1
        if self.bar is None:
            return
        with self._lock:
            self.bar.update(1)
            now = self.clock.monotonic()
            if now - self._last > 0.5:
                self._last = now
                counts = Counter(r.status.value for r in self.results)
                self.bar.set_postfix({k: v for k, v in counts.items() if k != Status.PENDING}, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def summary_line(summary: Summary, output: Path) -> str:
    counts = ", ".join(f"{s.value} {summary.counts.get(s.value, 0)}" for s in Status)
    head = "dry run" if summary.dry_run else "done"
    return f"{head} in {summary.duration:.1f}s: {counts}; results: {output}"

