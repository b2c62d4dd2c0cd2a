"""Input files → a Table of text cells (SPEC §4): CSV encoding and delimiter detection, workbooks, header aliases."""

from __future__ import annotations

import codecs
import csv
import gc
import hashlib
import re
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import charset_normalizer
import python_calamine

from .errors import InputFileError
from .model import RawRow, Table
from .providers.base import Field

TEXT_SUFFIXES = frozenset({".csv", ".tsv", ".txt"})
WORKBOOK_SUFFIXES = frozenset({".xlsx", ".xlsm", ".xlsb", ".xls", ".ods"})
DELIMITERS = ";\t,"  # in order of preference when the counts tie

MAX_UNZIPPED = 1 << 30  # a workbook that inflates beyond 1 GiB is refused unread
MAX_ZIP_RATIO = 200  # real workbooks inflate ~10-15×; bombs by thousands
_RATIO_FLOOR = 16 << 20  # below this the ratio cannot hurt, so tiny files are never refused for it

_ZIP_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# An encrypted .xlsx is an OLE2 container holding this stream (MS-OFFCRYPTO).
_ENCRYPTED_PACKAGE = "EncryptedPackage".encode("utf-16-le")
_SAMPLE = 64 * 1024
_CHUNK = 1 << 20

_HEADER_JUNK = str.maketrans("", "", "_-.")
_SEP_LINE = re.compile(r"sep=([,;\t|])\r?\n", re.IGNORECASE)


def normalise_header(text: str) -> str:
    """The form headers are compared in: case-folded, without whitespace, `_`, `-` or `.`."""
    return "".join(text.casefold().split()).translate(_HEADER_JUNK)


