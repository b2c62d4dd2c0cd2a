"""Row identities, duplicates within the file, and what the checkpoint says is already done."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter

from .checkpoint import Item, ItemState, Journal
from .config import Config
from .model import Row, RowResult, Status, Table
from .reader import paused_gc
from .snapshot import SavedRow, done_earlier


@dataclass(slots=True)
class Task:
    """A row the runner will work on this run."""

    identity: str
    values: dict[str, str]
    result: RowResult
    item: Item | None  # the journal's record from earlier runs, if any


def identity(row: Row, provider: str) -> str:
    """The key a row is known by in the checkpoint and among duplicates (SPEC §6); the row must be valid."""
    v = row.values
    if provider == "invoicebox":
        return f"{v['partner_id']}|{v['email'].lower()}"
    key = f"pid:{v['partner_id']}" if "partner_id" in v else f"code:{v['code']}"
    if "contract_template_id" in v:
        return f"{key}|tpl:{v['contract_template_id']}"
    if "owner_company_id" in v:
        return f"{key}|own:{v['owner_company_id']}"
    return key  # a mark-only job needs no template


def find_duplicates(rows: Sequence[Row], provider: str) -> dict[int, int]:
    """Line of each valid row that repeats an earlier valid row's identity → that earlier row's line."""
    first: dict[str, int] = {}
    duplicates: dict[int, int] = {}
    for row in rows:
        if row.problems:
            continue
        key = identity(row, provider)
        earlier = first.setdefault(key, row.line)
        if earlier != row.line:
            duplicates[row.line] = earlier
    return duplicates


# ---------------------------------------------------------------- resume-aware planning

@dataclass(slots=True)
class Plan:
    """Every row's starting result, the rows to work on, and what earlier runs left to finish."""

    results: list[RowResult]
    tasks: list[Task]
    unmarked: list[tuple[str, int, RowResult | None]]  # edin: sent before, not yet marked
    lost: list[str]  # invoicebox identities left in flight by a crash: now `unknown`


@dataclass(slots=True)
class Settled:
    """Rows of an unchanged input that the checkpoint's saved snapshot decides without validating them again."""

    results: dict[int, RowResult]  # line → `skipped` (done in an earlier run) or `duplicate`, in line order
    unmarked: list[tuple[str, int, RowResult | None]]
    open: list[str]  # identities of the other saved rows that have an item: all plan() reads of the journal


_DONE = (ItemState.SENT, ItemState.SKIPPED)


def settle(table: Table, saved: Sequence[SavedRow], config: Config) -> Settled | None:
    """Decide the rows an earlier run finished, from the snapshot it saved of this very input (same bytes, sheet,
    settings and version: the runner checks the snapshot's key), so a resume of a large file skips validating
    and planning them. None when the snapshot does not line up with the table."""
    if len(saved) != len(table.rows):
        return None
    marks = _marks(config)
    out = Settled(results={}, unmarked=[], open=[])
    first: dict[str, int] = {}
    skipped = Status.SKIPPED
    with paused_gc():
        for raw, row in zip(table.rows, saved, strict=True):
            line, ident, state = row[0], row[1], row[2]
            if raw.line != line:
                return None
            if ident is None:  # invalid when saved: validated again for its problems
                continue
            earlier = first.setdefault(ident, line)
            if earlier != line:
                out.results[line] = RowResult(line, raw.cells, Status.DUPLICATE, f"same partner as row {earlier}")
            elif state in _DONE:
                # The same result plan() gives such a row (_done_before), made in one call from the query's row.
                result = RowResult(line, raw.cells, skipped, done_earlier(state), *row[3:])
                out.results[line] = result
                if marks and _mark_owed(state, row[5], row[3]):
                    out.unmarked.append((ident, int(row[3]), result))
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
        out = _plan(rows, config.provider, _marks(config), items, load_all, retry_failed, resend_unknown)
        if settled is not None and settled.results:
            done = list(settled.results.values())
            out.results = list(heapq.merge(done, out.results, key=attrgetter("line"))) if out.results else done
            out.unmarked[:0] = settled.unmarked
    return out


