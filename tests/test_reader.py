"""reader.read_table: formats, encodings, delimiters, header aliases, and every whole-file error (SPEC §4)."""

from __future__ import annotations

import csv
import hashlib
import shutil
import struct
import zipfile
from collections.abc import Callable
from datetime import date, datetime, time
from pathlib import Path

import pandas as pd
import pytest
import python_calamine
import xlsxwriter
from support import fields_of

from batch import providers, reader
from batch.errors import InputFileError
from batch.reader import normalise_header, read_table

DATA = Path(__file__).parent / "data"
UK_HEADERS = ("ЄДРПОУ", "Назва", "Email", "Контактна особа", "Телефон", "Коментар")
UK_FIELDS = {"code": 0, "name": 1, "email": 2, "contact_person": 3, "phone": 4, "comment": 5}

EDIN_ALIASES = {f.name: f.aliases for f in providers.get("edin").fields}


def write_xlsx(path: Path, sheets: dict[str, list[list[object]]]) -> Path:
    """A workbook with typed cells, as Excel users make them."""
    book = xlsxwriter.Workbook(str(path))
    date_format = book.add_format({"num_format": "yyyy-mm-dd"})
    for name, rows in sheets.items():
        sheet = book.add_worksheet(name)
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                if isinstance(value, datetime | date):
                    sheet.write_datetime(r, c, value, date_format)
                elif value is not None:
                    sheet.write(r, c, value)
    book.close()
    return path


