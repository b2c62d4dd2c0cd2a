"""Helpers the page's tests share: an input file with a few problems, configs, and reading results back."""

from __future__ import annotations

import csv
import random
from pathlib import Path
from typing import Any

import openpyxl
from support import edrpou_codes, write_config

from batch.config import Config, load_config


def partners_csv(path: Path, n: int, *, seed: int = 7) -> tuple[Path, list[str]]:
    """`n` valid partners, then one duplicate of the first and one code with a wrong check digit."""
    codes = edrpou_codes(n, random.Random(seed))
    bad = codes[0][:-1] + str((int(codes[0][-1]) + 1) % 10)
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["code", "name", "email"])
        for i, c in enumerate(codes):
            w.writerow([c, f'ТОВ "Партнер {i}"', f"office{i}@partner{i}.com.ua"])
        w.writerow([codes[0], "Again", "again@partner0.com.ua"])
        w.writerow([bad, "Bad digit", "bad@bad.com.ua"])
    return path, codes


def sandbox_config(folder: Path, url: str, name: str = "sandbox", **sections: Any) -> tuple[str, Config]:
    folder.mkdir(parents=True, exist_ok=True)
    return name, load_config(write_config(folder / f"{name}.yaml", url, **sections))


def xlsx_statuses(data: bytes, folder: Path) -> list[str]:
    path = folder / "downloaded.xlsx"
    path.write_bytes(data)
    ws = openpyxl.load_workbook(path, read_only=True)["Results"]
    rows = list(ws.iter_rows(values_only=True))
    col = rows[0].index("status")
    return [str(r[col]) for r in rows[1:]]


def partners_xlsx(path: Path, n: int, *, seed: int = 7) -> tuple[Path, list[str]]:
    """The same partners as `partners_csv`, in a workbook (codes as text, as the template keeps them)."""
    import xlsxwriter

    source, codes = partners_csv(path.with_suffix(".csv"), n, seed=seed)
    with source.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet("Partners")
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            ws.write_string(r, c, value)
    wb.close()
    source.unlink()
    return path, codes
