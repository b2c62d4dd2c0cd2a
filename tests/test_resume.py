"""Checkpoint and resume (SPEC §6) through the real `invite-batch` command against the sandbox.

Each test runs `python -m batch ...` in subprocesses (exactly the console script) and judges the
outcome by the sandbox's ledger: what really arrived at the provider, not what the program says.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import support
from support import identity_of

from batch.checkpoint import ItemState, Journal
from batch.providers.base import Identity
from batch.sandbox import SandboxServer
from batch.sandbox.wire import Request, Response, error

Factory = Callable[..., SandboxServer]

IB_PARTNER = "01771534-1a57-f184-dee3-ebeb91dded76"
TEMPLATE = "5551"


# ───────────────────────────────────────────────────────────── helpers

def edrpou_codes(n: int, seed: int = 1) -> list[str]:
    return support.edrpou_codes(n, random.Random(seed))


def kill_after(job: Job, server: SandboxServer, invitations: int) -> int:
    """Start the job, SIGKILL it once the sandbox has seen `invitations`, let the sandbox settle; its pid."""
    proc = job.start()
    wait_until(lambda: sum(job.invitations().values()) >= invitations)
    proc.kill()
    proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    settle(server)
    return proc.pid


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "batch", *args]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli(*args), capture_output=True, text=True, timeout=60)


def wait_until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.005)


def settle(server: SandboxServer) -> None:
    """Wait until the sandbox has answered (or dropped) every request that arrived: a killed client's last
    requests are still processed after it is gone."""
    def settled() -> bool:
        ledger = server.ledger()
        return bool(sum(ledger["responses"].values()) + ledger["drops"] == ledger["requests"])
    wait_until(settled)


@dataclass
class Job:
    """One input file, its config and its default-located checkpoint, run with `invite-batch run`."""

    provider: str
    server: SandboxServer
    source: Path
    config: Path
    output: Path

    @property
    def checkpoint(self) -> Path:
        return self.source.with_name(f"{self.source.stem}.checkpoint.sqlite")

    def command(self, *extra: str) -> list[str]:
        return cli("run", str(self.source), "-c", str(self.config), "-o", str(self.output), "--no-progress", *extra)

    def run(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(*extra), capture_output=True, text=True, timeout=60)

    def start(self, *extra: str) -> subprocess.Popen[str]:
        # A suite started in the background ignores SIGINT, and children inherit that: give the run back the
        # default, as an operator's terminal would, so Ctrl-C tests always test something.
        return subprocess.Popen(self.command(*extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def write(self, keys: list[str]) -> None:
        """The input: codes (edin, with name and e-mail so partners can be created) or e-mails."""
        if self.provider == "edin":
            lines = ["code,name,email"] + [f"{c},Firm {c},p{c}@example.com" for c in keys]
        else:
            lines = ["email"] + keys
        self.source.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def results(self) -> list[dict[str, str]]:
        return read_csv(self.output)

    def statuses(self) -> dict[str, str]:
        """Input key (code or e-mail as written) → status, from the results file."""
        key = "code" if self.provider == "edin" else "email"
        return {r[key]: r["status"] for r in self.results()}

    def invitations(self) -> dict[str, int]:
        """Key → invitations the sandbox received (e-mails lower-cased, as the sandbox counts them)."""
        ledger = self.server.ledger()
        if self.provider == "edin":
            return {p["code"]: p["invitations"] for p in ledger["edin"]["partners"].values()}
        return {e: v["invitations"] for e, v in ledger["invoicebox"]["emails"].items()}

    def items(self) -> dict[str, Any]:
        with Journal.open_readonly(self.checkpoint) as journal:
            return journal.items()


def make_job(tmp_path: Path, provider: str, server: SandboxServer, keys: list[str], *, workers: int = 4,
             attempts: int = 5, read: float = 5.0, max_retry_after: float = 0.05, breaker: int = 1000,
             name: str = "partners") -> Job:
    if provider == "edin":
        head = ("provider: edin\nauth: {email: demo@example.com, password: demo-password}\n"
                f"invite: {{contract_template_id: {TEMPLATE}, status_batch_size: 5}}\n")
    else:
        head = f"provider: invoicebox\nauth: {{token: sandbox-token}}\ninvite: {{partner_id: {IB_PARTNER}}}\n"
    config = tmp_path / f"{name}.yaml"
    config.write_text(
        f"{head}base_url: {server.url}\n"
        f"limits: {{rate: [], workers: {workers}, timeout: {{connect: 2, read: {read}}}}}\n"
        f"retry: {{attempts: {attempts}, initial_wait: 0.01, max_wait: 0.1, max_retry_after: {max_retry_after}}}\n"
        f"stop_after_consecutive_failures: {breaker}\n", encoding="utf-8")
    config.chmod(0o600)
    job = Job(provider, server, tmp_path / f"{name}.csv", config, tmp_path / f"{name}.results.csv")
    job.write(keys)
    return job


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f))


def identity(provider: str, key: str) -> Identity:
    """A row's identity, computed by the product's own rule (its `.key` is the checkpoint's key)."""
    values = ({"code": key, "contract_template_id": TEMPLATE} if provider == "edin"
              else {"partner_id": IB_PARTNER, "email": key})
    return identity_of(provider, **values)


def script(server: SandboxServer, monkeypatch: pytest.MonkeyPatch,
           steps: list[tuple[str, str | int]]) -> list[str]:
    """Scripted faults, in order: each step hits the next request of its call ("METHOD /path").

    "drop" processes the request and closes the connection without an answer; "slow" answers after
    half a second; a number answers with that status without processing. Requests not matching the
    head step pass untouched. Returns the calls of the steps taken so far.
    """
    app, original, pending, taken = server.app, server.app.handle, list(steps), []

    def handle(req: Request) -> Response | None:
        if pending and f"{req.method} {req.path}" == pending[0][0]:
            call, action = pending.pop(0)
            taken.append(call)
            if action == "drop":
                original(req)
                return None
            if action == "slow":
                time.sleep(0.5)
                return original(req)
            assert isinstance(action, int)
            app.ledger.arrive(f"{req.method} {req.path}")
            app.ledger.answered(action)
            return error(action, None, "scripted failure", headers=[("Retry-After", "30")] if action == 429 else None)
        return original(req)

    monkeypatch.setattr(app, "handle", handle)
    return taken


# ───────────────────────────────────────────────────────────── graceful stop

@pytest.mark.parametrize(("provider", "signum"), [("edin", signal.SIGTERM), ("invoicebox", signal.SIGINT)],
                         ids=["edin-sigterm", "invoicebox-sigint"])
def test_signal_finishes_in_flight_writes_results_with_pending_exits_3_and_rerun_completes(
        sandbox_factory: Factory, tmp_path: Path, provider: str, signum: int) -> None:
    server = sandbox_factory(latency_ms=50)
    keys = edrpou_codes(24) if provider == "edin" else [f"shop{i}@example.com" for i in range(40)]
    job = make_job(tmp_path, provider, server, keys, workers=2)
    proc = job.start()
    wait_until(lambda: sum(job.invitations().values()) >= 4)
    signalled = time.monotonic()
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 3, stderr
    assert time.monotonic() - signalled < 5  # in-flight requests finish within the read timeout (5 s)
    assert f"{signal.Signals(signum).name} received" in stderr and "Traceback" not in stderr

    statuses = job.statuses()
    assert list(statuses) == keys  # every row, in input order
    assert set(statuses.values()) == {"sent", "pending"}, statuses
    invited = job.invitations()
    assert {k for k, s in statuses.items() if s == "sent"} == {k for k, n in invited.items() if n}
    assert set(invited.values()) <= {0, 1}
    assert {i.state for i in job.items().values()} <= {ItemState.SENT, ItemState.PENDING}  # nothing left in flight
    if provider == "edin":  # the marks of what was sent are flushed before stopping
        assert {r["marked"] for r in job.results() if r["status"] == "sent"} == {"yes"}

    again = job.run()
    assert again.returncode == 0, again.stderr
    final = job.statuses()
    assert {k for k, s in final.items() if s == "skipped"} == {k for k, s in statuses.items() if s == "sent"}
    assert {k for k, s in final.items() if s == "sent"} == {k for k, s in statuses.items() if s == "pending"}
    assert job.invitations() == {k.lower(): 1 for k in keys}


def test_a_stop_waits_for_a_hanging_request_no_longer_than_the_read_timeout(sandbox_factory: Factory,
                                                                            tmp_path: Path) -> None:
    server = sandbox_factory(latency_ms=3000)  # the provider hangs; the read timeout is 0.5 s
    emails = [f"shop{i}@example.com" for i in range(5)]
    job = make_job(tmp_path, "invoicebox", server, emails, workers=1, read=0.5)
    proc = job.start()
    wait_until(lambda: server.ledger()["requests"] >= 1)
    signalled = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=10)
    assert proc.returncode == 3, stderr
    assert time.monotonic() - signalled < 2.5  # not the 3 s the answer would take
    # Sent, no answer within the timeout: it may have arrived (it will), so unknown; nothing else was taken.
    assert list(job.statuses().values()) == ["unknown"] + ["pending"] * 4


