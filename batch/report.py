"""The `status` and `report` commands: read a checkpoint without the input file."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import TextIO

from .checkpoint import IN_FLIGHT_DETAIL, ItemOutcome, ItemState, Journal, ReportRow, RunRecord
from .clock import SYSTEM, Clock
from .model import RowResult, Status, Summary
from .outcome import STATUS_OF, done_earlier
from .results import write_results


def print_status(checkpoint: Path, out: TextIO) -> None:
    """Counts by state, the input's fingerprint, what was found about the provider, and the runs, as plain text."""
    with Journal.open_readonly(checkpoint) as journal:
        info = journal.status()
    out.write(f"checkpoint: {checkpoint}\n")
    if (last := info.last_real_run or (info.runs[-1] if info.runs else None)) is not None:
        out.write(f"input: {last.input_path}\ninput sha256: {last.input_sha256}\n")
    out.write(f"partners: {info.items_total}\n")
    for state, n in info.items.items():
        out.write(f"  {state:<10} {n}\n")
    if info.unmarked:
        out.write(f"sent but not yet marked: {info.unmarked} (marked on the next run)\n")
    for name, value in info.facts.items():
        out.write(f"found: {name} = {value}\n")
    out.write(f"runs: {len(info.runs)}\n")
    for run in info.runs[-10:]:
        counts = ", ".join(f"{k} {v}" for k, v in (run.counts or {}).items() if v)
        end = run.finished or "did not finish"
        extra = " (dry run)" if run.dry_run else ""
        stopped = f" — {run.stopped}" if run.stopped else ""
        out.write(f"  #{run.id} {run.started} → {end}{extra} pid {run.pid}: {counts or 'no rows'}{stopped}\n")


def rewrite_results(checkpoint: Path, output: Path, *, clock: Clock = SYSTEM) -> Path:
    """Write the results file again from the journal: saved cells overlaid with each row's current state."""
    with Journal.open_readonly(checkpoint) as journal:
        headers, rows_run, rows = journal.report_rows()
        last = journal.status().last_real_run
    results = report_results(rows, rows_run)
    write_results(output, headers, results, _summary(last, Counter(r.status.value for r in results), clock))
    return output


def report_results(rows: list[ReportRow], rows_run: int) -> list[RowResult]:
    """One result per saved line: the recorded status, overlaid with its item's state where that says more.

    A row whose recorded status is missing or `pending` takes its item's current state (a run killed with -9
    after some sends still reports them); an item still in flight reports `unknown`.
    """
    first_line: dict[str, int] = {}
    out = []
    for row in rows:
        line, identity, cells, recorded = row.line, row.identity, row.cells, row.recorded
        repeat = identity is not None and identity in first_line
        if identity is not None:
            first_line.setdefault(identity, line)
        if repeat and (recorded is None or recorded.status is Status.DUPLICATE):
            out.append(recorded or RowResult(line, cells, Status.DUPLICATE,
                                             f"same partner as row {first_line[identity]}"))  # type: ignore[index]
        elif row.item is None:  # no item: invalid, or never attempted
            out.append(recorded or RowResult(line, cells, Status.INVALID if identity is None else Status.PENDING))
        else:
            out.append(_overlay(line, cells, recorded, row.item, rows_run))
    return out


def _overlay(line: int, cells: tuple[str, ...], recorded: RowResult | None, item: ItemOutcome,
             rows_run: int) -> RowResult:
    state, detail = item.state, item.detail
    if state is ItemState.IN_FLIGHT:
        detail = IN_FLIGHT_DETAIL
    elif recorded is not None and recorded.status is not Status.PENDING:
        if item.marked:  # marks may be recorded after the results
            recorded.marked = item.marked
        return recorded
    elif state in (ItemState.SENT, ItemState.SKIPPED) and item.run_id != rows_run:
        # As plan() put it: the run records no result for such a row (runner: settled rows).
        return RowResult(line, cells, Status.SKIPPED, done_earlier(state), partner_id=item.partner_id,
                         invitation_id=item.invitation_id, marked=item.marked, http_status=item.http_status,
                         attempts=item.attempts, request_id=item.request_id, sent_at=item.sent_at)
    return RowResult(line, cells, STATUS_OF[state], detail, partner_id=item.partner_id,
                     invitation_id=item.invitation_id, marked=item.marked, http_status=item.http_status,
                     attempts=item.attempts, request_id=item.request_id, sent_at=item.sent_at)


def _time(text: str | None, default: datetime) -> datetime:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else default
    except ValueError:
        return default


def _summary(last: RunRecord | None, counts: Counter[str], clock: Clock) -> Summary:
    now = clock.now()
    if last is None:
        return Summary(started=now, finished=now, counts=counts)
    started = _time(last.started, now)
    return Summary(started=started, finished=_time(last.finished, started), counts=counts,
                   input_path=last.input_path, provider=last.provider, action=last.action, stopped=last.stopped)