def read_table(
    path: str | Path,
    *,
    fields: Sequence[Field],
    required: Sequence[str],
    sheet: str | None = None,
    aliases: Mapping[str, Sequence[str]] | None = None,
    max_rows: int = 1_048_575,
    max_cell_length: int = 32_767,
    max_file_size: int = 200 * 1024 * 1024,
) -> Table:
    """Read a CSV/XLSX/XLS/ODS file into text cells; InputFileError (one line) when the file is unusable.

    `fields` are the provider's input fields (their built-in header aliases); a file must have a column for
    at least one of `required`; `aliases` are the config's extra headers per field.
    """
    p = Path(path)
    name = str(path)
    suffix = p.suffix.lower()
    with _mapped_errors(name), paused_gc():
        if not p.exists():
            raise InputFileError(f"{name}: no such file")
        if p.is_dir():
            raise InputFileError(f"{name}: is a directory, not a file")
        size = p.stat().st_size
        if size > max_file_size:
            raise InputFileError(f"{name}: the file is {_mib(size)}, more than the limit of {_mib(max_file_size)}"
                                 " (limits.max_file_size)")
        if suffix not in TEXT_SUFFIXES | WORKBOOK_SUFFIXES:
            raise InputFileError(f"{name}: unsupported file type {suffix or '(no extension)'!r};"
                                 " use .csv, .xlsx, .xls or .ods")
        if size == 0:
            raise InputFileError(f"{name}: the file is empty")
        builder = _Builder(name, fields, required, aliases or {}, max_rows)
        if suffix in TEXT_SUFFIXES:
            return _read_csv(p, builder, max_cell_length)
        return _read_workbook(p, builder, sheet, max_cell_length)


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while millions of row objects are made."""
    # Rows hold no reference cycles, but every full collection rescans all of them: ~40 % of a big read.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        # Frozen, the rows are out of the collector's sight for good (reference counting still frees them):
        # left young, the first collections after the pause would scan all of them again, ~0.6 s a million.
        gc.freeze()
        if was_enabled:
            gc.enable()


# ---------------------------------------------------------------- header and rows

class _Builder:
    """Turns records (header first, blank rows included) into a Table; shared by CSV and workbooks."""

    def __init__(self, name: str, fields: Sequence[Field], required: Sequence[str],
                 aliases: Mapping[str, Sequence[str]], max_rows: int) -> None:
        self.name, self.where = name, name
        self.builtin = {f.name: f.aliases for f in fields}
        self.required, self.aliases, self.max_rows = tuple(required), aliases, max_rows

    def build(self, records: Iterable[Sequence[str]], *, sheet: str | None, sha256: str,
              stripped: bool) -> Table:
        it = iter(records)
        line = 0
        for rec in it:
            line += 1
            header = tuple(c.strip() for c in rec)
            if any(header):
                break
        else:
            raise InputFileError(f"{self.where}: is empty (no header row)")
        width = max(i for i, h in enumerate(header) if h) + 1  # trailing unnamed columns are dropped
        headers = header[:width]
        fields = self.map_headers(headers)

        rows: list[RawRow] = []
        append, strip, max_rows = rows.append, str.strip, self.max_rows
        pad = ("",) * width
        # The hot loop of a million-row file: keep it to C-level calls per row.
        for rec in it:
            line += 1
            if len(rec) != width:
                if not rec:
                    continue
                rec = (tuple(rec) + pad)[:width]
            cells = tuple(rec) if stripped else tuple(map(strip, rec))
            if any(cells):
                append(RawRow(line, cells))
                if len(rows) > max_rows:
                    raise InputFileError(f"{self.where}: more than {max_rows} data rows (limits.max_rows)")
        if not rows:
            raise InputFileError(f"{self.where}: has a header row but no data rows")
        return Table(path=self.name, sheet=sheet, headers=headers, fields=fields, rows=rows, sha256=sha256)

    def map_headers(self, headers: tuple[str, ...]) -> dict[str, int]:
        """Field → column index; duplicate or missing columns are errors."""
        lookup = {normalise_header(a): f for f, names in self.builtin.items() for a in names}
        for alias_field, names in self.aliases.items():  # the config's aliases win over built-in ones
            if alias_field in self.builtin:
                lookup.update((normalise_header(a), alias_field) for a in names)
        fields: dict[str, int] = {}
        by_text: dict[str, int] = {}
        for i, h in enumerate(headers):
            if not h:
                continue
            if h in by_text:
                raise InputFileError(f'{self.where}: columns {_col(by_text[h])} and {_col(i)} are both headed "{h}";'
                                     " rename or remove one")
            by_text[h] = i
            field = lookup.get(normalise_header(h))
            if field is None:
                continue
            if field in fields:
                j = fields[field]
                raise InputFileError(f'{self.where}: columns {_col(j)} "{headers[j]}" and {_col(i)} "{h}" both hold'
                                     f" the {field} field; keep one")
            fields[field] = i
        required = self.required
        if not any(f in fields for f in required):
            found = ", ".join(f'{_col(i)} "{h}"' for i, h in enumerate(headers) if h)
            accepted = "; ".join(f"{f}: {', '.join(self.builtin[f] + tuple(self.aliases.get(f, ())))}"
                                 for f in required)
            need = " or ".join(required)
            raise InputFileError(f"{self.where}: no {need} column. Found {found}. Accepted headers — {accepted}"
                                 " (add more under `columns:` in the config)")
        return fields


def _col(i: int) -> str:
    """Spreadsheet column letters of a 0-based index: 0 → A, 27 → AB."""
    letters = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        letters = chr(65 + r) + letters
    return letters


def _mib(n: int) -> str:
    """A size for people: bytes when small, else KiB or MiB."""
    if n < 10 * 1024:
        return f"{n} bytes"
    return f"{n / 1024:.0f} KiB" if n < (1 << 20) else f"{n / (1 << 20):.1f} MiB"


# ---------------------------------------------------------------- CSV

def _read_csv(p: Path, builder: _Builder, max_cell_length: int) -> Table:
    name = builder.name
    sha256, head, is_utf8 = _scan_text(p)
    encoding = _detect_encoding(name, head, is_utf8)
    with p.open(encoding=encoding, newline="") as f:
        sample = f.read(_SAMPLE)
        f.seek(0)
        # Excel writes and honours a first line "sep=;" naming the delimiter; it is not a row.
        hint = _SEP_LINE.match(sample)
        if hint:
            delimiter = hint.group(1)
            f.readline()
        else:
            delimiter = _detect_delimiter(sample)
        reader = csv.reader(f, delimiter=delimiter, quotechar='"', doublequote=True, strict=False)
        # csv enforces a per-field limit in C; lowering it to ours checks every cell for free.
        previous = csv.field_size_limit(max_cell_length)
        try:
            return builder.build(reader, sheet=None, sha256=sha256, stripped=False)
        except csv.Error as e:
            if "field larger than field limit" not in str(e):
                raise
            row, col = _find_long_cell(p, encoding, delimiter, max_cell_length, skip=1 if hint else 0)
            raise InputFileError(f"{name}: row {row}, column {col}: a cell is longer than {max_cell_length}"
                                 " characters (limits.max_cell_length)") from None
        finally:
            csv.field_size_limit(previous)


def _scan_text(p: Path) -> tuple[str, bytes, bool]:
    """One pass over the bytes: SHA-256, the first bytes, and whether the whole file is valid UTF-8."""
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    head = b""
    is_utf8 = True
    with p.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            if not head:
                head = chunk[:_SAMPLE]
            if is_utf8:
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError:
                    is_utf8 = False
    if is_utf8:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            is_utf8 = False
    return digest.hexdigest(), head, is_utf8


def _detect_encoding(name: str, head: bytes, is_utf8: bool) -> str:
    """BOM first, then strict UTF-8, then charset-normalizer (cp1251 preferred: Excel on Cyrillic Windows)."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "utf-32"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):  # Excel's "Unicode text"
        return "utf-16"
    if head.startswith(_ZIP_MAGIC):
        raise InputFileError(f"{name}: is a zip archive (an .xlsx or .ods workbook?), not a CSV text file")
    if head.startswith(_OLE_MAGIC):
        raise InputFileError(f"{name}: is an Excel .xls workbook, not a CSV text file")
    if b"\x00" in head:
        raise InputFileError(f"{name}: is not a text file (it contains binary data)")
    if is_utf8:
        return "utf-8"
    matches = charset_normalizer.from_bytes(head)
    if any(m.encoding == "cp1251" for m in matches):
        return "cp1251"
    best = matches.best()
    if best is None:
        raise InputFileError(f"{name}: cannot tell the text encoding; save the file as CSV UTF-8")
    return str(best.encoding)


