"""Kontur.Diadoc (SPEC §13): rules, config, and whole runs through the real CLI against the real sandbox."""

from __future__ import annotations

import csv
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support import write_config

from batch.checkpoint import ItemState, Journal
from batch.cli import main
from batch.config import parse_config
from batch.errors import ConfigError
from batch.providers.diadoc.rules import normalise_inn, normalise_kpp
from batch.sandbox import SandboxServer

Factory = Callable[..., SandboxServer]
DEMO_BOX = "7bb2de7a-c2a0-5113-8dc8-9cee0e2ae0be"
AUTH = {"client_id": "sandbox-client", "client_secret": "sandbox-secret", "refresh_token": "sandbox-refresh"}
# Polls wait Retry-After (the sandbox asks ≥ 1 s) capped by max_retry_after: tests keep it tiny.
RETRY = {"attempts": 4, "initial_wait": 0.01, "max_wait": 0.05, "max_retry_after": 0.02}
HEAD = "ИНН;КПП;Наименование;Email;Сообщение"

# Every case of SPEC §13.3 against the seeded organisations (batch/sandbox/README.md): row → (status, detail).
CASES: list[tuple[str, str, str]] = [
    ("7702001015;770201001;Уже Партнёр;a@uzhe.ru;", "skipped", "already a counterparty"),
    ("7702001022;;Ждёт Ответа;;", "skipped", "already invited, awaiting their answer"),
    ("7702001030;;Зовёт Нас;;", "skipped", "they invited you: accept in Diadoc"),
    ("7702001047;;Отказал Нам;;", "skipped", "they refused or ended the partnership"),
    ("7702001054;;Отказали Мы;;", "skipped", "they refused or ended the partnership"),
    ("7702001061;;Открытые Двери;;", "sent", "connected at once"),
    ("7702001079;;Только Роуминг;;", "failed", "roaming counterparty: a roaming request is needed"),
    ("7702001086;;Двойник;;Своё сообщение", "sent", "invited"),
    ("7702001093;;Головной Офис;;", "sent", "invited"),
    ("7702001093;772643001;Филиал Север;;", "sent", "invited"),
    ("7702001093;770201001;Головной ещё раз;;", "duplicate", "same Diadoc box as row 10"),
    ("7702001103;;Две Головы;;", "failed", "several Diadoc organisations for this INN: give the KPP"),
    ("7702001103;770301001;Две Головы с КПП;;", "sent", "invited"),
    ("770200111103;;ИП Иванов;;", "sent", "invited"),
    ("274001239;27401001;Башкирский Ноль;;", "sent",
     "INN 274001239 zero-padded to 0274001239; KPP 27401001 zero-padded to 027401001; invited"),
    ("7704002014;;Только в ЕГРЮЛ;;", "sent", "invited by INN: Diadoc opens a box (head office only)"),
    ("7704999991;;Нигде;;", "failed", "Организация с ИНН 7704999991 не найдена в ЕГРЮЛ/ЕГРИП"),
    ("7702001016;;Плохой ИНН;;", "invalid", 'ИНН: "7702001016" is not a valid INN: wrong check digits'),
    ("77020010;;Короткий;;", "invalid",
     'ИНН: "77020010" has 8 digits; an INN has 10 (organisation) or 12 (individual)'),
    ("770200111103;770201001;ИП с КПП;;", "invalid", "КПП: an individual's INN (12 digits) has no KPP"),
    ("7703000014;77030100;Неполный КПП;;", "sent", "KPP 77030100 zero-padded to 077030100; invited"),
    ("7703000021;77X301001;Плохой КПП;;", "invalid",
     'КПП: "77X301001" is not a KPP: 9 characters, 4 digits, 2 digits or letters A-Z, 3 digits'),
    ("7703000039;;Почта;not-an-address;", "invalid", 'Email: "not-an-address" is not a valid e-mail address'),
    ("7703000046;;Повтор;;", "sent", "invited"),
    ("7703000046;;Повтор;;", "duplicate", "same partner as row 25"),
]


def config(tmp_path: Path, url: str, **sections: Any) -> Path:
    cfg = write_config(tmp_path / "diadoc.yaml", url, "diadoc", retry=RETRY, **sections)
    cfg.chmod(0o600)
    return cfg


