"""Shared helpers of the benchmarks: generated inputs, configs, subprocesses measured for time and RSS, tables.

Not part of the test suite. Generated files go to `benchmarks/out/` (git-ignored) and are reused when
they already exist with the same row count, so a second run of a benchmark skips the generation.
"""

from __future__ import annotations

import csv
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stdnum.ua import edrpou

OUT = Path(__file__).resolve().parent / "out"
ROOT = OUT.parent.parent
PYTHON = sys.executable
# The console script next to the interpreter; `python -m batch` when it is not installed.
CLI = [str(Path(PYTHON).with_name("invite-batch"))] if Path(PYTHON).with_name("invite-batch").exists() \
    else [PYTHON, "-m", "batch"]

EDIN_HEADERS = ("code", "name", "email", "contact_person", "phone")
INVOICEBOX_PARTNER = "01771534-1a57-f184-dee3-ebeb91dded76"
DEMO_TOKEN = "sandbox-token"


def out_dir(*parts: str) -> Path:
    path = OUT.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


# ---------------------------------------------------------------- inputs

def edin_rows(n: int) -> Iterator[tuple[str, ...]]:
    """n distinct EDIN partners with valid EDRPOU codes (check digit from python-stdnum) and e-mails."""
    for i in range(n):
        body = f"{1_000_000 + i * 7 % 9_000_000:07d}"  # distinct 7-digit bodies, spread over the range
        code = body + edrpou.calc_check_digit(body)
        yield (code, f'ТОВ "Партнер {i}"', f"office{i}@partner-{i % 997}.com.ua", f"Контакт {i}",
               f"+380 44 {i % 1000:03d} {i % 100:02d} {i % 97:02d}")


def invoicebox_rows(n: int) -> Iterator[tuple[str]]:
    for i in range(n):
        yield (f"shop{i}@shop-{i % 541}.ru",)


def _fresh(path: Path, rows: int) -> bool:
    """Whether `path` was generated before with this many rows (a marker file beside it says so)."""
    marker = path.with_name(path.name + ".rows")
    return path.exists() and marker.exists() and marker.read_text() == str(rows)


def _mark(path: Path, rows: int) -> None:
    path.with_name(path.name + ".rows").write_text(str(rows))


