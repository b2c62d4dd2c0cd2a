"""The provider registry is the only door: a provider written here, in the test, and installed as a distribution
with an `invite_batch.providers` entry point runs end to end through the real CLI, runner, checkpoint and results."""

from __future__ import annotations

import csv
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from batch import providers
from batch.cli import main

# The whole provider: a config section, one field, its rules and identity, and a one-call session.
TINY = '''
from dataclasses import dataclass, field

from batch.checkpoint import ItemState
from batch.errors import AmbiguousAPIError, APIError, FatalAPIError
from batch.model import Row
from batch.outcome import Verdict, describe, record
from batch.providers.base import Field, Identity, Provider, Session
from batch.validation import header_names


@dataclass(frozen=True, kw_only=True)
class Auth:
    key: str = field(repr=False)

    def secrets(self):
        return (self.key,)


class TinySession(Session):
    def __init__(self, config, http, journal, clock):
        self.http, self.journal, self.clock = http, journal, clock
        self.headers = {"X-Key": config.auth.key}

    def handle(self, task):
        self.journal.begin(task.identity, step="invite")
        try:
            reply = self.http.request("POST", "/invite", mutating=True, json={"login": task.values["login"]},
                                      headers=self.headers)
        except AmbiguousAPIError as err:
            record(self.journal, task, ItemState.UNKNOWN, self.clock, detail=describe(err), error=err)
            return Verdict.BROKEN
        except APIError as err:
            record(self.journal, task, ItemState.FAILED, self.clock, detail=describe(err), error=err)
            return Verdict.REFUSED if isinstance(err, FatalAPIError) else Verdict.BROKEN
        task.result.invitation_id = reply.json()["id"]
        task.result.http_status, task.result.attempts = reply.status, reply.attempts
        record(self.journal, task, ItemState.SENT, self.clock)
        return Verdict.OK


class TinyProvider(Provider):
    name = "tiny"
    title = "Tiny"
    default_base_url = "https://tiny.invalid"
    default_rate = ("50/s",)
    fields = (Field("login", ("login", "Логін"), "yes", "The user to invite.", "Кого запросити."),)
    required = ("login",)

    def parse_settings(self, auth, invite, action):
        key = auth.text("key")
        if not key:
            auth.problem("key", "is required for tiny")
        return Auth(key=key or ""), None

    def rules(self, table, config):
        i, h = table.fields["login"], header_names(table)

        def check(raw):
            login = raw.cells[i]
            if login.isascii() and login.isalnum():
                return Row(raw.line, raw.cells, {"login": login})
            return Row(raw.line, raw.cells, {}, (f"{h('login')}: {login!r} is not a login",))
        return check

    def identity(self, values):
        return Identity(values["login"].lower())

    def session(self, config, http, journal, clock, should_stop):
        return TinySession(config, http, journal, clock)
'''


@pytest.fixture
def tiny_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """`tinyprov` as an installed distribution: a module and a dist-info with its entry point, on sys.path."""
    site = tmp_path / "site"
    (site / "tinyprov-1.0.dist-info").mkdir(parents=True)
    (site / "tinyprov.py").write_text(TINY, encoding="utf-8")
    (site / "tinyprov-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: tinyprov\nVersion: 1.0\n")
    (site / "tinyprov-1.0.dist-info" / "entry_points.txt").write_text(
        f"[{providers.GROUP}]\ntiny = tinyprov:TinyProvider\n")
    monkeypatch.syspath_prepend(str(site))
    providers.reload()
    yield
    monkeypatch.undo()
    providers.reload()


class _Tiny(BaseHTTPRequestHandler):
    received: list[str]

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        login = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["login"]
        refused = self.headers.get("X-Key") != "k-secret-123" or login == "banned"
        if not refused:
            self.received.append(login)
        body = json.dumps({"error": "banned"} if refused else {"id": f"inv-{len(self.received)}"}).encode()
        self.send_response(403 if refused else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def tiny_server() -> Iterator[tuple[str, list[str]]]:
    received: list[str] = []
    handler = type("Handler", (_Tiny,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()


def test_a_provider_from_another_distribution_runs_end_to_end(
        tiny_installed: None, tiny_server: tuple[str, list[str]], tmp_path: Path) -> None:
    url, received = tiny_server
    assert "tiny" in providers.names() and {"diadoc", "edin", "invoicebox"} <= set(providers.names())
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({"provider": "tiny", "base_url": url, "auth": {"key": "k-secret-123"},
                                   "retry": {"attempts": 2, "initial_wait": 0.01}}), encoding="utf-8")
    cfg.chmod(0o600)
    src = tmp_path / "users.csv"
    src.write_text("Логін\nann\nbob\nAnn\nbad login\nbanned\n", encoding="utf-8")
    out = tmp_path / "users.results.csv"

    assert main(["run", str(src), "-c", str(cfg)]) == 1  # an invalid row and a refused one
    assert received == ["ann", "bob"]
    with out.open(encoding="utf-8-sig", newline="") as f:
        rows = {r["row"]: (r["status"], r["detail"], r["invitation_id"]) for r in csv.DictReader(f)}
    assert rows == {
        "2": ("sent", "", "inv-1"), "3": ("sent", "", "inv-2"), "4": ("duplicate", "same partner as row 2", ""),
        "5": ("invalid", "Логін: 'bad login' is not a login", ""),
        "6": ("failed", "HTTP 403: banned", ""),
    }
    # The same command again resumes from the checkpoint: nothing is sent twice.
    assert main(["run", str(src), "-c", str(cfg)]) == 1
    assert received == ["ann", "bob"]
    with out.open(encoding="utf-8-sig", newline="") as f:
        assert [r["status"] for r in csv.DictReader(f)] == ["skipped", "skipped", "duplicate", "invalid", "failed"]
    # Its template comes from its fields; its secret stays out of the checkpoint.
    assert main(["template", "tiny", "-o", str(tmp_path / "t.csv")]) == 0
    assert (tmp_path / "t.csv").read_text(encoding="utf-8-sig").strip() == "login"
    assert b"k-secret-123" not in (tmp_path / "users.checkpoint.sqlite").read_bytes()


def test_a_provider_that_is_not_installed_is_a_config_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("provider: tiny\nauth: {key: x}\n", encoding="utf-8")
    src = tmp_path / "in.csv"
    src.write_text("login\nann\n", encoding="utf-8")
    assert main(["run", str(src), "-c", str(cfg)]) == 2
    assert "provider: must be one of diadoc, edin, invoicebox, got 'tiny'" in caplog.text