def write_text(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


# ---------------------------------------------------------------- the LibreOffice fixtures

@pytest.mark.parametrize("ext", ["csv", "xlsx", "xls", "ods"])
def test_reads_the_libreoffice_fixtures(ext: str) -> None:
    path = DATA / f"partners-uk.{ext}"
    table = read_table(path, **fields_of("edin"))
    assert table.headers == UK_HEADERS
    assert table.fields == UK_FIELDS
    assert len(table.rows) == 42
    assert [r.line for r in table.rows] == list(range(2, 44))
    assert all(len(r.cells) == 6 for r in table.rows)
    assert table.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    first, last = table.rows[0], table.rows[-1]
    # The workbooks kept the code as a number, which lost its leading zero; the CSV is text.
    assert first.cells[0] == ("04533319" if ext == "csv" else "4533319")
    assert first.cells[1:5] == ('ТОВ "Партнер 0"', "partner0@firma0.com.ua", "Петренко Іван", "+380 50 123 45 00")
    assert first.cells[5] == ""
    assert last.cells == ("31791441", 'ТОВ "Без пошти"', "", "", "", "")
    assert table.sheet == (None if ext == "csv" else "partners-uk")


# ---------------------------------------------------------------- CSV flavours

CP1251_TEXT = ("Электронная почта;Название;Комментарий\r\n"
               "ivan@firma.ru;ООО «Ромашка»;первый\r\n"
               "olga@firma.ru;ТОВ Мар'яна;другий\r\n")


@pytest.mark.parametrize(
    ("encoding", "text"),
    [
        ("cp1251", CP1251_TEXT),
        ("utf-8", CP1251_TEXT),
        ("utf-8-sig", CP1251_TEXT.replace(";", ",")),
        ("utf-16", CP1251_TEXT.replace(";", "\t")),
        ("utf-16-le", "\ufeff" + CP1251_TEXT.replace(";", "\t")),
        ("utf-16-be", "\ufeff" + CP1251_TEXT.replace(";", "\t")),
    ],
    ids=["cp1251-semicolon", "utf8-semicolon", "utf8-bom-comma", "utf16-tab", "utf16le-bom", "utf16be-bom"],
)
def test_csv_encodings_and_delimiters(tmp_path: Path, encoding: str, text: str) -> None:
    path = write_text(tmp_path / "in.csv", text, encoding)
    table = read_table(path, **fields_of("invoicebox"))
    assert table.headers == ("Электронная почта", "Название", "Комментарий")
    assert table.fields == {"email": 0}  # invoicebox uses no name or comment
    assert [r.cells for r in table.rows] == [
        ("ivan@firma.ru", "ООО «Ромашка»", "первый"),
        ("olga@firma.ru", "ТОВ Мар'яна", "другий"),
    ]


def test_cp1251_with_a_short_sample_still_decodes(tmp_path: Path) -> None:
    path = write_text(tmp_path / "in.csv", "ЄДРПОУ;Назва\n04533319;ТОВ Їжак\n", "cp1251")
    table = read_table(path, **fields_of("edin"))
    assert table.headers == ("ЄДРПОУ", "Назва")
    assert table.rows[0].cells == ("04533319", "ТОВ Їжак")


def test_tab_separated(tmp_path: Path) -> None:
    path = write_text(tmp_path / "in.tsv", "code\tname\n04533319\tA, B; C\n")
    table = read_table(path, **fields_of("edin"))
    assert table.rows[0].cells == ("04533319", "A, B; C")


def test_sniffer_decides_when_the_header_has_two_candidates(tmp_path: Path) -> None:
    # The header holds a comma inside a name; the rows agree only on ";".
    text = "code;name, full;email\n" + "".join(f"0453331{i};Firma {i};a{i}@b.ua\n" for i in range(5))
    table = read_table(write_text(tmp_path / "in.csv", text), **fields_of("edin"))
    assert table.headers == ("code", "name, full", "email")
    assert table.rows[0].cells == ("04533310", "Firma 0", "a0@b.ua")


def test_single_column_csv(tmp_path: Path) -> None:
    table = read_table(write_text(tmp_path / "in.csv", "email\na@b.ua\nc@d.ua\n"), **fields_of("invoicebox"))
    assert [r.cells for r in table.rows] == [("a@b.ua",), ("c@d.ua",)]


def test_excel_sep_line_names_the_delimiter_and_is_not_a_row(tmp_path: Path) -> None:
    path = write_text(tmp_path / "in.csv", "sep=;\r\ncode;name, full\r\n04533319;A, B\r\n", "utf-8-sig")
    table = read_table(path, **fields_of("edin"))
    assert table.headers == ("code", "name, full")
    assert [(r.line, r.cells) for r in table.rows] == [(2, ("04533319", "A, B"))]


def test_one_named_column_with_more_in_the_rows(tmp_path: Path) -> None:
    text = "email\n" + "".join(f"shop{i}@shop.ru;Магазин {i}\n" for i in range(5))
    table = read_table(write_text(tmp_path / "in.csv", text), **fields_of("invoicebox"))
    assert table.headers == ("email",)
    assert table.rows[0].cells == ("shop0@shop.ru",)


def test_quoted_newline_counts_as_one_row(tmp_path: Path) -> None:
    text = 'code,comment\n04533319,"two\nlines"\n47893285,next\n'
    table = read_table(write_text(tmp_path / "in.csv", text), **fields_of("edin"))
    assert [(r.line, r.cells) for r in table.rows] == [(2, ("04533319", "two\nlines")), (3, ("47893285", "next"))]


def test_blank_rows_are_dropped_but_counted(tmp_path: Path) -> None:
    text = "\n\ncode;name\n04533319;A\n\n;;\n  ;  \n47893285;B\n"
    table = read_table(write_text(tmp_path / "in.csv", text), **fields_of("edin"))
    assert [(r.line, r.cells) for r in table.rows] == [(4, ("04533319", "A")), (8, ("47893285", "B"))]


def test_cells_are_trimmed_padded_and_cut_to_the_header(tmp_path: Path) -> None:
    text = " code ; name ;;\n 04533319 ;\u00a0A\u00a0\n47893285;B;x;y;z\n"
    table = read_table(write_text(tmp_path / "in.csv", text), **fields_of("edin"))
    assert table.headers == ("code", "name")  # trailing unnamed columns dropped
    assert [r.cells for r in table.rows] == [("04533319", "A"), ("47893285", "B")]


def test_csv_reading_restores_the_field_size_limit(tmp_path: Path) -> None:
    before = csv.field_size_limit()
    read_table(write_text(tmp_path / "in.csv", "code\n04533319\n"), **fields_of("edin"), max_cell_length=100)
    assert csv.field_size_limit() == before


# ---------------------------------------------------------------- workbooks

def test_xlsx_typed_cells_become_the_text_the_user_saw(tmp_path: Path) -> None:
    rows: list[list[object]] = [
        ["code", "name", "comment", "when", "flag"],
        [4533319, "NA", 1.5, date(2024, 1, 5), True],
        [12_000_000.0, "007", 12_000_000_000_000, datetime(2024, 1, 5, 10, 30), False],
        [1580695.0, "null", 0.1, None, "  spaced  "],
    ]
    table = read_table(write_xlsx(tmp_path / "typed.xlsx", {"Data": rows}), **fields_of("edin"))
    assert [r.cells for r in table.rows] == [
        ("4533319", "NA", "1.5", "2024-01-05", "TRUE"),
        ("12000000", "007", "12000000000000", "2024-01-05T10:30:00", "FALSE"),
        ("1580695", "null", "0.1", "", "spaced"),
    ]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (4533319.0, "4533319"), (1.2e7, "12000000"), (0.1, "0.1"), (-2.5, "-2.5"), (1e-05, "1e-05"),
        (7, "7"), (True, "TRUE"), (False, "FALSE"), (float("nan"), ""), (None, ""),
        (datetime(2024, 1, 5), "2024-01-05"), (datetime(2024, 1, 5, 9, 0, 1), "2024-01-05T09:00:01"),
        (date(2024, 2, 29), "2024-02-29"), (time(8, 30), "08:30:00"), (pd.Timestamp("2024-03-01"), "2024-03-01"),
        (" x ", "x"),
    ],
    ids=["integral-float", "big-float", "fraction", "negative", "tiny", "int", "true", "false", "nan", "none",
         "midnight", "datetime", "date", "time", "timestamp", "str"],
)
def test_cell_text(value: object, text: str) -> None:
    assert reader._cell_text(value) == text


