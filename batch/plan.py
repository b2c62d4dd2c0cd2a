"""Duplicates within the file, and what the checkpoint says is already done: each row's fate before sending."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter

from .checkpoint import Item, ItemState, Journal, SavedRow
from .config import Config
from .model import Row, RowResult, Status, Table
from .outcome import Task, done_earlier
from .providers.base import Identity, Provider
from .reader import paused_gc


def find_duplicates(rows: Sequence[Row]) -> dict[int, int]:
    """Line of each valid row that repeats an earlier valid row's identity → that earlier row's line."""
    first: dict[str, int] = {}
    duplicates: dict[int, int] = {}
    for row in rows:
        if row.identity is None:
            continue
        earlier = first.setdefault(row.identity.key, row.line)
        if earlier != row.line:
            duplicates[row.line] = earlier
    return duplicates


@dataclass(slots=True)
class Plan:
    """Every row's starting result, the rows to work on, and what earlier runs left to finish."""

    results: list[RowResult]
    tasks: list[Task]
    followups: list[Task]  # sent before, their batched step (EDIN's mark) still owed
    lost: list[Identity]  # left in flight by a crash where no look-up can tell: now `unknown`


@dataclass(slots=True)
class Settled:
    """Rows of an unchanged input that the checkpoint's saved snapshot decides without validating them again."""

    results: dict[int, RowResult]  # line → `skipped` (done in an earlier run) or `duplicate`, in line order
    followups: list[Task]
    open: list[str]  # identities of the other saved rows that have an item: all plan() reads of the journal


_DONE = (ItemState.SENT, ItemState.SKIPPED)


def settle(table: Table, saved: Sequence[SavedRow], config: Config) -> Settled | None:
    """Decide the rows an earlier run finished, from the snapshot it saved of this very input (same bytes, sheet,
    settings and version: the runner checks the snapshot's key), so a resume of a large file skips validating
    and planning them. None when the snapshot does not line up with the table."""
    if len(saved) != len(table.rows):
        return None
    owes = config.profile.followup(config)
    out = Settled(results={}, followups=[], open=[])
    first: dict[str, int] = {}
    skipped = Status.SKIPPED
    with paused_gc():
        for raw, row in zip(table.rows, saved, strict=True):
            line, ident, state = row.line, row.identity, row.state
            if raw.line != line:
                return None
            if ident is None:  # invalid when saved: validated again for its problems
                continue
            earlier = first.setdefault(ident, line)
            if earlier != line:
                out.results[line] = RowResult(line, raw.cells, Status.DUPLICATE, f"same partner as row {earlier}")
            elif state in _DONE:
                # The same result plan() gives such a row (_done_before), from the query's row.
                result = RowResult(line, raw.cells, skipped, done_earlier(state), partner_id=row.partner_id,
                                   invitation_id=row.invitation_id, marked=row.marked, http_status=row.http_status,
                                   attempts=row.attempts, request_id=row.request_id, sent_at=row.sent_at)
                out.results[line] = result
                if owes is not None and owes(row):
                    out.followups.append(Task(Identity(ident), {}, result, None))
            elif state is not None:
                out.open.append(ident)
    return out


def plan(rows: Sequence[Row], config: Config, journal: Journal | None, *, settled: Settled | None = None,
         retry_failed: bool = False, resend_unknown: bool = False) -> Plan:
    """Decide each row's fate from validation, duplicates and the checkpoint; writes nothing.

    With `settled`, `rows` are the rest of the input (settle() decided the others) and the results cover both.
    """
    if journal is None:
        items: Mapping[str, Item] = {}
        load_all: Callable[[], Mapping[str, Item]] = dict
    elif settled is not None:
        items, load_all = (journal.items_of(settled.open) if settled.open else {}), journal.items
    else:
        items = journal.items()
        load_all = lambda: items  # noqa: E731
    # Two new objects a row on top of millions alive: without the pause, full collections rescan them all.
    with paused_gc():
        out = _plan(rows, config, items, load_all, retry_failed, resend_unknown)
        if settled is not None and settled.results:
            done = list(settled.results.values())
            out.results = list(heapq.merge(done, out.results, key=attrgetter("line"))) if out.results else done
            out.followups[:0] = settled.followups
    return out


def _plan(rows: Sequence[Row], config: Config, items: Mapping[str, Item],
          load_all: Callable[[], Mapping[str, Item]], retry_failed: bool, resend_unknown: bool) -> Plan:
    profile: Provider = config.profile
    owes = profile.followup(config)
    resolved: dict[tuple[str, str], Item] | None = None  # made at the first row that needs it: most files never do
    first: dict[str, int] = {}  # identity → line of its first valid row (find_duplicates, in the same pass)
    out = Plan(results=[], tasks=[], followups=[], lost=[])
    add_result, add_task = out.results.append, out.tasks.append
    pending, in_journal = Status.PENDING, ItemState.PENDING
    # A million rows pass here: positional constructors and one identity a row keep it to C-level calls.
    for row in rows:
        line = row.line
        result = RowResult(line, row.cells, pending, "; ".join(row.notes) if row.notes else "")
        add_result(result)
        ident = row.identity
        if ident is None:
            result.status, result.detail = Status.INVALID, "; ".join(row.problems)
            continue
        earlier = first.setdefault(ident.key, line)
        if earlier != line:
            result.status, result.detail = Status.DUPLICATE, f"same partner as row {earlier}"
            continue
        item = items.get(ident.key) if items else None
        if item is None and ident.partner_id:
            # The row names the partner by the id an earlier run resolved it to (e.g. a results workbook fed
            # back as input): it is the same partner, so it takes that item's identity, here and in the snapshot.
            if resolved is None:
                resolved = {(i.partner_id, i.scope): i for i in load_all().values() if i.partner_id}
            item = resolved.get((ident.partner_id, ident.scope))
            if item is not None and item.identity != ident.key:
                ident = row.identity = Identity(item.identity, item.scope, ident.partner_id)
        task = Task(ident, row.values, result, item)
        if item is None or item.state is in_journal:
            add_task(task)
            continue
        state = item.state
        if state in _DONE:
            _copy(item, result)
            result.status, result.detail = Status.SKIPPED, done_earlier(state)
            if owes is not None and owes(item):
                out.followups.append(task)
            continue
        _copy(item, result)
        if state is ItemState.FAILED:
            if retry_failed:
                add_task(task)
            else:
                result.status = Status.FAILED
                result.detail = f"{item.detail} (earlier run; --retry-failed to try again)"
        elif state is ItemState.UNKNOWN or (state is ItemState.IN_FLIGHT and not profile.reconciles(item)):
            if resend_unknown:
                add_task(task)
            else:
                result.status = Status.UNKNOWN
                result.detail = item.detail or "in flight when an earlier run stopped: may have been delivered"
                result.detail += " (--resend-unknown to send again)"
                if state is ItemState.IN_FLIGHT:
                    out.lost.append(ident)
        else:  # in flight, and the provider can look it up: its flow reconciles it
            add_task(task)
    return out


def _copy(item: Item, result: RowResult) -> None:
    result.partner_id, result.invitation_id = item.partner_id, item.invitation_id
    result.http_status, result.request_id = item.http_status, item.request_id
    result.attempts, result.marked, result.sent_at = item.attempts, item.marked, item.sent_at
