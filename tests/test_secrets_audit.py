"""Secrets audit: nothing a run leaves behind holds the password, the token or any SID the sandbox issued.

Each provider runs as a real process against the sandbox, with faults (429, 5xx, dropped answers) and an
EDIN session that expires half-way, at -v in text and in JSON logs with --summary-json; then `status` and
`report`. Every file in the run's folder (zip members and the SQLite dump included) and every stream is
searched for each secret, plain and URL-encoded. Also: a config file holding a literal secret that other
users can read draws a warning.
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
import xlsxwriter
import yaml
from stdnum.ru import inn
from stdnum.ua import edrpou

from batch.cli import main
from batch.sandbox import SandboxServer

PASSWORD = "demo-password"  # the sandbox's demo account; a real run reads it from the environment alike
TOKEN = "sandbox-token"
CLIENT_SECRET, REFRESH_TOKEN = "sandbox-secret", "sandbox-refresh"  # Diadoc's demo keys
DIADOC_OPTIONS = {"rotate_refresh": True, "token_ttl": 60, "task_ms": 10}  # every refresh issues a new refresh token
ROWS = 18
FAULTS = {"throttle_rate": 0.1, "error_rate": 0.1, "drop_rate": 0.05, "seed": 7}
FAST_RETRY = {"attempts": 6, "initial_wait": 0.01, "max_wait": 0.05, "max_retry_after": 0.05}
PROXY_VARS = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}


class JumpClock:
    """The sandbox's clock; once armed, it leaps ahead after a few readings, so every EDIN session expires."""

    def __init__(self) -> None:
        self.offset, self.left = 0.0, -1
        self._lock = threading.Lock()

    def arm(self, after: int) -> None:
        with self._lock:
            self.left = after

    def __call__(self) -> float:
        with self._lock:
            if self.left > 0:
                self.left -= 1
                if self.left == 0:
                    self.offset += 10_000.0
            return time.monotonic() + self.offset


def _codes(n: int) -> list[str]:
    out, body = [], 3_100_000
    while len(out) < n:
        body += 7
        code = next((f"{body}{d}" for d in "0123456789" if edrpou.is_valid(f"{body}{d}")), None)
        if code:
            out.append(code)
    return out


def _write_xlsx(path: Path, sheet: str, headers: list[str], rows: list[list[str]]) -> Path:
    """An input workbook with text cells, as an office spreadsheet would hold them."""
    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet(sheet)
    for r, row in enumerate([headers, *rows]):
        for c, text in enumerate(row):
            ws.write_string(r, c, text)
    wb.close()
    return path

def _edin_input(folder: Path) -> Path:
    path = folder / "partners.xlsx"
    codes = _codes(ROWS + 1)
    rows = [[c, f"ТОВ Партнер {i}", f"office{i}@partner{i}.com.ua"] for i, c in enumerate(codes[:ROWS])]
    bad = codes[ROWS][:-1] + str((int(codes[ROWS][-1]) + 1) % 10)
    rows.append([bad, "ТОВ Помилка", "bad@bad.ua"])  # wrong check digit: invalid
    rows.append(list(rows[0]))  # duplicate
    return _write_xlsx(path, "Партнери", ["ЄДРПОУ", "Назва", "Електронна пошта"], rows)


def _invoicebox_input(folder: Path) -> Path:
    path = folder / "shops.csv"
    rows = [[f"shop{i}@shop{i}.ru", f"Магазин {i}"] for i in range(ROWS)]
    rows += [["shop@no-tld", "Без домена"], ["SHOP0@shop0.ru", "Повтор"]]
    with path.open("w", encoding="cp1251", newline="") as f:
        csv.writer(f, delimiter=";").writerows([["Электронная почта", "Название"], *rows])
    return path


def _diadoc_input(folder: Path) -> Path:
    path = folder / "counterparties.xlsx"
    stems = [f"7703{n:05d}" for n in range(1, ROWS + 1)]
    rows = [[s + inn.calc_company_check_digit(s), f"ООО Контрагент {i}", f"edo{i}@kontragent{i}.ru"]
            for i, s in enumerate(stems)]
    rows.append(["7703000015", "ООО Ошибка", "bad@bad.ru"])  # wrong check digit: invalid
    rows.append(list(rows[0]))  # duplicate
    return _write_xlsx(path, "Контрагенты", ["ИНН", "Наименование", "Email"], rows)


