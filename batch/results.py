"""The results workbook or CSV (SPEC §5) with the formula-injection guard; the input template (SPEC §2)."""

from __future__ import annotations

import contextlib
import csv
import os
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import fields
from operator import attrgetter
from pathlib import Path
from typing import Any

import xlsxwriter
from xlsxwriter.exceptions import XlsxWriterException
from xlsxwriter.format import Format

from .clock import iso_utc
from .errors import OutputError
from .model import RESULT_COLUMNS, RowResult, Status, Summary
from .providers.base import Field, Provider

RESULT_NAMES = tuple(name for name, _ in RESULT_COLUMNS)
_result_values = attrgetter(*(attr for _, attr in RESULT_COLUMNS))  # a row's result cells, in one C-level call
_C_STATUS, _C_DETAIL = RESULT_NAMES.index("status"), RESULT_NAMES.index("detail")


def _text_cells() -> Callable[[RowResult], tuple[str, ...]]:
    """RowResult → its result cells as text, in RESULT_COLUMNS' order, for the CSV writer's hot loop.

    Built once from RESULT_COLUMNS and RowResult's field types (as namedtuple builds its methods), so the order
    has one source and a row costs one call with no loop: a million rows pass here.
    """
    types = {f.name: f.type for f in fields(RowResult)}
    text = {"str": "res.{0}", "int | None": "('' if res.{0} is None else str(res.{0}))"}
    body = ", ".join(text.get(str(types[attr]), "str(res.{0})").format(attr) for _, attr in RESULT_COLUMNS)
    return eval(f"lambda res: ({body},)", {})  # type: ignore[no-any-return]  # only our own field names


_result_text = _text_cells()

# OWASP CSV injection: a cell starting with one of these may be read as a formula.
RISKY_PREFIXES = frozenset("=+-@\t\r")

STATUS_COLOURS: dict[str, str | None] = {
    Status.SENT: "#C6EFCE",       # green
    Status.SKIPPED: "#D9D9D9",    # grey
    Status.DUPLICATE: "#DDEBF7",  # light blue
    Status.INVALID: "#F8CBAD",    # orange
    Status.FAILED: "#FFC7CE",     # red
    Status.UNKNOWN: "#FFEB9C",    # yellow
    Status.PENDING: None,         # no fill
}

MIN_WIDTH, MAX_WIDTH = 8, 60
ROW_HEIGHT, MAX_DETAIL_LINES = 15, 8  # points a line (Calibri 11, XlsxWriter's default); longer shows clipped
WIDTH_SAMPLE = 1000          # rows looked at to size columns: widths stay cheap for a million rows
XLSX_MAX_DATA_ROWS = 1_048_575  # Excel's 1,048,576 rows less the header

_WORKBOOK_OPTIONS = {
    # Rows are streamed to a temp file as written, so memory stays flat up to Excel's row limit.
    "constant_memory": True,
    # write_string never converts, but keep write() from ever guessing either.
    "strings_to_numbers": False,
    "strings_to_formulas": False,
    "strings_to_urls": False,
}

def neutralise(text: str) -> str:
    """Prefix an apostrophe to a cell that a spreadsheet could read as a formula (CSV rule)."""
    return "'" + text if text[:1] in RISKY_PREFIXES else text


def default_output_path(input_path: str | Path) -> Path:
    """`<stem>.results.xlsx` next to the input; `.csv` when the input is CSV."""
    p = Path(input_path)
    ext = ".csv" if p.suffix.lower() == ".csv" else ".xlsx"
    return p.with_name(f"{p.stem}.results{ext}")


def result_headers(headers: Sequence[str]) -> list[str]:
    """The input's headers, then the result columns, renamed where an input header already has the name."""
    taken = {_key(h) for h in headers}
    out = list(headers)
    for name in RESULT_NAMES:
        unique, n = name, 1
        while _key(unique) in taken:
            unique = f"{name} (result)" if n == 1 else f"{name} (result {n})"
            n += 1
        taken.add(_key(unique))
        out.append(unique)
    return out


def check_output(path: str | Path) -> None:
    """OutputError now when the results file could not be written at the end (before anything is sent)."""
    target = Path(path)
    _kind(target)
    if not target.parent.is_dir():
        raise OutputError(f"{target}: the folder {target.parent} does not exist")
    if target.is_dir():
        raise OutputError(f"{target}: is a folder, not a file")