def test_a_second_ctrl_c_stops_at_once_and_the_rerun_reconciles_what_was_in_flight(
        sandbox_factory: Factory, tmp_path: Path) -> None:
    server = sandbox_factory(latency_ms=200)
    codes = edrpou_codes(16)
    job = make_job(tmp_path, "edin", server, codes)
    proc = job.start()
    wait_until(lambda: sum(job.invitations().values()) >= 2)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # the operator does not wait for the requests out there
    _, stderr = proc.communicate(timeout=10)
    assert proc.returncode == 3, stderr
    assert "Traceback" not in stderr
    settle(server)
    server.configure(latency_ms=0)

    again = job.run()
    assert again.returncode == 0, again.stderr
    assert set(job.statuses().values()) <= {"sent", "skipped"}
    assert job.invitations() == dict.fromkeys(codes, 1)


def test_provider_outage_trips_the_breaker_and_reruns_finish_the_job(sandbox_factory: Factory,
                                                                      tmp_path: Path) -> None:
    server = sandbox_factory(error_rate=1.0, seed=1)
    emails = [f"shop{i}@example.com" for i in range(12)]
    job = make_job(tmp_path, "invoicebox", server, emails, workers=1, attempts=2, breaker=3)
    outage = job.run()
    assert outage.returncode == 3, outage.stderr
    first = job.statuses()
    assert list(first.values()) == ["failed"] * 3 + ["pending"] * 9
    server.configure(error_rate=0.0)

    plain = job.run()  # the rest goes; the rows that failed wait for the operator's say-so
    assert plain.returncode == 1, plain.stderr
    assert list(job.statuses().values()) == ["failed"] * 3 + ["sent"] * 9
    retried = job.run("--retry-failed")
    assert retried.returncode == 0, retried.stderr
    assert list(job.statuses().values()) == ["sent"] * 3 + ["skipped"] * 9
    assert job.invitations() == dict.fromkeys(emails, 1)


