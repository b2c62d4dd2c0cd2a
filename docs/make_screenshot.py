"""Make docs/results.png: a results workbook from a real sandbox run, as LibreOffice renders it.

    python docs/make_screenshot.py        # needs `soffice` (LibreOffice Calc) and `pdftoppm` (poppler-utils)

Neither tool is a project dependency; the committed PNG is what the README shows. The run is an ordinary
`invite-batch run` with `base_url: embedded`, so every cell in the picture is what an operator would get.
Only a render copy is given a print layout (landscape, one page wide, grid lines) and has five wide columns
hidden (the letters above the grid show which); the workbook itself is left exactly as written.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import openpyxl
import xlsxwriter
import yaml
from openpyxl.utils import get_column_letter

from batch.cli import main

HERE = Path(__file__).resolve().parent
OUT = HERE / "results.png"
DPI = 120
# Hidden in the picture only, so the rest stays legible at the README's width: contact columns of the input
# and the columns that are long ids (invitation_id is Invoicebox's; request_id and sent_at are wide).
HIDDEN = ("Email", "Коментар", "invitation_id", "request_id", "sent_at")

HEADERS = ["ЄДРПОУ", "ID партнера", "Назва", "Email", "Коментар"]
ROWS: list[list[str | int]] = [
    [4533319, "", 'ТОВ "Альфа-Трейд"', "office@alfa-trade.com.ua", ""],  # a number: the zeros were lost
    ["32855961", "", 'ПП "Бета Логістик"', "info@beta-logistic.com.ua", "постачальник з 2019"],
    ["21875300", "", 'ТОВ "Гамма Агро"', "buh@gamma-agro.ua", ""],  # invited before: skipped
    ["40123454", "", 'ТОВ "Епсилон Фуд"', "Sales@Epsilon-Food.UA", ""],
    ["33445565", "", 'ТОВ "Помилковий Код"', "mistake@wrong-code.com.ua", "контрольна цифра не сходиться"],
    ["32855961", "", 'ПП "Бета Логістик"', "info@beta-logistic.com.ua", "повтор"],
    ["", "1234567", 'ТОВ "Зета Буд"', "zeta.bud@zeta-bud.com.ua", "ID з іншого акаунта"],  # unknown id: 404
    [7321049, "", 'ПрАТ "Ета Фарм"', "docs@eta-pharm.ua", "-5% знижка до кінця року"],
    ["3012345670", "", "ФОП Мельник Тарас Богданович", "taras.melnyk@ukr-mail.com.ua", ""],
]
# Already on EDIN; one of them invited in an earlier year.
PRELOAD = ("code,name,contactEmail,invitationDate\n"
           '04533319,"ТОВ ""Альфа-Трейд""",office@alfa-trade.com.ua,\n'
           '21875300,"ТОВ ""Гамма Агро""",buh@gamma-agro.ua,2024-03-15\n')


def make_run(folder: Path) -> Path:
    """Write the input, the sandbox's partners and a config; run; return the results workbook."""
    book = folder / "partners.xlsx"
    wb = xlsxwriter.Workbook(str(book))
    ws = wb.add_worksheet("Партнери")
    for c, text in enumerate(HEADERS):
        ws.write_string(0, c, text)
    for r, row in enumerate(ROWS, start=1):
        for c, value in enumerate(row):
            if isinstance(value, int):
                ws.write_number(r, c, value)
            elif value:
                ws.write_string(r, c, value)
    wb.close()
    (folder / "partners.csv").write_text(PRELOAD, encoding="utf-8")
    config = folder / "sandbox.yaml"
    config.write_text(yaml.safe_dump({
        "provider": "edin", "base_url": "embedded",
        "auth": {"email": "demo@example.com", "password": "demo-password"},
        "invite": {"contract_template_id": 5551},
        "limits": {"workers": 1},  # one worker: invitation order, and so partner ids, follow the rows
        "sandbox": {"partners": str(folder / "partners.csv")},
    }, allow_unicode=True), encoding="utf-8")
    code = main(["run", str(book), "-c", str(config), "-q"])
    assert code == 1, f"expected exit 1 (an invalid and a failed row), got {code}"
    return folder / "partners.results.xlsx"


def render_copy(results: Path, folder: Path) -> Path:
    """The Results sheet alone, a few wide columns hidden, laid out to print on one page with grid lines."""
    wb = openpyxl.load_workbook(results)
    del wb["Summary"]
    ws = wb["Results"]
    for dim in list(ws.column_dimensions.values()):  # XlsxWriter joins equal widths into one range: split it
        first, last = dim.min or 0, dim.max or 0
        dim.max = first
        for i in range(first + 1, last + 1):
            ws.column_dimensions[get_column_letter(i)].width = dim.width
    for cell in ws[1]:
        if cell.value in HIDDEN:
            ws.column_dimensions[cell.column_letter].hidden = True
    ws.page_setup.orientation = "landscape"
    ws.page_setup.paperSize = ws.PAPERSIZE_A3
    ws.sheet_properties.pageSetUpPr.fitToPage = True
    ws.page_setup.fitToWidth, ws.page_setup.fitToHeight = 1, 0
    ws.print_options.gridLines = ws.print_options.headings = True
    ws.page_margins.left = ws.page_margins.right = ws.page_margins.top = ws.page_margins.bottom = 0.2
    out = folder / "render.xlsx"
    wb.save(out)
    return out


def ink_box(ppm: bytes) -> tuple[int, int, int, int]:
    """(x, y, width, height) of the non-white pixels of a binary PPM (P6)."""
    parts = ppm.split(maxsplit=4)
    assert parts[0] == b"P6" and parts[3] == b"255", "expected an 8-bit P6 image"
    width, height, pixels = int(parts[1]), int(parts[2]), parts[4]
    stride = width * 3
    rows = [y for y in range(height) if pixels[y * stride:(y + 1) * stride].strip(b"\xff")]
    left, right = width, 0
    for y in rows:
        line = pixels[y * stride:(y + 1) * stride]
        left = min(left, (len(line) - len(line.lstrip(b"\xff"))) // 3)
        right = max(right, (len(line.rstrip(b"\xff")) + 2) // 3)
    return left, rows[0], right - left, rows[-1] + 1 - rows[0]


def to_png(workbook: Path, folder: Path, out: Path) -> None:
    soffice, pdftoppm = shutil.which("soffice"), shutil.which("pdftoppm")
    if not soffice or not pdftoppm:
        sys.exit("needs soffice (LibreOffice Calc) and pdftoppm (poppler-utils)")
    subprocess.run([soffice, "--headless", "--convert-to", "pdf", "--outdir", str(folder), str(workbook)],
                   check=True, capture_output=True, timeout=120)
    pdf = folder / f"{workbook.stem}.pdf"
    ppm = subprocess.run([pdftoppm, "-r", str(DPI), "-f", "1", "-l", "1", str(pdf)], check=True,
                         capture_output=True, timeout=60).stdout
    x, y, w, h = ink_box(ppm)
    pad = 12
    subprocess.run([pdftoppm, "-r", str(DPI), "-f", "1", "-l", "1", "-singlefile", "-png",
                    "-x", str(max(0, x - pad)), "-y", str(max(0, y - pad)), "-W", str(w + 2 * pad), "-H",
                    str(h + 2 * pad), str(pdf), str(out.with_suffix(""))], check=True, timeout=60)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        to_png(render_copy(make_run(folder), folder), folder, OUT)
    print(f"{OUT} ({OUT.stat().st_size // 1024} KB)")