def _marks(config: Config) -> bool:
    return config.provider == "edin" and config.action == "invite" and config.invite.mark_status


def _plan(rows: Sequence[Row], provider: str, marks: bool, items: Mapping[str, Item],
          load_all: Callable[[], Mapping[str, Item]], retry_failed: bool, resend_unknown: bool) -> Plan:
    resolved: dict[str, Item] | None = None  # made at the first row that needs it: most files never do
    first: dict[str, int] = {}  # identity → line of its first valid row (find_duplicates, in the same pass)
    out = Plan(results=[], tasks=[], unmarked=[], lost=[])
    add_result, add_task = out.results.append, out.tasks.append
    pending, in_journal = Status.PENDING, ItemState.PENDING
    # A million rows pass here: positional constructors and one identity() a row keep it to C-level calls.
    for row in rows:
        line = row.line
        result = RowResult(line, row.cells, pending, "; ".join(row.notes) if row.notes else "")
        add_result(result)
        if row.problems:
            result.status, result.detail = Status.INVALID, "; ".join(row.problems)
            continue
        ident = identity(row, provider)
        earlier = first.setdefault(ident, line)
        if earlier != line:
            result.status, result.detail = Status.DUPLICATE, f"same partner as row {earlier}"
            continue
        item = items.get(ident) if items else None
        if item is None and ident.startswith("pid:"):
            # The row names the partner by the id an earlier run resolved its code to (e.g. a results
            # workbook fed back as input): it is the same partner, so it takes that item's identity.
            if resolved is None:
                resolved = _by_resolved_partner(load_all())
            if ident in resolved:
                item = resolved[ident]
                ident = item.identity
        task = Task(ident, row.values, result, item)
        if item is None or item.state is in_journal:
            add_task(task)
            continue
        state = item.state
        if state in _DONE:
            _done_before(item, result, marks, out.unmarked)
            continue
        _copy(item, result)
        if state is ItemState.FAILED:
            if retry_failed:
                out.tasks.append(task)
            else:
                result.status = Status.FAILED
                result.detail = f"{item.detail} (earlier run; --retry-failed to try again)"
        elif state is ItemState.UNKNOWN or (state is ItemState.IN_FLIGHT and provider == "invoicebox"):
            if resend_unknown:
                out.tasks.append(task)
            else:
                result.status = Status.UNKNOWN
                result.detail = item.detail or "in flight when an earlier run stopped: may have been delivered"
                result.detail += " (--resend-unknown to send again)"
                if state is ItemState.IN_FLIGHT:
                    out.lost.append(ident)
        else:  # edin in flight: the flow reconciles it by looking the partner up
            out.tasks.append(task)
    return out


def _done_before(item: Item, result: RowResult, marks: bool, unmarked: list[tuple[str, int, RowResult | None]]
                 ) -> None:
    """A row whose partner an earlier run sent (or skipped): `skipped`, its mark queued when one is owed."""
    _copy(item, result)
    result.status, result.detail = Status.SKIPPED, done_earlier(item.state)
    if marks and _mark_owed(item.state, item.marked, item.partner_id):
        unmarked.append((item.identity, int(item.partner_id), result))


def _mark_owed(state: str, marked: str, partner_id: str) -> bool:
    # "" too: sent while marking was switched off, and the operator has switched it on since.
    return state == ItemState.SENT and marked in ("", "no", "failed") and bool(partner_id)


def _copy(item: Item, result: RowResult) -> None:
    result.partner_id, result.invitation_id = item.partner_id, item.invitation_id
    result.http_status, result.request_id = item.http_status, item.request_id
    result.attempts, result.marked, result.sent_at = item.attempts, item.marked, item.sent_at


def _by_resolved_partner(items: Mapping[str, Item]) -> dict[str, Item]:
    """EDIN items found by code, keyed as a row naming their resolved partner id would be (SPEC §6)."""
    out: dict[str, Item] = {}
    for ident, item in items.items():
        if item.partner_id and ident.startswith("code:"):
            _, bar, rest = ident.partition("|")
            out[f"pid:{item.partner_id}{bar}{rest}"] = item
    return out
