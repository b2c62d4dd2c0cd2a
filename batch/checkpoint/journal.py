"""The SQLite journal behind resume (SPEC §6): item states and transitions, runs, the run lock.

An item is one partner, keyed by its identity. Its life:

    (new) ──begin──▶ in_flight ──finish──▶ sent | skipped | failed | unknown | pending
                         ▲                            │
                         └────────────begin───────────┘   (retry, reconcile, next step)

`begin` is committed before the mutating request goes out and `finish` after its answer, so a
crash can leave only `in_flight` items, which the next run reconciles. Every commit is durable
(WAL + synchronous=FULL) when the call returns. The schema (files.py) also holds the input snapshot and the
per-line results, which the Journal's typed methods save and read (records.py has what they hand out).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any

from ..clock import SYSTEM, iso_utc
from ..errors import CheckpointError
from ..model import Identity, RowResult, Status, Summary
from .files import (
    APPLICATION_ID,
    ITEM_COLUMNS,
    MARKS,
    SCHEMA,
    SCHEMA_VERSION,
    STEPS,
    RunLock,
    abandon,
    check_version,
    connect,
    migrate,
    sibling,
)
from .records import (
    STATES,
    Item,
    ItemOutcome,
    ItemState,
    JournalStatus,
    ReportRow,
    RunInfo,
    RunRecord,
    SavedRow,
    item_from_row,
)

_saved_row = partial(tuple.__new__, SavedRow)  # a SavedRow without NamedTuple's Python-level __new__


class _Request:
    """One queued single-statement write of the group commit."""

    __slots__ = ("sql", "params", "done", "error")

    def __init__(self, sql: str, params: dict[str, Any]) -> None:
        self.sql, self.params = sql, params
        self.done = False
        self.error: BaseException | None = None


class Journal:
    """The checkpoint of one input: a durable record of every partner's state, shared by worker threads."""

    def __init__(self, path: Path, conn: sqlite3.Connection, lock: RunLock | None,
                 clock: Callable[[], datetime]) -> None:
        self.path = path
        self.readonly = lock is None
        self._conn: sqlite3.Connection | None = conn
        self._lock = lock
        self._clock = clock
        self._mutex = threading.Lock()
        self._run_id: int | None = None
        self._item_columns = ITEM_COLUMNS
        # Group commit of the per-row writes (_write_one): requests queue here; one thread at a time leads.
        self._group = threading.Condition()
        self._queued: list[_Request] = []
        self._leading = False

    # ── opening and closing ─────────────────────────────────────────────────────────────────────
    @classmethod
    def open(cls, path: str | Path, *, clock: Callable[[], datetime] = SYSTEM.now) -> Journal:
        """Open or create the checkpoint for a run, taking its run lock first."""
        path = Path(path)
        lock = RunLock(path)
        conn: sqlite3.Connection | None = None
        try:
            cls._create_private(path)
            conn = connect(path, readonly=False)
            version = check_version(conn, path, readonly=False)
            if version == 0:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(
                    f"BEGIN IMMEDIATE; {SCHEMA} PRAGMA application_id={APPLICATION_ID}; "
                    f"PRAGMA user_version={SCHEMA_VERSION}; COMMIT;")
            elif version is not None:
                migrate(conn, version)
            if conn.execute("PRAGMA journal_mode=WAL").fetchone()[0] != "wal":
                raise CheckpointError(f"{path}: the file system does not support SQLite's WAL mode")
            # FULL fsyncs the WAL at every commit, so an outcome survives power loss, not just a crash:
            # 0.1-0.4 ms a commit on the 2-core CI machine (benchmarks/journal.py). Alone that would allow
            # 800+ rows/s, but taken in turn by 8 workers sharing the GIL it paced whole runs, hence the
            # group commit in _write_one (benchmarks/throughput.py, case d).
            conn.execute("PRAGMA synchronous=FULL")
            for suffix in ("-wal", "-shm"):  # SQLite gives them the database's mode; older files may not
                with suppress(FileNotFoundError):
                    os.chmod(sibling(path, suffix), 0o600)
        except BaseException as e:
            abandon(path, conn, lock, e)
        return cls(path, conn, lock, clock)

    @classmethod
    def open_readonly(cls, path: str | Path) -> Journal:
        """Open an existing checkpoint to read it (status, report, dry run): no lock, no writes."""
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"checkpoint {path} does not exist" if not path.exists()
                                  else f"checkpoint {path} is not a file")
        conn: sqlite3.Connection | None = None
        # Where it may, the connection is opened read-write (and made query-only): a WAL database read through
        # a read-only connection leaves its -wal and -shm files behind, where the last read-write connection to
        # close folds the WAL in and removes both. SQLite's own locks keep that safe beside a running run.
        writable = os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)
        try:
            conn = connect(path, readonly=not writable)
            old = check_version(conn, path, readonly=True)
            conn.execute("PRAGMA query_only=1")
        except BaseException as e:
            abandon(path, conn, None, e)
        journal = cls(path, conn, None, SYSTEM.now)
        if old is not None:  # an older schema, read as it is: the next run migrates it
            journal._item_columns = ITEM_COLUMNS.replace("scope", "'' AS scope")
        return journal

    @staticmethod
    def _create_private(path: Path) -> None:
        """Create the file 0600 before SQLite does (it would use the umask); tighten an existing one."""
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise CheckpointError(f"cannot open checkpoint {path}: {e.strerror}") from e
        try:
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)

    def close(self) -> None:
        """Close the database and release the run lock."""
        with self._mutex:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # ── transactions ────────────────────────────────────────────────────────────────────────────
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One durable transaction; sqlite errors become CheckpointError naming the file."""
        if self.readonly:
            raise CheckpointError(f"checkpoint {self.path} is open read-only")
        with self._mutex:
            conn = self._live()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                finally:
                    if conn.in_transaction:  # the body or the commit failed: leave no transaction open
                        with suppress(sqlite3.Error):
                            conn.execute("ROLLBACK")
            except sqlite3.Error as e:
                raise CheckpointError(f"checkpoint {self.path}: {e}") from e

    def _write_one(self, sql: str, params: dict[str, Any]) -> None:
        """Commit one statement durably, sharing the commit with the other workers' writes (group commit).

        The workers' begin/finish writes are what a run waits on: one fsync each, taken in turn under the
        connection's lock, held 8 workers to ~1,000 commits a second. Here a write is queued; if no thread is
        committing, this one leads and commits everything queued so far in one transaction, then hands over.
        Every caller returns only once a transaction holding its statement is committed (synchronous=FULL),
        so each write stays as durable as when it committed alone.
        """
        if self.readonly:
            raise CheckpointError(f"checkpoint {self.path} is open read-only")
        request = _Request(sql, params)
        with self._group:
            self._queued.append(request)
            while self._leading and not request.done:
                self._group.wait()
            if not request.done:
                self._leading = True
                batch, self._queued = self._queued, []
        if not request.done:
            try:
                self._commit_batch(batch)
            finally:
                with self._group:
                    self._leading = False
                    self._group.notify_all()
        if request.error is not None:
            raise request.error

    def _commit_batch(self, batch: list[_Request]) -> None:
        """Commit the batch in one transaction; when that fails, each statement alone, to fail only its own."""
        try:
            with self._mutex:
                conn = self._live()
                if len(batch) == 1:
                    conn.execute(batch[0].sql, batch[0].params)  # a lone statement commits by itself
                else:
                    try:
                        conn.execute("BEGIN IMMEDIATE")
                        for request in batch:
                            conn.execute(request.sql, request.params)
                        conn.execute("COMMIT")
                    except sqlite3.Error:
                        if conn.in_transaction:
                            with suppress(sqlite3.Error):
                                conn.execute("ROLLBACK")
                        for request in batch:
                            try:
                                conn.execute(request.sql, request.params)
                            except sqlite3.Error as e:
                                request.error = CheckpointError(f"checkpoint {self.path}: {e}")
        except sqlite3.Error as e:
            for request in batch:
                request.error = CheckpointError(f"checkpoint {self.path}: {e}")
        except BaseException as e:  # closed journal, or an interrupt: nobody may wait for ever
            for request in batch:
                request.error = e if isinstance(e, CheckpointError) else CheckpointError(
                    f"checkpoint {self.path}: write interrupted ({type(e).__name__})")
            if not isinstance(e, CheckpointError):
                raise
        finally:
            for request in batch:
                request.done = True

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """One consistent snapshot for several queries."""
        with self._mutex:
            conn = self._live()
            try:
                conn.execute("BEGIN")
                try:
                    yield conn
                finally:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
            except sqlite3.Error as e:
                raise CheckpointError(f"checkpoint {self.path}: {e}") from e

    def _live(self) -> sqlite3.Connection:
        if self._conn is None:
            raise CheckpointError(f"checkpoint {self.path} is closed")
        return self._conn

    def _now(self) -> str:
        return iso_utc(self._clock())

    # ── runs ────────────────────────────────────────────────────────────────────────────────────
    def start_run(self, *, input_path: str, input_sha256: str, config_fingerprint: str, provider: str,
                  action: str, headers: Sequence[str], dry_run: bool = False) -> RunInfo:
        """Record the start of a run; tell whether the last real run was given another input."""
        now = self._now()
        with self.transaction() as conn:
            prev = conn.execute("SELECT input_sha256 FROM runs WHERE dry_run = 0 ORDER BY id DESC LIMIT 1").fetchone()
            cur = conn.execute(
                "INSERT INTO runs (started_at, pid, input_path, input_sha256, config_fingerprint, provider, "
                "action, headers, dry_run) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (now, os.getpid(), input_path, input_sha256, config_fingerprint, provider, action,
                 json.dumps(list(headers), ensure_ascii=False), int(dry_run)))
            run_id = cur.lastrowid
        assert run_id is not None
        self._run_id = run_id
        return RunInfo(run_id=run_id, started_at=now, input_changed=prev is not None and prev[0] != input_sha256)

    def end_run(self, summary: Summary) -> None:
        """Record the run's end and its counts."""
        run_id = self.require_run("end_run")
        with self.transaction() as conn:
            conn.execute("UPDATE runs SET finished_at = ?, counts = ?, stopped = ? WHERE id = ?",
                         (iso_utc(summary.finished), json.dumps(dict(summary.counts)), summary.stopped, run_id))

    def require_run(self, what: str) -> int:
        if self._run_id is None:
            raise CheckpointError(f"checkpoint {self.path}: {what} before start_run")
        return self._run_id

    # ── items ───────────────────────────────────────────────────────────────────────────────────
    def items(self) -> dict[str, Item]:
        """Every item, by identity."""
        with self.reading() as conn:
            rows = conn.execute(f"SELECT {self._item_columns} FROM items").fetchall()
        return {r[0]: item_from_row(r) for r in rows}

    def get(self, identity: str) -> Item | None:
        """One item, or None when this checkpoint has never seen the identity."""
        with self.reading() as conn:
            r = conn.execute(f"SELECT {self._item_columns} FROM items WHERE identity = ?", (identity,)).fetchone()
        return item_from_row(r) if r else None

    def items_of(self, identities: Collection[str]) -> dict[str, Item]:
        """The items of these identities (those the journal has), by identity."""
        with self.reading() as conn:
            rows = conn.execute(f"SELECT {self._item_columns} FROM items WHERE identity IN "
                                "(SELECT value FROM json_each(?))", (json.dumps(list(identities)),)).fetchall()
        return {r[0]: item_from_row(r) for r in rows}

    def begin(self, identity: Identity, *, step: str, partner_id: str = "") -> None:
        """Commit the item as in flight (one more attempt) before its mutating request is sent."""
        if step not in STEPS:
            raise ValueError(f"unknown step {step!r}; expected one of {sorted(STEPS)}")
        self._write_one(
            "INSERT INTO items (identity, scope, state, step, partner_id, attempts, updated_at, run_id) "
            "VALUES (:identity, :scope, 'in_flight', :step, :partner_id, 1, :now, :run) "
            "ON CONFLICT (identity) DO UPDATE SET state = 'in_flight', step = :step, "
            "partner_id = CASE WHEN :partner_id != '' THEN :partner_id ELSE partner_id END, "
            "attempts = attempts + 1, updated_at = :now, run_id = :run",
            {"identity": identity.key, "scope": identity.scope, "step": step, "partner_id": partner_id,
             "now": self._now(), "run": self._run_id})

    def record_partner(self, identity: Identity, partner_id: str) -> None:
        """Commit a newly created partner's id, before it is invited, so it is never created twice."""
        if not partner_id:
            raise ValueError("record_partner needs a partner id")
        self._write_one(
            "INSERT INTO items (identity, scope, state, partner_id, updated_at) "
            "VALUES (:identity, :scope, 'pending', :partner_id, :now) "
            "ON CONFLICT (identity) DO UPDATE SET partner_id = :partner_id, updated_at = :now",
            {"identity": identity.key, "scope": identity.scope, "partner_id": partner_id, "now": self._now()})

    def record_invitation(self, identity: Identity, invitation_id: str) -> None:
        """Commit the id an asynchronous invitation was answered with (Diadoc's TaskId) while its item stays in
        flight, so a crash before the outcome is settled by asking about that id, not by sending again."""
        if not invitation_id:
            raise ValueError("record_invitation needs an invitation id")
        self._write_one("UPDATE items SET invitation_id = :invitation_id, updated_at = :now WHERE identity = :identity",
                        {"identity": identity.key, "invitation_id": invitation_id, "now": self._now()})

    def finish(self, identity: Identity, *, state: ItemState, detail: str = "", partner_id: str = "",
               invitation_id: str = "", http_status: int | None = None, request_id: str = "",
               attempts: int | None = None, sent_at: str = "", marked: str | None = None) -> None:
        """Commit an item's outcome.

        Ids and `sent_at` left empty keep what the item had; `attempts`/`marked` left None keep theirs;
        detail, HTTP status and request id describe this outcome and replace the old ones. A `sent` item
        without any `sent_at` gets the current time.
        """
        state = ItemState(state)
        if state is ItemState.IN_FLIGHT:
            raise ValueError("finish records an outcome; use begin() to mark an item in flight")
        if marked is not None and marked not in MARKS:
            raise ValueError(f"marked must be one of {sorted(MARKS)}, not {marked!r}")
        now = self._now()
        self._write_one(
            "INSERT INTO items (identity, scope, state, step, partner_id, invitation_id, http_status, "
            "request_id, detail, attempts, marked, sent_at, updated_at, run_id) "
            "VALUES (:identity, :scope, :state, '', :partner_id, :invitation_id, :http_status, :request_id, "
            ":detail, coalesce(:attempts, 0), "
            "coalesce(:marked, ''), coalesce(nullif(:sent_at, ''), :sent_default), :now, :run) "
            "ON CONFLICT (identity) DO UPDATE SET state = :state, step = '', "
            "partner_id = coalesce(nullif(:partner_id, ''), partner_id), "
            "invitation_id = coalesce(nullif(:invitation_id, ''), invitation_id), "
            "http_status = :http_status, request_id = :request_id, detail = :detail, "
            "attempts = coalesce(:attempts, attempts), marked = coalesce(:marked, marked), "
            "sent_at = coalesce(nullif(:sent_at, ''), nullif(sent_at, ''), :sent_default), "
            # run_id stays when the state does (a sent item only being marked): `report` tells this
            # run's sends from earlier ones by it.
            "updated_at = :now, run_id = CASE WHEN state = :state THEN run_id ELSE :run END",
            {"identity": identity.key, "scope": identity.scope, "state": state.value, "partner_id": partner_id,
             "invitation_id": invitation_id, "http_status": http_status, "request_id": request_id,
             "detail": detail, "attempts": attempts, "marked": marked, "sent_at": sent_at,
             "sent_default": now if state is ItemState.SENT else "", "now": now, "run": self._run_id})

    def set_marked(self, identities: Sequence[str], marked: str) -> None:
        """Record one status-mark batch's outcome for its items, in one transaction."""
        if marked not in MARKS:
            raise ValueError(f"marked must be one of {sorted(MARKS)}, not {marked!r}")
        now = self._now()
        with self.transaction() as conn:
            conn.executemany("UPDATE items SET marked = ?, updated_at = ? WHERE identity = ?",
                             [(marked, now, i) for i in identities])

    def unmarked(self) -> list[Item]:
        """Sent items whose status mark is still owed (edin: marked on the next run)."""
        with self.reading() as conn:
            rows = conn.execute(f"SELECT {self._item_columns} FROM items WHERE state = 'sent' "
                                "AND marked IN ('no', 'failed') ORDER BY identity").fetchall()
        return [item_from_row(r) for r in rows]

    # ── facts learnt about the provider ─────────────────────────────────────────────────────────
    def fact(self, name: str) -> str | None:
        """A finding kept once per checkpoint (e.g. which call sets EDIN's invitationDate); None before it."""
        with self.reading() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (f"fact:{name}",)).fetchone()
        return None if row is None else str(row[0])

    def set_fact(self, name: str, value: str) -> None:
        with self.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (f"fact:{name}", value))

    # ── the input snapshot and per-line results ─────────────────────────────────────────────────
    def save_rows(self, rows: Sequence[tuple[int, str | None, tuple[str, ...]]], key: str) -> None:
        """Replace the saved input with this run's rows: (line, identity or None if invalid, cells)."""
        run_id = self.require_run("save_rows")
        with self.transaction() as conn:
            conn.execute("DELETE FROM rows")
            conn.execute("DELETE FROM results")
            conn.executemany("INSERT INTO rows (line, identity, cells) VALUES (?, ?, ?)",
                             [(line, ident, json.dumps(list(cells), ensure_ascii=False))
                              for line, ident, cells in rows])
            conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                             [("rows_run", str(run_id)), ("rows_key", key)])

    def keep_rows(self, key: str) -> bool:
        """Make the saved input this run's without rewriting it when it was saved under `key`; False when not."""
        run_id = self.require_run("keep_rows")
        with self.transaction() as conn:
            if not _rows_key_is(conn, key):
                return False
            conn.execute("DELETE FROM results")  # as save_rows: a killed run reports from the items
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('rows_run', ?)", (str(run_id),))
        return True

    def rows_saved_under(self, key: str) -> bool:
        """Whether the saved input was saved under `key` (keep_rows without keeping: for a dry run)."""
        with self.reading() as conn:
            return _rows_key_is(conn, key)

    def saved_rows(self) -> list[SavedRow]:
        """The saved input's lines in order, each with its identity and its item's state and outcome."""
        with self.reading() as conn:
            rows = conn.execute(
                "SELECT r.line, r.identity, i.state, i.partner_id, i.invitation_id, i.marked, i.http_status, "
                "i.attempts, i.request_id, i.sent_at FROM rows r LEFT JOIN items i ON i.identity = r.identity "
                "ORDER BY r.line").fetchall()
        return list(map(_saved_row, rows))  # C-level: a 100k-row resume reads every one

    def record_results(self, results: Sequence[RowResult]) -> None:
        """Record (or update) this run's per-line outcomes."""
        with self.transaction() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO results (line, status, detail, partner_id, invitation_id, marked, "
                "http_status, attempts, request_id, sent_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                # str() of a Status is its value (StrEnum), without Enum's Python-level lookups: 100k rows a run.
                [(r.line, str(r.status), r.detail, r.partner_id, r.invitation_id, r.marked,
                  r.http_status, r.attempts, r.request_id, r.sent_at) for r in results])

    def report_rows(self) -> tuple[list[str], int, list[ReportRow]]:
        """The saved input's headers, the run that saved it, and each line with its recorded result and item."""
        with self.reading() as conn:
            meta = conn.execute("SELECT value FROM meta WHERE key = 'rows_run'").fetchone()
            if meta is None:
                raise CheckpointError(f"checkpoint {self.path} holds no input rows to report yet")
            run_id = int(meta[0])
            headers = json.loads(conn.execute("SELECT headers FROM runs WHERE id = ?", (run_id,)).fetchone()[0])
            rows = conn.execute(
                "SELECT r.line, r.identity, r.cells, s.status, s.detail, s.partner_id, s.invitation_id, "
                "s.marked, s.http_status, s.attempts, s.request_id, s.sent_at, "
                "i.state, i.detail, i.partner_id, i.invitation_id, i.marked, i.http_status, i.attempts, "
                "i.request_id, i.sent_at, i.run_id "
                "FROM rows r LEFT JOIN results s USING (line) LEFT JOIN items i ON i.identity = r.identity "
                "ORDER BY r.line").fetchall()
        out = []
        for r in rows:
            line, cells = r[0], tuple(json.loads(r[2]))
            recorded = None if r[3] is None else RowResult(
                line, cells, Status(r[3]), detail=r[4], partner_id=r[5], invitation_id=r[6], marked=r[7],
                http_status=r[8], attempts=r[9], request_id=r[10], sent_at=r[11])
            item = None if r[12] is None else ItemOutcome(
                state=STATES[r[12]], detail=r[13], partner_id=r[14], invitation_id=r[15], marked=r[16],
                http_status=r[17], attempts=r[18], request_id=r[19], sent_at=r[20], run_id=r[21])
            out.append(ReportRow(line, r[1], cells, recorded, item))
        return headers, run_id, out

    # ── status ──────────────────────────────────────────────────────────────────────────────────
    def status(self) -> JournalStatus:
        """Counts by item state, the facts found, and every run with its start, end and counts."""
        with self.reading() as conn:
            by_state = dict(conn.execute("SELECT state, count(*) FROM items GROUP BY state").fetchall())
            unmarked = conn.execute("SELECT count(*) FROM items WHERE state = 'sent' "
                                    "AND marked IN ('no', 'failed')").fetchone()[0]
            saved_rows = conn.execute("SELECT count(*) FROM rows").fetchone()[0]
            facts = dict(conn.execute("SELECT substr(key, 6), value FROM meta WHERE key LIKE 'fact:%' "
                                      "ORDER BY key").fetchall())
            runs = [RunRecord(id=r[0], started=r[1], finished=r[2], pid=r[3], input_path=r[4], input_sha256=r[5],
                              provider=r[6], action=r[7], dry_run=bool(r[8]),
                              counts=json.loads(r[9]) if r[9] else None, stopped=r[10])
                    for r in conn.execute("SELECT id, started_at, finished_at, pid, input_path, input_sha256, "
                                          "provider, action, dry_run, counts, stopped FROM runs ORDER BY id")]
        return JournalStatus(items={s.value: by_state.get(s.value, 0) for s in ItemState}, unmarked=unmarked,
                       saved_rows=saved_rows, facts=facts, runs=runs)


def _rows_key_is(conn: sqlite3.Connection, key: str) -> bool:
    row = conn.execute("SELECT value FROM meta WHERE key = 'rows_key'").fetchone()
    return row is not None and row[0] == key
