"""Telling people how a run ended (SPEC §12): its outcome, then a notification and the metrics."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .clock import SYSTEM, Clock
from .config import Config, pushgateway_problem
from .errors import InviteBatchError, RunStopped, UsageError
from .model import Status, Summary
from .runner import RunOptions, RunReport, Watch, run_batch, summary_line

TOP_DETAILS = 10
_DETAIL_STATUSES = (Status.FAILED, Status.UNKNOWN)


@dataclass(kw_only=True)
class RunEnd:
    """How one run that was not a dry run ended."""

    exit_code: int
    input: Path
    provider: str
    summary: Summary | None = None  # None when it failed before reading its rows
    output: Path | None = None
    error: str = ""  # why it stopped or could not start
    details: list[tuple[str, str, int]] = field(default_factory=list)  # (status, detail, rows), commonest first

    @property
    def outcome(self) -> str:
        if self.exit_code == 0:
            counts = self.summary.counts if self.summary else Counter()
            busy = sum(n for s, n in counts.items() if s not in (Status.SKIPPED, Status.DUPLICATE))
            return "nothing to do" if not busy else "finished"
        if self.exit_code == 1:
            return "finished with problems"
        return "stopped" if self.exit_code == RunStopped.exit_code else "failed to start"


def run_and_tell(config: Config, opts: RunOptions, *, clock: Clock = SYSTEM, watch: Watch | None = None
                 ) -> RunReport:
    """run_batch, then notify and publish metrics as the config asks; errors still reach the caller."""
    metrics = config.metrics
    if opts.dry_run or not (config.notify or metrics.file or metrics.pushgateway):
        return run_batch(config, opts, clock=clock, watch=watch)
    if metrics.pushgateway and (problem := pushgateway_problem(metrics.pushgateway)) is not None:
        raise UsageError(f"pushgateway: {problem}")  # a --pushgateway; the config's was checked as it loaded
    if config.notify:
        from .notify import protect, url_problem

        protect(config.notify)
        for i, url in enumerate(config.notify, start=1):
            if (problem := url_problem(url)) is not None:
                raise UsageError(f"notify URL {i}: {problem}")
    started = clock.monotonic()
    watch = watch or Watch()
    try:
        report = run_batch(config, opts, clock=clock, watch=watch)
    except InviteBatchError as e:
        _tell(config, opts, watch, e.exit_code, str(e), clock.monotonic() - started, clock.now().timestamp())
        raise
    except KeyboardInterrupt:  # a second Ctrl-C: the results were still written
        _tell(config, opts, watch, RunStopped.exit_code, "stopped by a signal", clock.monotonic() - started,
              clock.now().timestamp())
        raise
    _tell(config, opts, watch, report.exit_code, "", clock.monotonic() - started, clock.now().timestamp())
    return report


def _tell(config: Config, opts: RunOptions, watch: Watch, exit_code: int, error: str, elapsed: float,
          now: float) -> None:
    """Notify and publish what the run left on its watch."""
    report = watch.report
    if config.notify:
        end = RunEnd(exit_code=exit_code, input=opts.input, provider=config.provider, error=error,
                     summary=report.summary if report else None, output=report.output if report else None)
        if end.outcome in config.notify_on:
            from .notify import send

            # Only the message shows details: without notifications there is no pass over a million rows.
            found = Counter((r.status.value, r.detail) for r in watch.results if r.status in _DETAIL_STATUSES)
            end.details = [(status, detail, n) for (status, detail), n in found.most_common(TOP_DETAILS)]
            title, body = message(end)
            send(config.notify, title=title, body=body, exit_code=exit_code)
    if config.metrics.file or config.metrics.pushgateway:
        from .metrics import RunMetrics, publish

        summary = report.summary if report else None
        run = RunMetrics(job=config.metrics.job or opts.input.stem, provider=config.provider,
                         rows=summary.counts if summary else {}, requests=watch.requests,
                         duration=summary.duration if summary else elapsed, finished=now, exit_code=exit_code)
        publish(run, file=config.metrics.file, pushgateway=config.metrics.pushgateway)


def message(end: RunEnd) -> tuple[str, str]:
    """A title and a few short lines, readable on a phone."""
    title = f"invite-batch {end.outcome}: {end.input.name}"
    lines = [f"{end.outcome} (exit {end.exit_code}): {end.input} ({end.provider})"]
    if end.error:
        lines.append(end.error)
    if end.summary is not None and end.output is not None:
        lines.append(summary_line(end.summary, end.output))
    for status, detail, n in end.details:
        lines.append(f"{n} × {status}: {detail or '(no detail)'}")
    return title, "\n".join(lines)
