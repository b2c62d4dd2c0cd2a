"""Sending throughput against the sandbox: workers, the limiter against a real limit, 429 convergence, the ceiling.

Measured in one run, each case against `invite-batch sandbox` in its own process (so the client's CPU is its
own) and `invite-batch run` as a subprocess (wall time includes start-up). Invoicebox rows (one POST a row):

  (a) 30 ms latency, no limits, 8 workers: rows/s next to a sequential `requests` loop over the same file
      (also a subprocess). Ideal 8×, target ≥ 6×, judged on whole-command time.
  (b) a 20/s limit on both sides: utilisation (in-run rows/s ÷ 20) ≥ 95 % and no 429.
  (c) our limit at 3× the sandbox's (60/s vs 20/s): every row sent exactly once, 429s ≤ 15 % of requests.
  (d) 0 ms latency, no limits, 8 workers: the client's ceiling in rows/s on this machine (target ≥ 400).

"whole" rates are rows ÷ the command's wall time (start-up, reading, writing results included); "in-run"
rates are the run's own `rows_per_second` from --summary-json (rows attempted ÷ the run's duration).

Run on demand: `python benchmarks/throughput.py [--rows 1000] [--limited-rows 300] [--ceiling-rows 3000]`.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    CLI,
    DEMO_TOKEN,
    INVOICEBOX_PARTNER,
    PYTHON,
    Measured,
    clean,
    invoicebox_config,
    invoicebox_rows,
    ledger,
    measure,
    out_dir,
    reset,
    sandbox_process,
    table,
    verdict,
    write_csv,
)

WORKERS = 8


def loop(url: str, src: Path) -> None:
    """The baseline: one requests.Session posting every row in turn, as a hand-written script would."""
    import requests

    session = requests.Session()
    headers = {"Authorization": f"Bearer {DEMO_TOKEN}", "Content-Type": "application/json",
               "Accept": "application/json", "User-Agent": "bench-loop/1.0 (requests)"}
    start = time.perf_counter()
    sent = 0
    with open(src, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        next(reader)
        for (email,) in reader:
            r = session.post(f"{url}/v3/notification/api/invite", headers=headers, timeout=30,
                             data=json.dumps({"partnerId": INVOICEBOX_PARTNER, "type": "email", "identifier": email}))
            sent += r.status_code == 200
    print(json.dumps({"rows": sent, "seconds": time.perf_counter() - start}))


def run(work: Path, name: str, url: str, src: Path, *, rate: tuple[str, ...] = ()) -> tuple[Measured, dict[str, Any]]:
    """One `invite-batch run` on a fresh checkpoint; returns the measurement and its summary JSON."""
    config = invoicebox_config(work / f"{name}.yaml", url, workers=WORKERS, rate=rate)
    checkpoint, summary, output = work / f"{name}.checkpoint.sqlite", work / f"{name}.summary.json", \
        work / f"{name}.results.csv"
    clean(checkpoint, summary, output)
    reset(url)
    m = measure([*CLI, "run", str(src), "-c", str(config), "-o", str(output), "--checkpoint", str(checkpoint),
                 "--summary-json", str(summary), "-q", "--no-progress"])
    if m.rc != 0:
        raise SystemExit(f"run {name} exited {m.rc}: {m.stderr[-2000:]}")
    return m, json.loads(summary.read_text())


def sent_once(book: dict[str, Any], n: int) -> tuple[int, int]:
    """(addresses invited exactly once, addresses invited more than once) from the sandbox's ledger."""
    emails = book["invoicebox"]["emails"]
    once = sum(1 for v in emails.values() if v["invitations"] == 1)
    return once, sum(1 for v in emails.values() if v["invitations"] > 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1000, help="rows of case (a)")
    parser.add_argument("--limited-rows", type=int, default=300, help="rows of cases (b) and (c)")
    parser.add_argument("--ceiling-rows", type=int, default=3000, help="rows of case (d)")
    parser.add_argument("--only", default="abcd", help="run only these cases, e.g. --only ad")
    parser.add_argument("--loop", nargs=2, metavar=("URL", "CSV"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.loop:
        loop(args.loop[0], Path(args.loop[1]))
        return

    work = out_dir("throughput")
    inputs = {n: write_csv(work / f"invoicebox-{n}.csv", ("email",), invoicebox_rows(n), n)
              for n in {args.rows, args.limited_rows, args.ceiling_rows}}
    lines: list[tuple[object, ...]] = []

    if "a" in args.only:
        n = args.rows
        with sandbox_process("--latency-ms", "30") as url:
            reset(url)
            base = measure([PYTHON, __file__, "--loop", url, str(inputs[n])])
            inner = json.loads(base.stdout)
            loop_whole, loop_inner = n / base.wall, inner["rows"] / inner["seconds"]
            m, s = run(work, "a", url, inputs[n])
        whole, in_run = n / m.wall, s["rows_per_second"]
        ratio = whole / loop_whole
        lines += [
            (f"(a) {n:,} rows, 30 ms, sequential requests loop", f"{base.wall:.2f}", f"{loop_whole:.1f}",
             f"{loop_inner:.1f}", "1.00×", "", "", ""),
            (f"(a) {n:,} rows, 30 ms, no limit, {WORKERS} workers", f"{m.wall:.2f}", f"{whole:.1f}", f"{in_run:.1f}",
             f"{ratio:.2f}× whole, {in_run / loop_inner:.2f}× in-run", "≥ 6× (ideal 8×)", verdict(ratio >= 6),
             f"cpu {m.cpu:.1f}s"),
        ]

    if "b" in args.only or "c" in args.only:
        n = args.limited_rows
        with sandbox_process("--latency-ms", "30", "--rate-limit", "20/s") as url:
            if "b" in args.only:
                m, s = run(work, "b", url, inputs[n], rate=("20/s",))
                book = ledger(url, window=10)
                in_run = s["rows_per_second"]
                util = in_run / 20
                throttled = book["responses"].get("429", 0)
                steady = book["max_requests_per_window"] / (20 * 10)
                lines.append((f"(b) {n:,} rows, 20/s both sides", f"{m.wall:.2f}", f"{n / m.wall:.1f}",
                              f"{in_run:.1f}", f"utilisation {util:.1%} (sandbox's best 10 s: {steady:.1%}), "
                              f"429s {throttled}", "≥ 95 %, no 429",
                              verdict(util >= 0.95 and throttled == 0), ""))
            if "c" in args.only:
                m, s = run(work, "c", url, inputs[n], rate=("60/s",))
                book = ledger(url)
                once, more = sent_once(book, n)
                requests_made = book["requests"]
                throttled = book["responses"].get("429", 0)
                share = throttled / requests_made if requests_made else 0.0
                ok = once == n and more == 0 and s["counts"]["sent"] == n and share <= 0.15
                lines.append((f"(c) {n:,} rows, ours 60/s vs sandbox 20/s", f"{m.wall:.2f}", f"{n / m.wall:.1f}",
                              f"{s['rows_per_second']:.1f}",
                              f"sent once {once:,}/{n:,}, twice+ {more}; 429s {throttled}/{requests_made} "
                              f"= {share:.1%}", "all once, 429 ≤ 15 %", verdict(ok), ""))

    if "d" in args.only:
        n = args.ceiling_rows
        with sandbox_process() as url:
            m, s = run(work, "d", url, inputs[n])
            book = ledger(url)
        in_run = s["rows_per_second"]
        lines.append((f"(d) {n:,} rows, 0 ms, no limit, {WORKERS} workers", f"{m.wall:.2f}", f"{n / m.wall:.1f}",
                      f"{in_run:.1f}", f"sandbox requests {book['requests']:,}", "≥ 400 rows/s in-run",
                      verdict(in_run >= 400), f"cpu {m.cpu:.1f}s"))

    print()
    print(table("invite-batch run against `invite-batch sandbox` (separate processes; invoicebox, CSV in/out)",
                ("case", "wall s", "whole rows/s", "in-run rows/s", "measured", "target", "", "client"), lines))


if __name__ == "__main__":
    main()