def _config(folder: Path, provider: str, url: str) -> Path:
    data: dict[str, object] = {"provider": provider, "base_url": url, "retry": FAST_RETRY,
                               "limits": {"workers": 4, "rate": ["200/s"]}}
    if provider == "edin":
        data["auth"] = {"email": "demo@example.com", "password": "${EDIN_PASSWORD}"}
        data["invite"] = {"contract_template_id": 5551, "status_batch_size": 5}
    elif provider == "diadoc":
        refresh = folder.parent / f"{folder.name}.refresh"  # outside the scanned folder: it must hold the token
        refresh.write_text(REFRESH_TOKEN + "\n", encoding="utf-8")
        refresh.chmod(0o600)
        data["auth"] = {"client_id": "sandbox-client", "client_secret": "${DIADOC_CLIENT_SECRET}",
                        "refresh_token_file": str(refresh)}
        data["invite"] = {"message": "Приглашаем к обмену документами"}
    else:
        data["auth"] = {"token": "${INVOICEBOX_TOKEN}"}
        data["invite"] = {"partner_id": "01771534-1a57-f184-dee3-ebeb91dded76"}
    path = folder / f"{provider}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    path.chmod(0o600)
    return path


def _cli(folder: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k.lower() not in PROXY_VARS}
    env |= {"EDIN_PASSWORD": PASSWORD, "INVOICEBOX_TOKEN": TOKEN, "DIADOC_CLIENT_SECRET": CLIENT_SECRET,
            "PYTHONWARNINGS": "error"}
    return subprocess.run([sys.executable, "-m", "batch", *args], cwd=folder, env=env, capture_output=True,
                          timeout=60, check=False)


def _haystacks(folder: Path, streams: dict[str, bytes]) -> dict[str, bytes]:
    """Every stream and file (each zip member and the SQLite dump besides the raw bytes), by name."""
    out = dict(streams)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        out[path.name] = data
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                out |= {f"{path.name}!{name}": z.read(name) for name in z.namelist()}
        if data.startswith(b"SQLite format 3\x00"):
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                out[f"{path.name} (dump)"] = "\n".join(db.iterdump()).encode()
            finally:
                db.close()
    return out


def _needles(secrets: list[str]) -> set[bytes]:
    return {form.encode() for s in secrets for form in (s, quote(s, safe=""), quote_plus(s))}


@dataclass
class Audit:
    """What one scenario's runs left behind, and what the sandbox saw."""

    name: str
    codes: list[int] = field(default_factory=list)
    streams: dict[str, bytes] = field(default_factory=dict)
    haystacks: dict[str, bytes] = field(default_factory=dict)
    ledger: dict[str, Any] = field(default_factory=dict)
    sids: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)  # Diadoc: every access and refresh token issued


def _scenario(folder: Path, server: SandboxServer, clock: JumpClock, provider: str, log_format: str) -> Audit:
    """Three runs (a partial one, the rest with an expiring session, a retry of what failed), status, report."""
    audit = Audit(f"{provider}-{log_format}")
    source = {"edin": _edin_input, "invoicebox": _invoicebox_input, "diadoc": _diadoc_input}[provider](folder)
    config, ckpt = _config(folder, provider, server.url).name, "journal.sqlite"
    log = ["-v", "--log-format", log_format]

    def cli(name: str, *args: str) -> None:
        done = _cli(folder, *args)
        audit.streams[f"{name} stdout"], audit.streams[f"{name} stderr"] = done.stdout, done.stderr
        audit.codes.append(done.returncode)

    run = ["run", source.name, "-c", config, "--checkpoint", ckpt, "--no-progress", *log]
    cli("first", *run, "--limit", "5", "--summary-json", "first.json")
    clock.arm(after=40)  # the EDIN session (Diadoc: the access token) expires half-way through the next run
    cli("second", *run, "--summary-json", "second.json")
    server.configure(throttle_rate=0, error_rate=0, drop_rate=0)
    cli("third", *run, "--retry-failed", "--resend-unknown", "-o", "third.results.csv", "--summary-json", "third.json")
    cli("status", "status", ckpt, *log)
    cli("report", "report", ckpt, "-o", "report.xlsx", *log)
    audit.ledger, audit.sids, audit.tokens = server.ledger(), server.issued_sids(), server.issued_tokens()
    audit.haystacks = _haystacks(folder, audit.streams)
    return audit


SCENARIOS = [("edin", "text"), ("edin", "json"), ("invoicebox", "text"), ("invoicebox", "json"),
             ("diadoc", "text"), ("diadoc", "json")]