@pytest.mark.parametrize("call", ["POST /bdoc/partner", "POST /bdoc/partner/invitation"], ids=["create", "invite"])
def test_signal_while_a_request_is_out_lets_it_finish_and_records_it(
        sandbox: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, call: str) -> None:
    codes = edrpou_codes(3)
    job = make_job(tmp_path, "edin", sandbox, codes, workers=1)
    taken = script(sandbox, monkeypatch, [(call, "slow")])
    proc = job.start()
    wait_until(lambda: bool(taken))
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=10)
    assert proc.returncode == 3, stderr
    first = job.statuses()[codes[0]]
    assert first == ("pending" if call == "POST /bdoc/partner" else "sent")
    assert "in_flight  0" in run_cli("status", str(job.checkpoint)).stdout  # the answer was waited for and kept

    again = job.run()
    assert again.returncode == 0, again.stderr
    partners = sandbox.ledger()["edin"]["partners"].values()
    assert sorted((p["code"], p["created"], p["invitations"]) for p in partners) == [(c, 1, 1) for c in sorted(codes)]


@pytest.mark.parametrize("call", ["POST /bdoc/partner", "POST /bdoc/partner/invitation"], ids=["create", "invite"])
def test_signal_during_a_retry_wait_leaves_the_row_pending_not_in_flight(
        sandbox: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, call: str) -> None:
    codes = edrpou_codes(3)
    job = make_job(tmp_path, "edin", sandbox, codes, workers=1, max_retry_after=30)
    script(sandbox, monkeypatch, [(call, 429)])  # not processed; Retry-After: 30
    proc = job.start()
    wait_until(lambda: sandbox.ledger()["calls"].get(call, 0) >= 1)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=10)  # the wait is cut short, not sat out
    assert proc.returncode == 3, stderr
    assert job.statuses() == dict.fromkeys(codes, "pending")
    assert {i.state for i in job.items().values()} == {ItemState.PENDING}
    assert "in_flight  0" in run_cli("status", str(job.checkpoint)).stdout

    again = job.run()
    assert again.returncode == 0, again.stderr
    partners = sandbox.ledger()["edin"]["partners"].values()
    assert sorted((p["code"], p["created"], p["invitations"]) for p in partners) == [(c, 1, 1) for c in sorted(codes)]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to see the input being read")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_signal_while_reading_the_input_exits_3_without_a_traceback(sandbox: SandboxServer, tmp_path: Path,
                                                                    signum: int) -> None:
    job = make_job(tmp_path, "invoicebox", sandbox, [f"shop{i}@example.com" for i in range(20_000)])
    proc = job.start()

    def reading() -> bool:  # the config is loaded (handlers set) and the input is open
        try:
            return any(os.readlink(f"/proc/{proc.pid}/fd/{fd}") == str(job.source.resolve())
                       for fd in os.listdir(f"/proc/{proc.pid}/fd"))
        except OSError:
            return False

    wait_until(reading)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 3, stderr
    assert "Traceback" not in stderr and "run the same command again" in stderr
    assert sandbox.ledger()["requests"] == 0