def run(tmp_path: Path, cfg: Path, lines: list[str], *extra: str,
        name: str = "in.csv") -> tuple[int, list[dict[str, str]]]:
    source = tmp_path / name
    if not source.exists() or "--keep-input" not in extra:
        source.write_text("\n".join([HEAD, *lines]) + "\n", encoding="utf-8")
    out = tmp_path / "out.csv"
    args = [a for a in extra if a != "--keep-input"]
    code = main(["run", str(source), "-c", str(cfg), "-o", str(out), "--no-progress", "-q", *args])
    with out.open(encoding="utf-8-sig", newline="") as f:
        return code, list(csv.DictReader(f))


# ── rules ──────────────────────────────────────────────────────────────────────────────────────

@pytest.mark.parametrize(("text", "expected"), [
    ("7702001015", ("7702001015", "", "")),
    ("770200111103", ("770200111103", "", "")),
    ("274001239", ("0274001239", "", "INN 274001239 zero-padded to 0274001239")),
    ("7702 001015", ("7702001015", "", "")),
    ("7702001016", ("", "is not a valid INN: wrong check digits", "")),
    ("772001017", ("", "has 9 digits; an INN has 10 (organisation) or 12 (individual)", "")),
    ("0000000000", ("", "is not an INN: all zeros", "")),
    ("77O2001015", ("", "is not an INN: only digits are allowed", "")),
], ids=["org", "individual", "lost-zero", "spaces", "check-digit", "nine-not-padded", "zeros", "letter"])
def test_inn(text: str, expected: tuple[str, str, str]) -> None:
    assert normalise_inn(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("770201001", ("770201001", "", "")),
    ("7702ab001", ("7702AB001", "", "")),
    ("27401001", ("027401001", "", "KPP 27401001 zero-padded to 027401001")),
    ("77020100", ("077020100", "", "KPP 77020100 zero-padded to 077020100")),
    ("7702010011", ("", "is not a KPP: 9 characters, 4 digits, 2 digits or letters A-Z, 3 digits", "")),
    ("77A201001", ("", "is not a KPP: 9 characters, 4 digits, 2 digits or letters A-Z, 3 digits", "")),
], ids=["plain", "letters-upper-cased", "lost-zero", "eight-digits", "ten", "letter-in-region"])
def test_kpp(text: str, expected: tuple[str, str, str]) -> None:
    assert normalise_kpp(text) == expected


# ── config ─────────────────────────────────────────────────────────────────────────────────────

def diadoc(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"provider": "diadoc", "auth": dict(AUTH), "invite": {}}
    for key, value in over.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) else value
    return data


def test_config_defaults_and_box_forms() -> None:
    cfg = parse_config(diadoc(invite={"my_box_id": "2A208D032A604F6491B1B7AAD54CFAF3@diadoc.ru"}))
    assert cfg.base_url == "https://diadoc-api.kontur.ru" and [str(r) for r in cfg.limits.rate] == ["50/1s"]
    assert cfg.invite.my_box_id == "2a208d03-2a60-4f64-91b1-b7aad54cfaf3"
    assert (cfg.invite.unregistered, cfg.invite.accept_incoming, cfg.invite.result_timeout) == ("invite_by_inn",
                                                                                                 False, 120.0)
    assert cfg.secrets() == ("sandbox-secret", "sandbox-refresh")
    assert "sandbox-secret" not in repr(cfg.auth) and "sandbox-refresh" not in repr(cfg.auth)


@pytest.mark.parametrize(("over", "problem"), [
    ({"auth": {"refresh_token_file": "/nonexistent"}}, "auth.refresh_token: give refresh_token or refresh_token_file"),
    ({"auth": {"refresh_token": None}}, "auth.refresh_token: give refresh_token or refresh_token_file"),
    ({"auth": {"client_secret": None}}, "auth.client_secret: is required for diadoc"),
    ({"auth": {"password": "x"}}, "auth.password: is for edin"),
    ({"auth": {"token_url": "http://identity.example.com/connect/token"}}, "auth.token_url: plain http is refused"),
    ({"invite": {"my_box_id": "box-1"}}, "invite.my_box_id: must be a BoxIdGuid"),
    ({"invite": {"message": "я" * 2001}}, "invite.message: at most 2000 characters"),
    ({"invite": {"unregistered": "ignore"}}, "invite.unregistered: must be invite_by_inn or fail"),
    ({"invite": {"partner_id": "x"}}, "invite.partner_id: unknown key"),
    ({"action": "mark"}, "action: must be invite for diadoc"),
], ids=["both-tokens", "no-token", "no-secret", "edin-key", "plain-http-token-url", "bad-box", "long-message",
        "unregistered", "invoicebox-key", "mark"])