def test_blank_rows_and_offset_header_in_a_workbook(tmp_path: Path) -> None:
    rows: list[list[object]] = [[], [None, "code", "email"], [None, 4533319, "a@b.ua"], [], [None, "", ""],
                                [None, 47893285, "c@d.ua"]]
    table = read_table(write_xlsx(tmp_path / "gaps.xlsx", {"S": rows}), **fields_of("edin"))
    assert table.headers == ("", "code", "email")
    assert table.fields == {"code": 1, "email": 2}
    assert [(r.line, r.cells) for r in table.rows] == [(3, ("", "4533319", "a@b.ua")), (6, ("", "47893285", "c@d.ua"))]


@pytest.fixture
def two_sheets(tmp_path: Path) -> Path:
    return write_xlsx(tmp_path / "two.xlsx", {
        "First": [["code"], [4533319]],
        "Second": [["email"], ["a@b.ua"], ["c@d.ua"]],
    })


def test_first_sheet_by_default(two_sheets: Path) -> None:
    table = read_table(two_sheets, **fields_of("edin"))
    assert (table.sheet, table.rows[0].cells) == ("First", ("4533319",))


@pytest.mark.parametrize("name", ["Second", "second", " SECOND "], ids=["exact", "lower", "spaced-upper"])
def test_named_sheet(two_sheets: Path, name: str) -> None:
    table = read_table(two_sheets, **fields_of("invoicebox"), sheet=name)
    assert table.sheet == "Second"
    assert [r.cells for r in table.rows] == [("a@b.ua",), ("c@d.ua",)]


def test_default_is_the_first_visible_sheet(tmp_path: Path) -> None:
    path = tmp_path / "hidden.xlsx"
    book = xlsxwriter.Workbook(str(path))
    hidden = book.add_worksheet("Lookup")
    hidden.write_row(0, 0, ["code"])
    hidden.write_row(1, 0, ["1"])
    hidden.hide()
    shown = book.add_worksheet("Partners")
    shown.write_row(0, 0, ["code"])
    shown.write_row(1, 0, [4533319])
    shown.activate()
    book.close()
    table = read_table(path, **fields_of("edin"))
    assert (table.sheet, table.rows[0].cells) == ("Partners", ("4533319",))
    assert read_table(path, **fields_of("edin"), sheet="Lookup").rows[0].cells == ("1",)


