"""What the journal hands out: item states and items, saved rows, report rows, runs and the status."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

from ..model import RowResult


class ItemState(StrEnum):
    """Where one partner stands in this checkpoint."""

    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    SENT = "sent"
    SKIPPED = "skipped"
    FAILED = "failed"
    UNKNOWN = "unknown"


STATES = {s.value: s for s in ItemState}  # a state's text → its member, without Enum's lookup


class Item(NamedTuple):
    """One partner's record in the journal (a NamedTuple: a 100k-item checkpoint loads 3× faster than with a
    frozen dataclass, whose __init__ sets each of the twelve fields through object.__setattr__)."""

    identity: str
    state: ItemState
    step: str  # the in-flight request: "create" | "invite" | "mark" | ""
    partner_id: str
    invitation_id: str
    http_status: int | None
    request_id: str
    detail: str
    attempts: int
    marked: str  # "" | "yes" | "no" | "failed"
    sent_at: str
    updated_at: str
    scope: str


def item_from_row(r: Sequence[Any]) -> Item:
    """An Item from a row of the ITEM_COLUMNS."""
    return Item(r[0], STATES[r[1]], *r[2:])


@dataclass(frozen=True, slots=True)
class RunInfo:
    """The run just recorded."""

    run_id: int
    started_at: str
    input_changed: bool  # the last real run before it was given another input


class SavedRow(NamedTuple):
    """A saved input line with its item's state and outcome (None/"" where the line has no item)."""

    line: int
    identity: str | None  # None: the row was invalid
    state: str | None
    partner_id: str
    invitation_id: str
    marked: str
    http_status: int | None
    attempts: int
    request_id: str
    sent_at: str


class ItemOutcome(NamedTuple):
    """An item's outcome as `report` reads it, with the run that last changed its state."""

    state: ItemState
    detail: str
    partner_id: str
    invitation_id: str
    marked: str
    http_status: int | None
    attempts: int
    request_id: str
    sent_at: str
    run_id: int | None


class ReportRow(NamedTuple):
    """A saved input line for `report`: its cells, the result the run recorded, and its item's outcome."""

    line: int
    identity: str | None
    cells: tuple[str, ...]
    recorded: RowResult | None
    item: ItemOutcome | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRecord:
    """One run as the journal keeps it."""

    id: int
    started: str
    finished: str | None  # None: it never ended (killed) or is still running
    pid: int
    input_path: str
    input_sha256: str
    provider: str
    action: str
    dry_run: bool
    counts: dict[str, int] | None
    stopped: str


@dataclass(frozen=True, slots=True, kw_only=True)
class JournalStatus:
    """What `status` shows: items by state, owed marks, the saved input, facts found, the runs."""

    items: dict[str, int]
    unmarked: int
    saved_rows: int
    facts: dict[str, str]
    runs: list[RunRecord]

    @property
    def items_total(self) -> int:
        return sum(self.items.values())

    @property
    def last_real_run(self) -> RunRecord | None:
        real = [r for r in self.runs if not r.dry_run]
        return real[-1] if real else None
