"""Sending throughput against the sandbox: workers, the limiter against a real limit, 429 convergence, the ceiling.

Measured in one run, each case against `invite-batch sandbox` in its own process (so the client's CPU is its
own) and `invite-batch run` as a subprocess (wall time includes start-up). Invoicebox rows (one POST a row):

  (a) 30 ms latency, no limits, 8 workers: rows/s next to a sequential `requests` loop over the same file
      (also a subprocess). Ideal 8×, target ≥ 6×, judged on whole-command time.
  (b) a 20/s limit on both sides: utilisation (in-run rows/s ÷ 20) ≥ 95 % and no 429.
  (c) our limit at 3× the sandbox's (60/s vs 20/s): every row sent exactly once, 429s ≤ 15 % of requests.
  (d) 0 ms latency, no limits, 8 workers: the client's ceiling in rows/s on this machine (target ≥ 400).

Kontur.Diadoc rows (find, read the relation, AcquireCounteragent, poll the task), at the docs' advice of 4 workers,
against generated organisations without a relation (a seed file for `--diadoc-organizations`):

  (e) 30 ms latency, a task's result ready at its first poll: rows/s and API calls per row (target ≤ 4.1: four
      calls a row, plus the run's token request, GetMyOrganizations and the one relation check).
  (f) the same with tasks that take 1 s: each poll is answered 204 + `Retry-After: 1`, so a row waits ~1 s;
      rows/s is bounded by workers ÷ 1 s.

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


def run(work: Path, name: str, url: str, src: Path, *, rate: tuple[str, ...] = (),
        config: Path | None = None) -> tuple[Measured, dict[str, Any]]:
    """One `invite-batch run` on a fresh checkpoint (Invoicebox unless `config` is given); returns the
    measurement and its summary JSON."""
    config = config or invoicebox_config(work / f"{name}.yaml", url, workers=WORKERS, rate=rate)
    checkpoint, summary, output = work / f"{name}.checkpoint.sqlite", work / f"{name}.summary.json", \
        work / f"{name}.results.csv"
    clean(checkpoint, summary, output)
    reset(url)
    m = measure([*CLI, "run", str(src), "-c", str(config), "-o", str(output), "--checkpoint", str(checkpoint),
                 "--summary-json", str(summary), "-q", "--no-progress"])
    if m.rc != 0:
        raise SystemExit(f"run {name} exited {m.rc}: {m.stderr[-2000:]}")
    return m, json.loads(summary.read_text())


def diadoc_seed(path: Path, n: int) -> Path:
    """A sandbox seed of `n` organisations without a relation (valid INNs from python-stdnum, stable GUIDs)."""
    import uuid

    from stdnum.ru import inn

    mark = f"benchmarks/throughput.py: {n} organisations without a relation"
    if path.is_file() and json.loads(path.read_text(encoding="utf-8")).get("_comment") == mark:
        return path
    orgs = []
    for i in range(n):
        stem = f"78{i:07d}"
        code = stem + inn.calc_company_check_digit(stem)
        orgs.append({"Inn": code, "Kpp": "780101001", "FullName": f"ООО «Бенчмарк {i}»",
                     "BoxIdGuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench/{code}"))})
    seed = {"_comment": mark, "my_organization": {"Inn": "7701001005", "Kpp": "770101001", "FullName": "ООО «Бенч»",
                                            "BoxIdGuid": "7bb2de7a-c2a0-5113-8dc8-9cee0e2ae0be"},
            "organizations": orgs, "egrul": [], "nowhere": []}
    path.write_text(json.dumps(seed, ensure_ascii=False), encoding="utf-8")
    return path


def diadoc_run(work: Path, name: str, url: str, seed: Path, n: int) -> tuple[Measured, dict[str, Any], float]:
    """One Diadoc `invite-batch run` at 4 workers over the first `n` seeded INNs; (measurement, summary, calls/row)."""
    orgs = json.loads(seed.read_text(encoding="utf-8"))["organizations"][:n]
    src = work / f"{name}.csv"
    src.write_text("ИНН\n" + "".join(f"{o['Inn']}\n" for o in orgs), encoding="utf-8")
    config = work / f"{name}.yaml"
    config.write_text(
        f"provider: diadoc\nbase_url: {url}\n"
        "auth: {client_id: sandbox-client, client_secret: sandbox-secret, refresh_token: sandbox-refresh}\n"
        "invite: {result_timeout: 60}\nlimits: {workers: 4, rate: []}\n"
        "retry: {attempts: 5, initial_wait: 0.2, max_wait: 5}\n", encoding="utf-8")
    m, summary = run(work, name, url, src, config=config)
    book = ledger(url)
    agents = book["diadoc"]["counteragents"]
    if len(agents) != n or any(v["acquires"] != 1 for v in agents.values()):
        raise SystemExit(f"run {name}: not every counterparty invited exactly once")
    return m, summary, book["requests"] / n


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
    parser.add_argument("--diadoc-rows", type=int, default=500, help="rows of case (e)")
    parser.add_argument("--diadoc-slow-rows", type=int, default=40, help="rows of case (f)")
    parser.add_argument("--only", default="abcdef", help="run only these cases, e.g. --only ad")
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

    if "e" in args.only or "f" in args.only:
        seed = diadoc_seed(work / "diadoc-orgs.json", max(args.diadoc_rows, args.diadoc_slow_rows))
        for case, n, task_ms in (("e", args.diadoc_rows, "0"), ("f", args.diadoc_slow_rows, "1000")):
            if case not in args.only:
                continue
            with sandbox_process("--latency-ms", "30", "--task-ms", task_ms, "--diadoc-organizations",
                                 str(seed)) as url:
                m, s, per_row = diadoc_run(work, case, url, seed, n)
            in_run = s["rows_per_second"]
            target, ok = ("≤ 4.1 calls/row", per_row <= 4.1) if case == "e" else \
                ("≈ 4 rows/s (4 workers ÷ 1 s)", 3.0 <= in_run <= 4.5)
            lines.append((f"({case}) diadoc {n:,} rows, 30 ms, task {int(task_ms) // 1000} s, 4 workers",
                          f"{m.wall:.2f}", f"{n / m.wall:.1f}", f"{in_run:.1f}", f"{per_row:.2f} calls/row",
                          target, verdict(ok), f"cpu {m.cpu:.1f}s"))

    print()
    print(table("invite-batch run against `invite-batch sandbox` (separate processes; CSV in/out; invoicebox, "
                "diadoc in (e) and (f))",
                ("case", "wall s", "whole rows/s", "in-run rows/s", "measured", "target", "", "client"), lines))


if __name__ == "__main__":
    main()
