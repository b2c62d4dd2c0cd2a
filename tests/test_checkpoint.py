"""The checkpoint journal: transitions, durability across kill -9, the run lock, set_aside, report and status."""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support import FakeClock

from batch.checkpoint import (
    IN_FLIGHT_DETAIL,
    SCHEMA_VERSION,
    ItemState,
    Journal,
    set_aside,
)
from batch.errors import CheckpointError, CheckpointLockedError
from batch.model import RowResult, Status, Summary
from batch.providers.base import Identity
from batch.report import report_results

T0 = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)
HEADERS = ["code", "name"]
Now = Callable[[], datetime]  # the journal's clock


def report(journal: Journal) -> tuple[list[str], list[RowResult]]:
    """What `report` writes: the saved headers and one result per saved line."""
    headers, rows_run, rows = journal.report_rows()
    return headers, report_results(rows, rows_run)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "partners.checkpoint.sqlite"


@pytest.fixture
def clock() -> Now:
    """The journal's clock: one second on per reading, so every stamp differs."""
    return FakeClock(T0, tick=1.0).now


@pytest.fixture
def journal(path: Path, clock: Now) -> Iterator[Journal]:
    with Journal.open(path, clock=clock) as j:
        start(j)
        yield j


def start(j: Journal, sha: str = "a" * 64, *, dry_run: bool = False) -> None:
    j.start_run(input_path="partners.csv", input_sha256=sha, config_fingerprint="cfg", provider="edin",
                action="invite", headers=HEADERS, dry_run=dry_run)


