"""Chaos for Kontur.Diadoc: real `invite-batch run` processes against a faulty sandbox (5xx, 429, drops, 2-second
access tokens with single-use refresh tokens), SIGKILLed at seeded moments, then re-run until done.

The evidence of SPEC §13.4 from the sandbox's ledger: every counterparty to invite got exactly one processed
AcquireCounteragent, nobody else got any, and the access token was cached (far fewer tokens than calls).
"""

from __future__ import annotations

import itertools
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from stdnum.ru import inn
from test_chaos import KILLS, cli, item_states, read_results

from batch.sandbox import SandboxServer

Factory = Callable[..., SandboxServer]

WORKERS = 4
MAX_RERUNS = 30
FAULTS = {"drop_rate": 0.05, "error_rate": 0.05, "throttle_rate": 0.05, "ambiguous_rate": 0.05}
# No relation yet: 30 seeded counterparties (7703 + 00001… + the check digit), two only in ЕГРЮЛ (invited by
# INN), one connected at once.
STEMS = [f"7703{n:05d}" for n in range(1, 31)]
TO_INVITE = [*(s + inn.calc_company_check_digit(s) for s in STEMS), "7704002014", "7704002021", "7702001061"]
TO_SKIP = ["7702001015", "7702001022", "7702001030", "7702001047", "7702001054"]  # every relation but none


def refresh_live(sandbox: SandboxServer, refresh: Path) -> bool:
    """Whether the refresh token in the job's file is still one the sandbox accepts (its private table, read only)."""
    return refresh.read_text(encoding="utf-8").strip() in sandbox.app.diadoc.tokens._refresh


def kill_runs(sandbox: SandboxServer, command: list[str], rng: random.Random, log: Path, refresh: Path) -> int:
    """test_chaos.kill_runs, except at one moment: a kill between the sandbox's rotation of the refresh token and
    the client's writing it back would strand the job for good (single use, no grace period: it would strand any
    client; the operator issues a new token). So the run is stopped (SIGSTOP), in-flight requests settle, and it is
    SIGKILLed only if the file's token is still live; otherwise it continues and the kill is tried again."""
    kills = 0
    for _ in range(KILLS * 2):
        if kills == KILLS:
            break
        target = sandbox.ledger()["requests"] + rng.randint(4, 24)
        with log.open("a") as err:
            proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 20
        while proc.poll() is None and time.monotonic() < deadline:
            if sandbox.ledger()["requests"] < target:
                time.sleep(0.002)
                continue
            proc.send_signal(signal.SIGSTOP)
            time.sleep(0.02)
            if refresh_live(sandbox, refresh):
                proc.kill()
                kills += 1
                break
            proc.send_signal(signal.SIGCONT)
            time.sleep(0.005)
        proc.wait(timeout=10)
    return kills


def test_diadoc_chaos_one_processed_invitation_each_and_cached_tokens(sandbox_factory: Factory,
                                                                      tmp_path: Path) -> None:
    # The sandbox's clock leaps a second every 60 readings, so its 2-second access tokens die mid-run (401s).
    readings = itertools.count()
    sandbox = sandbox_factory(seed=13, token_ttl=2, rotate_refresh=True, task_ms=20,
                              clock=lambda: time.monotonic() + next(readings) // 60, **FAULTS)
    invite = TO_INVITE
    source = tmp_path / "counterparties.csv"
    source.write_text("ИНН;Наименование\n" + "".join(f"{i};Контрагент {i}\n" for i in [*invite, *TO_SKIP]),
                      encoding="utf-8")
    refresh = tmp_path / "diadoc.refresh"
    refresh.write_text("sandbox-refresh\n", encoding="utf-8")
    refresh.chmod(0o600)
    config = tmp_path / "config.yaml"
    config.write_text(
        f"provider: diadoc\nbase_url: {sandbox.url}\n"
        f"auth: {{client_id: sandbox-client, client_secret: sandbox-secret, refresh_token_file: {refresh}}}\n"
        "invite: {result_timeout: 10}\n"
        f"limits: {{rate: [], workers: {WORKERS}, timeout: {{connect: 2, read: 5}}}}\n"
        "retry: {attempts: 5, initial_wait: 0.01, max_wait: 0.1, max_retry_after: 0.05}\n"
        "stop_after_consecutive_failures: 1000\n", encoding="utf-8")
    config.chmod(0o600)
    output, checkpoint, log = tmp_path / "results.csv", tmp_path / "counterparties.checkpoint.sqlite", tmp_path / "log"
    # The operator's command throughout: failed rows (retries ran out) are tried again, unknown ones after a look.
    command = cli("run", str(source), "-c", str(config), "-o", str(output), "--no-progress", "--retry-failed",
                  "--resend-unknown")

    kills = kill_runs(sandbox, command, random.Random(9), log, refresh)
    assert kills >= 2, f"only {kills} runs were still going at their kill moment"
    for rerun in range(1, MAX_RERUNS + 1):
        with log.open("a") as err:
            code = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=err, timeout=60).returncode
        assert code in (0, 1, 3), f"re-run {rerun} exited {code}; see {log.read_text()[-3000:]}"
        statuses = Counter(r["status"] for r in read_results(output))
        if code == 0 and set(statuses) <= {"sent", "skipped"}:
            break
    else:
        pytest.fail(f"not done after {MAX_RERUNS} re-runs: {statuses}, items {item_states(checkpoint)[0]}")
    text = log.read_text()
    assert "Traceback" not in text and "invalid_grant" not in text, text[-3000:]

    ledger = sandbox.ledger()
    agents = ledger["diadoc"]["counteragents"]
    acquires = {key.split("/")[0]: v["acquires"] for key, v in agents.items()}
    assert {i: acquires.get(i, 0) for i in invite if acquires.get(i, 0) != 1} == {}, "not invited exactly once"
    assert set(acquires) == set(invite), "an AcquireCounteragent for someone not to invite"
    assert all(v["invitations"] == 1 for v in agents.values())
    results = {r["ИНН"]: r for r in read_results(output)}
    assert {i for i in invite if results[i]["status"] not in ("sent", "skipped")} == set()
    assert {results[i]["status"] for i in TO_SKIP} == {"skipped"}
    tokens = ledger["diadoc"]["tokens"]
    calls = sum(n for call, n in ledger["calls"].items() if call != "POST /connect/token")
    assert tokens["refused"] == 0 and tokens["issued"] * 5 < calls, (tokens, calls)
    assert ledger["responses"].get("401", 0) > 0  # expired tokens were met, and renewed
    # Faults were met, not only the happy path.
    assert ledger["drops"] > 0 and ledger["responses"].get("429", 0) > 0 and ledger["responses"].get("503", 0) > 0
    assert refresh.read_text().strip() in sandbox.issued_tokens()  # the rotated refresh token was kept