def _detect_delimiter(sample: str) -> str:
    """`;` `,` or tab: the only one in the header line, else what csv.Sniffer says, else the most frequent."""
    lines = [ln for ln in sample.splitlines() if ln.strip()]
    header = lines[0] if lines else ""
    counts = {d: header.count(d) for d in DELIMITERS if d in header}
    if len(counts) == 1:
        return next(iter(counts))
    if not counts:  # one column named; the rows may still have more
        counts = {d: sample.count(d) for d in DELIMITERS}
        if not any(counts.values()):
            return ","
    else:
        try:
            # Cut at a line end so the sniffer does not see a half row.
            text = sample[: sample.rfind("\n") + 1] or sample
            return csv.Sniffer().sniff(text, delimiters="".join(counts)).delimiter
        except csv.Error:
            pass
    # Ties go to ";" then tab: commas are common inside names and addresses, the others are not.
    return max(DELIMITERS, key=lambda d: counts.get(d, 0))


def _find_long_cell(p: Path, encoding: str, delimiter: str, limit: int, skip: int) -> tuple[int, str]:
    """Row number and column letter of the first cell longer than `limit` (error path only)."""
    previous = csv.field_size_limit(1 << 30)
    try:
        with p.open(encoding=encoding, newline="") as f:
            for _ in range(skip):
                f.readline()
            for line, rec in enumerate(csv.reader(f, delimiter=delimiter), start=1):
                for i, cell in enumerate(rec):
                    if len(cell) > limit:
                        return line, _col(i)
    finally:
        csv.field_size_limit(previous)
    return 0, "?"