def test_unknown_sheet_names_it_and_lists_the_sheets(two_sheets: Path) -> None:
    with pytest.raises(InputFileError) as e:
        read_table(two_sheets, **fields_of("edin"), sheet="Third")
    assert str(e.value) == f'{two_sheets}: no sheet named "Third"; the sheets are "First", "Second"'


def test_xls_saved_as_xlsx_is_still_read(tmp_path: Path) -> None:
    path = tmp_path / "renamed.xlsx"
    shutil.copy(DATA / "partners-uk.xls", path)
    assert len(read_table(path, **fields_of("edin")).rows) == 42


# ---------------------------------------------------------------- headers

ALIAS_CASES = [(field, alias) for field, aliases in EDIN_ALIASES.items() for alias in aliases]


@pytest.mark.parametrize(("field", "alias"), ALIAS_CASES, ids=[f"{f}={a}" for f, a in ALIAS_CASES])
def test_every_builtin_alias_is_matched_loosely(tmp_path: Path, field: str, alias: str) -> None:
    # Upper-cased, with spaces turned into "_" and padded: still the same column.
    header = f"  {alias.upper().replace(' ', '_')} "
    other = "email" if field in ("code", "partner_id") else "code"
    path = write_text(tmp_path / "in.csv", f"{header};{other}\nx;y\n")
    table = read_table(path, **fields_of("edin"))
    assert table.fields[field] == 0
    assert table.headers[0] == header.strip()


@pytest.mark.parametrize(
    ("text", "normal"),
    [("E-mail", "email"), ("Ел. пошта", "елпошта"), ("Partner_ID", "partnerid"), ("  Код\u00a0ЄДРПОУ ", "кодєдрпоу"),
     ("contact-person", "contactperson")],
    ids=["hyphen", "dot-space", "underscore-case", "nbsp", "hyphen-word"],
)
def test_normalise_header(text: str, normal: str) -> None:
    assert normalise_header(text) == normal


def test_config_aliases_add_headers(tmp_path: Path) -> None:
    path = write_text(tmp_path / "in.csv", "Код клієнта;Пошта клієнта;Інше\n04533319;a@b.ua;x\n")
    table = read_table(path, **fields_of("edin"), aliases={"code": ["Код клієнта"], "email": ("пошта-клієнта",)})
    assert table.fields == {"code": 0, "email": 1}
    assert table.headers == ("Код клієнта", "Пошта клієнта", "Інше")  # unknown columns are kept
    assert table.rows[0].cells == ("04533319", "a@b.ua", "x")


# ---------------------------------------------------------------- whole-file errors

def _error(path: Path, provider: str = "edin", **kw: object) -> str:
    with pytest.raises(InputFileError) as e:
        read_table(path, **fields_of(provider), **kw)  # type: ignore[arg-type]
    message = str(e.value)
    assert str(path) in message
    assert "\n" not in message
    return message


def _zeros_zip(path: Path, size: int) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("xl/worksheets/sheet1.xml", b"\0" * size)
    return path


