"""The resume fast path (plan.settle, runner.snapshot_key): a re-run of an unchanged file decides the rows an earlier
run finished from the checkpoint's saved snapshot instead of validating them again. It must decide exactly what
the full path (validate every row, plan against every item) decides, and `report` must rebuild what it wrote.
"""

from __future__ import annotations

import csv
import io
import random
from pathlib import Path
from typing import Any

import pytest
import support
from support import fields_of

import batch
from batch import plan, runner
from batch.checkpoint import ItemState, Journal
from batch.config import Config, load_config
from batch.model import RowResult, Status, Table
from batch.providers.base import Identity
from batch.reader import read_table
from batch.report import rewrite_results
from batch.runner import RunOptions, run_batch, snapshot_key
from batch.sandbox import SandboxServer
from batch.validation import validate_rows

IB_PARTNER = support.IB_PARTNER


def config(tmp_path: Path, provider: str, url: str = "https://edo.example.com", **invite: Any) -> Config:
    return load_config(support.write_config(tmp_path / f"{provider}.yaml", url, provider, invite=invite))


def invoicebox_input(tmp_path: Path, *emails: str) -> tuple[Config, Table]:
    cfg = config(tmp_path, "invoicebox")
    src = tmp_path / "p.csv"
    src.write_text("email\n" + "".join(f"{e}\n" for e in emails), encoding="utf-8")
    return cfg, read_table(src, **fields_of("invoicebox"))


def wrong(code: str) -> str:
    """The code with its check digit off by one."""
    return code[:-1] + str((int(code[-1]) + 1) % 10)


def both_ways(table: Table, cfg: Config, journal: Journal, **flags: bool) -> tuple[plan.Plan, plan.Plan]:
    """The full path's plan and the fast path's, over the same table and journal."""
    full = plan.plan(validate_rows(table, cfg), cfg, journal, **flags)
    settled = plan.settle(table, journal.saved_rows(), cfg)
    assert settled is not None
    fast = plan.plan(validate_rows(table, cfg, skip=settled.results), cfg, journal, settled=settled, **flags)
    return full, fast


def assert_same(full: plan.Plan, fast: plan.Plan) -> None:
    assert fast.results == full.results  # every field of every line, in order
    assert [(t.identity, t.values, t.result, t.item) for t in fast.tasks] == [
        (t.identity, t.values, t.result, t.item) for t in full.tasks]
    assert sorted((t.identity.key, t.result.partner_id, t.result.line) for t in fast.followups) == sorted(
        (t.identity.key, t.result.partner_id, t.result.line) for t in full.followups)
    assert fast.lost == full.lost


def save_snapshot(journal: Journal, table: Table, cfg: Config) -> None:
    """What a run does at its start: record itself and the input's rows with their identities."""
    journal.start_run(input_path=table.path, input_sha256=table.sha256, config_fingerprint=cfg.fingerprint(),
                      provider=cfg.provider, action=cfg.action, headers=table.headers)
    journal.save_rows([(r.line, r.identity.key if r.identity is not None else None, r.cells)
                       for r in validate_rows(table, cfg)], snapshot_key(table, cfg))


