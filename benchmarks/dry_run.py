"""Dry-run cost: `invite-batch validate` on a 100k-row xlsx and a 1M-row CSV against the floor.

The floor is the same libraries doing only read + write of the same rows in one process: for xlsx,
pandas.read_excel(engine="calamine") then XlsxWriter (constant_memory, as results.py) writing the cells
our results file holds (the input cells, row number, status, detail, attempts); for CSV, the csv module
reading and writing the same rows with the same ten result columns. Both sides run as subprocesses, so
each includes its interpreter's start-up and imports, and each one's peak RSS is its own (wait4).
A second xlsx floor, python-calamine read directly (what batch/reader.py does), is shown for reference.

Targets: validate ≤ 1.5× floor (xlsx), ≤ 3× floor (CSV), peak RSS ≤ 1.5 GB (1M rows).

Run on demand: `python benchmarks/dry_run.py [--xlsx-rows 100000] [--csv-rows 1000000] [--repeat 2]`.
Not part of the test suite. Inputs are generated once into benchmarks/out/ and reused.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    CLI,
    EDIN_HEADERS,
    PYTHON,
    Measured,
    edin_config,
    edin_rows,
    measure,
    mib,
    out_dir,
    table,
    verdict,
    write_csv,
    write_xlsx,
)

XLSX_TARGET, CSV_TARGET, RSS_TARGET = 1.5, 3.0, 1.5e9
RESULT_TAIL = ("pending", "would send", "", "", "", "", "0", "", "")  # status … sent_at after the row number
RESULT_HEADERS = ("row", "status", "detail", "partner_id", "invitation_id", "marked", "http_status", "attempts",
                  "request_id", "sent_at")


# ---------------------------------------------------------------- the floors (run in a child process)

def floor_xlsx(src: Path, dst: Path, engine: str) -> None:
    """Read with pandas+calamine (or python-calamine alone), write the same cells with XlsxWriter."""
    import xlsxwriter

    if engine == "pandas":
        import pandas as pd

        df = pd.read_excel(src, engine="calamine", dtype=str, keep_default_na=False)
        headers = [str(h) for h in df.columns]
        rows: Iterator[Sequence[Any]] = df.itertuples(index=False, name=None)
    else:
        import python_calamine

        data = python_calamine.load_workbook(str(src)).get_sheet_by_index(0).to_python()
        headers, rows = [str(h) for h in data[0]], iter(data[1:])
    wb = xlsxwriter.Workbook(str(dst), {"constant_memory": True, "strings_to_numbers": False,
                                        "strings_to_formulas": False, "strings_to_urls": False})
    ws = wb.add_worksheet("Results")
    put, num = ws.write_string, ws.write_number
    n = len(headers)
    for c, h in enumerate((*headers, *RESULT_HEADERS)):
        put(0, c, h)
    for r, row in enumerate(rows, start=1):
        for c, v in enumerate(row):
            put(r, c, str(v))
        num(r, n, r + 1)
        put(r, n + 1, "pending")
        put(r, n + 2, "would send")
        num(r, n + 7, 0)
    wb.close()


def floor_csv(src: Path, dst: Path) -> None:
    """csv module read + csv module write of the same rows, with the results file's ten extra columns."""
    with open(src, encoding="utf-8", newline="") as fin, open(dst, "w", encoding="utf-8", newline="") as fout:
        reader, writer = csv.reader(fin), csv.writer(fout)
        header = next(reader)
        writer.writerow(header + list(RESULT_HEADERS))
        tail = list(RESULT_TAIL)
        for line, row in enumerate(reader, start=2):
            writer.writerow(row + [str(line)] + tail)


# ---------------------------------------------------------------- the benchmark

def validate(src: Path, dst: Path, config: Path) -> Measured:
    dst.unlink(missing_ok=True)
    return measure([*CLI, "validate", str(src), "-c", str(config), "-o", str(dst), "-q"])


def floor(kind: str, src: Path, dst: Path) -> Measured:
    dst.unlink(missing_ok=True)
    return measure([PYTHON, __file__, "--floor", kind, str(src), str(dst)])


def best(runs: list[Measured]) -> Measured:
    return min(runs, key=lambda m: m.wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--xlsx-rows", type=int, default=100_000)
    parser.add_argument("--csv-rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2, help="rounds of each command; the fastest counts")
    parser.add_argument("--only", choices=("xlsx", "csv"), help="run one of the two cases")
    parser.add_argument("--floor", nargs=3, metavar=("KIND", "SRC", "DST"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor:
        kind, src, dst = args.floor
        if kind == "csv":
            floor_csv(Path(src), Path(dst))
        else:
            floor_xlsx(Path(src), Path(dst), "pandas" if kind == "xlsx" else "calamine")
        return

    work = out_dir("dry_run")
    config = edin_config(work / "edin.yaml")
    print(f"generating inputs in {work} (reused when present) ...", flush=True)
    xlsx = write_xlsx(work / f"edin-{args.xlsx_rows}.xlsx", EDIN_HEADERS, edin_rows(args.xlsx_rows), args.xlsx_rows)
    csv_in = write_csv(work / f"edin-{args.csv_rows}.csv", EDIN_HEADERS, edin_rows(args.csv_rows), args.csv_rows)

    rows = []
    cases = [
        ("xlsx", xlsx, args.xlsx_rows, XLSX_TARGET, [("pandas+calamine → XlsxWriter", "xlsx"),
                                                     ("python-calamine → XlsxWriter (ref.)", "calamine-xlsx")]),
        ("csv", csv_in, args.csv_rows, CSV_TARGET, [("csv → csv", "csv")]),
    ]
    for ext, src, n, target, floors in cases:
        if args.only and ext != args.only:
            continue
        out = work / f"validated.{ext}"
        # Interleaved rounds, the fastest of each kept: a shared machine's load then weighs on both sides alike.
        rounds = [(validate(src, out, config), *(floor(kind, src, work / f"floor.{ext}") for _, kind in floors))
                  for _ in range(args.repeat)]
        ours = best([r[0] for r in rounds])
        if ours.rc != 0:
            raise SystemExit(f"validate exited {ours.rc} on {src}: {ours.stderr[-2000:]}")
        for i, (label, _) in enumerate(floors):
            fl = best([r[i + 1] for r in rounds])
            ratio = ours.wall / fl.wall
            judged = i == 0
            rss_ok = ours.max_rss <= RSS_TARGET
            rows.append((f"{ext} {n:,} rows", label, round(ours.wall, 2), round(fl.wall, 2), f"{ratio:.2f}×",
                         f"≤ {target}×" if judged else "(ref.)",
                         verdict(ratio <= target) if judged else "", mib(ours.max_rss), mib(fl.max_rss),
                         verdict(rss_ok) if ext == "csv" else ""))
    print()
    print(table("invite-batch validate vs the floor (wall seconds incl. start-up; best of "
                f"{args.repeat}; peak RSS via wait4)",
                ("input", "floor", "validate s", "floor s", "ratio", "target", "", "validate RSS", "floor RSS",
                 "RSS ≤ 1.5 GB"), rows))


if __name__ == "__main__":
    main()