def write_results(
    path: str | Path, headers: Sequence[str], results: Sequence[RowResult], summary: Summary
) -> None:
    """Write every row's outcome, in input order, to an .xlsx or .csv file, atomically."""
    target = Path(path)
    kind = _kind(target)
    ordered = sorted(results, key=attrgetter("line"))
    if kind == "xlsx" and len(ordered) > XLSX_MAX_DATA_ROWS:
        raise OutputError(f"{target}: {len(ordered):,} rows do not fit in an Excel sheet; use .csv")
    with _atomic(target) as tmp:
        if kind == "csv":
            _write_csv(tmp, headers, ordered)
        else:
            _write_xlsx(tmp, headers, ordered, summary)


def write_template(profile: Provider, path: str | Path, *, overwrite: bool = False) -> None:
    """Write an empty input file with the provider's headers (.xlsx with a Help sheet, or .csv)."""
    target = Path(path)
    kind = _kind(target)
    # A template written over a filled-in partner list would silently lose it.
    if target.exists() and not overwrite:
        raise OutputError(f"{target}: already exists; choose another name or remove it first")
    with _atomic(target) as tmp:
        if kind == "csv":
            with open(tmp, "w", encoding="utf-8-sig", newline="") as fh:
                csv.writer(fh).writerow([f.title for f in profile.fields])
        else:
            _write_xlsx_template(tmp, profile.fields)


# --- CSV --------------------------------------------------------------------------------------------------


def _write_csv(tmp: Path, headers: Sequence[str], ordered: Sequence[RowResult]) -> None:
    n = len(headers)
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        fh.write("\ufeff")  # the BOM of utf-8-sig, written once instead of through its slower codec
        minimal = csv.writer(fh, quoting=csv.QUOTE_MINIMAL)
        # The csv module quotes only `,`, quotes and line breaks; a row holding `;` is written fully quoted
        # so a reader sniffing for `;` (Excel in a Ukrainian locale, our own reader) cannot split it.
        quote_all = csv.writer(fh, quoting=csv.QUOTE_ALL)
        minimal.writerow([neutralise(h) for h in result_headers(headers)])
        risky = RISKY_PREFIXES
        for res in ordered:
            cells = res.cells if len(res.cells) == n else _fit(res.cells, n)
            row = ["'" + c if c and c[0] in risky else c for c in (*cells, *_result_text(res))]  # neutralise()
            (quote_all if ";" in "".join(row) else minimal).writerow(row)


# --- XLSX -------------------------------------------------------------------------------------------------


def _write_xlsx(tmp: Path, headers: Sequence[str], ordered: Sequence[RowResult], summary: Summary) -> None:
    wb = xlsxwriter.Workbook(str(tmp), _WORKBOOK_OPTIONS)
    try:
        _fill_results_sheet(wb, headers, ordered)
        _fill_summary_sheet(wb, summary)
    except BaseException:
        with contextlib.suppress(Exception):
            wb.close()  # releases the row temp files; the half-made file is removed by _atomic
        raise
    _close(wb, tmp)