def write_csv(path: Path, headers: Sequence[str], rows: Iterator[Sequence[str]], n: int) -> Path:
    if not _fresh(path, n):
        with open(path, "w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(headers)
            w.writerows(rows)
        _mark(path, n)
    return path


def write_xlsx(path: Path, headers: Sequence[str], rows: Iterator[Sequence[str]], n: int) -> Path:
    """Codes go in as numbers, as an office spreadsheet keeps them; everything else as text."""
    if not _fresh(path, n):
        import xlsxwriter

        wb = xlsxwriter.Workbook(str(path), {"constant_memory": True})
        ws = wb.add_worksheet("Partners")
        for c, h in enumerate(headers):
            ws.write_string(0, c, h)
        for r, row in enumerate(rows, start=1):
            ws.write_number(r, 0, int(row[0]))
            for c, v in enumerate(row[1:], start=1):
                ws.write_string(r, c, v)
        wb.close()
        _mark(path, n)
    return path


def edin_config(path: Path, **limits: object) -> Path:
    """A config for EDIN dry runs (validate makes no call, so `embedded` is never started)."""
    path.write_text(
        "provider: edin\nbase_url: embedded\nauth: {email: demo@example.com, password: demo-password}\n"
        "invite: {contract_template_id: 5551}\n" + _limits(limits), encoding="utf-8")
    return path


def invoicebox_config(path: Path, base_url: str, *, workers: int = 8, rate: Sequence[str] = ()) -> Path:
    rates = "[" + ", ".join(f'"{r}"' for r in rate) + "]"
    path.write_text(
        f"provider: invoicebox\nbase_url: {base_url}\nauth: {{token: {DEMO_TOKEN}}}\n"
        f"invite: {{partner_id: {INVOICEBOX_PARTNER}}}\n"
        f"limits: {{workers: {workers}, rate: {rates}}}\n"
        "retry: {attempts: 5, initial_wait: 0.2, max_wait: 5}\n", encoding="utf-8")
    return path


def _limits(limits: dict[str, object]) -> str:
    if not limits:
        return ""
    return "limits: {" + ", ".join(f"{k}: {v}" for k, v in limits.items()) + "}\n"


# ---------------------------------------------------------------- measuring subprocesses

@dataclass
class Measured:
    wall: float  # seconds, start to exit
    rc: int
    max_rss: int  # bytes, the child's peak resident set
    cpu: float  # user + system seconds of the child
    stdout: str
    stderr: str


def _child_env() -> dict[str, str]:
    """The environment of measured commands: bytecode is cached, as in an installed package."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def measure(argv: Sequence[str], *, cwd: Path | None = None, check: bool = True) -> Measured:
    """Run one command to its end; its own peak RSS and CPU come from wait4, so children never mix."""
    start = time.perf_counter()
    proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd,
                            env=_child_env())
    # Drain the pipes in the background so a chatty child never blocks on a full pipe.
    import threading

    chunks: dict[str, bytes] = {}

    def drain(name: str, stream: object) -> None:
        chunks[name] = stream.read()  # type: ignore[attr-defined]

    readers = [threading.Thread(target=drain, args=(n, s)) for n, s in (("out", proc.stdout), ("err", proc.stderr))]
    for t in readers:
        t.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    for t in readers:
        t.join()
    m = Measured(wall=wall, rc=proc.returncode, max_rss=usage.ru_maxrss * 1024, cpu=usage.ru_utime + usage.ru_stime,
                 stdout=chunks["out"].decode(errors="replace"), stderr=chunks["err"].decode(errors="replace"))
    if check and m.rc not in (0, 1):
        raise SystemExit(f"{' '.join(map(str, argv))} exited {m.rc}:\n{m.stderr[-3000:]}")
    return m


def children_peak_rss() -> int:
    """Peak RSS of the largest child waited for so far (RUSAGE_CHILDREN), in bytes."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024


@contextmanager
def sandbox_process(*options: str) -> Iterator[str]:
    """`invite-batch sandbox` in its own process on a free port; yields its base URL."""
    proc = subprocess.Popen([*CLI, "sandbox", "--port", "0", "-q", *options], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_child_env())
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("http"):
            raise SystemExit(f"the sandbox did not start: {url!r} {proc.stderr.read() if proc.stderr else ''}")
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def ledger(url: str, window: float | None = None) -> dict[str, Any]:
    import json
    import urllib.request

    query = f"?window={window}" if window else ""
    with urllib.request.urlopen(f"{url}/_sandbox/ledger{query}", timeout=10) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


def reset(url: str) -> None:
    import urllib.request

    req = urllib.request.Request(f"{url}/_sandbox/reset?all=1", method="POST", data=b"")
    with urllib.request.urlopen(req, timeout=10):
        pass


# ---------------------------------------------------------------- output

def table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain fixed-width table."""
    cells = [[str(h) for h in headers]] + [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(cells[0], widths, strict=True)),
             "  ".join("-" * w for w in widths)]
    for row in cells[1:]:
        lines.append("  ".join(c.rjust(w) if _numeric(c) else c.ljust(w) for c, w in zip(row, widths, strict=True)))
    return "\n".join(line.rstrip() for line in lines)


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 100 else f"{v:,.1f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def _numeric(text: str) -> bool:
    return bool(text) and text.replace(",", "").replace(".", "").replace("×", "").replace("%", "").lstrip("-").isdigit()


def mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def clean(*paths: Path) -> None:
    for p in paths:
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            for q in p.parent.glob(p.name + "*"):
                q.unlink(missing_ok=True)