# ───────────────────────────────────────────────────────────── the run lock

def test_second_run_on_the_same_checkpoint_exits_4_naming_the_holder(sandbox_factory: Factory,
                                                                    tmp_path: Path) -> None:
    server = sandbox_factory(latency_ms=100)
    job = make_job(tmp_path, "invoicebox", server, [f"shop{i}@example.com" for i in range(100)], workers=1)
    first = job.start()
    try:
        wait_until(lambda: server.ledger()["requests"] >= 1)  # the lock is taken before anything is sent
        second = job.run("-o", str(tmp_path / "second.csv"))
        assert second.returncode == 4, second.stderr
        assert f"pid {first.pid}" in second.stderr
        assert not (tmp_path / "second.csv").exists()
        fresh = job.run("--fresh")  # nor may a fresh start move the checkpoint from under it
        assert fresh.returncode == 4 and f"pid {first.pid}" in fresh.stderr
        assert list(tmp_path.glob("partners.checkpoint.*.sqlite")) == []
        status = run_cli("status", str(job.checkpoint))  # reading it is fine meanwhile
        assert status.returncode == 0 and f"pid {first.pid}" in status.stdout
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=20)
    assert first.returncode == 3
    assert set(job.invitations().values()) == {1}  # the refused run sent nothing


def test_stale_lock_of_a_killed_run_does_not_block(sandbox_factory: Factory, tmp_path: Path) -> None:
    server = sandbox_factory(latency_ms=30)
    codes = edrpou_codes(30)
    job = make_job(tmp_path, "edin", server, codes, workers=2)
    pid = kill_after(job, server, invitations=3)
    lock = job.checkpoint.with_name(job.checkpoint.name + ".lock")
    assert lock.read_text().strip() == str(pid)  # the dead run's pid is still written there

    again = job.run()
    assert again.returncode == 0, again.stderr
    assert "held by" not in again.stderr
    assert job.invitations() == dict.fromkeys(codes, 1)


