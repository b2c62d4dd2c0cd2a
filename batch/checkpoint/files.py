"""The checkpoint's files: the schema and its migrations, the run lock, connections, setting a checkpoint aside."""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Callable
from contextlib import suppress
from datetime import datetime
from pathlib import Path
from typing import NoReturn

from ..clock import SYSTEM, iso_utc
from ..errors import CheckpointError, CheckpointLockedError

SCHEMA_VERSION = 2  # 2: items.scope
APPLICATION_ID = 0x49424350  # "IBCP": tells our checkpoints from any other SQLite file
IN_FLIGHT_DETAIL = "in flight when the run stopped"
STEPS = frozenset({"create", "invite", "mark"})
MARKS = frozenset({"", "yes", "no", "failed"})

SCHEMA = """
CREATE TABLE items (
    identity      TEXT PRIMARY KEY,
    state         TEXT NOT NULL,
    step          TEXT NOT NULL DEFAULT '',
    partner_id    TEXT NOT NULL DEFAULT '',
    invitation_id TEXT NOT NULL DEFAULT '',
    http_status   INTEGER,
    request_id    TEXT NOT NULL DEFAULT '',
    detail        TEXT NOT NULL DEFAULT '',
    attempts      INTEGER NOT NULL DEFAULT 0,
    marked        TEXT NOT NULL DEFAULT '',
    sent_at       TEXT NOT NULL DEFAULT '',
    updated_at    TEXT NOT NULL,
    run_id        INTEGER,             -- the run whose begin/finish last changed the state
    scope         TEXT NOT NULL DEFAULT ''  -- the identity's scope (model.Identity)
) WITHOUT ROWID;
CREATE TABLE runs (
    id                 INTEGER PRIMARY KEY,
    started_at         TEXT NOT NULL,
    finished_at        TEXT,           -- NULL: the run never ended (killed, or still running)
    pid                INTEGER NOT NULL,
    input_path         TEXT NOT NULL,
    input_sha256       TEXT NOT NULL,
    config_fingerprint TEXT NOT NULL,
    provider           TEXT NOT NULL,
    action             TEXT NOT NULL,
    headers            TEXT NOT NULL,  -- JSON list
    dry_run            INTEGER NOT NULL,
    counts             TEXT,           -- JSON object, from end_run
    stopped            TEXT NOT NULL DEFAULT ''
);
CREATE TABLE rows (                    -- the last run's input, so `report` needs no input file (Journal.save_rows)
    line     INTEGER PRIMARY KEY,
    identity TEXT,                     -- NULL: the row was invalid
    cells    TEXT NOT NULL             -- JSON list
);
CREATE TABLE results (                 -- per-line outcome the last run recorded (plan.settle's rows left out)
    line          INTEGER PRIMARY KEY,
    status        TEXT NOT NULL,
    detail        TEXT NOT NULL,
    partner_id    TEXT NOT NULL,
    invitation_id TEXT NOT NULL,
    marked        TEXT NOT NULL,
    http_status   INTEGER,
    attempts      INTEGER NOT NULL,
    request_id    TEXT NOT NULL,
    sent_at       TEXT NOT NULL
);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);  -- rows_run, rows_key: whose snapshot `rows` is
"""

ITEM_COLUMNS = ("identity, state, step, partner_id, invitation_id, http_status, request_id, detail, "
                 "attempts, marked, sent_at, updated_at, scope")
# Schema 1 kept the scope only inside the identity's text (`code:…|tpl:…`): it is split out once, here.
MIGRATIONS = {1: "ALTER TABLE items ADD COLUMN scope TEXT NOT NULL DEFAULT ''; "
                  "UPDATE items SET scope = substr(identity, instr(identity, '|') + 1) WHERE instr(identity, '|') > 0;"}


