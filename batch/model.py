"""The few value types that flow one way through the pipeline: reader → validation → plan → runner → results."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import NamedTuple


class Status(StrEnum):
    """A row's status in the results file (SPEC §5)."""

    SENT = "sent"
    SKIPPED = "skipped"
    DUPLICATE = "duplicate"
    INVALID = "invalid"
    FAILED = "failed"
    UNKNOWN = "unknown"
    PENDING = "pending"


# Statuses that make the exit code 1 (SPEC §9).
PROBLEM_STATUSES = frozenset({Status.INVALID, Status.FAILED, Status.UNKNOWN})


class Identity(NamedTuple):
    """The key a valid row is known by (SPEC §6), with the parts the core compares without parsing it."""

    key: str  # the checkpoint's key of the partner's item
    scope: str = ""  # what the invitation is for within the account (EDIN: the template or owner company)
    partner_id: str = ""  # the provider's own id of the partner, when the row names it directly


# RawRow and Row are created a million at a time; frozen dataclasses cost twice as much to build.
@dataclass(slots=True)
class RawRow:
    """One non-blank data row as read: its spreadsheet row number (header = 1) and text cells."""

    line: int
    cells: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Table:
    """A read input file: original headers, which column holds which field, and the data rows."""

    path: str
    sheet: str | None
    headers: tuple[str, ...]
    fields: dict[str, int]  # field name → column index
    rows: list[RawRow]
    sha256: str


@dataclass(slots=True)
class Row:
    """A validated row: normalised field values, or the problems that make it invalid."""

    line: int
    cells: tuple[str, ...]
    values: dict[str, str]
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    identity: Identity | None = None  # a valid row's, set once by validation (plan may resolve it further)

    @property
    def valid(self) -> bool:
        return not self.problems


# The result columns after the input's own (SPEC §5), in order, each with the RowResult attribute it shows.
RESULT_COLUMNS = (("row", "line"), ("status", "status"), ("detail", "detail"), ("partner_id", "partner_id"),
                  ("invitation_id", "invitation_id"), ("marked", "marked"), ("http_status", "http_status"),
                  ("attempts", "attempts"), ("request_id", "request_id"), ("sent_at", "sent_at"))


@dataclass(slots=True)
class RowResult:
    """What happened to one input row; one line of the results file."""

    line: int
    cells: tuple[str, ...]
    status: Status
    detail: str = ""
    partner_id: str = ""
    invitation_id: str = ""
    marked: str = ""  # edin: yes / no / failed
    http_status: int | None = None
    attempts: int = 0
    request_id: str = ""
    sent_at: str = ""  # UTC ISO 8601


@dataclass(slots=True)
class Summary:
    """The run's figures, for the Summary sheet, the log and --summary-json."""

    started: datetime
    finished: datetime
    counts: Counter[str] = field(default_factory=Counter)
    input_path: str = ""
    provider: str = ""
    action: str = ""
    dry_run: bool = False
    stopped: str = ""  # why the run stopped early, if it did

    @property
    def duration(self) -> float:
        return max((self.finished - self.started).total_seconds(), 0.0)

    @property
    def attempted(self) -> int:
        return sum(self.counts[s] for s in (Status.SENT, Status.FAILED, Status.UNKNOWN))

    @property
    def rate(self) -> float:
        """Rows attempted per second of the run."""
        return self.attempted / self.duration if self.duration > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "input": self.input_path,
            "provider": self.provider,
            "action": self.action,
            "dry_run": self.dry_run,
            "started": self.started.isoformat(),
            "finished": self.finished.isoformat(),
            "duration_seconds": round(self.duration, 3),
            "rows_per_second": round(self.rate, 3),
            "counts": {s.value: self.counts.get(s.value, 0) for s in Status},
            "total": sum(self.counts.values()),
            "stopped": self.stopped or None,
        }