# ───────────────────────────────────────────────────────────── identity, not line number

@pytest.mark.parametrize("provider", ["edin", "invoicebox"])
def test_resorted_and_appended_input_sends_only_new_rows_and_tells_the_input_changed(
        sandbox: SandboxServer, tmp_path: Path, provider: str) -> None:
    old = edrpou_codes(8) if provider == "edin" else [f"shop{i}@example.com" for i in range(8)]
    new = edrpou_codes(11)[8:] if provider == "edin" else [f"new{i}@example.com" for i in range(3)]
    job = make_job(tmp_path, provider, sandbox, old)
    first = job.run()
    assert first.returncode == 0, first.stderr
    assert "input changed" not in first.stderr

    # Re-sorted (and, for Invoicebox, the address typed with capitals: still the same partner), plus new rows.
    resorted = old[::-1] if provider == "edin" else [e.replace("shop", "Shop").upper() for e in old[::-1]]
    job.write(resorted[:4] + new[:1] + resorted[4:] + new[1:])
    second = job.run()
    assert second.returncode == 0, second.stderr
    assert "input changed" in second.stderr
    statuses = job.statuses()
    assert list(statuses) == resorted[:4] + new[:1] + resorted[4:] + new[1:]
    assert {k for k, s in statuses.items() if s == "sent"} == set(new)
    assert {k for k, s in statuses.items() if s == "skipped"} == set(resorted)
    assert job.invitations() == {k.lower(): 1 for k in old + new}


# ───────────────────────────────────────────────────────────── --fresh, --retry-failed, --resend-unknown

@pytest.mark.parametrize("killed", [False, True], ids=["after-a-finished-run", "after-kill-9"])
def test_fresh_sets_the_old_checkpoint_aside_and_starts_over(sandbox_factory: Factory, tmp_path: Path,
                                                             killed: bool) -> None:
    server = sandbox_factory(latency_ms=20)
    emails = [f"shop{i}@example.com" for i in range(30)]
    job = make_job(tmp_path, "invoicebox", server, emails, workers=2)
    if killed:  # what the killed run committed is still only in its WAL; it must move aside with the file
        kill_after(job, server, invitations=5)
        assert job.checkpoint.with_name(job.checkpoint.name + "-wal").exists()
    else:
        assert job.run().returncode == 0
    before = job.invitations()

    fresh = job.run("--fresh")
    assert fresh.returncode == 0, fresh.stderr
    aside = sorted(tmp_path.glob("partners.checkpoint.*.sqlite"))
    assert len(aside) == 1 and re.fullmatch(r"partners\.checkpoint\.\d{8}T\d{6}Z\.sqlite", aside[0].name)
    assert aside[0].name in fresh.stderr
    assert set(job.statuses().values()) == {"sent"}  # a new checkpoint knows nothing: everything is sent again
    assert job.invitations() == {e: before.get(e, 0) + 1 for e in emails}
    with Journal.open_readonly(aside[0]) as journal:
        old = journal.items()
    sent_before = {k for k, i in old.items() if i.state is ItemState.SENT}
    in_flight = {k for k, i in old.items() if i.state is ItemState.IN_FLIGHT}
    assert sent_before and sent_before == {identity("invoicebox", e).key for e, n in before.items() if n} - in_flight
    assert "runs: 1" in run_cli("status", str(aside[0])).stdout
    assert "runs: 1" in run_cli("status", str(job.checkpoint)).stdout

    plain = job.run()  # and the new checkpoint resumes like any other
    assert plain.returncode == 0 and set(job.statuses().values()) == {"skipped"}