@pytest.mark.parametrize("flags", [{}, {"retry_failed": True, "resend_unknown": True}], ids=["plain", "retry-resend"])
def test_edin_fast_path_decides_every_row_as_the_full_path_does(tmp_path: Path, flags: dict[str, bool]) -> None:
    cfg = config(tmp_path, "edin")
    a, b, c, d, e, f, g, h, k = support.edrpou_codes(9, random.Random(5))
    src = tmp_path / "p.csv"
    src.write_text("\n".join([
        "code,partner_id,name,email,contract_template_id",
        f"{a},,A,a@example.com,",       # 2 sent and marked
        f"{b},,B,b@example.com,",       # 3 sent, mark failed: owed
        f"{c},,C,c@example.com,",       # 4 skipped by an earlier run (already invited)
        f"{d},,D,d@example.com,",       # 5 failed
        f"{e},,E,e@example.com,",       # 6 unknown
        f"{f},,F,f@example.com,",       # 7 in flight: looked up again
        f"{g},,G,g@example.com,",       # 8 created, not yet invited
        f"{h},,H,h@example.com,",       # 9 never tried
        f"{a},,A again,a@example.com,",  # 10 duplicate of 2
        f"{h},,,,",                     # 11 duplicate of 9
        f"{wrong(k)},,Bad,bad@example.com,",  # 12 invalid: wrong check digit
        ",100,by id,,",                 # 13 names the partner id row 2's code resolved to
        f"{b},,B other,b@example.com,7777",  # 14 the same partner, another template: another invitation
        f"{k},,K,not-an-address,",      # 15 invalid e-mail
    ]) + "\n", encoding="utf-8")
    table = read_table(src, **fields_of("edin"))
    ident = {code: support.identity_of("edin", code=code, contract_template_id="5551")
             for code in (a, b, c, d, e, f, g, h)}
    with Journal.open(tmp_path / "p.sqlite") as journal:
        save_snapshot(journal, table, cfg)
        for n, (code, state) in enumerate([(a, ItemState.SENT), (b, ItemState.SENT), (c, ItemState.SKIPPED),
                                           (d, ItemState.FAILED), (e, ItemState.UNKNOWN)]):
            journal.begin(ident[code], step="invite", partner_id=str(100 + n))
            journal.finish(ident[code], state=state, http_status=200, request_id=f"r{n}", detail=f"d{n}",
                           marked="yes" if code == a else "failed" if code == b else None)
        journal.begin(ident[f], step="invite", partner_id="105")
        journal.record_partner(ident[g], "106")

        full, fast = both_ways(table, cfg, journal, **flags)
    assert_same(full, fast)
    status = {r.line: r.status.value for r in fast.results}
    assert status == {2: "skipped", 3: "skipped", 4: "skipped", 5: "pending" if flags else "failed",
                      6: "pending" if flags else "unknown", 7: "pending", 8: "pending", 9: "pending",
                      10: "duplicate", 11: "duplicate", 12: "invalid", 13: "skipped", 14: "pending", 15: "invalid"}
    assert [(t.identity.key, t.result.partner_id) for t in fast.followups] == [(ident[b].key, "101")]


@pytest.mark.parametrize("flags", [{}, {"resend_unknown": True}], ids=["plain", "resend"])
def test_invoicebox_fast_path_decides_every_row_as_the_full_path_does(tmp_path: Path, flags: dict[str, bool]) -> None:
    cfg, table = invoicebox_input(tmp_path, "sent@x.io", "fly@x.io", "unk@x.io", "fail@x.io", "new@x.io",
                                  "SENT@X.IO", "not-mail")
    with Journal.open(tmp_path / "p.sqlite") as journal:
        save_snapshot(journal, table, cfg)
        for who, state in [("sent", ItemState.SENT), ("unk", ItemState.UNKNOWN), ("fail", ItemState.FAILED)]:
            journal.begin(Identity(f"{IB_PARTNER}|{who}@x.io"), step="invite")
            journal.finish(Identity(f"{IB_PARTNER}|{who}@x.io"), state=state, http_status=200 if who == "sent" else 504)
        journal.begin(Identity(f"{IB_PARTNER}|fly@x.io"), step="invite")

        full, fast = both_ways(table, cfg, journal, **flags)
    assert_same(full, fast)
    assert [r.status.value for r in fast.results] == [
        "skipped", "pending" if flags else "unknown", "pending" if flags else "unknown", "failed", "pending",
        "duplicate", "invalid"]
    assert [i.key for i in fast.lost] == ([] if flags else [f"{IB_PARTNER}|fly@x.io"])


def test_a_snapshot_that_does_not_line_up_with_the_table_is_not_used(tmp_path: Path) -> None:
    cfg, table = invoicebox_input(tmp_path, "a@x.io", "b@x.io")
    with Journal.open(tmp_path / "p.sqlite") as journal:
        save_snapshot(journal, table, cfg)
        saved = journal.saved_rows()
    assert plan.settle(table, saved, cfg) is not None
    assert plan.settle(table, saved[:1], cfg) is None  # a row missing
    shifted = [row._replace(line=row.line + 1) for row in saved]
    assert plan.settle(table, shifted, cfg) is None  # other line numbers


