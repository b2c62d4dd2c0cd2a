"""The checkpoint's copy of the input, and the per-line results of the run that saved or kept it.

`report` rebuilds a results file from them without the input file; a resume of the unchanged file takes
the identities from them instead of validating again the rows an earlier run finished (plan.settle).
The tables live in the checkpoint's schema; these functions read and write them through a Journal.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from .checkpoint import IN_FLIGHT_DETAIL, STATES, ItemState, Journal
from .errors import CheckpointError
from .model import RowResult, Status

# A saved input row with its item (saved_rows): line, identity (None: the row was invalid), the item's state
# (None: no item yet), then partner_id, invitation_id, marked, http_status, attempts, request_id, sent_at.
SavedRow = tuple[int, str | None, str | None, str, str, str, int | None, int, str, str]

_STATUS_OF = {ItemState.PENDING: Status.PENDING, ItemState.SENT: Status.SENT,
              ItemState.SKIPPED: Status.SKIPPED, ItemState.FAILED: Status.FAILED,
              ItemState.UNKNOWN: Status.UNKNOWN}


def done_earlier(state: str) -> str:
    """The detail of a row skipped because an earlier run sent (or skipped) its partner; when is in `sent_at`."""
    return f"{state} in an earlier run"


def save_rows(journal: Journal, rows: Sequence[tuple[int, str | None, tuple[str, ...]]], key: str) -> None:
    """Replace the saved input with this run's rows: (line, identity or None if invalid, cells).

    `key` names the input and the settings it was read and validated with (runner.snapshot_key):
    a later run with the same key may keep the snapshot and trust its identities.
    """
    run_id = journal.require_run("save_rows")
    with journal.transaction() as conn:
        conn.execute("DELETE FROM rows")
        conn.execute("DELETE FROM results")
        conn.executemany("INSERT INTO rows (line, identity, cells) VALUES (?, ?, ?)",
                         [(line, ident, json.dumps(list(cells), ensure_ascii=False)) for line, ident, cells in rows])
        conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                         [("rows_run", str(run_id)), ("rows_key", key)])


def keep_rows(journal: Journal, key: str) -> bool:
    """Make the saved input this run's without rewriting it when it was saved under the same key (a resume of
    the same file with the same settings); False when it must be saved with save_rows."""
    run_id = journal.require_run("keep_rows")
    with journal.transaction() as conn:
        if not _rows_key_is(conn, key):
            return False
        conn.execute("DELETE FROM results")  # as save_rows: a killed run reports from the items
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('rows_run', ?)", (str(run_id),))
    return True


def rows_match(journal: Journal, key: str) -> bool:
    """Whether the saved input was saved under `key` (keep_rows without keeping: for a dry run)."""
    with journal.reading() as conn:
        return _rows_key_is(conn, key)


def _rows_key_is(conn: sqlite3.Connection, key: str) -> bool:
    row = conn.execute("SELECT value FROM meta WHERE key = 'rows_key'").fetchone()
    return row is not None and row[0] == key


def saved_rows(journal: Journal) -> list[SavedRow]:
    """The saved input's lines in order, each with its identity and its item's state and outcome (SavedRow)."""
    with journal.reading() as conn:
        # Only what a results line needs, in RowResult's order: a 100k-row resume reads every one of them.
        return conn.execute(
            "SELECT r.line, r.identity, i.state, i.partner_id, i.invitation_id, i.marked, i.http_status, "
            "i.attempts, i.request_id, i.sent_at FROM rows r LEFT JOIN items i ON i.identity = r.identity "
            "ORDER BY r.line").fetchall()


def record_results(journal: Journal, results: Sequence[RowResult]) -> None:
    """Record (or update) this run's per-line outcomes."""
    with journal.transaction() as conn:
        conn.executemany(
            "INSERT OR REPLACE INTO results (line, status, detail, partner_id, invitation_id, marked, "
            "http_status, attempts, request_id, sent_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            # str() of a Status is its value (StrEnum), without Enum's Python-level lookups: 100k rows a run.
            [(r.line, str(r.status), r.detail, r.partner_id, r.invitation_id, r.marked,
              r.http_status, r.attempts, r.request_id, r.sent_at) for r in results])


def report_rows(journal: Journal) -> tuple[list[str], list[RowResult]]:
    """The saved input's headers and one result per row, recorded statuses overlaid with item states.

    A row whose recorded status is missing or `pending` takes its item's current state (a run killed
    with -9 after some sends still reports them); an item still in flight reports `unknown`.
    """
    with journal.reading() as conn:
        meta = conn.execute("SELECT value FROM meta WHERE key = 'rows_run'").fetchone()
        if meta is None:
            raise CheckpointError(f"checkpoint {journal.path} holds no input rows to report yet")
        run_id = int(meta[0])
        headers = json.loads(conn.execute("SELECT headers FROM runs WHERE id = ?", (run_id,)).fetchone()[0])
        rows = conn.execute(
            "SELECT r.line, r.identity, r.cells, s.status, s.detail, s.partner_id, s.invitation_id, "
            "s.marked, s.http_status, s.attempts, s.request_id, s.sent_at, "
            "i.state, i.detail, i.partner_id, i.invitation_id, i.marked, i.http_status, i.attempts, "
            "i.request_id, i.sent_at, i.run_id "
            "FROM rows r LEFT JOIN results s USING (line) LEFT JOIN items i ON i.identity = r.identity "
            "ORDER BY r.line").fetchall()
    first_line: dict[str, int] = {}
    out = []
    for row in rows:
        line, identity, cells = row[0], row[1], tuple(json.loads(row[2]))
        recorded = None if row[3] is None else RowResult(line, cells, Status(row[3]), *row[4:12])
        repeat = identity is not None and identity in first_line
        if identity is not None:
            first_line.setdefault(identity, line)
        if repeat and (recorded is None or recorded.status is Status.DUPLICATE):
            out.append(recorded or RowResult(line, cells, Status.DUPLICATE,
                                             f"same partner as row {first_line[identity]}"))
        elif row[12] is None:  # no item: invalid, or never attempted
            out.append(recorded or RowResult(line, cells, Status.INVALID if identity is None else Status.PENDING))
        else:
            out.append(_overlay(line, cells, recorded, row[12:], run_id))
    return headers, out


def _overlay(line: int, cells: tuple[str, ...], recorded: RowResult | None, item: Sequence[Any],
             rows_run: int) -> RowResult:
    state = STATES[item[0]]
    detail, partner_id, invitation_id, marked, http_status, attempts, request_id, sent_at, run = item[1:]
    if state is ItemState.IN_FLIGHT:
        status, detail = Status.UNKNOWN, IN_FLIGHT_DETAIL
    elif recorded is not None and recorded.status is not Status.PENDING:
        if marked:  # marks may be recorded after the results
            recorded.marked = marked
        return recorded
    elif state in (ItemState.SENT, ItemState.SKIPPED) and run != rows_run:
        # As plan() put it: the run records no result for such a row (runner: settled rows).
        status, detail = Status.SKIPPED, done_earlier(state)
    else:
        status = _STATUS_OF[state]
    return RowResult(line, cells, status, detail, partner_id, invitation_id, marked, http_status,
                     attempts, request_id, sent_at)
