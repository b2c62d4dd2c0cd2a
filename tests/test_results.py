"""Results workbook / CSV, the injection guard, atomic writes and the input template (batch.results)."""

from __future__ import annotations

import csv
import io
import os
import zipfile
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from openpyxl.utils import get_column_letter
from openpyxl.utils.escape import unescape

from batch import providers, results
from batch.cli import main
from batch.errors import OutputError, UsageError
from batch.model import RowResult, Status, Summary
from batch.results import (
    RESULT_NAMES,
    default_output_path,
    neutralise,
    result_headers,
    write_results,
    write_template,
)

HEADERS = ("Код ЄДРПОУ", "Назва", "email")
STARTED = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)
RISKY = ["=1+1", "+380501234567", "-5", "@x", "\tx", "\rx", "=HYPERLINK(\"http://x\")"]
RISKY_IDS = ["equals", "plus-phone", "minus", "at", "tab", "cr", "hyperlink"]


def result(line: int, status: Status = Status.SENT, cells: tuple[str, ...] | None = None, **kw: Any) -> RowResult:
    return RowResult(line=line, cells=cells if cells is not None else (f"{line:08d}", f"ТОВ «Ромашка» {line}",
                                                                         f"u{line}@example.com"),
                     status=status, **kw)


def summary(rows: list[RowResult] | None = None, **kw: Any) -> Summary:
    counts = Counter(str(r.status) for r in rows or [])
    base: dict[str, Any] = {"started": STARTED, "finished": STARTED + timedelta(seconds=40), "counts": counts,
                            "input_path": "partners.xlsx", "provider": "edin", "action": "invite"}
    return Summary(**{**base, **kw})


def write_xlsx(tmp_path: Path, rows: list[RowResult], headers: tuple[str, ...] = HEADERS,
               summ: Summary | None = None) -> openpyxl.Workbook:
    out = tmp_path / "out.xlsx"
    write_results(out, headers, rows, summ or summary(rows))
    return openpyxl.load_workbook(out)


def write_csv(tmp_path: Path, rows: list[RowResult], headers: tuple[str, ...] = HEADERS) -> bytes:
    out = tmp_path / "out.csv"
    write_results(out, headers, rows, summary(rows))
    return out.read_bytes()


def csv_rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def col_of(ws: Any, name: str) -> int:
    """1-based column index of a header."""
    return [c.value for c in ws[1]].index(name) + 1


def column_dim(ws: Any, idx: int) -> Any:
    """openpyxl merges equal adjacent <col> entries; find the one covering column idx (1-based)."""
    for dim in ws.column_dimensions.values():
        if dim.min <= idx <= dim.max:
            return dim
    raise AssertionError(f"no width for column {idx}")


# --- paths and small rules --------------------------------------------------------------------------------


@pytest.mark.parametrize(("given", "expected"), [
    ("/d/partners.xlsx", "/d/partners.results.xlsx"),
    ("/d/partners.csv", "/d/partners.results.csv"),
    ("/d/partners.CSV", "/d/partners.results.csv"),
    ("/d/partners.xls", "/d/partners.results.xlsx"),
    ("/d/partners.ods", "/d/partners.results.xlsx"),
    ("/d/my.list.v2.xlsx", "/d/my.list.v2.results.xlsx"),
], ids=["xlsx", "csv", "csv-upper", "xls", "ods", "dotted-stem"])
def test_default_output_path(given: str, expected: str) -> None:
    assert default_output_path(given) == Path(expected)