# ---------------------------------------------------------------- workbooks

def _read_workbook(p: Path, builder: _Builder, sheet: str | None, max_cell_length: int) -> Table:
    name = builder.name
    sha256, head = _scan_binary(p)
    if head.startswith(_ZIP_MAGIC):
        _check_zip(p, name)
    elif not head.startswith(_OLE_MAGIC):
        hint = " (it is text: a CSV or HTML page saved with a workbook's name?)" if _looks_like_text(head) else ""
        raise InputFileError(f"{name}: is not a spreadsheet workbook{hint}")
    # python-calamine directly, the engine pandas.read_excel(engine="calamine") would use: a DataFrame
    # built only to be taken apart into text again cost ~40 % of a large workbook's read.
    try:
        with p.open("rb") as f:  # a file object, so the format is told by content, not by extension
            book = python_calamine.load_workbook(f)
            target = _pick_sheet(name, book.sheets_metadata, sheet)
            data = book.get_sheet_by_name(target)
    except python_calamine.PasswordError:
        raise InputFileError(f"{name}: the workbook is password-protected (encrypted); save an unprotected copy")\
            from None
    except python_calamine.CalamineError as e:
        if head.startswith(_OLE_MAGIC) and _ENCRYPTED_PACKAGE in p.read_bytes():
            raise InputFileError(f"{name}: the workbook is password-protected (encrypted);"
                                 " save an unprotected copy") from None
        raise InputFileError(f"{name}: not a readable spreadsheet, the file may be damaged ({_one_line(e)})")\
            from None
    builder.where = f'{name}, sheet "{target}"'
    if data.start is None or data.height == 0:
        raise InputFileError(f"{builder.where}: the sheet is empty")
    # iter_rows() starts at row 1 but at the first used column: put the columns before it back, so
    # column letters in messages and results match the sheet. Rows are made one at a time.
    records = _text_rows(data.iter_rows(), data.start[1], builder.where, max_cell_length)
    return builder.build(records, sheet=target, sha256=sha256, stripped=True)


def _text_rows(rows: Iterable[list[Any]], skipped_columns: int, where: str,
               max_cell_length: int) -> Iterator[list[str]]:
    """Workbook rows as text cells; strings (most cells) take the fast path."""
    text = _cell_text
    lead = [""] * skipped_columns
    for line, row in enumerate(rows, start=1):
        cells = [v.strip() if type(v) is str else text(v) for v in row]
        if lead:
            cells = lead + cells
        if cells and max(map(len, cells)) > max_cell_length:
            column = next(j for j, c in enumerate(cells) if len(c) > max_cell_length)
            raise InputFileError(f"{where}: row {line}, column {_col(column)}: a cell is longer than"
                                 f" {max_cell_length} characters (limits.max_cell_length)")
        yield cells


def _scan_binary(p: Path) -> tuple[str, bytes]:
    digest = hashlib.sha256()
    head = b""
    with p.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            if not head:
                head = chunk[:_SAMPLE]
    return digest.hexdigest(), head


def _looks_like_text(head: bytes) -> bool:
    return b"\x00" not in head[:4096] and (head.lstrip()[:1] == b"<" or any(d.encode() in head for d in DELIMITERS))


