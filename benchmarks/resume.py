"""Resume overhead: re-running over a completed 100k-row checkpoint vs a dry run of the same file; the journal's cost.

The input is a 100k-row EDIN CSV (CSV in and out, so xlsx writing does not dominate). The completed checkpoint
is populated through `batch.checkpoint.Journal` directly: every row's identity (computed by the product's own
reader, validation and the provider's identity rule) is begun and finished as `sent` and marked, as a finished
run leaves it. Sending 100k rows through the sandbox for real would take several minutes at the client's
ceiling (see throughput.py), so it is not done here. The population runs at synchronous=OFF (it is a fixture,
not measured); then one unmeasured `invite-batch run` records the input snapshot, as the original run would
have.

Measured (each a subprocess, start-up included; --repeat interleaved rounds, the fastest of each kept):
  * `invite-batch validate` of the file with no checkpoint: the dry run;
  * `invite-batch run` over the completed checkpoint: every row `skipped`, nothing sent (target ≤ 1.3× the dry run);
    the file is unchanged since the snapshot, so this is the resume fast path (plan.settle);
  * for reference, `run --dry-run` over the same completed checkpoint.
Then the journal's per-row cost (begin + finish, two durable commits) at the product's durability
(WAL + synchronous=FULL) and, for comparison, NORMAL — from benchmarks/journal.py.

Run on demand: `python benchmarks/resume.py [--rows 100000] [--repeat 5]`. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    CLI,
    EDIN_HEADERS,
    Measured,
    clean,
    edin_config,
    edin_rows,
    measure,
    mib,
    out_dir,
    table,
    verdict,
    write_csv,
)
from journal import per_row  # noqa: E402

TARGET = 1.3


def populate(src: Path, config_path: Path, checkpoint: Path) -> tuple[int, float]:
    """Fill `checkpoint` with every valid row of `src` sent and marked; returns (items, seconds)."""
    from batch.checkpoint import ItemState, Journal
    from batch.config import load_config
    from batch.reader import read_table
    from batch.validation import validate_rows

    start = time.perf_counter()
    config = load_config(config_path)
    profile = config.profile
    table = read_table(src, fields=profile.fields, required=profile.required)
    rows = [r for r in validate_rows(table, config) if r.valid]
    with Journal.open(checkpoint) as journal:
        assert journal._conn is not None
        journal._conn.execute("PRAGMA synchronous=OFF")  # a fixture: its durability is not what is measured
        journal.start_run(input_path=str(src), input_sha256=table.sha256, config_fingerprint=config.fingerprint(),
                          provider=config.provider, action=config.action, headers=table.headers)
        sent_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for n, row in enumerate(rows):
            ident = row.identity
            assert ident is not None
            journal.begin(ident, step="invite", partner_id=str(100_000 + n))
            journal.finish(ident, state=ItemState.SENT, http_status=200, request_id=f"req-{n}", attempts=1,
                           sent_at=sent_at, marked="yes")
    return len(rows), time.perf_counter() - start


def best(runs: list[Measured]) -> Measured:
    return min(runs, key=lambda m: m.wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5, help="rounds of the three commands; the fastest counts")
    parser.add_argument("--journal-rows", type=int, default=3000, help="rows for the per-row journal cost")
    args = parser.parse_args()

    work = out_dir("resume")
    config = edin_config(work / "edin.yaml", workers=8, rate="[]")
    src = write_csv(work / f"edin-{args.rows}.csv", EDIN_HEADERS, edin_rows(args.rows), args.rows)
    checkpoint, out = work / "completed.checkpoint.sqlite", work / "results.csv"
    summary = work / "summary.json"
    clean(checkpoint, work / f"edin-{args.rows}.checkpoint.sqlite")
    items, took = populate(src, config, checkpoint)
    print(f"checkpoint populated through Journal: {items:,} items sent and marked in {took:.1f} s", flush=True)

    run = [*CLI, "run", str(src), "-c", str(config), "-o", str(out), "--checkpoint", str(checkpoint), "-q",
           "--no-progress", "--summary-json", str(summary)]
    measure(run)  # records the input snapshot, as the run that completed the checkpoint would have
    validate = [*CLI, "validate", str(src), "-c", str(config), "-o", str(out), "-q"]
    dry_run = [*CLI, "run", str(src), "-c", str(config), "-o", str(out), "--checkpoint", str(checkpoint),
               "--dry-run", "-q", "--no-progress"]
    # Interleaved rounds, the fastest of each kept: a shared machine's load then weighs on all three alike.
    rounds = [(measure(validate), measure(run), measure(dry_run)) for _ in range(args.repeat)]
    dry, resumed, dry_ck = (best([r[i] for r in rounds]) for i in range(3))
    counts = json.loads(summary.read_text())["counts"]
    if counts["skipped"] != items or counts["sent"] != 0:
        raise SystemExit(f"the re-run did not skip every row: {counts}")
    ratio = resumed.wall / dry.wall
    print()
    print(table(f"re-run over a completed {items:,}-row checkpoint (EDIN CSV in/out; wall s incl. start-up, "
                f"best of {args.repeat})",
                ("command", "wall s", "cpu s", "peak RSS", "vs dry run", "target", ""),
                [("validate (dry run, no checkpoint)", round(dry.wall, 2), round(dry.cpu, 2), mib(dry.max_rss),
                  "1.00×", "", ""),
                 ("run over the completed checkpoint (all skipped)", round(resumed.wall, 2), round(resumed.cpu, 2),
                  mib(resumed.max_rss), f"{ratio:.2f}×", f"≤ {TARGET}×", verdict(ratio <= TARGET)),
                 ("run --dry-run over the completed checkpoint (ref.)", round(dry_ck.wall, 2), round(dry_ck.cpu, 2),
                  mib(dry_ck.max_rss), f"{dry_ck.wall / dry.wall:.2f}×", "", "")]))

    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        for sync in ("FULL", "NORMAL"):
            for threads in (1, 8):
                cost = per_row(Path(tmp), sync, args.journal_rows, threads)
                lines.append((sync + (" (the product's)" if sync == "FULL" else ""), threads,
                              f"{cost * 1000:.3f}", f"{1 / cost:,.0f}"))
    print()
    print(table(f"journal: begin + finish per row, two durable commits, WAL ({args.journal_rows:,} rows; "
                "benchmarks/journal.py)", ("synchronous", "threads", "ms/row", "rows/s"), lines))


if __name__ == "__main__":
    main()