@pytest.mark.parametrize(("text", "expected"), [
    ("=1+1", "'=1+1"), ("+380501234567", "'+380501234567"), ("-5", "'-5"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\tx", "'\tx"), ("\rx", "'\rx"), ("", ""), ("plain", "plain"), ("a=b", "a=b"), ("'quoted", "'quoted"),
    ("12345678", "12345678"), (" =1", " =1"),
], ids=["equals", "plus", "minus", "at", "tab", "cr", "empty", "plain", "inner-equals", "apostrophe", "digits",
        "space-first"])
def test_neutralise(text: str, expected: str) -> None:
    assert neutralise(text) == expected


@pytest.mark.parametrize(("headers", "expected_extra"), [
    (("code",), list(RESULT_NAMES)),
    (("status",), ["row", "status (result)", "detail"]),
    (("Status ", "DETAIL"), ["row", "status (result)", "detail (result)"]),
    (("status", "status (result)"), ["row", "status (result 2)", "detail"]),
], ids=["no-collision", "status", "case-and-space-insensitive", "rename-collides-too"])
def test_result_headers_keep_both_on_collision(headers: tuple[str, ...], expected_extra: list[str]) -> None:
    names = result_headers(headers)
    assert names[: len(headers)] == list(headers)
    assert names[len(headers): len(headers) + len(expected_extra)] == expected_extra
    assert len({n.strip().casefold() for n in names}) == len(names)


@pytest.mark.parametrize("name", ["out.xls", "out.txt", "out", "out.xlsm", "out.ods"],
                         ids=["xls", "txt", "no-extension", "xlsm", "ods"])
def test_unsupported_extension_is_a_usage_error(tmp_path: Path, name: str) -> None:
    with pytest.raises(OutputError, match=name.replace(".", r"\.")):
        write_results(tmp_path / name, HEADERS, [result(2)], summary())
    assert list(tmp_path.iterdir()) == []


# --- XLSX ---------------------------------------------------------------------------------------------------


def test_xlsx_rows_in_input_order_with_every_value_as_text(tmp_path: Path) -> None:
    rows = [
        result(5, Status.FAILED, detail="HTTP 400: bad code", http_status=400, attempts=1, request_id="r-5"),
        result(2, Status.SENT, partner_id="101", invitation_id="inv-1", marked="yes", http_status=200,
               attempts=2, request_id="r-2", sent_at="2024-05-01T10:00:01+00:00"),
        result(3, Status.PENDING, detail="would send"),
    ]
    ws = write_xlsx(tmp_path, rows)["Results"]
    values = list(ws.values)
    assert list(values[0]) == [*HEADERS, *RESULT_NAMES]
    assert [v[3] for v in values[1:]] == [2, 3, 5]  # the `row` column, sorted by line
    first = dict(zip(values[0], values[1], strict=True))
    assert first == {
        "Код ЄДРПОУ": "00000002", "Назва": "ТОВ «Ромашка» 2", "email": "u2@example.com", "row": 2,
        "status": "sent", "detail": None, "partner_id": "101", "invitation_id": "inv-1", "marked": "yes",
        "http_status": 200, "attempts": 2, "request_id": "r-2", "sent_at": "2024-05-01T10:00:01+00:00",
    }
    for row in ws.iter_rows(min_row=2):
        for cell in row:
            name = values[0][cell.column - 1]
            if cell.value is None:
                continue
            expected = "n" if name in ("row", "http_status", "attempts") else "s"
            assert cell.data_type == expected, (name, cell.value)


def test_xlsx_codes_with_leading_zeros_and_digits_stay_text(tmp_path: Path) -> None:
    ws = write_xlsx(tmp_path, [result(2, cells=("00123456", "1e5", "0.50"))])["Results"]
    assert [(c.value, c.data_type) for c in ws[2][:3]] == [("00123456", "s"), ("1e5", "s"), ("0.50", "s")]


@pytest.mark.parametrize("text", RISKY, ids=RISKY_IDS)
def test_xlsx_risky_cells_are_quote_prefixed_text(tmp_path: Path, text: str) -> None:
    rows = [result(2, Status.FAILED, cells=(text, "safe", text), detail=text, request_id=text)]
    ws = write_xlsx(tmp_path, rows)["Results"]
    for name in ("Код ЄДРПОУ", "email", "detail", "request_id"):
        cell = ws.cell(2, col_of(ws, name))
        # XlsxWriter stores CR as Excel's `_x000D_` escape, which Excel decodes and openpyxl does not.
        assert unescape(cell.value) == text
        assert cell.data_type == "s"  # never "f"
        assert cell.quotePrefix is True
    safe = ws.cell(2, col_of(ws, "Назва"))
    assert safe.value == "safe" and safe.quotePrefix is False
    detail = ws.cell(2, col_of(ws, "detail"))
    assert detail.alignment.wrap_text is True  # quote-prefix combined with wrap, not instead of it


def test_xlsx_risky_header_is_quote_prefixed_and_bold(tmp_path: Path) -> None:
    ws = write_xlsx(tmp_path, [result(2, cells=("1", "2"))], headers=("=cmd", "-x"))["Results"]
    for cell in ws[1][:2]:
        assert cell.data_type == "s" and cell.quotePrefix is True and cell.font.b is True
    assert [c.value for c in ws[1][:2]] == ["=cmd", "-x"]


def test_xlsx_no_formula_anywhere_in_the_package(tmp_path: Path) -> None:
    out = tmp_path / "out.xlsx"
    write_results(out, HEADERS, [result(2, cells=("=1+1", "@x", "-5"), detail="=2")], summary())
    with zipfile.ZipFile(out) as zf:
        sheets = [zf.read(n) for n in zf.namelist() if n.startswith("xl/worksheets/")]
    assert sheets and not any(b"<f>" in s or b"<f " in s for s in sheets)


def test_xlsx_header_frozen_and_filtered(tmp_path: Path) -> None:
    rows = [result(line) for line in range(2, 7)]
    ws = write_xlsx(tmp_path, rows)["Results"]
    assert ws.freeze_panes == "A2"
    last = get_column_letter(len(HEADERS) + len(RESULT_NAMES))
    assert ws.auto_filter.ref == f"A1:{last}6"
    assert all(c.font.b for c in ws[1])


@pytest.mark.parametrize(("status", "colour"), [
    (Status.SENT, "FFC6EFCE"), (Status.SKIPPED, "FFD9D9D9"), (Status.DUPLICATE, "FFDDEBF7"),
    (Status.INVALID, "FFF8CBAD"), (Status.FAILED, "FFFFC7CE"), (Status.UNKNOWN, "FFFFEB9C"), (Status.PENDING, None),
], ids=[s.value for s in Status])
def test_xlsx_status_cells_are_coloured(tmp_path: Path, status: Status, colour: str | None) -> None:
    ws = write_xlsx(tmp_path, [result(2, status)])["Results"]
    cell = ws.cell(2, col_of(ws, "status"))
    assert cell.value == status.value
    if colour is None:
        assert cell.fill.fill_type is None
    else:
        assert cell.fill.fill_type == "solid" and cell.fill.fgColor.rgb == colour


def test_xlsx_column_widths_fit_within_bounds_and_detail_wraps(tmp_path: Path) -> None:
    rows = [result(2, Status.INVALID, cells=("1", "x" * 30, "e"), detail="problem; " * 40),
            result(3, Status.SENT, cells=("1", "short", "e"))]
    ws = write_xlsx(tmp_path, rows)["Results"]
    width = {name: column_dim(ws, col_of(ws, name)).width for name in (*HEADERS, "detail", "row", "marked")}
    assert 32 <= width["Назва"] <= 34          # fits its 30 characters plus a margin
    assert 60 <= width["detail"] <= 61          # capped however long the text
    assert 8 <= width["row"] <= 9               # never narrower than the floor
    assert 12 <= width["Код ЄДРПОУ"] <= 14      # the header is the longest text there
    assert ws.cell(2, col_of(ws, "detail")).alignment.wrap_text is True


def test_xlsx_a_long_detail_gets_a_row_tall_enough_for_its_lines_aligned_to_the_top(tmp_path: Path) -> None:
    rows = [result(2, Status.FAILED, cells=("=1", "n", "e"), detail="x" * 150),  # 3 lines of the capped 60
            result(3, Status.INVALID, detail="problem; " * 200),                  # very long: capped
            result(4, Status.FAILED, detail="short"),
            result(5, Status.FAILED, detail="line one\nline two\n" + "y" * 70)]   # its own breaks count too
    ws = write_xlsx(tmp_path, rows)["Results"]
    heights = {r: ws.row_dimensions[r].height for r in range(2, 6)}
    assert heights == {2: 45, 3: 120, 4: None, 5: 60}  # 15 points a line; None: the default height
    for col in (1, 2, col_of(ws, "status"), col_of(ws, "detail"), col_of(ws, "attempts")):
        assert ws.cell(2, col).alignment.vertical == "top"
    assert ws.cell(4, 2).alignment.vertical is None and ws.cell(4, col_of(ws, "status")).alignment.vertical is None
    assert ws.cell(2, 1).quotePrefix and ws.cell(2, col_of(ws, "status")).fill.fill_type == "solid"


def test_xlsx_column_widths_from_a_sample_of_many_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(results, "WIDTH_SAMPLE", 10)
    rows = [result(line, cells=("1", "n", "e")) for line in range(2, 102)]
    rows[50] = result(52, cells=("1", "y" * 40, "e"))  # on the sampling stride (every 10th row)
    ws = write_xlsx(tmp_path, rows)["Results"]
    assert 42 <= column_dim(ws, 2).width <= 43


def test_xlsx_short_rows_are_padded_and_results_stay_in_their_columns(tmp_path: Path) -> None:
    ws = write_xlsx(tmp_path, [result(2, Status.INVALID, cells=("1",), detail="name: missing")])["Results"]
    assert ws.cell(2, col_of(ws, "detail")).value == "name: missing"
    assert ws.cell(2, 2).value is None


def test_xlsx_column_name_collision_keeps_both(tmp_path: Path) -> None:
    rows = [result(2, Status.FAILED, cells=("00000002", "active", "x"), detail="HTTP 409")]
    ws = write_xlsx(tmp_path, rows, headers=("code", "status", "Detail"))["Results"]
    names = [c.value for c in ws[1]]
    assert names[:6] == ["code", "status", "Detail", "row", "status (result)", "detail (result)"]
    assert ws.cell(2, 2).value == "active"
    assert ws.cell(2, 5).value == "failed"
    assert ws.cell(2, 6).value == "HTTP 409"


def test_xlsx_empty_results_still_have_a_header_and_summary(tmp_path: Path) -> None:
    wb = write_xlsx(tmp_path, [])
    assert [c.value for c in wb["Results"][1]] == [*HEADERS, *RESULT_NAMES]
    assert wb["Results"].max_row == 1
    assert wb.sheetnames == ["Results", "Summary"]


def summary_map(wb: openpyxl.Workbook) -> dict[str, Any]:
    return {k: v for k, v in wb["Summary"].iter_rows(values_only=True, max_col=2) if k is not None}


def test_xlsx_summary_sheet_figures_counts_and_chart(tmp_path: Path) -> None:
    statuses = [Status.SENT] * 3 + [Status.FAILED, Status.UNKNOWN, Status.DUPLICATE, Status.INVALID,
                                    Status.INVALID, Status.PENDING]
    rows = [result(i + 2, s) for i, s in enumerate(statuses)]
    summ = summary(rows, started=datetime(2024, 5, 1, 13, 0, tzinfo=timezone(timedelta(hours=3))),
                   finished=datetime(2024, 5, 1, 10, 0, 50, tzinfo=UTC), stopped="interrupted (SIGINT)")
    out = tmp_path / "out.xlsx"
    write_results(out, HEADERS, rows, summ)
    wb = openpyxl.load_workbook(out)
    figures = summary_map(wb)
    assert figures["Input file"] == "partners.xlsx"
    assert (figures["Provider"], figures["Action"], figures["Dry run"]) == ("edin", "invite", "no")
    assert figures["Started (UTC)"] == "2024-05-01T10:00:00Z"  # converted from +03:00
    assert figures["Finished (UTC)"] == "2024-05-01T10:00:50Z"
    assert figures["Duration, s"] == 50
    assert figures["Rows attempted per second"] == pytest.approx(5 / 50)  # sent + failed + unknown
    assert figures["Stopped early"] == "interrupted (SIGINT)"
    assert {s.value: figures[s.value] for s in Status} == {
        "sent": 3, "skipped": 0, "duplicate": 1, "invalid": 2, "failed": 1, "unknown": 1, "pending": 1}
    assert figures["Total"] == 9
    charts = wb["Summary"]._charts
    assert len(charts) == 1 and charts[0].tagname == "barChart"
    with zipfile.ZipFile(out) as zf:
        chart_xml = zf.read("xl/charts/chart1.xml").decode()
    assert "Rows by status" in chart_xml and "Summary!$B$" in chart_xml


@pytest.mark.parametrize(("dry_run", "stopped", "expected"), [
    (True, "", ("yes", "no")), (False, "", ("no", "no")), (False, "circuit open", ("no", "circuit open")),
], ids=["dry-run", "full-run", "stopped"])
def test_xlsx_summary_dry_run_and_stop(tmp_path: Path, dry_run: bool, stopped: str,
                                       expected: tuple[str, str]) -> None:
    wb = write_xlsx(tmp_path, [result(2)], summ=summary(dry_run=dry_run, stopped=stopped))
    figures = summary_map(wb)
    assert (figures["Dry run"], figures["Stopped early"]) == expected


def test_xlsx_summary_risky_input_path_is_neutralised(tmp_path: Path) -> None:
    wb = write_xlsx(tmp_path, [result(2)], summ=summary(input_path="-rf.csv"))
    cell = wb["Summary"]["B1"]
    assert cell.value == "-rf.csv" and cell.data_type == "s" and cell.quotePrefix is True


def test_xlsx_too_many_rows_for_excel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(results, "XLSX_MAX_DATA_ROWS", 2)
    with pytest.raises(OutputError, match=r"\.csv"):
        write_results(tmp_path / "out.xlsx", HEADERS, [result(i) for i in range(2, 5)], summary())
    assert list(tmp_path.iterdir()) == []


# --- CSV ----------------------------------------------------------------------------------------------------


def test_csv_has_bom_header_and_rows_in_order(tmp_path: Path) -> None:
    rows = [result(4, Status.FAILED, http_status=400, attempts=1), result(2, Status.SENT, http_status=200,
                                                                          attempts=1, partner_id="7")]
    data = write_csv(tmp_path, rows)
    assert data.startswith(b"\xef\xbb\xbf") and not data.startswith(b"\xef\xbb\xbf\xef\xbb\xbf")
    table = csv_rows(data)
    assert table[0] == [*HEADERS, *RESULT_NAMES]
    assert table[1] == ["00000002", "ТОВ «Ромашка» 2", "u2@example.com", "2", "sent", "", "7", "", "", "200", "1",
                        "", ""]
    assert [r[3] for r in table[1:]] == ["2", "4"]
    assert "ТОВ «Ромашка» 4".encode() in data  # UTF-8, not cp1251


@pytest.mark.parametrize("text", RISKY, ids=RISKY_IDS)
def test_csv_risky_cells_get_an_apostrophe(tmp_path: Path, text: str) -> None:
    rows = [result(2, Status.FAILED, cells=(text, "safe", "x"), detail=text, marked=text)]
    table = csv_rows(write_csv(tmp_path, rows))
    names = table[0]
    row = dict(zip(names, table[1], strict=True))
    for name in ("Код ЄДРПОУ", "detail", "marked"):
        assert row[name] == "'" + text
    assert row["Назва"] == "safe"


def test_csv_risky_header_gets_an_apostrophe(tmp_path: Path) -> None:
    table = csv_rows(write_csv(tmp_path, [result(2, cells=("1",))], headers=("@cmd",)))
    assert table[0][0] == "'@cmd"


@pytest.mark.parametrize(("cell", "raw"), [
    ("a;b", b'"a;b"'), ("line1\nline2", b'"line1\nline2"'), ('say "hi"', b'"say ""hi"""'), ("a,b", b'"a,b"'),
], ids=["semicolon", "newline", "quote", "comma"])
def test_csv_special_characters_are_quoted_and_round_trip(tmp_path: Path, cell: str, raw: bytes) -> None:
    data = write_csv(tmp_path, [result(2, cells=(cell, "Київ", "x")), result(3, cells=("plain", "b", "c"))])
    assert raw in data
    table = csv_rows(data)
    assert table[1][:3] == [cell, "Київ", "x"]
    assert table[2][:3] == ["plain", "b", "c"]
    assert len(table) == 3


def test_csv_plain_rows_are_minimally_quoted(tmp_path: Path) -> None:
    data = write_csv(tmp_path, [result(2, cells=("00000002", "Ромашка", "a@b.ua"))])
    assert data.decode("utf-8-sig").splitlines()[1].startswith("00000002,Ромашка,a@b.ua,2,sent,")


# --- atomic write -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["out.xlsx", "out.csv"], ids=["xlsx", "csv"])
def test_atomic_write_leaves_only_the_target(tmp_path: Path, name: str) -> None:
    target = tmp_path / name
    target.write_bytes(b"old")
    write_results(target, HEADERS, [result(2)], summary())
    assert [p.name for p in tmp_path.iterdir()] == [name]
    assert target.read_bytes() != b"old"


@pytest.mark.parametrize("name", ["out.xlsx", "out.csv"], ids=["xlsx", "csv"])
def test_crash_mid_write_keeps_the_old_file_and_no_temp(tmp_path: Path, name: str) -> None:
    target = tmp_path / name
    target.write_bytes(b"old results")

    bad = [result(2), result(3)]
    bad[1].cells = None  # type: ignore[assignment]  # blows up inside the writer, after the temp file exists
    with pytest.raises(TypeError):
        write_results(target, HEADERS, bad, summary())
    assert [p.name for p in tmp_path.iterdir()] == [name]
    assert target.read_bytes() == b"old results"


def test_missing_folder_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="does not exist"):
        write_results(tmp_path / "nope" / "out.xlsx", HEADERS, [result(2)], summary())