def test_failed_rows_stay_failed_until_retry_failed(sandbox_factory: Factory, tmp_path: Path) -> None:
    server = sandbox_factory(error_rate=1.0, seed=1)  # an outage: every answer a 5xx
    emails = [f"shop{i}@example.com" for i in range(4)]
    job = make_job(tmp_path, "invoicebox", server, emails, attempts=2)
    first = job.run()
    assert first.returncode == 1, first.stderr
    assert set(job.statuses().values()) == {"failed"}
    server.configure(error_rate=0.0)  # the outage is over

    plain = job.run()
    assert plain.returncode == 1
    assert set(job.statuses().values()) == {"failed"} and job.invitations() == {}
    assert all("--retry-failed" in r["detail"] for r in job.results())

    retried = job.run("--retry-failed")
    assert retried.returncode == 0, retried.stderr
    assert set(job.statuses().values()) == {"sent"}
    assert job.invitations() == dict.fromkeys(emails, 1)


def test_unknown_rows_are_resent_only_with_resend_unknown(sandbox_factory: Factory, tmp_path: Path) -> None:
    server = sandbox_factory(drop_rate=1.0)  # every invitation arrives, every answer is lost
    emails = [f"shop{i}@example.com" for i in range(4)]
    job = make_job(tmp_path, "invoicebox", server, emails)
    first = job.run()
    assert first.returncode == 1, first.stderr
    assert set(job.statuses().values()) == {"unknown"}
    assert job.invitations() == dict.fromkeys(emails, 1)
    server.configure(drop_rate=0.0)

    plain = job.run("--retry-failed")
    assert plain.returncode == 1
    assert set(job.statuses().values()) == {"unknown"}
    assert all("--resend-unknown" in r["detail"] for r in job.results())
    assert job.invitations() == dict.fromkeys(emails, 1)  # not resent: they may have arrived (they did)

    resent = job.run("--resend-unknown")
    assert resent.returncode == 0, resent.stderr
    assert set(job.statuses().values()) == {"sent"}
    assert job.invitations() == dict.fromkeys(emails, 2)  # the operator's choice, as documented


# ───────────────────────────────────────────────────────────── reconciling what a crash left

def test_edin_in_flight_rows_are_looked_up_and_unmarked_rows_marked(sandbox_factory: Factory,
                                                                    tmp_path: Path) -> None:
    codes = edrpou_codes(6)
    preload = tmp_path / "preload.json"  # a partner EDIN already has, not invited yet
    preload.write_text(json.dumps([{"partnerId": 5_000_001, "code": codes[5], "name": "Preloaded"}]))
    server = sandbox_factory(partners=preload)
    job = make_job(tmp_path, "edin", server, codes)
    first = job.run("--limit", "3")
    assert first.returncode == 0, first.stderr
    assert job.invitations() == {**dict.fromkeys(codes[:3], 1), codes[5]: 0}
    # What a kill -9 leaves behind, written as the flows write it: an invitation that went out but was not
    # recorded, one begun but never sent, a creation begun but never answered, a mark that never went out.
    partner_id = job.items()[identity("edin", codes[0]).key].partner_id
    with Journal.open(job.checkpoint) as journal:
        journal.begin(identity("edin", codes[0]), step="invite", partner_id=partner_id)
        journal.begin(identity("edin", codes[5]), step="invite", partner_id="5000001")
        journal.begin(identity("edin", codes[3]), step="create")
        journal.set_marked([identity("edin", codes[1]).key], "no")
    assert "sent but not yet marked: 1" in run_cli("status", str(job.checkpoint)).stdout

    second = job.run()
    assert second.returncode == 0, second.stderr
    rows = {r["code"]: r for r in job.results()}
    assert rows[codes[0]]["status"] == "sent" and "look-up" in rows[codes[0]]["detail"]  # invitationDate set
    assert rows[codes[5]]["status"] == "sent" and "look-up" not in rows[codes[5]]["detail"]  # not set: sent now
    assert rows[codes[3]]["status"] == "sent" and rows[codes[4]]["status"] == "sent"
    assert rows[codes[1]]["status"] == rows[codes[2]]["status"] == "skipped"
    assert job.invitations() == dict.fromkeys(codes, 1)  # each exactly once
    ledger = {p["code"]: p for p in server.ledger()["edin"]["partners"].values()}
    assert ledger[codes[5]]["created"] == 0 and all(ledger[c]["created"] == 1 for c in codes[:5])
    # The owed mark is sent (again: marking is idempotent); rows done and marked before are left alone.
    assert ledger[codes[1]]["marks"] == 2 and ledger[codes[2]]["marks"] == 1
    assert min(p["marks"] for p in ledger.values()) == 1
    assert rows[codes[1]]["marked"] == "yes" and job.items()[identity("edin", codes[1]).key].marked == "yes"