def _cfb(streams: dict[str, bytes]) -> bytes:
    """A minimal OLE2 compound file holding `streams` (each ≥ 4096 bytes, so no mini stream)."""
    end, free, fat_sect = 0xFFFFFFFE, 0xFFFFFFFF, 0xFFFFFFFD
    fat = [fat_sect, end]  # sector 0: the FAT; sector 1: the directory
    starts = []
    body = b""
    for data in streams.values():
        data = data.ljust(-(-len(data) // 512) * 512, b"\0")
        n = len(data) // 512
        starts.append(len(fat))
        fat += [len(fat) + i + 1 for i in range(n - 1)] + [end]
        body += data
    fat += [free] * (128 - len(fat))
    header = (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 16
              + struct.pack("<HHHHH", 0x3E, 3, 0xFFFE, 9, 6) + b"\0" * 6
              + struct.pack("<IIIIIIIII", 0, 1, 1, 0, 4096, end, 0, end, 0)
              + struct.pack("<109I", 0, *[free] * 108))

    def entry(name: str, kind: int, child: int, right: int, start: int, size: int) -> bytes:
        raw = (name + "\0").encode("utf-16-le")
        return (raw.ljust(64, b"\0") + struct.pack("<HBB", len(raw), kind, 1)
                + struct.pack("<III", free, right, child) + b"\0" * 36 + struct.pack("<IQ", start, size))

    names = list(streams)
    directory = entry("Root Entry", 5, 1, free, end, 0)
    for i, name in enumerate(names):
        right = i + 2 if i + 1 < len(names) else free
        directory += entry(name, 2, free, right, starts[i], len(streams[name]))
    directory = directory.ljust(512, b"\0")
    return header + struct.pack("<128I", *fat) + directory + body


def _encrypted_xlsx(path: Path) -> Path:
    path.write_bytes(_cfb({"EncryptionInfo": b"\x04\x00\x04\x00" * 1024, "EncryptedPackage": b"\x5a" * 4096}))
    return path


def _encrypted_ods(path: Path) -> Path:
    manifest = ('<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0">'
                '<manifest:file-entry manifest:full-path="content.xml"><manifest:encryption-data/>'
                "</manifest:file-entry></manifest:manifest>")
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
        z.writestr("META-INF/manifest.xml", manifest)
        z.writestr("content.xml", b"\x8f\x01garbage")
    return path


FileMaker = Callable[[Path], Path]
ERROR_CASES: list[tuple[str, FileMaker, dict[str, object], tuple[str, ...]]] = [
    ("missing", lambda d: d / "nope.csv", {}, ("no such file",)),
    ("directory", lambda d: (d / "dir.xlsx").mkdir() or d / "dir.xlsx", {}, ("is a directory",)),
    ("unsupported-extension", lambda d: write_text(d / "in.pdf", "x"), {}, ("unsupported file type '.pdf'",)),
    ("no-extension", lambda d: write_text(d / "in", "x"), {}, ("unsupported file type",)),
    ("zero-bytes", lambda d: write_text(d / "in.csv", ""), {}, ("is empty",)),
    ("blank-lines-only", lambda d: write_text(d / "in.csv", "\n ; \n\n"), {}, ("no header row",)),
    ("header-only", lambda d: write_text(d / "in.csv", "code;name\n;\n"), {}, ("header row but no data rows",)),
    ("empty-sheet", lambda d: write_xlsx(d / "in.xlsx", {"Leer": []}), {}, ('sheet "Leer"', "the sheet is empty")),
    ("header-only-sheet", lambda d: write_xlsx(d / "in.xlsx", {"S": [["code"]]}), {},
     ('sheet "S"', "no data rows")),
    ("no-code-column", lambda d: write_text(d / "in.csv", "Назва;Email\nA;a@b.ua\n"), {},
     ("no partner_id or code column", 'A "Назва"', 'B "Email"', "ЄДРПОУ", "partnerId", "columns:")),
    ("no-email-column", lambda d: write_text(d / "in.csv", "code\n04533319\n"), {"provider": "invoicebox"},
     ("no email column", 'A "code"', "Электронная почта")),
    ("same-header-twice", lambda d: write_text(d / "in.csv", "code;Note;Note\n1;2;3\n"), {},
     ('columns B and C are both headed "Note"',)),
    ("same-field-twice", lambda d: write_text(d / "in.csv", "Email;code;E-mail\na@b.ua;1;c@d.ua\n"), {},
     ('columns A "Email" and C "E-mail" both hold the email field',)),
    ("too-many-rows", lambda d: write_text(d / "in.csv", "code\n1\n2\n3\n"), {"max_rows": 2},
     ("more than 2 data rows",)),
    ("too-big", lambda d: write_text(d / "in.csv", "code\n" + "04533319\n" * 200), {"max_file_size": 1000},
     ("1000 bytes", "limits.max_file_size")),
    ("long-cell-csv", lambda d: write_text(d / "in.csv", "code;name\n1;ok\n\n2;" + "x" * 101 + "\n"),
     {"max_cell_length": 100}, ("row 4, column B", "longer than 100 characters")),
    ("long-cell-xlsx", lambda d: write_xlsx(d / "in.xlsx", {"S": [["code", "name"], [1, "x" * 101]]}),
     {"max_cell_length": 100}, ("row 2, column B", "longer than 100")),
    ("zip-bomb", lambda d: _zeros_zip(d / "in.xlsx", 40 << 20), {}, ("refused", "zip bomb")),
    ("encrypted-xlsx", lambda d: _encrypted_xlsx(d / "in.xlsx"), {}, ("password-protected",)),
    ("encrypted-ods", lambda d: _encrypted_ods(d / "in.ods"), {}, ("password-protected",)),
    ("truncated-xlsx", lambda d: d.joinpath("in.xlsx").write_bytes((DATA / "partners-uk.xlsx").read_bytes()[:3000])
     and d / "in.xlsx", {}, ("damaged",)),
    ("text-named-xlsx", lambda d: write_text(d / "in.xlsx", "code;name\n1;2\n"), {},
     ("not a spreadsheet workbook", "CSV or HTML")),
    ("html-named-xls", lambda d: write_text(d / "in.xls", "<html><table><tr><td>1</td></tr></table></html>"), {},
     ("not a spreadsheet workbook",)),
    ("random-bytes-xlsx", lambda d: d.joinpath("in.xlsx").write_bytes(bytes(range(256)) * 8) and d / "in.xlsx", {},
     ("not a spreadsheet workbook",)),
    ("xlsx-named-csv", lambda d: shutil.copy(DATA / "partners-uk.xlsx", d / "in.csv") and d / "in.csv", {},
     ("zip archive", "not a CSV")),
    ("xls-named-csv", lambda d: shutil.copy(DATA / "partners-uk.xls", d / "in.csv") and d / "in.csv", {},
     (".xls workbook, not a CSV",)),
    ("binary-csv", lambda d: d.joinpath("in.csv").write_bytes(b"code\x00\x01\x02\n") and d / "in.csv", {},
     ("not a text file",)),
    ("zip-without-a-workbook", lambda d: _zeros_zip(d / "in.xlsx", 100), {}, ("not a readable spreadsheet",)),
]


@pytest.mark.parametrize(("maker", "kw", "expected"), [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES])
def test_whole_file_errors(tmp_path: Path, maker: FileMaker, kw: dict[str, object], expected: tuple[str, ...]) -> None:
    message = _error(maker(tmp_path), **kw)
    for part in expected:
        assert part in message


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_text(tmp_path / "in.csv", "code\n1\n")
    real_open = Path.open

    def deny(self: Path, *args: object, **kw: object) -> object:
        if self == path:
            raise PermissionError(13, "Permission denied")
        return real_open(self, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "open", deny)
    assert "permission denied" in _error(path)


def _raising_loader(error: Exception) -> Callable[..., object]:
    def fake(*args: object, **kw: object) -> object:
        raise error
    return fake


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (python_calamine.PasswordError("Workbook is password protected"), "password-protected"),
        (python_calamine.CalamineError("Xls error: unexpected end"), "may be damaged"),
        (python_calamine.ZipError("invalid Zip archive: Could not find EOCD"), "may be damaged (invalid Zip"),
        (ValueError("Worksheet index 0 is invalid"), "not a readable spreadsheet (ValueError"),
        (RuntimeError("something\nspanning lines"), "RuntimeError: something spanning lines"),
    ],
    ids=["encrypted-xls", "calamine-error", "zip-error", "value-error", "anything-else"],
)
def test_library_errors_become_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        error: Exception, expected: str) -> None:
    path = tmp_path / "in.xls"
    shutil.copy(DATA / "partners-uk.xls", path)
    monkeypatch.setattr(reader.python_calamine, "load_workbook", _raising_loader(error))
    assert expected in _error(path)


def test_a_real_xlsx_is_not_taken_for_a_zip_bomb(tmp_path: Path) -> None:
    rows: list[list[object]] = [["code", "name"]] + [[4533319, "ТОВ Партнер"]] * 20_000
    table = read_table(write_xlsx(tmp_path / "big.xlsx", {"S": rows}), **fields_of("edin"))
    assert len(table.rows) == 20_000