def _check_zip(p: Path, name: str) -> None:
    """Refuse a zip bomb from the declared sizes, before anything is inflated; spot encrypted .ods."""
    with zipfile.ZipFile(p) as z:
        infos = z.infolist()
        total = sum(i.file_size for i in infos)
        packed = max(sum(i.compress_size for i in infos), 1)
        if total > MAX_UNZIPPED or (total > _RATIO_FLOOR and total > MAX_ZIP_RATIO * packed):
            raise InputFileError(f"{name}: refused: it would inflate to {_mib(total)} from {_mib(packed)}"
                                 " (a zip bomb or a damaged file)")
        names = {i.filename: i for i in infos}
        manifest = names.get("META-INF/manifest.xml")
        if manifest is not None and manifest.file_size < (8 << 20) and b"encryption-data" in z.read(manifest):
            raise InputFileError(f"{name}: the workbook is password-protected (encrypted); save an unprotected copy")


def _pick_sheet(name: str, sheets: list[Any], wanted: str | None) -> str:
    """The sheet to read: the one asked for (exact, else case-insensitive), else the first visible worksheet."""
    worksheets = [m for m in sheets if m.typ == python_calamine.SheetTypeEnum.WorkSheet]
    names = [str(m.name) for m in worksheets]
    if not names:
        raise InputFileError(f"{name}: the workbook has no worksheets")
    if wanted is None:
        visible = [str(m.name) for m in worksheets if m.visible == python_calamine.SheetVisibleEnum.Visible]
        return (visible or names)[0]
    if wanted in names:
        return wanted
    same = [s for s in names if s.casefold() == wanted.strip().casefold()]
    if len(same) == 1:
        return same[0]
    listed = ", ".join(f'"{s}"' for s in names)
    raise InputFileError(f'{name}: no sheet named "{wanted}"; the sheets are {listed}')


def _cell_text(v: Any) -> str:
    """A typed cell as the text the user saw: 4533319 not 4533319.0, TRUE, ISO dates."""
    if isinstance(v, str):
        return v.strip()
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v != v:  # NaN: an empty or error cell
            return ""
        return str(int(v)) if v.is_integer() else repr(v)
    if isinstance(v, datetime):
        return v.date().isoformat() if v.time() == time() and v.tzinfo is None else v.isoformat()
    if isinstance(v, date | time):
        return v.isoformat()
    if isinstance(v, timedelta):
        return str(v)
    if v is None:
        return ""
    return str(v).strip()


# ---------------------------------------------------------------- error mapping

_WHITESPACE = re.compile(r"\s+")


def _one_line(e: BaseException, limit: int = 160) -> str:
    text = _WHITESPACE.sub(" ", str(e)).strip() or type(e).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


@contextmanager
def _mapped_errors(name: str) -> Iterator[None]:
    """The one place where library and OS exceptions become one-line InputFileErrors."""
    try:
        yield
    except InputFileError:
        raise
    except FileNotFoundError:
        raise InputFileError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise InputFileError(f"{name}: is a directory, not a file") from None
    except PermissionError:
        raise InputFileError(f"{name}: permission denied (cannot read the file)") from None
    except UnicodeError as e:
        where = f" at byte {e.start}" if isinstance(e, UnicodeDecodeError) else ""
        enc = getattr(e, "encoding", "") or "the detected encoding"
        raise InputFileError(f"{name}: not valid {enc} text{where}; save the file as CSV UTF-8") from None
    except csv.Error as e:
        raise InputFileError(f"{name}: not a readable CSV file ({_one_line(e)})") from None
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        raise InputFileError(f"{name}: the workbook is damaged ({_one_line(e)})") from None
    except OSError as e:
        raise InputFileError(f"{name}: cannot read the file ({e.strerror or _one_line(e)})") from None
    except MemoryError:
        raise InputFileError(f"{name}: too big to read into memory") from None
    except Exception as e:  # calamine and zipfile raise many kinds on damaged files; never a traceback
        raise InputFileError(f"{name}: not a readable spreadsheet ({type(e).__name__}: {_one_line(e)})") from e


__all__ = ["normalise_header", "paused_gc", "read_table"]
