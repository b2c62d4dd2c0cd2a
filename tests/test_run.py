"""`invite-batch run` end to end against the real sandbox on a loopback port (SPEC §1, §2, §7, §9)."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import openpyxl
import pytest
import xlsxwriter
from stdnum.ua import edrpou
from support import FakeClock, write_config

from batch.cli import main
from batch.config import load_config
from batch.errors import Interrupted
from batch.runner import RunOptions, run_batch
from batch.sandbox import SandboxServer
from batch.sandbox.wire import Request, Response

EDIN_HEADERS = ["ЄДРПОУ", "Назва", "Email"]


def code(n: int) -> str:
    """A valid 8-digit EDRPOU built from a number."""
    body = f"{n:07d}"
    for last in "0123456789":
        if edrpou.is_valid(body + last):
            return body + last
    raise AssertionError(f"no check digit makes {body} valid")


def bad_code(n: int) -> str:
    """An 8-digit code whose check digit is wrong."""
    good = code(n)
    return good[:-1] + str((int(good[-1]) + 1) % 10)


def write_xlsx(path: Path, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> Path:
    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet()
    for c, h in enumerate(headers):
        ws.write_string(0, c, h)
    for r, row in enumerate(rows, start=1):
        for c, value in enumerate(row):
            ws.write_string(r, c, value)
    wb.close()
    return path


def write_csv(path: Path, headers: Sequence[str], rows: Sequence[Sequence[str]], *, encoding: str = "utf-8") -> Path:
    with path.open("w", encoding=encoding, newline="") as f:
        w = csv.writer(f, delimiter=";")
        w.writerow(headers)
        w.writerows(rows)
    return path


def results_xlsx(path: Path) -> list[dict[str, Any]]:
    ws = openpyxl.load_workbook(path, read_only=True).worksheets[0]
    rows = list(ws.iter_rows(values_only=True))
    return [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]


def results_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f))


def partners_by_code(server: SandboxServer) -> dict[str, dict[str, Any]]:
    return {p["code"]: p for p in server.ledger()["edin"]["partners"].values()}


def run(*args: str | Path) -> int:
    return main([str(a) for a in args])


def run_on(clock: FakeClock, inp: Path, cfg: Path) -> int:
    """`invite-batch run INPUT -c CONFIG`, in-process on `clock`: the exit code."""
    return run_batch(load_config(cfg), RunOptions(input=inp), clock=clock).exit_code


@pytest.fixture
def preload(tmp_path: Path) -> Callable[[list[dict[str, Any]]], Path]:
    def make(partners: list[dict[str, Any]]) -> Path:
        path = tmp_path / "preload.json"
        path.write_text(json.dumps(partners), encoding="utf-8")
        return path
    return make


def test_edin_end_to_end(tmp_path: Path, sandbox_factory: Callable[..., SandboxServer],
                         preload: Callable[[list[dict[str, Any]]], Path]) -> None:
    known, invited = code(1111111), code(2222222)
    server = sandbox_factory(partners=preload([
        {"partnerId": 501, "code": known, "name": "Known", "contactEmail": "k@firm.ua"},
        {"partnerId": 502, "code": invited, "name": "Invited", "contactEmail": "i@firm.ua",
         "invitationDate": 1_700_000_000},
        {"partnerId": 503, "code": code(3333333), "name": "By id", "contactEmail": "b@firm.ua"},
    ]))
    new = [code(4000000 + i) for i in range(5)]
    rows = [[c, f"ТОВ Новий {i}", f"new{i}@Firm.UA"] for i, c in enumerate(new)]
    rows += [[known, "Known", ""], [invited, "Invited", ""], [new[0], "Again", "x@firm.ua"],
             [bad_code(9999999), "Bad check digit", "bad@firm.ua"]]
    inp = write_xlsx(tmp_path / "p.xlsx", EDIN_HEADERS, rows)
    by_id = write_xlsx(tmp_path / "ids.xlsx", ["partner_id"], [["503"]])
    cfg = write_config(tmp_path / "c.yaml", server.url)

    assert run("run", inp, "-c", cfg, "--summary-json", tmp_path / "s.json") == 1  # one invalid row
    out = results_xlsx(tmp_path / "p.results.xlsx")
    assert [r["status"] for r in out] == ["sent"] * 6 + ["skipped", "duplicate", "invalid"]
    assert out[7]["detail"] == "same partner as row 2"
    assert "check digit" in out[8]["detail"]
    assert out[6]["detail"].startswith("already invited on 2023-11-14")
    assert all(r["marked"] == "yes" for r in out[:6])
    assert out[5]["partner_id"] == "501" and out[0]["detail"] == "partner created"
    ledger = partners_by_code(server)
    for c in new:
        assert ledger[c]["created"] == 1 and ledger[c]["invitations"] == 1 and ledger[c]["marks"] == 1
    assert ledger[known] == {**ledger[known], "created": 0, "invitations": 1, "marks": 1}
    assert ledger[invited]["invitations"] == 0
    summary = json.loads((tmp_path / "s.json").read_text(encoding="utf-8"))
    assert summary["counts"]["sent"] == 6 and summary["counts"]["invalid"] == 1 and summary["total"] == 9

    assert run("run", by_id, "-c", cfg) == 0  # a partner_id row needs no look-up
    assert server.ledger()["edin"]["partners"]["503"]["invitations"] == 1
    assert results_xlsx(tmp_path / "ids.results.xlsx")[0]["status"] == "sent"

    assert run("run", inp, "-c", cfg) == 1  # resume: nothing is sent twice
    again = results_xlsx(tmp_path / "p.results.xlsx")
    assert [r["status"] for r in again][:7] == ["skipped"] * 7
    assert all(p["invitations"] <= 1 and p["created"] <= 1 for p in partners_by_code(server).values())


def test_invoicebox_end_to_end_cp1251_csv(tmp_path: Path, sandbox: SandboxServer) -> None:
    emails = [f"shop{i}@Магазин.example" if i == 0 else f"shop{i}@Example.COM" for i in range(6)]
    rows = [[e, f"Магазин {i}"] for i, e in enumerate(emails)] + [["SHOP1@example.com", "дубль"], ["bad@", "x"]]
    inp = write_csv(tmp_path / "shops.csv", ["Электронная почта", "Название"], rows, encoding="cp1251")
    cfg = write_config(tmp_path / "c.yaml", sandbox.url, "invoicebox")
    assert run("run", inp, "-c", cfg) == 1
    out = results_csv(tmp_path / "shops.results.csv")
    assert [r["status"] for r in out] == ["sent"] * 6 + ["duplicate", "invalid"]
    assert out[1]["Электронная почта"] == "shop1@Example.COM"  # the original cell, as typed
    for r in out[:6]:
        assert len(r["invitation_id"]) == 36 and len(r["request_id"]) == 36 and r["http_status"] == "200"
    ledger = sandbox.ledger()["invoicebox"]["emails"]
    assert sum(v["invitations"] for v in ledger.values()) == 6
    assert ledger["shop1@example.com"]["invitations"] == 1


def test_mark_only_job_marks_and_never_invites_or_creates(
        tmp_path: Path, sandbox_factory: Callable[..., SandboxServer],
        preload: Callable[[list[dict[str, Any]]], Path]) -> None:
    codes = [code(5000000 + i) for i in range(4)]
    server = sandbox_factory(partners=preload([
        {"partnerId": 600 + i, "code": c, "name": f"P{i}"} for i, c in enumerate(codes[:3])]))
    inp = write_xlsx(tmp_path / "m.xlsx", ["code"], [[c] for c in codes])
    cfg = write_config(tmp_path / "c.yaml", server.url, action="mark", invite={"status_batch_size": 2})
    assert run("run", inp, "-c", cfg) == 1  # the fourth code is not on EDIN
    out = results_xlsx(tmp_path / "m.results.xlsx")
    assert [r["status"] for r in out] == ["sent", "sent", "sent", "failed"]
    assert "not found" in out[3]["detail"]
    ledger = server.ledger()
    assert [ledger["edin"]["partners"][str(600 + i)]["marks"] for i in range(3)] == [1, 1, 1]
    assert all(p["invitations"] == 0 and p["created"] == 0 for p in ledger["edin"]["partners"].values())
    assert "POST /bdoc/partner/invitation" not in ledger["calls"]
    assert run("run", inp, "-c", cfg) == 1
    assert [ledger["edin"]["partners"][str(600 + i)]["marks"] for i in range(3)] == [1, 1, 1]


@pytest.mark.parametrize(("faults", "code_seen"), [
    ({"throttle_rate": 0.3, "seed": 3}, "429"),  # 12 tries all throttled: ~5e-7 a row
    ({"error_rate": 0.4, "seed": 5}, "50"),
], ids=["429-storm", "5xx-then-success"])
def test_transient_faults_are_retried_and_nothing_is_sent_twice(
        tmp_path: Path, sandbox_factory: Callable[..., SandboxServer], faults: dict[str, Any], code_seen: str) -> None:
    clock = FakeClock()
    server = sandbox_factory(clock=clock.monotonic, **faults)
    emails = [f"s{i}@shops.example" for i in range(24)]
    inp = write_csv(tmp_path / "s.csv", ["email"], [[e] for e in emails])
    # Retry-After (1 s) capped to 0.05 s keeps the storm short; honouring it is tested on its own below.
    cfg = write_config(tmp_path / "c.yaml", server.url, "invoicebox", retry={"attempts": 12, "max_retry_after": 0.05})
    assert run_on(clock, inp, cfg) == 0
    out = results_csv(tmp_path / "s.results.csv")
    assert {r["status"] for r in out} == {"sent"}
    assert any(int(r["attempts"]) > 1 for r in out)
    ledger = server.ledger()
    assert all(ledger["invoicebox"]["emails"][e]["invitations"] == 1 for e in emails)
    assert any(k.startswith(code_seen) for k in ledger["responses"])


def test_retry_after_is_honoured(tmp_path: Path, sandbox_factory: Callable[..., SandboxServer]) -> None:
    clock = FakeClock()
    server = sandbox_factory(rate_limit="3/s", clock=clock.monotonic)
    inp = write_csv(tmp_path / "s.csv", ["email"], [[f"r{i}@shops.example"] for i in range(9)])
    cfg = write_config(tmp_path / "c.yaml", server.url, "invoicebox", retry={"attempts": 8, "max_retry_after": 5})
    assert run_on(clock, inp, cfg) == 0
    ledger = server.ledger()
    # Without honouring Retry-After (1 s) the fast retry policy (≤ 0.05 s) would burn 8 tries a row in 429s.
    throttled = ledger["responses"].get("429", 0)
    assert throttled <= 6
    assert ledger["responses"]["200"] == 9
    # Each 429 was followed by a wait of at least its Retry-After, on the clock the sandbox counts with.
    assert len([w for w in clock.waits if w >= 1.0]) >= throttled


class SignalDuringLongWaits(FakeClock):
    """Sends this process SIGTERM when a wait of 30 s or more begins, and holds the time until the stop is set."""

    def wait(self, event: threading.Event, seconds: float) -> bool:
        if seconds >= 30 and not event.is_set():
            holding = threading.Event()

            def hold() -> None:  # a busy worker: the time cannot move past the wait before the signal lands
                self.monotonic()
                holding.set()
                event.wait(10)

            threading.Thread(target=hold, name="worker-holding-the-time").start()
            holding.wait(10)
            os.kill(os.getpid(), signal.SIGTERM)
        return super().wait(event, seconds)


def test_a_stop_ends_a_retry_wait_at_once(tmp_path: Path, sandbox_factory: Callable[..., SandboxServer]) -> None:
    """SIGTERM while a worker sits out a 30 s Retry-After: the wait ends at once, the rest stays pending (exit 3)."""
    clock = SignalDuringLongWaits()
    server = sandbox_factory(rate_limit="1/30s", clock=clock.monotonic)  # the second invitation: 429, Retry-After 30
    emails = [f"t{i}@shops.example" for i in range(3)]
    inp = write_csv(tmp_path / "s.csv", ["email"], [[e] for e in emails])
    cfg = write_config(tmp_path / "c.yaml", server.url, "invoicebox", limits={"workers": 1, "rate": []},
                       retry={"attempts": 4, "max_retry_after": 60})
    with pytest.raises(Interrupted, match="SIGTERM"):
        run_on(clock, inp, cfg)
    assert max(clock.waits) >= 30.0  # the wait the 429 asked for...
    assert clock.elapsed < 1.0  # ...ended at once
    assert [r["status"] for r in results_csv(tmp_path / "s.results.csv")] == ["sent", "pending", "pending"]
    assert server.ledger()["responses"] == {"200": 1, "429": 1}


def test_provider_refusal_is_failed_with_its_code(tmp_path: Path, sandbox: SandboxServer) -> None:
    inp = write_xlsx(tmp_path / "p.xlsx", ["partner_id", "Назва"], [["987654", "Nobody"]])
    cfg = write_config(tmp_path / "c.yaml", sandbox.url)
    assert run("run", inp, "-c", cfg) == 1
    (row,) = results_xlsx(tmp_path / "p.results.xlsx")
    assert row["status"] == "failed" and row["http_status"] == 404
    assert row["detail"].startswith("HTTP 404 not_found: ") and row["attempts"] == 1


def test_session_expiry_mid_run_logs_in_again(tmp_path: Path, sandbox_factory: Callable[..., SandboxServer],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # The worker that logs in again holds the client's lock through its waits and the other worker waits for
    # that lock, not on the clock: a stalled schedule, which moves on after `grace` (no window is judged here).
    clock = FakeClock(grace=0.02)
    server = sandbox_factory(session_idle=600, clock=clock.monotonic)
    codes = [code(6000000 + i) for i in range(12)]
    inp = write_xlsx(tmp_path / "p.xlsx", EDIN_HEADERS, [[c, f"N{i}", f"n{i}@firm.ua"] for i, c in enumerate(codes)])
    cfg = write_config(tmp_path / "c.yaml", server.url, limits={"workers": 2, "rate": ["40/s"]})
    handle, invitations = server.app.handle, []

    def expire_after_three_invitations(req: Request) -> Response | None:
        answer = handle(req)
        if f"{req.method} {req.path}" == "POST /bdoc/partner/invitation":
            invitations.append(req.path)
            if len(invitations) == 3:
                clock.advance(700.0)  # eleven idle minutes pass at once, for the sandbox and for us
        return answer

    monkeypatch.setattr(server.app, "handle", expire_after_three_invitations)
    assert run_on(clock, inp, cfg) == 0
    ledger = server.ledger()
    assert clock.elapsed >= 700.0
    assert ledger["edin"]["logins"] == 2
    assert ledger["responses"].get("401", 0) >= 1
    assert all(partners_by_code(server)[c]["invitations"] == 1 for c in codes)


def test_status_marks_are_batched(tmp_path: Path, sandbox: SandboxServer) -> None:
    codes = [code(7000000 + i) for i in range(25)]
    inp = write_xlsx(tmp_path / "p.xlsx", EDIN_HEADERS, [[c, f"N{i}", f"n{i}@firm.ua"] for i, c in enumerate(codes)])
    cfg = write_config(tmp_path / "c.yaml", sandbox.url, invite={"status_batch_size": 10})
    assert run("run", inp, "-c", cfg) == 0
    ledger = sandbox.ledger()
    assert ledger["calls"]["POST /bdoc/partner/status"] <= math.ceil(25 / 10) + 1
    assert all(partners_by_code(sandbox)[c]["marks"] == 1 for c in codes)


def test_unmarked_rows_are_marked_on_the_next_run(tmp_path: Path, sandbox: SandboxServer) -> None:
    codes = [code(7100000 + i) for i in range(3)]
    inp = write_xlsx(tmp_path / "p.xlsx", EDIN_HEADERS, [[c, f"N{i}", f"n{i}@firm.ua"] for i, c in enumerate(codes)])
    cfg_no_mark = write_config(tmp_path / "n.yaml", sandbox.url, invite={"mark_status": False})
    assert run("run", inp, "-c", cfg_no_mark, "-o", tmp_path / "a.xlsx") == 0
    assert all(partners_by_code(sandbox)[c]["marks"] == 0 for c in codes)
    assert {r["marked"] for r in results_xlsx(tmp_path / "a.xlsx")} == {None}
    cfg = write_config(tmp_path / "c.yaml", sandbox.url)
    assert run("run", inp, "-c", cfg) == 0
    out = results_xlsx(tmp_path / "p.results.xlsx")
    assert [(r["status"], r["marked"]) for r in out] == [("skipped", "yes")] * 3
    assert all(partners_by_code(sandbox)[c]["invitations"] == 1 for c in codes)
    assert all(partners_by_code(sandbox)[c]["marks"] == 1 for c in codes)
    assert sandbox.ledger()["calls"]["POST /bdoc/partner/status"] == 1


def test_limiter_never_exceeds_any_window(tmp_path: Path, sandbox_factory: Callable[..., SandboxServer]) -> None:
    clock = FakeClock()  # the run's workers and the sandbox's ledger share it: windows without scheduler jitter
    server = sandbox_factory(clock=clock.monotonic)
    inp = write_csv(tmp_path / "s.csv", ["email"], [[f"w{i}@shops.example"] for i in range(30)])
    cfg = write_config(tmp_path / "c.yaml", server.url, "invoicebox", limits={"workers": 6, "rate": ["10/s", "25/3s"]})
    assert run_on(clock, inp, cfg) == 0
    assert server.ledger()["requests"] == 30
    assert server.ledger()["max_requests_per_second"] <= 10
    assert server.ledger(window=3)["max_requests_per_window"] <= 25
    assert clock.elapsed >= 3.0  # 30 requests under 25/3s cannot all go within one 3-second window


def test_circuit_breaker_stops_the_run(tmp_path: Path, sandbox_factory: Callable[..., SandboxServer]) -> None:
    server = sandbox_factory(error_rate=1.0, seed=1)
    inp = write_csv(tmp_path / "s.csv", ["email"], [[f"c{i}@shops.example"] for i in range(40)])
    cfg = write_config(tmp_path / "c.yaml", server.url, "invoicebox", retry={"attempts": 1},
                       limits={"workers": 2, "rate": []}, stop_after_consecutive_failures=3)
    assert run("run", inp, "-c", cfg) == 3
    statuses = [r["status"] for r in results_csv(tmp_path / "s.results.csv")]
    assert 3 <= statuses.count("failed") <= 4
    assert statuses.count("pending") == 40 - statuses.count("failed")


def test_limit_leaves_the_rest_pending(tmp_path: Path, sandbox: SandboxServer) -> None:
    inp = write_csv(tmp_path / "s.csv", ["email"], [[f"l{i}@shops.example"] for i in range(10)])
    cfg = write_config(tmp_path / "c.yaml", sandbox.url, "invoicebox")
    assert run("run", inp, "-c", cfg, "--limit", "3") == 0
    statuses = [r["status"] for r in results_csv(tmp_path / "s.results.csv")]
    assert statuses == ["sent"] * 3 + ["pending"] * 7
    assert run("run", inp, "-c", cfg) == 0
    statuses = [r["status"] for r in results_csv(tmp_path / "s.results.csv")]
    assert statuses == ["skipped"] * 3 + ["sent"] * 7


def test_dry_run_sends_nothing_and_writes_no_checkpoint(tmp_path: Path, sandbox: SandboxServer) -> None:
    inp = write_csv(tmp_path / "s.csv", ["email"], [["a@shops.example"], ["nope"]])
    cfg = write_config(tmp_path / "c.yaml", sandbox.url, "invoicebox")
    assert run("run", inp, "-c", cfg, "--dry-run") == 1
    assert run("validate", inp, "-c", cfg, "-o", tmp_path / "v.csv") == 1
    assert sandbox.ledger()["requests"] == 0
    assert not (tmp_path / "s.checkpoint.sqlite").exists()
    out = results_csv(tmp_path / "v.csv")
    assert [(r["status"], r["detail"][:10]) for r in out] == [("pending", "would send"), ("invalid", "email: \"no")]


def test_wrong_password_stops_with_exit_3_and_never_shows_it(
        tmp_path: Path, sandbox: SandboxServer, capfd: pytest.CaptureFixture[str]) -> None:
    inp = write_xlsx(tmp_path / "p.xlsx", EDIN_HEADERS, [[code(8000000), "N", "n@firm.ua"]])
    password = "Wr0ng-pa$$word-9731"
    cfg = write_config(tmp_path / "c.yaml", sandbox.url, auth={"email": "demo@example.com", "password": password})
    assert run("run", inp, "-c", cfg, "-v") == 3
    err = capfd.readouterr().err
    assert "demo@example.com" in err and password not in err
    assert [r["status"] for r in results_xlsx(tmp_path / "p.results.xlsx")] == ["pending"]
    assert sandbox.ledger()["calls"].get("POST /bdoc/partner/invitation") is None


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_verbose_logs_show_requests_but_no_secret(tmp_path: Path, sandbox: SandboxServer,
                                                  capfd: pytest.CaptureFixture[str], fmt: str) -> None:
    inp = write_xlsx(tmp_path / "p.xlsx", EDIN_HEADERS, [[code(8100000 + i), "N", f"n{i}@firm.ua"] for i in range(3)])
    cfg = write_config(tmp_path / "c.yaml", sandbox.url)
    assert run("run", inp, "-c", cfg, "-v", "--log-format", fmt) == 0
    err = capfd.readouterr().err
    assert "/bdoc/partner/invitation" in err
    assert "demo-password" not in err
    sids = sandbox.issued_sids()
    assert sids and not any(sid in err for sid in sids)
    if fmt == "json":
        lines = [json.loads(line) for line in err.splitlines() if line.strip()]
        assert all({"level", "message"} <= set(line) for line in lines)


def test_results_workbook_fed_back_as_input_sends_nothing_again(tmp_path: Path, sandbox: SandboxServer) -> None:
    codes = [code(7200000 + i) for i in range(3)]
    inp = write_xlsx(tmp_path / "p.xlsx", EDIN_HEADERS, [[c, f"N{i}", f"n{i}@firm.ua"] for i, c in enumerate(codes)])
    cfg = write_config(tmp_path / "c.yaml", sandbox.url)
    assert run("run", inp, "-c", cfg) == 0
    # The operator edits the results workbook and runs it: its partner_id column now names each partner.
    fed_back = tmp_path / "p.results.xlsx"
    assert run("run", fed_back, "-c", cfg, "--checkpoint", tmp_path / "p.checkpoint.sqlite",
               "-o", tmp_path / "again.xlsx") == 0
    again = results_xlsx(tmp_path / "again.xlsx")  # its own columns come first; ours get a suffix
    assert [r["status (result)"] for r in again] == ["skipped"] * 3
    assert all(partners_by_code(sandbox)[c]["invitations"] == 1 for c in codes)


def test_a_results_folder_that_does_not_exist_stops_before_anything_is_sent(
        tmp_path: Path, sandbox: SandboxServer, caplog: pytest.LogCaptureFixture) -> None:
    inp = write_csv(tmp_path / "p.csv", EDIN_HEADERS, [[code(1), "A", "a@example.com"]])
    cfg = write_config(tmp_path / "c.yaml", sandbox.url)
    assert run("run", inp, "-c", cfg, "-o", tmp_path / "missing" / "r.xlsx") == 2
    assert "the folder" in caplog.text and "does not exist" in caplog.text
    assert sandbox.ledger()["requests"] == 0  # not even a login
    assert not (tmp_path / "p.checkpoint.sqlite").exists()


def test_results_that_cannot_be_written_after_sending_stop_with_3_and_say_how_to_get_them(
        tmp_path: Path, sandbox: SandboxServer, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Regression: this was the usage error (exit 2, "nothing was sent") although every row had been sent.
    from batch import runner
    from batch.errors import OutputError

    def full_disk(*args: object, **kw: object) -> None:
        raise OutputError("r.xlsx: cannot write in the folder: No space left on device")

    monkeypatch.setattr(runner, "write_results", full_disk)
    inp = write_csv(tmp_path / "p.csv", EDIN_HEADERS, [[code(1), "A", "a@example.com"]])
    cfg = write_config(tmp_path / "c.yaml", sandbox.url)
    assert run("run", inp, "-c", cfg) == 3
    assert "No space left on device" in caplog.text and "invite-batch report" in caplog.text
    monkeypatch.undo()
    assert run("report", tmp_path / "p.checkpoint.sqlite", "-o", tmp_path / "r.csv") == 0
    assert [r["status"] for r in results_csv(tmp_path / "r.csv")] == ["sent"]