def test_target_that_is_a_folder_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "out.csv").mkdir()
    with pytest.raises(OutputError, match="folder"):
        write_results(tmp_path / "out.csv", HEADERS, [result(2)], summary())


def test_locked_target_is_a_usage_error_and_leaves_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def locked(src: Any, dst: Any) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(results.os, "replace", locked)
    with pytest.raises(OutputError, match="open in another program"):
        write_results(tmp_path / "out.xlsx", HEADERS, [result(2)], summary())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_results_file_gets_normal_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_results(tmp_path / "out.csv", HEADERS, [result(2)], summary())
    finally:
        os.umask(old)
    assert (tmp_path / "out.csv").stat().st_mode & 0o777 == 0o644


# --- template -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("provider", "columns"), [
    ("edin", ["partner_id", "code", "name", "email", "contact_person", "phone", "comment", "contract_template_id",
              "owner_company_id"]),
    ("invoicebox", ["email", "partner_id"]),
    ("diadoc", ["ИНН", "КПП", "Наименование", "Email", "Сообщение"]),
], ids=["edin", "invoicebox", "diadoc"])
def test_xlsx_template(tmp_path: Path, provider: str, columns: list[str]) -> None:
    out = tmp_path / "template.xlsx"
    write_template(providers.get(provider), out)
    wb = openpyxl.load_workbook(out)
    assert wb.sheetnames == ["Partners", "Help"]
    ws = wb["Partners"]
    assert [c.value for c in ws[1]] == columns
    assert ws.max_row == 1
    assert ws.freeze_panes == "A2"
    assert all(c.font.b for c in ws[1])
    code_or_email = columns.index({"edin": "code", "invoicebox": "email", "diadoc": "ИНН"}[provider]) + 1
    assert column_dim(ws, code_or_email).number_format == "@"  # typed codes keep their leading zeros
    help_rows = list(wb["Help"].values)
    assert [r[0] for r in help_rows[1:]] == columns
    assert all(r[2] and r[3] for r in help_rows[1:])  # English and Ukrainian text for every column
    assert any("ЄДРПОУ" in (r[3] or "") for r in help_rows) == (provider == "edin")


