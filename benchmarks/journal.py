"""Cost of the checkpoint journal: commits per row at each SQLite sync level, bulk reads, writes, size.

Run on demand: `python benchmarks/journal.py [--rows 10000] [--bulk 100000]`. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

from batch.checkpoint import ItemState, Journal
from batch.providers.base import Identity


def _journal(path: Path, synchronous: str) -> Journal:
    journal = Journal.open(path)
    # The product always runs FULL; the other levels are set here only to show what FULL costs.
    assert journal._conn is not None
    journal._conn.execute(f"PRAGMA synchronous={synchronous}")
    journal.start_run(input_path="bench.csv", input_sha256="0" * 64, config_fingerprint="bench",
                      provider="edin", action="invite", headers=["code", "name", "email"])
    return journal


def per_row(directory: Path, synchronous: str, rows: int, threads: int) -> float:
    """Seconds per row of begin + finish (2 durable commits), spread over `threads` workers."""
    path = directory / f"rows-{synchronous}-{threads}.sqlite"
    with _journal(path, synchronous) as journal:
        def work(offset: int) -> None:
            for n in range(offset, rows, threads):
                identity = Identity(f"{n:08d}")
                journal.begin(identity, step="invite")
                journal.finish(identity, state=ItemState.SENT, invitation_id=str(n), http_status=200,
                               request_id=f"req-{n}", marked="no")

        workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
        start = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        return (time.perf_counter() - start) / rows


def bulk(directory: Path, count: int) -> tuple[float, float, float, int]:
    """Seconds for save_rows and items() over `count` rows, and the file's size."""
    path = directory / "bulk.sqlite"
    with _journal(path, "FULL") as journal:
        rows = [(n + 2, f"{n:08d}", (f"{n:08d}", f"Company {n}", f"user{n}@example.com"))
                for n in range(count)]
        start = time.perf_counter()
        journal.save_rows(rows, "bench")
        saved = time.perf_counter() - start
        assert journal._conn is not None
        journal._conn.execute("BEGIN")  # fill the items table in one go; per-row commits are measured above
        journal._conn.executemany(
            "INSERT INTO items (identity, state, invitation_id, http_status, attempts, marked, sent_at, "
            "updated_at) VALUES (?, 'sent', ?, 200, 1, 'yes', '2024-01-01T00:00:00Z', "
            "'2024-01-01T00:00:00Z')", [(f"{n:08d}", str(n)) for n in range(count)])
        journal._conn.execute("COMMIT")
        start = time.perf_counter()
        items = journal.items()
        read = time.perf_counter() - start
        assert len(items) == count
        start = time.perf_counter()
        journal.report_rows()
        report = time.perf_counter() - start
    return saved, read, report, path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000, help="rows for the per-row commit cost")
    parser.add_argument("--bulk", type=int, default=100_000, help="rows for save_rows / items()")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        print(f"begin + finish per row ({args.rows:,} rows, WAL)")
        print(f"{'synchronous':<12}{'threads':>8}{'ms/row':>10}{'rows/s':>12}")
        for synchronous in ("FULL", "NORMAL", "OFF"):
            for threads in (1, 3):
                cost = per_row(directory, synchronous, args.rows, threads)
                print(f"{synchronous:<12}{threads:>8}{cost * 1000:>10.3f}{1 / cost:>12,.0f}")
        saved, read, report, size = bulk(directory, args.bulk)
        print(f"\n{args.bulk:,} rows")
        print(f"{'save_rows()':<16}{saved:>8.3f} s")
        print(f"{'items()':<16}{read:>8.3f} s")
        print(f"{'report_rows()':<16}{report:>8.3f} s")
        print(f"{'file size':<16}{size / 2**20:>8.1f} MiB")


if __name__ == "__main__":
    main()