def test_no_secret_in_anything_a_run_leaves(tmp_path: Path, sandbox_factory: Callable[..., SandboxServer]) -> None:
    jobs = []
    for provider, log_format in SCENARIOS:
        clock = JumpClock()
        folder = tmp_path / f"{provider}-{log_format}"
        folder.mkdir()
        options = DIADOC_OPTIONS if provider == "diadoc" else {}
        jobs.append((folder, sandbox_factory(clock=clock, **FAULTS, **options), clock, provider, log_format))
    with ThreadPoolExecutor(len(jobs)) as pool:  # independent processes and sandboxes: faster together
        audits = list(pool.map(lambda job: _scenario(*job), jobs))

    for audit, (_, _, _, provider, log_format) in zip(audits, jobs, strict=True):
        where = f"{audit.name}: {audit.codes}, {({k: v[-300:] for k, v in audit.streams.items()})}"
        assert audit.codes == [1, 1, 1, 0, 0], where  # one invalid row each run; nothing stopped early
        faults = audit.ledger["drops"] + sum(n for status, n in audit.ledger["responses"].items()
                                             if status in ("429", "500", "502", "503"))
        assert faults > 0, where  # the error paths were taken, not only the happy one
        if provider == "edin":
            assert len(audit.sids) >= 3, where  # first run, second run, the login after the session expired
        else:
            assert audit.sids == [], where
        if provider == "diadoc":
            # The two runs that sent, and the renewal after the expiry, each with its rotated refresh token.
            assert len(audit.tokens) >= 6 and audit.ledger["responses"].get("401", 0) > 0, where

        # The scan sees what it should: -v debug lines in the chosen format, the workbook's cells, the checkpoint.
        logs = [line for k, v in audit.streams.items() if k.endswith("stderr") for line in v.splitlines()]
        call = {"edin": b"POST /bdoc/auth -> 200", "invoicebox": b"POST /v3/notification/api/invite -> 200",
                "diadoc": b"POST /connect/token -> 200"}[provider]
        assert any(call in line for line in logs), where
        if log_format == "json":
            assert all(json.loads(line)["level"] for line in logs), where
        marker = {"edin": "ТОВ Партнер 3", "invoicebox": "shop3@shop3.ru",
                  "diadoc": "ООО Контрагент 3"}[provider].encode()
        assert any(name.startswith("report.xlsx!") and marker in data for name, data in audit.haystacks.items())
        names = {"first.json", "second.json", "third.json", "third.results.csv", "report.xlsx", "journal.sqlite",
                 "journal.sqlite (dump)"}
        assert names <= set(audit.haystacks), where

        secrets = {"edin": [PASSWORD], "invoicebox": [TOKEN], "diadoc": [CLIENT_SECRET, REFRESH_TOKEN]}[provider]
        secrets = [*secrets, *audit.sids, *audit.tokens]
        leaks = sorted({(name, needle.decode()) for name, data in audit.haystacks.items()
                        for needle in _needles(secrets) if needle in data})
        assert leaks == [], audit.name


# ------------------------------------------------------------------ literal secrets in a readable config

def _write(path: Path, data: dict[str, object], mode: int) -> Path:
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    path.chmod(mode)
    return path


EDIN = {"provider": "edin", "base_url": "https://doc.edin.ua", "invite": {"contract_template_id": 5551}}
IBOX = {"provider": "invoicebox", "invite": {"partner_id": "01771534-1a57-f184-dee3-ebeb91dded76"}}
DIADOC = {"provider": "diadoc", "invite": {}}


@pytest.mark.parametrize(("data", "mode", "warned"), [
    ({**EDIN, "auth": {"email": "a@b.ua", "password": "Lit3ral-pa55"}}, 0o644, "auth.password"),
    ({**EDIN, "auth": {"email": "a@b.ua", "password": "Lit3ral-pa55"}}, 0o640, "auth.password"),
    ({**IBOX, "auth": {"token": "Lit3ral-t0ken"}}, 0o604, "auth.token"),
    ({**DIADOC, "auth": {"client_id": "c", "client_secret": "Lit3ral-s3cret", "refresh_token": "Lit3ral-refr3sh"}},
     0o644, "auth.client_secret and auth.refresh_token"),
    ({**EDIN, "auth": {"email": "a@b.ua", "password": "Lit3ral-pa55"}}, 0o600, None),
    ({**EDIN, "auth": {"email": "a@b.ua", "password": "${SECRET_PW}"}}, 0o644, None),
    ({**IBOX, "auth": {"token": "${SECRET_TOKEN:-fallback}"}}, 0o644, None),
    ({**EDIN, "base_url": "embedded", "auth": {"email": "demo@example.com", "password": PASSWORD}}, 0o644, None),
], ids=["world-readable", "group-readable", "token-other-readable", "diadoc-keys", "owner-only", "from-env",
        "env-default",
        "embedded-sandbox"])
def test_literal_secret_in_a_readable_config_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture, data: dict[str, object],
                                                   mode: int, warned: str | None) -> None:
    monkeypatch.setenv("SECRET_PW", "from-the-environment")
    monkeypatch.delenv("SECRET_TOKEN", raising=False)
    config = _write(tmp_path / "c.yaml", data, mode)
    source = tmp_path / "in.csv"
    source.write_text({"edin": "ЄДРПОУ;Email\n32855961;a@b.ua\n", "invoicebox": "email\na@b.ua\n",
                       "diadoc": "ИНН\n7703000014\n"}[str(data["provider"])], encoding="utf-8")
    caplog.set_level("WARNING", logger="batch")
    assert main(["validate", str(source), "-c", str(config), "-q"]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    if warned is None:
        assert warnings == []
    else:
        assert len(warnings) == 1
        assert warned in warnings[0] and f"mode {mode:o}" in warnings[0] and "chmod 600" in warnings[0]
        assert "Lit3ral" not in warnings[0]  # the warning names the key, never the value