def test_config_problems(over: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(diadoc(**over))
    assert any(p.startswith(problem) for p in e.value.problems), e.value.problems


def test_template_has_the_russian_headers(tmp_path: Path) -> None:
    out = tmp_path / "t.csv"
    assert main(["template", "diadoc", "-o", str(out), "-q"]) == 0
    assert out.read_text(encoding="utf-8-sig").splitlines()[0] == "ИНН,КПП,Наименование,Email,Сообщение"


# ── whole runs ─────────────────────────────────────────────────────────────────────────────────

def test_every_case_of_the_status_table(sandbox_factory: Factory, tmp_path: Path) -> None:
    sandbox = sandbox_factory(task_ms=30)
    cfg = config(tmp_path, sandbox.url, invite={"message": "Приглашаем"})
    code, rows = run(tmp_path, cfg, [line for line, _, _ in CASES])
    assert code == 1
    got = [(r["status"], r["detail"]) for r in rows]
    for (line, status, detail), (got_status, got_detail), r in zip(CASES, got, rows, strict=True):
        assert got_status == status and got_detail.startswith(detail), (line, r)
        if status == "sent":
            assert r["invitation_id"] and r["partner_id"] and r["request_id"] and r["sent_at"], r
    ledger = sandbox.ledger()
    agents = ledger["diadoc"]["counteragents"]
    # Only the rows to invite got an AcquireCounteragent, each exactly one; skipped ones none.
    assert {k: v["acquires"] for k, v in agents.items()} == {
        "7702001061/770201001": 1, "7702001086/770201001": 1, "7702001093/770201001": 1,
        "7702001093/772643001": 1, "7702001103/770301001": 1, "770200111103/": 1, "0274001239/027401001": 1,
        "7704002014/770401001": 1, "7704999991/": 1, "7703000014/770301001": 1, "7703000046/770301001": 1,
    }  # the roaming one's 409 processed nothing, so the ledger does not list it
    assert ledger["diadoc"]["tokens"]["issued"] == 1  # one token for all four workers
    assert "GET /V2/AcquireCounteragentResult" not in ledger["calls"]
    assert all(not c.startswith(("POST /V1", "POST /V2", "GET /V1", "GET /V2")) for c in ledger["calls"])
    # The message went with the invitation: the row's own, else the config's.
    orgs = {o["Inn"] + o["FullName"]: o for o in sandbox.app.diadoc.organizations()}
    assert orgs["7702001086ООО «Двойник»"]["Relation"] == "IsInvitedByMe"
    assert sandbox.app.diadoc._messages["ab8791d3-aad5-52d3-bb88-063f65c2b88c"] == "Своё сообщение"
    assert sandbox.app.diadoc._messages["8a4086a2-270c-5f79-b6cc-e1cb5ed11d25"] == "Приглашаем"

    # A second run sends nothing again: every row is settled by the checkpoint.
    before = sandbox.ledger()["calls"].get("POST /V3/AcquireCounteragent", 0)
    code, again = run(tmp_path, cfg, [line for line, _, _ in CASES], "--keep-input")
    assert sandbox.ledger()["calls"].get("POST /V3/AcquireCounteragent", 0) == before
    assert all(r["status"] == "skipped" for r, (_, s, _) in zip(again, CASES, strict=True) if s in ("sent", "skipped"))
    # The run-time duplicate's box was invited by row 10 meanwhile: its relation says so now.
    assert (again[10]["status"], again[10]["detail"]) == ("skipped", "already invited, awaiting their answer")


def test_options_accept_reinvite_and_fail_unregistered(sandbox_factory: Factory, tmp_path: Path) -> None:
    sandbox = sandbox_factory()
    cfg = config(tmp_path, sandbox.url, invite={"accept_incoming": True, "reinvite_rejected": True,
                                                "unregistered": "fail"})
    code, rows = run(tmp_path, cfg, ["7702001030;;;;", "7702001047;;;;", "7702001054;;;;", "7704002021;;;;"])
    assert [(r["status"], r["detail"]) for r in rows] == [
        ("sent", "accepted their invitation"), ("sent", "invited again after a refusal"),
        ("sent", "invited again after a refusal"), ("failed", "not on Diadoc")]
    agents = sandbox.ledger()["diadoc"]["counteragents"]
    assert agents["7702001030/770201001"]["accepted"] == 1 and agents["7702001047/770201001"]["invitations"] == 1
    assert not any(k.startswith("7704002021") for k in agents)  # nothing sent for the unregistered one
    assert code == 1


def test_short_lived_tokens_rotate_into_the_refresh_token_file(sandbox_factory: Factory, tmp_path: Path) -> None:
    # The sandbox's clock leaps a second every 10 readings: its 3-second tokens expire mid-run (a 401, one refresh).
    readings = iter(range(10**9))
    sandbox = sandbox_factory(token_ttl=3, rotate_refresh=True, clock=lambda: time.monotonic() + next(readings) // 10)
    token_file = tmp_path / "diadoc.refresh"
    token_file.write_text("sandbox-refresh\n", encoding="utf-8")
    cfg = config(tmp_path, sandbox.url, auth={"refresh_token": None, "refresh_token_file": str(token_file)},
                 limits={"workers": 2, "rate": []})
    inns = ["7703000053", "7703000060", "7703000078", "7703000085", "7703000092", "7703000102", "7703000110",
            "7703000127", "7703000134", "7703000141"]
    code, rows = run(tmp_path, cfg, [f"{i};;;;" for i in inns])
    assert code == 0 and {r["status"] for r in rows} == {"sent"}, rows
    tokens = sandbox.ledger()["diadoc"]["tokens"]
    assert tokens["issued"] >= 3 and tokens["refused"] == 0  # expired, refreshed on the 401, rotated each time
    calls = sum(n for call, n in sandbox.ledger()["calls"].items() if call != "POST /connect/token")
    assert calls >= 4 * len(inns) and tokens["issued"] < calls / 4  # cached: far fewer tokens than calls
    kept = token_file.read_text(encoding="utf-8").strip()
    assert kept != "sandbox-refresh" and kept in sandbox.issued_tokens()
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    # The next run starts from the rotated token in the file: the spent demo token would be refused.
    code, _ = run(tmp_path, cfg, ["7703000159;;;;"])
    assert code == 0 and sandbox.ledger()["diadoc"]["tokens"]["refused"] == 0


def test_refused_refresh_token_stops_the_run_with_exit_3(sandbox_factory: Factory, tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    sandbox = sandbox_factory()
    cfg = config(tmp_path, sandbox.url, auth={"refresh_token": "spent-token-123"})
    code, rows = run(tmp_path, cfg, ["7703000166;;;;"])
    assert code == 3 and rows[0]["status"] == "pending"
    assert "issue a new refresh token in the Diadoc integrator cabinet" in caplog.text
    assert "spent-token-123" not in caplog.text
    assert "POST /V3/AcquireCounteragent" not in sandbox.ledger()["calls"]


def test_a_box_not_in_the_account_stops_before_sending_with_exit_2(sandbox_factory: Factory, tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    sandbox = sandbox_factory()
    cfg = config(tmp_path, sandbox.url, invite={"my_box_id": "2a208d03-2a60-4f64-91b1-b7aad54cfaf3"})
    code, _ = run(tmp_path, cfg, ["7703000166;;;;"])
    assert code == 2
    assert f"ООО «Песочница» (демо-ящик) (INN/KPP 7701001005/770101001, BoxIdGuid {DEMO_BOX})" in caplog.text
    assert "POST /V3/AcquireCounteragent" not in sandbox.ledger()["calls"]


def test_a_task_still_running_is_polled_by_the_next_run_never_resent(sandbox_factory: Factory,
                                                                    tmp_path: Path) -> None:
    sandbox = sandbox_factory(task_ms=60_000)
    cfg = config(tmp_path, sandbox.url, invite={"result_timeout": 0.1})
    code, rows = run(tmp_path, cfg, ["7703000173;;;;"])
    task_id = rows[0]["invitation_id"]
    assert code == 1 and rows[0]["status"] == "unknown"
    assert rows[0]["detail"].startswith(f"task {task_id} still running")
    with Journal.open_readonly(tmp_path / "in.checkpoint.sqlite") as journal:
        (item,) = journal.items().values()
    assert item.state is ItemState.IN_FLIGHT and item.invitation_id == task_id  # committed as soon as known
    sandbox.configure(task_ms=0)  # the sandbox's tasks now end at once, the running one included
    sandbox.app.diadoc._tasks[task_id].ready = 0.0
    code, rows = run(tmp_path, cfg, ["7703000173;;;;"], "--keep-input")
    assert code == 0
    assert (rows[0]["status"], rows[0]["detail"], rows[0]["invitation_id"]) == ("sent", "invited", task_id)
    assert sandbox.ledger()["diadoc"]["counteragents"]["7703000173/770301001"]["acquires"] == 1


def test_lost_answers_are_settled_by_the_look(sandbox_factory: Factory, tmp_path: Path) -> None:
    """Every send answered 500/502/504 (processed about half the time): the relation read after each tells
    a processed one from a lost one, so each counterparty gets at most one processed AcquireCounteragent."""
    sandbox = sandbox_factory(seed=3)
    cfg = config(tmp_path, sandbox.url)
    code, _ = run(tmp_path, cfg, ["7703000180;;;;"])  # one answered send: the check finds the relation visible
    assert code == 0
    sandbox.configure(ambiguous_rate=1.0)
    inns = ["7703000198", "7703000208", "7703000222", "7703000230", "7703000247", "7703000254", "7704002039"]
    code, rows = run(tmp_path, cfg, [f"{i};;;;" for i in inns], name="second.csv")
    agents = sandbox.ledger()["diadoc"]["counteragents"]
    acquires = {k.split("/")[0]: v["acquires"] for k, v in agents.items()}
    assert {i: n for i, n in acquires.items() if n != 1 and i != "7703000180"} == {}, (acquires, rows)
    found = [r for r in rows if r["detail"] == "found invited on reconciliation"]
    assert found and all(r["status"] == "sent" for r in found)
    # A row is sent only where its invitation was processed; unknown only after three lost sends.
    assert all(acquires.get(r["ИНН"]) == 1 for r in rows if r["status"] == "sent")
    assert all(r["ИНН"] not in acquires for r in rows if r["status"] == "unknown")


def test_status_shows_the_relation_check_and_unsettled_rows_become_unknown(sandbox_factory: Factory,
                                                                          tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    # The other reading of the docs: an invitation shows only once its task is done (here: after 60 s).
    sandbox = sandbox_factory(relation_visible_on="result", task_ms=60_000)
    cfg = config(tmp_path, sandbox.url, invite={"result_timeout": 0.05})
    code, rows = run(tmp_path, cfg, ["7703000215;;;;"])
    assert rows[0]["status"] == "unknown" and "still running" in rows[0]["detail"]
    checkpoint = tmp_path / "in.checkpoint.sqlite"
    with Journal.open_readonly(checkpoint) as journal:
        assert journal.fact("diadoc.relation_visible_at_send") == "no"
    assert main(["status", str(checkpoint)]) == 0
    assert "diadoc.relation_visible_at_send" in capsys.readouterr().out
    # Now every answer to a send is lost (processed half the time): a look-up cannot tell, so no resend.
    sandbox.configure(ambiguous_rate=1.0)
    inns = ["7703000222", "7703000230", "7703000247"]
    code, rows = run(tmp_path, cfg, [f"{i};;;;" for i in inns], name="in.csv")
    assert [r["status"] for r in rows] == ["unknown"] * 3, rows
    assert all("a look-up cannot tell whether it arrived" in r["detail"] for r in rows)
    agents = sandbox.ledger()["diadoc"]["counteragents"]
    assert all(agents.get(f"{i}/770301001", {"acquires": 0})["acquires"] <= 1 for i in inns)


def test_lost_answers_before_the_check_wait_then_become_unknown_then_resend_only_after_the_look(
        sandbox_factory: Factory, tmp_path: Path) -> None:
    # A fresh checkpoint and every send answered 500/502/504 (processed about half the time). A processed one
    # shows in the look: sent. For the others no send was answered, so the look-up is untested: they wait for the
    # other rows, then end unknown rather than be sent again.
    sandbox = sandbox_factory(seed=5, ambiguous_rate=1.0)
    cfg = config(tmp_path, sandbox.url)
    inns = ["7703000261", "7703000279", "7703000286", "7703000293", "7703000303", "7703000310"]
    code, rows = run(tmp_path, cfg, [f"{i};;;;" for i in inns])
    first = {k.split("/")[0]: v["acquires"] for k, v in sandbox.ledger()["diadoc"]["counteragents"].items()}
    assert set(first.values()) == {1} and 0 < len(first) < len(inns)  # some processed, some not
    assert code == 1
    for r in rows:
        if r["ИНН"] in first:
            assert (r["status"], r["detail"]) == ("sent", "found invited on reconciliation"), r
        else:
            assert r["status"] == "unknown" and "a look-up cannot tell yet whether it arrived" in r["detail"], r
    # Answers come back; the operator resends the unknown rows: each is looked up first, then sent once.
    sandbox.configure(ambiguous_rate=0.0)
    code, rows = run(tmp_path, cfg, [f"{i};;;;" for i in inns], "--keep-input", "--resend-unknown")
    assert code == 0 and [r["status"] for r in rows] == ["skipped" if i in first else "sent" for i in inns], rows
    agents = sandbox.ledger()["diadoc"]["counteragents"]
    assert {k.split("/")[0]: v["acquires"] for k, v in agents.items()} == dict.fromkeys(inns, 1)