def _fill_results_sheet(
    wb: xlsxwriter.Workbook, headers: Sequence[str], ordered: Sequence[RowResult]
) -> None:
    ws = wb.add_worksheet("Results")
    names = result_headers(headers)
    n = len(headers)
    c_status, c_detail = n + _C_STATUS, n + _C_DETAIL

    # Every format made once; a cell only picks one by its first character, and by whether its row is a tall
    # one (a long detail), whose cells all align to the top as the wrapped detail does.
    top = {"valign": "top"}
    quote_of = {False: wb.add_format({"quote_prefix": True}), True: wb.add_format({"quote_prefix": True, **top})}
    wrap = wb.add_format({"text_wrap": True, **top})
    wrap_quote = wb.add_format({"text_wrap": True, "quote_prefix": True, **top})
    header = wb.add_format({"bold": True, "bottom": 1})
    header_quote = wb.add_format({"bold": True, "bottom": 1, "quote_prefix": True})
    status_of: dict[bool, dict[str, Format | None]] = {
        tall: {s: wb.add_format({"bg_color": colour, "pattern": 1, **(top if tall else {})}) if colour else None
               for s, colour in STATUS_COLOURS.items()}
        for tall in (False, True)}
    top_row = wb.add_format(top)  # for the cells of a tall row written without a format of their own

    # constant_memory streams rows as written, so widths come from a sample before any row is written.
    widths = _widths(names, ordered, n)
    for col, width in enumerate(widths):
        ws.set_column(col, col, width)
    per_line = widths[c_detail]
    ws.freeze_panes(1, 0)
    ws.autofilter(0, 0, len(ordered), len(names) - 1)

    put = ws.write_string
    num = ws.write_number
    risky = RISKY_PREFIXES
    for col, name in enumerate(names):
        put(0, col, name, header_quote if name[:1] in risky else header)
    for r, res in enumerate(ordered, start=1):
        tall = len(res.detail) > per_line
        if tall:
            # LibreOffice does not fit a row to its wrapped text when it opens the file, so a long detail
            # would spill over the rows below: the row gets a height for its lines (before any cell, as
            # constant_memory needs). Excel would have fitted it; the estimate errs on the roomy side.
            ws.set_row(r, ROW_HEIGHT * min(_lines(res.detail, per_line), MAX_DETAIL_LINES), top_row)
        quote = quote_of[tall]
        cells = res.cells if len(res.cells) == n else _fit(res.cells, n)
        for col, text in enumerate(cells):
            if text:
                put(r, col, text, quote if text[0] in risky else None)
        for col, value in enumerate(_result_values(res), start=n):
            if col == c_status:
                put(r, col, str(value), status_of[tall].get(value))
            elif isinstance(value, int):  # row, http_status, attempts: numbers
                num(r, col, value)
            elif value:  # None (no HTTP status) and "" stay empty
                put(r, col, value, (wrap_quote if value[0] in risky else wrap) if col == c_detail
                    else quote if value[0] in risky else None)


def _fill_summary_sheet(wb: xlsxwriter.Workbook, summary: Summary) -> None:
    ws = wb.add_worksheet("Summary")
    bold = wb.add_format({"bold": True})
    quote = wb.add_format({"quote_prefix": True})
    total = sum(summary.counts.values())
    figures: list[tuple[str, str | float]] = [
        ("Input file", summary.input_path),
        ("Provider", summary.provider),
        ("Action", summary.action),
        ("Dry run", "yes" if summary.dry_run else "no"),
        ("Started (UTC)", iso_utc(summary.started)),
        ("Finished (UTC)", iso_utc(summary.finished)),
        ("Duration, s", round(summary.duration, 3)),
        ("Rows attempted per second", round(summary.rate, 3)),
        ("Rows per second, all rows", round(total / summary.duration, 3) if summary.duration > 0 else 0.0),
        ("Stopped early", summary.stopped or "no"),
    ]
    ws.set_column(0, 0, 28)
    ws.set_column(1, 1, max(MIN_WIDTH, min(MAX_WIDTH, max(len(str(v)) for _, v in figures) + 2)))
    row = 0
    for label, value in figures:
        ws.write_string(row, 0, label, bold)
        if isinstance(value, str):
            ws.write_string(row, 1, value, quote if value[:1] in RISKY_PREFIXES else None)
        else:
            ws.write_number(row, 1, value)
        row += 1

    row += 1
    ws.write_string(row, 0, "Status", bold)
    ws.write_string(row, 1, "Rows", bold)
    first = row + 1
    colours: list[dict[str, Any]] = []
    for status in Status:
        row += 1
        colour = STATUS_COLOURS[status]
        fill = wb.add_format({"bg_color": colour, "pattern": 1}) if colour else None
        ws.write_string(row, 0, status.value, fill)
        ws.write_number(row, 1, summary.counts.get(status.value, 0))
        colours.append({"fill": {"color": colour or "#FFFFFF"}, "border": {"color": "#808080"}})
    last = row
    row += 1
    ws.write_string(row, 0, "Total", bold)
    ws.write_number(row, 1, total, bold)

    chart = wb.add_chart({"type": "column"})
    chart.add_series({
        "name": "Rows",
        "categories": ["Summary", first, 0, last, 0],
        "values": ["Summary", first, 1, last, 1],
        "points": colours,
        "data_labels": {"value": True},
    })
    chart.set_title({"name": "Rows by status"})
    chart.set_legend({"none": True})
    ws.insert_chart(1, 3, chart)