def test_the_snapshot_key_changes_with_anything_validation_depends_on(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config(tmp_path, "edin")
    src = tmp_path / "p.csv"
    src.write_text(f"code,name,email\n{support.edrpou_codes(1, random.Random(1))[0]},A,a@example.com\n",
                   encoding="utf-8")
    table = read_table(src, **fields_of("edin"))
    key = snapshot_key(table, cfg)
    assert snapshot_key(read_table(src, **fields_of("edin")), cfg) == key  # the same file, the same settings
    others = {
        "settings": snapshot_key(table, config(tmp_path, "edin", owner_company_id=9, contract_template_id=None)),
        "bytes": snapshot_key(Table(table.path, table.sheet, table.headers, table.fields, table.rows,
                                    "0" * 64), cfg),
        "sheet": snapshot_key(Table(table.path, "Sheet2", table.headers, table.fields, table.rows,
                                    table.sha256), cfg),
        "headers": snapshot_key(Table(table.path, table.sheet, ("Code", "name", "email"), table.fields,
                                      table.rows, table.sha256), cfg),
    }
    monkeypatch.setattr(runner, "__version__", batch.__version__ + ".post1")  # validation rules may differ
    others["version"] = snapshot_key(table, cfg)
    assert {name for name, other in others.items() if other == key} == set()


def test_a_rerun_of_the_same_file_validates_only_unfinished_rows_and_report_rebuilds_its_results(
        sandbox: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    codes = support.edrpou_codes(12, random.Random(9))
    cfg = config(tmp_path, "edin", url=sandbox.url, status_batch_size=4)
    src = tmp_path / "p.csv"
    src.write_text("code,name,email\n" + "".join(f"{c},Firm {c},p{c}@example.com\n" for c in codes)
                   + f"{codes[0]},again,\n{wrong(codes[1])},bad,b@example.com\n", encoding="utf-8")
    out = tmp_path / "p.results.csv"
    validated: list[int] = []

    def counting(table: Table, config: Config, **kw: Any) -> list[Any]:
        rows = validate_rows(table, config, **kw)
        validated.append(len(rows))
        return rows

    monkeypatch.setattr(runner, "validate_rows", counting)
    first = run_batch(cfg, RunOptions(input=src, output=out, limit=5))
    assert first.summary.counts["sent"] == 5
    second = run_batch(cfg, RunOptions(input=src, output=out))
    # 5 settled as done, 1 as a duplicate: validated again are the 7 never sent and the invalid one.
    assert validated == [14, 8]
    assert (second.summary.counts["skipped"], second.summary.counts["sent"]) == (5, 7)
    third = run_batch(cfg, RunOptions(input=src, output=out))
    assert validated[-1] == 1 and third.summary.counts["skipped"] == 12  # only the invalid row is left
    assert {p["invitations"] for p in sandbox.ledger()["edin"]["partners"].values()} == {1}
    dry = run_batch(cfg, RunOptions(input=src, output=tmp_path / "dry.csv", dry_run=True))  # read-only, alike
    assert validated[-1] == 1 and dry.summary.counts == third.summary.counts

    written = out.read_text(encoding="utf-8-sig")
    rewrite_results(src.with_name("p.checkpoint.sqlite"), tmp_path / "report.csv")  # `invite-batch report`
    assert (tmp_path / "report.csv").read_text(encoding="utf-8-sig") == written
    statuses = [r["status"] for r in csv.DictReader(io.StringIO(written))]
    assert statuses == ["skipped"] * 12 + ["duplicate", "invalid"]


def test_results_rows_of_settled_lines_carry_the_earlier_outcome(tmp_path: Path) -> None:
    cfg, table = invoicebox_input(tmp_path, "a@x.io")
    with Journal.open(tmp_path / "p.sqlite") as journal:
        save_snapshot(journal, table, cfg)
        journal.begin(Identity(f"{IB_PARTNER}|a@x.io"), step="invite")
        journal.finish(Identity(f"{IB_PARTNER}|a@x.io"), state=ItemState.SENT, http_status=200, request_id="req-1",
                       invitation_id="inv-1", attempts=2, sent_at="2026-01-02T03:04:05Z")
        settled = plan.settle(table, journal.saved_rows(), cfg)
    assert settled is not None
    assert list(settled.results.values()) == [
        RowResult(2, ("a@x.io",), Status.SKIPPED, "sent in an earlier run", "", "inv-1", "", 200, 2, "req-1",
                  "2026-01-02T03:04:05Z")]