def run_python(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# ── transitions ─────────────────────────────────────────────────────────────────────────────────

def test_begin_creates_an_in_flight_item_and_counts_attempts(journal: Journal) -> None:
    assert journal.get("p1") is None
    journal.begin(Identity("p1"), step="create")
    item = journal.get("p1")
    assert item is not None
    assert (item.state, item.step, item.attempts, item.partner_id) == (ItemState.IN_FLIGHT, "create", 1, "")
    assert item.updated_at == "2024-05-01T10:00:02Z"  # start_run read the clock once
    journal.begin(Identity("p1"), step="invite", partner_id="42")
    item = journal.get("p1")
    assert item is not None
    assert (item.step, item.attempts, item.partner_id) == ("invite", 2, "42")
    journal.begin(Identity("p1"), step="invite")  # no partner id given: the known one stays
    item = journal.get("p1")
    assert item is not None
    assert (item.attempts, item.partner_id) == (3, "42")


def test_record_partner_keeps_the_state_and_commits_the_id(journal: Journal) -> None:
    journal.begin(Identity("p1"), step="create")
    journal.record_partner(Identity("p1"), "777")
    item = journal.get("p1")
    assert item is not None
    assert (item.state, item.step, item.partner_id, item.attempts) == (ItemState.IN_FLIGHT, "create", "777", 1)
    journal.record_partner(Identity("new"), "888")
    item = journal.get("new")
    assert item is not None
    assert (item.state, item.partner_id, item.attempts) == (ItemState.PENDING, "888", 0)
    with pytest.raises(ValueError, match="partner id"):
        journal.record_partner(Identity("p1"), "")


@pytest.mark.parametrize("state", [ItemState.SENT, ItemState.SKIPPED, ItemState.FAILED, ItemState.UNKNOWN,
                                   ItemState.PENDING], ids=lambda s: s.value)
def test_finish_records_the_outcome_from_in_flight(journal: Journal, state: ItemState) -> None:
    journal.begin(Identity("p1"), step="invite", partner_id="42")
    journal.finish(Identity("p1"), state=state, detail="why", invitation_id="inv-1", http_status=201,
                   request_id="req-1")
    item = journal.get("p1")
    assert item is not None
    assert (item.state, item.step, item.detail, item.partner_id, item.invitation_id, item.http_status,
            item.request_id, item.attempts) == (state, "", "why", "42", "inv-1", 201, "req-1", 1)
    # Only a sent item gets a sent_at of its own.
    assert item.sent_at == ("2024-05-01T10:00:03Z" if state is ItemState.SENT else "")


def test_finish_keeps_ids_and_sent_at_but_replaces_the_outcome(journal: Journal) -> None:
    journal.begin(Identity("p1"), step="invite")
    journal.finish(Identity("p1"), state=ItemState.FAILED, partner_id="42", invitation_id="inv-1", http_status=500,
                   request_id="req-1", detail="server error")
    journal.begin(Identity("p1"), step="invite")
    journal.finish(Identity("p1"), state=ItemState.SENT, sent_at="2024-01-01T00:00:00Z")
    journal.finish(Identity("p1"), state=ItemState.SENT, attempts=9, marked="yes")
    item = journal.get("p1")
    assert item is not None
    assert (item.partner_id, item.invitation_id) == ("42", "inv-1")
    assert (item.http_status, item.request_id, item.detail) == (None, "", "")
    assert item.sent_at == "2024-01-01T00:00:00Z"
    assert (item.attempts, item.marked) == (9, "yes")


def test_finish_without_begin_creates_the_item(journal: Journal) -> None:
    journal.finish(Identity("p9"), state=ItemState.SKIPPED, partner_id="9", detail="already invited")
    item = journal.get("p9")
    assert item is not None
    assert (item.state, item.attempts, item.marked, item.partner_id) == (ItemState.SKIPPED, 0, "", "9")


@pytest.mark.parametrize("call", [
    lambda j: j.begin(Identity("p"), step="lookup"),
    lambda j: j.finish(Identity("p"), state=ItemState.IN_FLIGHT),
    lambda j: j.finish(Identity("p"), state=ItemState.SENT, marked="maybe"),
    lambda j: j.set_marked(["p"], "perhaps"),
], ids=["unknown-step", "finish-in-flight", "finish-bad-mark", "set-bad-mark"])
def test_bad_arguments_are_refused(journal: Journal, call: Callable[[Journal], None]) -> None:
    with pytest.raises(ValueError):
        call(journal)
    assert journal.get("p") is None


def test_marks_are_owed_until_set(journal: Journal) -> None:
    for ident in ("a", "b", "c"):
        journal.begin(Identity(ident), step="invite")
        journal.finish(Identity(ident), state=ItemState.SENT, marked="no")
    journal.finish(Identity("d"), state=ItemState.FAILED, marked="no")  # not sent: no mark owed
    journal.finish(Identity("e"), state=ItemState.SENT)  # invoicebox: no marks at all
    assert [i.identity for i in journal.unmarked()] == ["a", "b", "c"]
    journal.set_marked(["a", "b", "ghost"], "yes")
    assert [i.identity for i in journal.unmarked()] == ["c"]
    journal.set_marked(["c"], "failed")
    assert [(i.identity, i.marked) for i in journal.unmarked()] == [("c", "failed")]
    assert journal.get("ghost") is None
    journal.finish(Identity("c"), state=ItemState.SENT, marked="yes")
    assert journal.unmarked() == []


def test_concurrent_workers_lose_no_commit(journal: Journal) -> None:
    def work(worker: int) -> None:
        for n in range(50):
            ident = f"{worker}-{n}"
            journal.begin(Identity(ident), step="invite")
            journal.finish(Identity(ident), state=ItemState.SENT if n % 2 else ItemState.FAILED)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    items = journal.items()
    assert len(items) == 200
    assert Counter(i.state for i in items.values()) == {ItemState.SENT: 100, ItemState.FAILED: 100}
    assert {i.attempts for i in items.values()} == {1}


# ── persistence, read-only, versions, corruption, file mode ─────────────────────────────────────

def test_commits_are_durable_on_power_loss(journal: Journal) -> None:
    conn = journal._conn
    assert conn is not None
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_a_failed_write_leaves_no_transaction_open(journal: Journal) -> None:
    journal.begin(Identity("p1"), step="invite")
    with pytest.raises(CheckpointError, match=r"partners\.checkpoint\.sqlite"):
        journal.record_results([RowResult(2, (), Status.SENT),
                                RowResult(3, (), Status.SENT, detail=None)])  # type: ignore[arg-type]
    assert journal._conn is not None
    assert journal._conn.execute("SELECT count(*) FROM results").fetchone()[0] == 0  # rolled back whole
    journal.finish(Identity("p1"), state=ItemState.SENT)  # the journal still works
    item = journal.get("p1")
    assert item is not None and item.state is ItemState.SENT


def test_everything_survives_a_reopen(path: Path, clock: Now) -> None:
    with Journal.open(path, clock=clock) as j:
        start(j)
        j.begin(Identity("p1"), step="invite", partner_id="1")
        j.finish(Identity("p1"), state=ItemState.SENT, invitation_id="i1", http_status=200, marked="no")
        j.begin(Identity("p2"), step="create")
        before = j.items()
    with Journal.open(path, clock=clock) as j:
        assert j.items() == before
        assert j.get("p2") == before["p2"]
        assert [i.identity for i in j.unmarked()] == ["p1"]


def test_readonly_reads_but_never_writes(journal: Journal, path: Path) -> None:
    journal.begin(Identity("p1"), step="invite")
    with Journal.open_readonly(path) as ro:  # no lock: the writer holds it
        assert ro.get("p1") == journal.get("p1")
        assert ro.status().runs[-1].input_sha256 == "a" * 64
        writes: list[Callable[[], None]] = [lambda: ro.begin(Identity("p2"), step="invite"),
                                            lambda: ro.finish(Identity("p1"), state=ItemState.SENT), lambda: start(ro)]
        for write in writes:
            with pytest.raises(CheckpointError, match="read-only"):
                write()
    assert journal.get("p2") is None


def test_reading_a_closed_checkpoint_leaves_no_wal_files_and_spares_a_live_one(path: Path) -> None:
    with Journal.open(path) as j:
        start(j)
        j.begin(Identity("p1"), step="invite")
    assert not Path(f"{path}-wal").exists()
    with Journal.open_readonly(path) as ro:  # status, report, a dry run
        assert ro.status().items_total == 1
        with pytest.raises(CheckpointError, match="readonly"), ro.reading() as conn:  # query_only: no writes
            conn.execute("DELETE FROM items")
    assert not Path(f"{path}-wal").exists() and not Path(f"{path}-shm").exists()

    with Journal.open(path) as live:  # a run is going on: a reader closing must not take its WAL away
        live.finish(Identity("p1"), state=ItemState.SENT)
        with Journal.open_readonly(path) as ro:
            assert ro.get("p1").state is ItemState.SENT  # type: ignore[union-attr]
        assert Path(f"{path}-wal").exists()
        live.begin(Identity("p2"), step="invite")
    with Journal.open_readonly(path) as ro:
        assert {i.identity for i in ro.items().values()} == {"p1", "p2"}


def test_a_checkpoint_that_may_not_be_written_is_still_read(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Journal.open(path) as j:
        start(j)
        j.begin(Identity("p1"), step="invite")
    monkeypatch.setattr(os, "access", lambda *a, **k: False)  # another user's file, a read-only share
    with Journal.open_readonly(path) as ro:
        assert ro.get("p1") is not None


def test_readonly_of_a_missing_file_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.sqlite"
    with pytest.raises(CheckpointError, match="nope.sqlite") as exc:
        Journal.open_readonly(missing)
    assert exc.value.exit_code == 2
    assert not missing.exists()


def test_a_newer_schema_is_refused(path: Path) -> None:
    Journal.open(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    for opener in (Journal.open, Journal.open_readonly):
        with pytest.raises(CheckpointError, match="newer") as exc:
            opener(path)
        assert not isinstance(exc.value, CheckpointLockedError)
    with pytest.raises(CheckpointError, match="newer"):  # the refused open released its lock
        Journal.open(path)


@pytest.mark.parametrize("content", [b"This is not a database, just text.\n" * 200,
                                     b"SQLite format 3\x00" + b"\xff" * 4000],
                         ids=["text", "mangled-header"])
def test_a_non_sqlite_file_is_refused_naming_it(path: Path, content: bytes) -> None:
    path.write_bytes(content)
    for opener in (Journal.open, Journal.open_readonly):
        with pytest.raises(CheckpointError, match=str(path.name)):
            opener(path)
    assert path.read_bytes() == content


def test_another_programs_sqlite_file_is_refused(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER)")
    conn.close()
    for opener in (Journal.open, Journal.open_readonly):
        with pytest.raises(CheckpointError, match="not an invite-batch checkpoint"):
            opener(path)


def test_damage_inside_the_file_surfaces_as_checkpoint_error(path: Path) -> None:
    with Journal.open(path) as j:
        start(j)
        j.save_rows([(n, f"p{n}", ("x" * 200, "y")) for n in range(2, 500)], "k")
    data = bytearray(path.read_bytes())
    page = 4096
    data[3 * page:len(data)] = b"\xa5" * (len(data) - 3 * page)  # every page past the third
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=path.name), Journal.open(path) as j:
        report(j)


def test_files_are_private(path: Path) -> None:
    old = os.umask(0o022)
    try:
        path.touch(mode=0o644)
        with Journal.open(path) as j:
            start(j)
            j.begin(Identity("p1"), step="invite")
            wal = Path(f"{path}-wal")
            assert wal.exists()
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            assert stat.S_IMODE(wal.stat().st_mode) == 0o600
            assert stat.S_IMODE(Path(f"{path}.lock").stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_a_directory_is_not_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="cannot open checkpoint"):
        Journal.open(tmp_path)


def test_a_closed_journal_says_so(path: Path) -> None:
    j = Journal.open(path)
    j.close()
    j.close()  # twice is harmless
    with pytest.raises(CheckpointError, match="closed"):
        j.items()


# ── the run lock ────────────────────────────────────────────────────────────────────────────────

HOLD = """
    import sys
    from batch.checkpoint import Journal
    j = Journal.open(sys.argv[1])
    print("holding", flush=True)
    sys.stdin.readline()
    j.close()
    print("released", flush=True)
    sys.stdin.readline()
"""


def test_a_second_run_is_refused_naming_the_holders_pid(path: Path) -> None:
    holder = run_python(HOLD, str(path))
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(CheckpointLockedError, match=f"held by pid {holder.pid}") as exc:
            Journal.open(path)
        assert exc.value.exit_code == 4
        with pytest.raises(CheckpointLockedError, match=f"pid {holder.pid}"):
            set_aside(path)
        with Journal.open_readonly(path) as ro:  # reading does not need the lock
            assert ro.items() == {}
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "released"
        with Journal.open(path) as j:  # the holder is still alive, but has closed its journal
            assert j.items() == {}
        assert Path(f"{path}.lock").read_text().strip() == str(os.getpid())
    finally:
        holder.kill()
        holder.communicate()


def test_the_lock_is_exclusive_within_one_process_too(path: Path) -> None:
    with Journal.open(path), pytest.raises(CheckpointLockedError, match=f"held by pid {os.getpid()}"):
        Journal.open(path)
    Journal.open(path).close()  # released on close


def test_a_stale_lock_file_does_not_block(path: Path) -> None:
    Path(f"{path}.lock").write_text("999999\n")  # left by a run that died
    with Journal.open(path) as j:
        start(j)
    assert Path(f"{path}.lock").read_text().strip() == str(os.getpid())


CRASH = """
    import os, signal, sys
    from batch.providers.base import Identity
    from batch.checkpoint import ItemState, Journal
    j = Journal.open(sys.argv[1])
    j.start_run(input_path="in.csv", input_sha256="s", config_fingerprint="c", provider="invoicebox",
                action="invite", headers=["email"])
    j.save_rows([(2, "done", ("a@x.io",)), (3, "flying", ("b@x.io",))], "k")
    j.begin(Identity("done"), step="invite")
    j.finish(Identity("done"), state=ItemState.SENT, invitation_id="i-1", http_status=200)
    j.begin(Identity("flying"), step="invite")
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_kill_9_leaves_the_in_flight_item_and_a_free_lock(path: Path) -> None:
    proc = run_python(CRASH, str(path))
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert Path(f"{path}-wal").exists()  # nothing was checkpointed: the WAL holds the commits
    with Journal.open(path) as j:
        flying = j.get("flying")
        assert flying is not None
        assert (flying.state, flying.attempts, flying.step) == (ItemState.IN_FLIGHT, 1, "invite")
        done = j.get("done")
        assert done is not None and done.state is ItemState.SENT
        headers, results = report(j)
    assert headers == ["email"]
    assert [(r.status, r.detail) for r in results] == [
        (Status.SENT, ""), (Status.UNKNOWN, IN_FLIGHT_DETAIL)]


# ── set_aside (--fresh) ─────────────────────────────────────────────────────────────────────────

def test_set_aside_renames_with_a_timestamp(path: Path, clock: Now) -> None:
    assert set_aside(path, clock=clock) is None
    with Journal.open(path) as j:
        start(j)
        j.finish(Identity("p1"), state=ItemState.SENT)
    aside = set_aside(path, clock=lambda: T0)
    assert aside == path.with_name("partners.checkpoint.20240501T100000Z.sqlite")
    assert not path.exists() and not Path(f"{path}-wal").exists()
    again = Journal.open(path)  # a fresh, empty checkpoint under the old name
    assert again.items() == {}
    again.close()
    second = set_aside(path, clock=lambda: T0)  # the same second: no overwrite
    assert second == path.with_name("partners.checkpoint.20240501T100000Z-2.sqlite")
    with Journal.open_readonly(aside) as old:
        assert list(old.items()) == ["p1"]


def test_set_aside_keeps_what_a_killed_run_left_in_the_wal(path: Path) -> None:
    proc = run_python(CRASH, str(path))
    proc.communicate(timeout=30)
    aside = set_aside(path)
    assert aside is not None and not path.exists()
    assert not Path(f"{path}-wal").exists()
    with Journal.open_readonly(aside) as old:
        assert {k: v.state for k, v in old.items().items()} == {
            "done": ItemState.SENT, "flying": ItemState.IN_FLIGHT}


# ── runs, report and status ─────────────────────────────────────────────────────────────────────

def test_start_run_tells_whether_the_input_changed_since_the_last_real_run(path: Path, clock: Now) -> None:
    with Journal.open(path, clock=clock) as j:
        first = j.start_run(input_path="a.csv", input_sha256="s1", config_fingerprint="c1", provider="edin",
                            action="invite", headers=HEADERS)
        assert (first.run_id, first.input_changed) == (1, False)
    with Journal.open(path, clock=clock) as j:  # the first run never ended
        assert not j.start_run(input_path="a.csv", input_sha256="s1", config_fingerprint="c2", provider="edin",
                               action="invite", headers=HEADERS).input_changed
        start(j, "dry", dry_run=True)
    with Journal.open(path, clock=clock) as j:
        info = j.start_run(input_path="b.csv", input_sha256="s2", config_fingerprint="c2", provider="edin",
                           action="invite", headers=HEADERS)
        assert info.input_changed  # against the last real run's s1: the dry run does not count
        assert info.run_id == 4


def test_keep_rows_reuses_the_snapshot_of_the_same_input_and_settings(path: Path) -> None:
    with Journal.open(path) as j:
        start(j)
        assert not j.keep_rows("k")  # nothing saved yet
        j.save_rows([(2, "p1", ("1", "a"))], "k")
        j.record_results([RowResult(2, ("1", "a"), Status.FAILED, "refused")])
    with Journal.open(path) as j:
        start(j)  # the same input and settings: the saved rows are this run's too
        assert not j.keep_rows("other settings")
        assert j.keep_rows("k")
        assert j.rows_saved_under("k") and not j.rows_saved_under("other")
        _, results = report(j)
        assert [(r.line, r.cells, r.status) for r in results] == [(2, ("1", "a"), Status.PENDING)]
        assert j.status().runs[-1].id == 2 and j.status().saved_rows == 1
    with Journal.open(path) as j:
        start(j, "c" * 64)  # another input (the runner's key names it): it must be saved anew
        assert not j.keep_rows("another key")


def test_save_rows_needs_a_run_and_replaces_the_snapshot(path: Path) -> None:
    with Journal.open(path) as j:
        with pytest.raises(CheckpointError, match="start_run"):
            j.save_rows([(2, "p1", ("1", "a"))], "k")
        with pytest.raises(CheckpointError, match="no input rows"):
            report(j)
        start(j)
        j.save_rows([(2, "p1", ("1", "a")), (3, "p2", ("2", "b"))], "k")
        j.record_results([RowResult(2, ("1", "a"), Status.FAILED, "refused")])
        j.save_rows([(2, "p2", ("2", "b"))], "k")
        _, results = report(j)
    assert [(r.line, r.cells, r.status) for r in results] == [(2, ("2", "b"), Status.PENDING)]


def test_report_overlays_item_states_on_recorded_results(path: Path, clock: Now) -> None:
    with Journal.open(path, clock=clock) as j:  # an earlier run sent p-old
        start(j)
        j.finish(Identity("p-old"), state=ItemState.SENT, invitation_id="i0", marked="yes")
    with Journal.open(path, clock=clock) as j:
        start(j, "b" * 64)
        j.save_rows([
            (2, "p-old", ("1", "old")),
            (3, None, ("", "bad")),
            (4, "p-sent", ("2", "sent")),
            (5, "p-sent", ("2", "again")),
            (6, "p-fail", ("3", "fail")),
            (7, "p-fly", ("4", "fly")),
            (8, "p-todo", ("5", "todo")),
            (9, "p-rec", ("6", "recorded")),
        ], "k")
        j.finish(Identity("p-old"), state=ItemState.SENT, marked="yes")  # only marked this run: still sent before
        j.begin(Identity("p-sent"), step="invite")
        j.finish(Identity("p-sent"), state=ItemState.SENT, invitation_id="i1", http_status=200, request_id="r1",
                 marked="no")
        j.begin(Identity("p-fail"), step="invite")
        j.finish(Identity("p-fail"), state=ItemState.FAILED, detail="400 bad email", http_status=400)
        j.begin(Identity("p-fly"), step="invite")
        j.begin(Identity("p-rec"), step="invite")
        j.finish(Identity("p-rec"), state=ItemState.UNKNOWN, detail="timeout")
        # The run recorded only some lines before it stopped; a mark batch came after the results.
        j.record_results([
            RowResult(3, ("", "bad"), Status.INVALID, "code: required"),
            RowResult(8, ("5", "todo"), Status.PENDING),
            RowResult(9, ("6", "recorded"), Status.SENT, "recorded says sent", marked="no"),
        ])
        j.set_marked(["p-rec"], "yes")
    with Journal.open_readonly(path) as ro:
        headers, results = report(ro)
    assert headers == HEADERS
    got = {r.line: (r.status, r.detail) for r in results}
    assert got == {
        2: (Status.SKIPPED, "sent in an earlier run"),
        3: (Status.INVALID, "code: required"),
        4: (Status.SENT, ""),
        5: (Status.DUPLICATE, "same partner as row 4"),
        6: (Status.FAILED, "400 bad email"),
        7: (Status.UNKNOWN, IN_FLIGHT_DETAIL),
        8: (Status.PENDING, ""),
        9: (Status.SENT, "recorded says sent"),
    }
    by_line = {r.line: r for r in results}
    assert (by_line[4].invitation_id, by_line[4].http_status, by_line[4].request_id, by_line[4].marked,
            by_line[4].attempts, by_line[4].sent_at) == ("i1", 200, "r1", "no", 1, "2024-05-01T10:00:06Z")
    assert by_line[9].marked == "yes"
    assert by_line[5].cells == ("2", "again")


def test_status_counts_items_and_lists_runs(path: Path, clock: Now) -> None:
    with Journal.open(path, clock=clock) as j:
        start(j, "s1")
        j.save_rows([(2, "a", ("1", "a")), (3, None, ("", ""))], "k")
        for ident, state in [("a", ItemState.SENT), ("b", ItemState.SENT), ("c", ItemState.FAILED)]:
            j.begin(Identity(ident), step="invite")
            j.finish(Identity(ident), state=state, marked="no" if ident == "a" else None)
        j.begin(Identity("d"), step="invite")
        j.end_run(Summary(started=T0, finished=T0 + timedelta(minutes=5), counts=Counter(sent=2, failed=1),
                          stopped="interrupted"))
    with Journal.open(path, clock=clock) as j:
        start(j, "s2", dry_run=True)
    with Journal.open_readonly(path) as ro:
        st = ro.status()
    assert st.items == {"pending": 0, "in_flight": 1, "sent": 2, "skipped": 0, "failed": 1, "unknown": 0}
    assert (st.items_total, st.unmarked, st.saved_rows) == (4, 1, 2)
    first, second = st.runs
    assert st.last_real_run == first and (first.input_sha256, first.input_path) == ("s1", "partners.csv")
    assert (first.started, first.finished, first.counts, first.stopped, first.pid) == (
        "2024-05-01T10:00:01Z", "2024-05-01T10:05:00Z", {"sent": 2, "failed": 1}, "interrupted", os.getpid())
    assert (second.dry_run, second.finished, second.counts) == (True, None, None)
