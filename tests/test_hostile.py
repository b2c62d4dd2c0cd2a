"""Hostile and broken input files through the real command line: a clear exit 2, never a hang or a blow-up."""

from __future__ import annotations

import io
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import xlsxwriter
import yaml

from batch.cli import main
from batch.sandbox import SandboxServer

MiB = 1024 * 1024


@pytest.fixture
def config(tmp_path: Path, sandbox: SandboxServer) -> Callable[..., Path]:
    def make(**limits: int) -> Path:
        path = tmp_path / "c.yaml"
        data = {"provider": "invoicebox", "base_url": sandbox.url, "auth": {"token": "sandbox-token"},
                "invite": {"partner_id": "01771534-1a57-f184-dee3-ebeb91dded76"}, "limits": {"rate": [], **limits}}
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
        path.chmod(0o600)
        return path
    return make


def zip_bomb(path: Path, inflated: int) -> Path:
    """A workbook-shaped zip whose one member inflates to `inflated` bytes of zeros."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        with z.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as member:
            chunk = b"\0" * MiB
            for _ in range(inflated // MiB):
                member.write(chunk)
    return path


def run_measured(argv: list[str]) -> tuple[int, int]:
    """Exit code and peak Python heap (bytes) of one in-process CLI run."""
    tracemalloc.start()
    try:
        code = main(argv)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return code, peak


def test_zip_bomb_is_refused_before_decompression(tmp_path: Path, config: Callable[..., Path],
                                                  capfd: pytest.CaptureFixture[str]) -> None:
    bomb = zip_bomb(tmp_path / "bomb.xlsx", 64 * MiB)  # inflates about 1000× (real workbooks: ~14×)
    assert bomb.stat().st_size < MiB
    code, peak = run_measured(["validate", str(bomb), "-c", str(config())])
    assert code == 2
    assert peak < 16 * MiB  # nothing near the inflated size was ever held
    err = capfd.readouterr().err
    assert "bomb.xlsx" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_file_over_max_file_size_is_refused_unread(tmp_path: Path, config: Callable[..., Path],
                                                   capfd: pytest.CaptureFixture[str]) -> None:
    big = tmp_path / "big.csv"
    with big.open("w", encoding="utf-8") as f:
        f.write("email\n")
        for i in range(200_000):
            f.write(f"user{i}@shops.example\n")
    code, peak = run_measured(["validate", str(big), "-c", str(config(max_file_size=MiB))])
    assert code == 2 and peak < 5 * MiB
    assert "limits.max_file_size" in capfd.readouterr().err


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_huge_cell_names_row_and_column(tmp_path: Path, config: Callable[..., Path], fmt: str,
                                        capfd: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / f"cell.{fmt}"
    cells = [["email", "comment"], ["a@shops.example", "ok"], ["b@shops.example", "x" * 5000]]
    if fmt == "csv":
        path.write_text("\n".join(",".join(r) for r in cells) + "\n", encoding="utf-8")
    else:
        wb = xlsxwriter.Workbook(str(path))
        ws = wb.add_worksheet()
        for r, row in enumerate(cells):
            for c, value in enumerate(row):
                ws.write_string(r, c, value)
        wb.close()
    assert main(["validate", str(path), "-c", str(config(max_cell_length=1000))]) == 2
    err = capfd.readouterr().err
    assert "row 3" in err and "limits.max_cell_length" in err and "Traceback" not in err


def test_too_many_rows_stops_reading_early(tmp_path: Path, config: Callable[..., Path],
                                           capfd: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "many.csv"
    path.write_text("email\n" + "".join(f"u{i}@shops.example\n" for i in range(5000)), encoding="utf-8")
    assert main(["validate", str(path), "-c", str(config(max_rows=100))]) == 2
    err = capfd.readouterr().err
    assert "100" in err and "many.csv" in err


def test_utf16_csv_is_read(tmp_path: Path, config: Callable[..., Path]) -> None:
    path = tmp_path / "u16.csv"
    path.write_bytes("Электронная почта\tНазвание\nshop@магазин.example\tМагазин\n".encode("utf-16"))
    out = tmp_path / "out.csv"
    assert main(["validate", str(path), "-c", str(config()), "-o", str(out)]) == 0
    assert "Магазин" in out.read_text(encoding="utf-8-sig")


def test_password_protected_workbook(tmp_path: Path, config: Callable[..., Path],
                                     capfd: pytest.CaptureFixture[str]) -> None:
    # Excel saves an encrypted .xlsx as an OLE2 compound file holding EncryptionInfo + EncryptedPackage.
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 504 + "EncryptedPackage".encode("utf-16-le") * 8
    path = tmp_path / "secret.xlsx"
    path.write_bytes(ole)
    assert main(["validate", str(path), "-c", str(config())]) == 2
    err = capfd.readouterr().err
    assert "secret.xlsx" in err and "password" in err.lower()


def test_workbook_whose_sheet_is_empty(tmp_path: Path, config: Callable[..., Path],
                                       capfd: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "empty.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    wb.add_worksheet("Partners")
    wb.close()
    assert main(["validate", str(path), "-c", str(config())]) == 2
    err = capfd.readouterr().err
    assert "empty.xlsx" in err and "empty" in err


def test_truncated_workbook(tmp_path: Path, config: Callable[..., Path], capfd: pytest.CaptureFixture[str]) -> None:
    buf = io.BytesIO()
    wb = xlsxwriter.Workbook(buf, {"in_memory": True})
    wb.add_worksheet().write_string(0, 0, "email")
    wb.close()
    path = tmp_path / "cut.xlsx"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    assert main(["validate", str(path), "-c", str(config())]) == 2
    err = capfd.readouterr().err
    assert "cut.xlsx" in err and "Traceback" not in err