class RunLock:
    """An exclusive flock on `<checkpoint>.lock` holding the owner's pid.

    Hand-written rather than `filelock`: filelock truncates the file when it opens it, which would wipe
    the holder's pid before a second run could read it for its message. The kernel drops a flock when
    its process dies, so a lock file left by a killed run never blocks. The file itself is never removed
    (removing it would let two processes lock two different inodes of the same name).
    """

    def __init__(self, checkpoint: Path) -> None:
        self.path = checkpoint.with_name(checkpoint.name + ".lock")
        try:
            self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise CheckpointError(f"cannot create the lock file {self.path}: {e.strerror}") from e
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 32, 0).decode("ascii", "replace").strip()
            os.close(self._fd)
            who = f"pid {holder}" if holder.isdigit() else "another process"
            raise CheckpointLockedError(
                f"checkpoint {checkpoint} is held by {who}: another run is using it; "
                "wait for it to finish or stop it") from None
        except OSError as e:
            os.close(self._fd)
            raise CheckpointError(f"cannot lock {self.path}: {e.strerror}") from e
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None


def sibling(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    uri = f"{path.resolve().as_uri()}?mode={'ro' if readonly else 'rw'}"
    # autocommit mode: transactions are opened explicitly below; one connection is shared by the
    # worker threads under Journal._mutex.
    return sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False, timeout=10.0)


def check_version(conn: sqlite3.Connection, path: Path, *, readonly: bool) -> int | None:
    """The file's schema version (0: a new file that still needs its schema; None: this version's); raises
    when it is not a checkpoint this version reads."""
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if app_id == 0 and version == 0:
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if tables == 0 and not readonly:
            return 0
        raise CheckpointError(f"{path} is not an invite-batch checkpoint")
    if app_id != APPLICATION_ID:
        raise CheckpointError(f"{path} is not an invite-batch checkpoint")
    if version > SCHEMA_VERSION:
        raise CheckpointError(f"{path} was written by a newer invite-batch (checkpoint schema {version}; "
                              f"this one reads schema {SCHEMA_VERSION}): upgrade, or start over with --fresh")
    if version != SCHEMA_VERSION and version not in MIGRATIONS:
        raise CheckpointError(f"{path} has an unknown checkpoint schema ({version})")
    return None if version == SCHEMA_VERSION else int(version)


def migrate(conn: sqlite3.Connection, version: int) -> None:
    """Bring an older checkpoint up to this version's schema, one step at a time, in one transaction."""
    script = "".join(MIGRATIONS[v] for v in range(version, SCHEMA_VERSION))
    conn.executescript(f"BEGIN IMMEDIATE; {script} PRAGMA user_version={SCHEMA_VERSION}; COMMIT;")


def abandon(path: Path, conn: sqlite3.Connection | None, lock: RunLock | None, error: BaseException) -> NoReturn:
    """Undo a half-done open (close, release the lock) and re-raise, naming the file for SQLite's errors."""
    if conn is not None:
        conn.close()
    if lock is not None:
        lock.release()
    if isinstance(error, sqlite3.Error):
        raise CheckpointError(f"{path} is not a usable checkpoint: {error}") from error
    raise error


def set_aside(path: str | Path, *, clock: Callable[[], datetime] = SYSTEM.now) -> Path | None:
    """Rename the checkpoint to `<name>.<UTC timestamp>.sqlite` for --fresh; None when there is none."""
    path = Path(path)
    if not path.exists():
        return None
    lock = RunLock(path)  # refuses while another run holds it
    try:
        _fold_wal(path)
        stem = path.stem if path.suffix == ".sqlite" else path.name
        stamp = iso_utc(clock()).replace("-", "").replace(":", "")
        target = path.with_name(f"{stem}.{stamp}.sqlite")
        n = 1
        while target.exists():
            n += 1
            target = path.with_name(f"{stem}.{stamp}-{n}.sqlite")
        try:
            # A WAL that could not be folded in moves first: left behind, it would be replayed into the
            # new checkpoint created under the old name.
            for suffix in ("-wal", "-shm"):
                if sibling(path, suffix).exists():
                    os.rename(sibling(path, suffix), sibling(target, suffix))
            os.rename(path, target)
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as e:
            raise CheckpointError(f"cannot set aside checkpoint {path}: {e.strerror}") from e
    finally:
        lock.release()
    return target


def _fold_wal(path: Path) -> None:
    """Checkpoint a leftover WAL into the database so the file moves alone (best effort)."""
    if not sibling(path, "-wal").exists():
        return
    with suppress(sqlite3.Error):
        conn = connect(path, readonly=False)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()  # the last connection's close removes -wal and -shm