def test_invoicebox_in_flight_rows_become_unknown(sandbox: SandboxServer, tmp_path: Path) -> None:
    emails = [f"shop{i}@example.com" for i in range(3)]
    job = make_job(tmp_path, "invoicebox", sandbox, emails)
    with Journal.open(job.checkpoint) as journal:  # a kill -9 after the begin, with or without the request
        journal.begin(identity("invoicebox", emails[1]), step="invite")
    run = job.run()
    assert run.returncode == 1, run.stderr
    rows = {r["email"]: r for r in job.results()}
    assert [rows[e]["status"] for e in emails] == ["sent", "unknown", "sent"]
    assert "in flight" in rows[emails[1]]["detail"] and "--resend-unknown" in rows[emails[1]]["detail"]
    assert job.invitations() == {emails[0]: 1, emails[2]: 1}
    assert job.items()[identity("invoicebox", emails[1]).key].state is ItemState.UNKNOWN


def test_edin_lost_answer_to_a_creation_finds_the_partner_by_code(sandbox: SandboxServer, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    codes = edrpou_codes(3)
    job = make_job(tmp_path, "edin", sandbox, codes, workers=1)
    script(sandbox, monkeypatch, [("POST /bdoc/partner", "drop")])
    run = job.run()
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    assert set(job.statuses().values()) == {"sent"}
    assert "409" not in sandbox.ledger()["responses"]  # found, not created again
    partners = sandbox.ledger()["edin"]["partners"].values()
    assert sorted((p["code"], p["created"], p["invitations"]) for p in partners) == [(c, 1, 1) for c in sorted(codes)]


@pytest.mark.parametrize("flag", ["--retry-failed", "--resend-unknown"])
def test_edin_rows_tried_again_are_looked_up_first(sandbox: SandboxServer, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch, flag: str) -> None:
    codes = edrpou_codes(3)
    job = make_job(tmp_path, "edin", sandbox, codes, workers=1, attempts=2)
    # The invitation of the first row arrives but its answer is lost, and the look-up that would tell fails.
    script(sandbox, monkeypatch, [("POST /bdoc/partner/invitation", "drop"), ("GET /bdoc/partners", 503),
                                  ("GET /bdoc/partners", 503)])
    first = job.run()
    assert first.returncode == 1, first.stderr
    assert job.statuses()[codes[0]] in ("failed", "unknown")
    if flag == "--resend-unknown":  # the same uncertainty, recorded as unknown
        with Journal.open(job.checkpoint) as journal:
            journal.finish(identity("edin", codes[0]), state=ItemState.UNKNOWN, detail="no answer")
    assert job.invitations() == dict.fromkeys(codes, 1)

    again = job.run(flag)
    assert again.returncode == 0, again.stderr
    row = next(r for r in job.results() if r["code"] == codes[0])
    assert row["status"] == "sent" and "look-up" in row["detail"]
    assert job.invitations() == dict.fromkeys(codes, 1)  # never invited twice


# ───────────────────────────────────────────────────────────── status and report

def test_status_and_report_read_the_checkpoint_without_the_input(sandbox_factory: Factory, tmp_path: Path) -> None:
    server = sandbox_factory(latency_ms=30)
    codes = edrpou_codes(30)
    job = make_job(tmp_path, "edin", server, codes, workers=2)
    sha = hashlib.sha256(job.source.read_bytes()).hexdigest()
    kill_after(job, server, invitations=5)
    assert not job.output.exists()  # killed: no results file

    status = run_cli("status", str(job.checkpoint))
    assert status.returncode == 0, status.stderr
    assert f"input sha256: {sha}" in status.stdout
    assert "runs: 1" in status.stdout and "did not finish" in status.stdout
    sent_now = int(re.search(r"^\s+sent\s+(\d+)$", status.stdout, re.M).group(1))  # type: ignore[union-attr]
    assert sent_now >= 1

    # `report` after a kill -9: rows sent so far, in-flight ones unknown, the rest pending; no input needed.
    hidden = job.source.rename(tmp_path / "elsewhere.csv")
    killed = run_cli("report", str(job.checkpoint), "-o", str(tmp_path / "killed.csv"))
    assert killed.returncode == 0, killed.stderr
    rows = read_csv(tmp_path / "killed.csv")
    assert [r["code"] for r in rows] == codes
    by_status = {s: sum(1 for r in rows if r["status"] == s) for s in ("sent", "unknown", "pending")}
    assert by_status["sent"] == sent_now and sum(by_status.values()) == len(codes)
    hidden.rename(job.source)

    assert job.run().returncode == 0
    final = run_cli("status", str(job.checkpoint)).stdout
    assert "runs: 2" in final and "did not finish" in final  # the killed run stays on record
    assert re.search(rf"^\s+sent\s+{len(codes)}$", final, re.M) and "sent but not yet marked" not in final
    runs = re.findall(r"^\s+#(\d+) (\S+) → (\S+)", final, re.M)
    assert [r[0] for r in runs] == ["1", "2"] and runs[1][2].endswith("Z")

    os.remove(job.source)
    report = run_cli("report", str(job.checkpoint), "-o", str(tmp_path / "report.csv"))
    assert report.returncode == 0, report.stderr
    rewritten = read_csv(tmp_path / "report.csv")
    assert [(r["code"], r["status"], r["partner_id"], r["marked"]) for r in rewritten] == [
        (r["code"], r["status"], r["partner_id"], r["marked"]) for r in job.results()]
    assert {r["status"] for r in rewritten} == {"sent", "skipped"}


def test_a_results_file_fed_back_as_input_reports_what_was_sent_even_after_a_kill(
        sandbox_factory: Factory, tmp_path: Path) -> None:
    # Regression: its rows name the partner ids an earlier run resolved their codes to; the snapshot saved them
    # under those ids while the items are keyed by code, so after a kill `report` showed sent partners `pending`.
    server = sandbox_factory(latency_ms=30)
    codes = edrpou_codes(20, seed=7)
    job = make_job(tmp_path, "edin", server, codes[:8], workers=2)
    assert job.run().returncode == 0
    # The results become the input (same name, so the same checkpoint), with new partners appended.
    lines = job.output.read_text(encoding="utf-8-sig").splitlines()
    width = lines[0].count(",")
    lines += [f"{c},Firm {c},p{c}@example.com" + "," * (width - 2) for c in codes[8:]]
    job.source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    kill_after(job, server, invitations=10)  # 8 from the first run, then 2 new ones: killed mid-run

    report = run_cli("report", str(job.checkpoint), "-o", str(tmp_path / "killed.csv"))
    assert report.returncode == 0, report.stderr
    # The input's own result columns come first; this report's are renamed beside them.
    rows = {r["code"]: r for r in read_csv(tmp_path / "killed.csv")}
    for c in codes[:8]:  # sent by the first run, named by partner id now: never `pending`
        row = rows[c]
        assert (row["status (result)"], row["detail (result)"]) == ("skipped", "sent in an earlier run"), row
        assert row["partner_id (result)"] == row["partner_id"] != ""
    # The two new invitations the sandbox saw are `sent`, or `unknown` if the kill came before their answer.
    assert sum(1 for c in codes[8:] if rows[c]["status (result)"] in ("sent", "unknown")) >= 2
