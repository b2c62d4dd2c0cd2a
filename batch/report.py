"""The `status` and `report` commands: read a checkpoint without the input file."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from .checkpoint import Journal
from .model import Summary
from .results import write_results
from .snapshot import report_rows


def print_status(checkpoint: Path, out: TextIO) -> None:
    """Counts by state, the input's fingerprint and the runs, as plain text."""
    with Journal.open_readonly(checkpoint) as journal:
        info = journal.status()
    out.write(f"checkpoint: {checkpoint}\n")
    if info["input"]:
        out.write(f"input: {info['input']['path']}\ninput sha256: {info['input']['sha256']}\n")
    out.write(f"partners: {info['items_total']}\n")
    for state, n in info["items"].items():
        out.write(f"  {state:<10} {n}\n")
    if info["unmarked"]:
        out.write(f"sent but not yet marked: {info['unmarked']} (marked on the next run)\n")
    runs = info["runs"]
    out.write(f"runs: {len(runs)}\n")
    for run in runs[-10:]:
        counts = ", ".join(f"{k} {v}" for k, v in (run["counts"] or {}).items() if v)
        end = run["finished"] or "did not finish"
        extra = " (dry run)" if run["dry_run"] else ""
        stopped = f" — {run['stopped']}" if run["stopped"] else ""
        out.write(f"  #{run['id']} {run['started']} → {end}{extra} pid {run['pid']}: {counts or 'no rows'}{stopped}\n")


def _time(text: str | None, default: datetime) -> datetime:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else default
    except ValueError:
        return default


def _summary(last: dict[str, Any] | None, counts: Counter[str]) -> Summary:
    now = datetime.now(UTC)
    last = last or {}
    started = _time(last.get("started"), now)
    return Summary(started=started, finished=_time(last.get("finished"), started), counts=counts,
                   input_path=last.get("input_path") or "", provider=last.get("provider") or "",
                   action=last.get("action") or "", stopped=last.get("stopped") or "")


def rewrite_results(checkpoint: Path, output: Path) -> Path:
    """Write the results file again from the journal: saved cells overlaid with each row's current state."""
    with Journal.open_readonly(checkpoint) as journal:
        headers, results = report_rows(journal)
        info = journal.status()
    real = [r for r in info["runs"] if not r["dry_run"]]
    summary = _summary(real[-1] if real else None, Counter(r.status.value for r in results))
    write_results(output, headers, results, summary)
    return output