@pytest.mark.parametrize(("provider", "line"), [
    ("edin", "partner_id,code,name,email,contact_person,phone,comment,contract_template_id,owner_company_id"),
    ("invoicebox", "email,partner_id"),
    ("diadoc", "ИНН,КПП,Наименование,Email,Сообщение"),
], ids=["edin", "invoicebox", "diadoc"])
def test_csv_template(tmp_path: Path, provider: str, line: str) -> None:
    out = tmp_path / "template.csv"
    write_template(providers.get(provider), out)
    assert out.read_bytes() == b"\xef\xbb\xbf" + line.encode() + b"\r\n"


def test_template_unknown_provider(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(UsageError, match="unknown provider 'sap'; expected one of: diadoc, edin, invoicebox"):
        providers.get("sap")
    assert main(["template", "sap", "-o", str(tmp_path / "t.xlsx")]) == 2
    assert "unknown provider 'sap'" in caplog.text
    assert list(tmp_path.iterdir()) == []


def test_template_never_overwrites_a_filled_list_unless_asked(tmp_path: Path) -> None:
    out = tmp_path / "partners.csv"
    out.write_text("code\n12345678\n", encoding="utf-8")
    with pytest.raises(OutputError, match="already exists"):
        write_template(providers.get("edin"), out)
    assert out.read_text(encoding="utf-8") == "code\n12345678\n"
    write_template(providers.get("edin"), out, overwrite=True)
    assert out.read_bytes().startswith(b"\xef\xbb\xbfpartner_id,code")


def test_template_unsupported_extension(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match=r"t\.ods"):
        write_template(providers.get("edin"), tmp_path / "t.ods")