def _write_xlsx_template(tmp: Path, fields: Sequence[Field]) -> None:
    wb = xlsxwriter.Workbook(str(tmp))
    # Text format on every column: codes keep leading zeros, phones their `+`, ids stay text.
    text = wb.add_format({"num_format": "@"})
    header = wb.add_format({"bold": True, "bottom": 1, "num_format": "@"})
    ws = wb.add_worksheet("Partners")  # first sheet: the one the reader takes by default
    for col, f in enumerate(fields):
        ws.set_column(col, col, max(len(f.title) + 4, 14), text)
        ws.write_string(0, col, f.title, header)
    ws.freeze_panes(1, 0)

    help_ws = wb.add_worksheet("Help")
    bold_wrap = wb.add_format({"bold": True, "text_wrap": True, "valign": "top", "bottom": 1})
    wrap = wb.add_format({"text_wrap": True, "valign": "top"})
    for col, (title, width) in enumerate((("Column", 22), ("Required", 16), ("Meaning", 50),
                                          ("Опис українською", 50), ("Also accepted as header", 30))):
        help_ws.set_column(col, col, width)
        help_ws.write_string(0, col, title, bold_wrap)
    for row, f in enumerate(fields, start=1):
        help_ws.write_string(row, 0, f.title, wrap)
        for col, value in enumerate((f.required, f.help_en, f.help_uk, f.shown), start=1):
            help_ws.write_string(row, col, value, wrap)
    help_ws.freeze_panes(1, 0)
    _close(wb, tmp)


def _widths(names: Sequence[str], ordered: Sequence[RowResult], n: int) -> list[int]:
    """Column widths that fit the header and an evenly spread sample of rows, within MIN_WIDTH..MAX_WIDTH."""
    longest = [_text_len(name) for name in names]
    step = max(1, len(ordered) // WIDTH_SAMPLE)
    for res in ordered[::step]:
        values = (*_fit(res.cells, n), str(res.line), str(res.status), res.detail, res.partner_id,
                  res.invitation_id, res.marked, str(res.http_status or ""), str(res.attempts),
                  res.request_id, res.sent_at)
        for col, value in enumerate(values):
            if value and (size := _text_len(value)) > longest[col]:
                longest[col] = size
    return [max(MIN_WIDTH, min(MAX_WIDTH, size + 2)) for size in longest]


def _lines(text: str, per_line: int) -> int:
    """Lines a wrapped cell of `per_line` characters needs for `text` (by characters: fonts differ)."""
    return sum(max(1, -(-len(part) // per_line)) for part in text.split("\n"))


def _close(wb: xlsxwriter.Workbook, tmp: Path) -> None:
    try:
        wb.close()
    except XlsxWriterException as exc:
        raise OutputError(f"{tmp.name}: cannot write the workbook: {exc}") from exc


# --- helpers ----------------------------------------------------------------------------------------------


def _kind(target: Path) -> str:
    ext = target.suffix.lower()
    if ext not in (".xlsx", ".csv"):
        raise OutputError(f"{target}: unsupported output type {ext or '(none)'!r}; use .xlsx or .csv")
    return ext[1:]


@contextlib.contextmanager
def _atomic(target: Path) -> Iterator[Path]:
    """Yield a temp path beside `target`; move it into place only when the block succeeds."""
    folder = target.parent
    if not folder.is_dir():
        raise OutputError(f"{target}: the folder {folder} does not exist")
    if target.is_dir():
        raise OutputError(f"{target}: is a folder, not a file")
    tmp = folder / f".{target.name}.{secrets.token_hex(4)}.tmp{target.suffix}"
    try:
        # Created with 0o666 less the umask, like any new file; mkstemp's 0600 would survive os.replace.
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as exc:
        raise OutputError(f"{target}: cannot write in {folder}: {exc.strerror}") from exc
    try:
        yield tmp
        try:
            os.replace(tmp, target)
        except OSError as exc:
            raise OutputError(f"{target}: cannot replace the file (is it open in another program?): "
                             f"{exc.strerror}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _fit(cells: Sequence[str], n: int) -> tuple[str, ...]:
    """Exactly n cells: short rows padded, cells beyond the headers dropped (they have no column)."""
    return tuple(cells[:n]) + ("",) * (n - len(cells))


def _key(name: str) -> str:
    return name.strip().casefold()


def _text_len(text: str) -> int:
    return max(map(len, text.split("\n"))) if "\n" in text else len(text)
