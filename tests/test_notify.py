"""Notifications through Apprise (SPEC §12): received by a local endpoint through Apprise's own json:// scheme."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from support import write_config

from batch.checkpoint import Journal
from batch.cli import main
from batch.config import DEFAULT_NOTIFY_ON, parse_config
from batch.errors import ConfigError
from batch.notify import secret_parts, url_problem
from batch.sandbox import SandboxServer
from batch.tell import RunEnd, message

EDIN: dict[str, Any] = {"provider": "edin", "auth": {"email": "a@b.c", "password": "pw"},
                        "invite": {"contract_template_id": 5551}}
TG_TOKEN = "123456789:AAHdEfGhIjKlMnOpQrStUvWxYz012345678"


class Receiver:
    """A local HTTP endpoint that keeps every JSON body posted to it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                received.bodies.append(json.loads(self.rfile.read(length)))
                received.headers.append(dict(self.headers))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, path: str = "hook", userinfo: str = "") -> str:
        return f"json://{userinfo}127.0.0.1:{self.port}/{path}"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Apprise honours HTTP(S)_PROXY like any requests user: the local endpoint must be reached directly."""
    for name in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def shops(tmp_path: Path, emails: list[str]) -> Path:
    path = tmp_path / "shops.csv"
    path.write_text("email\n" + "\n".join(emails) + "\n", encoding="utf-8")
    return path


def ib_config(tmp_path: Path, **sections: Any) -> Path:
    return write_config(tmp_path / "c.yaml", "embedded", "invoicebox", **sections)


def run(*args: str | Path) -> int:
    return main([str(a) for a in args])


# ---------------------------------------------------------------- config and URLs

def test_config_reads_notify_and_metrics() -> None:
    config = parse_config({**EDIN, "notify": "json://127.0.0.1/x", "notify_on": ["stopped", "nothing to do"],
                           "metrics": {"file": "m.prom", "job": "nightly", "pushgateway": "http://127.0.0.1:9091"}},
                          env={})
    assert config.notify == ("json://127.0.0.1/x",) and config.notify_on == ("stopped", "nothing to do")
    assert (config.metrics.file, config.metrics.job, config.metrics.pushgateway) == (
        "m.prom", "nightly", "http://127.0.0.1:9091")
    assert parse_config(EDIN, env={}).notify_on == DEFAULT_NOTIFY_ON
    assert "nothing to do" not in DEFAULT_NOTIFY_ON
    # Where the run reports to changes nothing that is sent: a checkpoint stays valid.
    assert config.fingerprint() == parse_config(EDIN, env={}).fingerprint()
    assert "json://" not in repr(config)


def test_config_problems_name_the_key_and_never_the_url() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config({**EDIN, "notify": ["json://127.0.0.1/x", f"nosuch://{TG_TOKEN}", "tgram://Bad-TOKEN-77"],
                      "notify_on": ["stopped", "failed"], "metrics": {"file": "m.prom", "port": 9100,
                                                                      "pushgateway": "ftp://x"}}, env={})
    problems = exc.value.problems
    text = "\n".join(problems)
    assert any(p.startswith("notify[1]: Apprise cannot use this nosuch:// URL") for p in problems), text
    assert any(p.startswith("notify[2]: Apprise cannot use this tgram:// URL") for p in problems), text
    assert not any(p.startswith("notify[0]") for p in problems)
    assert "notify_on[1]: must be one of finished, finished with problems, stopped, failed to start, " \
           "nothing to do; got 'failed'" in problems
    assert "metrics.port: unknown key" in problems
    assert any(p.startswith("metrics.pushgateway: must be an http(s) URL") for p in problems)
    assert "Bad-TOKEN-77" not in text and TG_TOKEN not in text
    assert url_problem("just-a-token") is not None and "just-a-token" not in str(url_problem("just-a-token"))


@pytest.mark.parametrize(("url", "secrets", "not_secret"), [
    (f"tgram://{TG_TOKEN}/987654321", [TG_TOKEN], ["987654321"]),
    ("json://user:s3cretpw@127.0.0.1:8080/hook?+X-Token=abcdTOKEN&:extra=payloadSECRET",
     ["s3cretpw", "abcdTOKEN", "payloadSECRET"], ["127.0.0.1", "hook", "user"]),
    ("mailtos://alice:mailPASS99@example.com?to=ops@example.com", ["mailPASS99"], ["example.com", "alice"]),
    ("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#ops", ["TIiajkdnlazkcOXrIdevi7FQ", "T1JJ3T3L2"], ["ops"]),
], ids=["telegram", "json-headers", "email", "slack"])
def test_secret_parts_are_what_apprise_hides_plus_webhook_extras(url: str, secrets: list[str],
                                                                  not_secret: list[str]) -> None:
    parts = secret_parts(url)
    assert url in parts
    for s in secrets:
        assert any(s in p for p in parts if p != url and not p.startswith(url.split(":")[0] + ":")), s
    for s in not_secret:
        assert s not in parts


def test_message_is_short_with_outcome_summary_and_top_details(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from batch.model import Summary

    t = datetime(2026, 1, 1, tzinfo=UTC)
    summary = Summary(started=t, finished=t, input_path="p.xlsx", provider="edin")
    summary.counts.update({"sent": 5, "failed": 12, "unknown": 1})
    details = [("failed", f"HTTP 404 not_found: thing {i}", 12 - i) for i in range(10)]
    end = RunEnd(exit_code=1, input=Path("in/p.xlsx"), provider="edin", summary=summary,
                 output=Path("in/p.results.xlsx"), details=details)
    title, body = message(end)
    assert title == "invite-batch finished with problems: p.xlsx"
    lines = body.splitlines()
    assert lines[0] == "finished with problems (exit 1): in/p.xlsx (edin)"
    assert "sent 5" in lines[1] and "failed 12" in lines[1] and lines[1].endswith("results: in/p.results.xlsx")
    assert lines[2] == "12 × failed: HTTP 404 not_found: thing 0" and len(lines) == 12


# ---------------------------------------------------------------- whole runs

def test_invalid_rows_notify_finished_with_problems(tmp_path: Path, receiver: Receiver) -> None:
    inp = shops(tmp_path, ["a@shops.example", "b@shops.example", "nope", "also-bad@"])
    cfg = ib_config(tmp_path, notify=[receiver.url()])
    assert run("run", inp, "-c", cfg, "-q") == 1
    assert len(receiver.bodies) == 1
    body = receiver.bodies[0]
    assert body["title"] == "invite-batch finished with problems: shops.csv"
    assert body["type"] == "warning"
    text = body["message"]
    assert text.startswith("finished with problems (exit 1): ")
    assert "sent 2, skipped 0, duplicate 0, invalid 2, failed 0, unknown 0, pending 0" in text
    assert f"results: {tmp_path / 'shops.results.csv'}" in text


def test_refused_token_notifies_stopped_and_keeps_the_last_success(tmp_path: Path, receiver: Receiver) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    def metrics() -> dict[str, float]:
        text = (tmp_path / "m.prom").read_text(encoding="utf-8")
        return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if not s.labels.get(
            "status") and not s.labels.get("code")}

    inp = shops(tmp_path, ["a@shops.example"])
    cfg = ib_config(tmp_path, notify=[receiver.url()], metrics={"file": str(tmp_path / "m.prom")})
    assert run("run", inp, "-c", cfg, "-q") == 0
    success = metrics()["invite_batch_last_success_timestamp_seconds"]

    inp = shops(tmp_path, ["b@shops.example", "c@shops.example"])
    ib_config(tmp_path, auth={"token": "not-the-sandbox-token"}, notify=[receiver.url()],
              metrics={"file": str(tmp_path / "m.prom")})
    assert run("run", inp, "-c", cfg, "-q") == 3
    body = receiver.bodies[-1]
    assert body["title"] == "invite-batch stopped: shops.csv" and body["type"] == "failure"
    assert body["message"].startswith("stopped (exit 3): ")
    assert "Invoicebox refused the token (401 unauthorized)" in body["message"] and "pending 2" in body["message"]
    assert "not-the-sandbox-token" not in json.dumps(body)
    after = metrics()
    assert after["invite_batch_exit_code"] == 3
    assert after["invite_batch_last_success_timestamp_seconds"] == success
    assert after["invite_batch_last_run_timestamp_seconds"] > success


def test_failed_details_are_in_the_message(tmp_path: Path, receiver: Receiver) -> None:
    inp = tmp_path / "ids.csv"  # EDIN refuses to invite partner ids it does not know: 404, the rows fail
    inp.write_text("partner_id\n987654\n987655\n987656\n", encoding="utf-8")
    cfg = write_config(tmp_path / "c.yaml", "embedded", notify=[receiver.url()])
    assert run("run", inp, "-c", cfg, "-q") == 1
    [body] = receiver.bodies
    lines = body["message"].splitlines()
    assert "failed 3" in lines[1]
    details = [line for line in lines if " × failed: HTTP 404 not_found: " in line]
    assert len(details) == 3 and all(line.startswith("1 × ") for line in details)


def test_undeliverable_url_is_one_warning_and_keeps_the_exit_code(
        tmp_path: Path, closed_port: int, receiver: Receiver, capfd: pytest.CaptureFixture[str]) -> None:
    inp = shops(tmp_path, ["a@shops.example", "nope"])
    cfg = ib_config(tmp_path, notify=[f"json://127.0.0.1:{closed_port}/gone", receiver.url()])
    assert run("run", inp, "-c", cfg) == 1  # as without notifications: one invalid row
    err = capfd.readouterr().err
    warnings = [line for line in err.splitlines() if " WARNING " in line]
    assert len(warnings) == 1, err
    assert "notification not delivered to json:// (notify URL 1)" in warnings[0]
    assert "exit code is unchanged" in warnings[0] and "Traceback" not in err
    assert len(receiver.bodies) == 1  # the other URL still got it


@pytest.mark.parametrize("where", ["config", "cli"])
@pytest.mark.parametrize("fmt", ["text", "json"])
@pytest.mark.parametrize("verbose", ["-v", "-vv"])
def test_notification_url_secrets_never_in_any_output(tmp_path: Path, receiver: Receiver, closed_port: int,
                                                      capfd: pytest.CaptureFixture[str], fmt: str,
                                                      verbose: str, where: str) -> None:
    # Fresh secrets for each case: the masking is process-wide, and an earlier case must not have taught it these.
    token, password = f"tok-{uuid.uuid4().hex[:12]}", f"pw-{uuid.uuid4().hex[:12]}"
    good = receiver.url(userinfo=f"bot:{password}@") + f"?+X-Api-Token={token}"
    bad = f"json://bot:{password}@127.0.0.1:{closed_port}/gone?+X-Api-Token={token}"
    inp = shops(tmp_path, ["a@shops.example", "nope"])
    # In the config, Apprise checks them while the config loads; on the command line, just before the run.
    urls = [good, bad]
    cfg = ib_config(tmp_path, notify=urls if where == "config" else [], metrics={"file": str(tmp_path / "m.prom")})
    extra = [] if where == "config" else ["--notify", good, "--notify", bad]
    code = run("run", inp, "-c", cfg, verbose, "--log-format", fmt, "--summary-json", tmp_path / "s.json", *extra)
    assert code == 1
    out = capfd.readouterr()
    assert "notification not delivered" in out.err
    assert "127.0.0.1" in out.err or fmt == "json"
    assert receiver.headers and receiver.headers[0].get("X-Api-Token") == token  # the header did reach it
    files = [p for p in tmp_path.iterdir() if p.is_file() and p.name != "c.yaml"]
    assert {"m.prom", "s.json", "shops.results.csv"} <= {p.name for p in files}
    for text in [out.out, out.err, *(p.read_bytes().decode("utf-8", "replace") for p in files)]:
        assert token not in text and password not in text
    if fmt == "json":
        assert all(json.loads(line) for line in out.err.splitlines() if line.strip())


def test_dry_run_and_validate_send_nothing(tmp_path: Path, receiver: Receiver) -> None:
    inp = shops(tmp_path, ["a@shops.example", "nope"])
    cfg = ib_config(tmp_path, notify=[receiver.url()], notify_on=["finished", "finished with problems",
                                                                  "nothing to do"],
                    metrics={"file": str(tmp_path / "m.prom")})
    assert run("run", inp, "-c", cfg, "--dry-run", "-q") == 1
    assert run("validate", inp, "-c", cfg, "-q") == 1
    assert receiver.bodies == [] and not (tmp_path / "m.prom").exists()
    assert run("run", inp, "-c", cfg, "-q") == 1
    assert len(receiver.bodies) == 1  # the same receiver does hear a real run


def test_nothing_to_do_is_quiet_unless_asked(tmp_path: Path, receiver: Receiver) -> None:
    inp = shops(tmp_path, ["a@shops.example", "b@shops.example"])
    cfg = ib_config(tmp_path, notify=[receiver.url()])
    assert run("run", inp, "-c", cfg, "-q") == 0
    assert [b["title"] for b in receiver.bodies] == ["invite-batch finished: shops.csv"]
    assert run("run", inp, "-c", cfg, "-q") == 0  # everything was sent before: all skipped
    assert len(receiver.bodies) == 1
    ib_config(tmp_path, notify=[receiver.url()], notify_on=["nothing to do"])
    assert run("run", inp, "-c", cfg, "-q") == 0
    assert receiver.bodies[-1]["title"] == "invite-batch nothing to do: shops.csv"
    assert receiver.bodies[-1]["type"] == "success"


def test_failed_to_start_is_told_when_the_config_loaded(tmp_path: Path, receiver: Receiver) -> None:
    cfg = ib_config(tmp_path, notify=[receiver.url()])
    assert run("run", tmp_path / "missing.csv", "-c", cfg, "-q") == 2
    [body] = receiver.bodies
    assert body["title"] == "invite-batch failed to start: missing.csv"
    assert body["message"].startswith("failed to start (exit 2): ") and "missing.csv" in body["message"]

    inp = shops(tmp_path, ["a@shops.example"])
    with Journal.open(tmp_path / "shops.checkpoint.sqlite"):  # another run holds the lock
        assert run("run", inp, "-c", cfg, "-q") == 4
    assert receiver.bodies[-1]["message"].startswith("failed to start (exit 4): ")


def test_bad_cli_notify_url_is_a_usage_error_without_the_url(tmp_path: Path, receiver: Receiver,
                                                             capfd: pytest.CaptureFixture[str]) -> None:
    inp = shops(tmp_path, ["a@shops.example"])
    cfg = ib_config(tmp_path)
    assert run("run", inp, "-c", cfg, "--notify", "tgram://short-SECRET-1") == 2
    err = capfd.readouterr().err
    assert "notify URL 1: Apprise cannot use this tgram:// URL" in err and "short-SECRET-1" not in err
    assert not (tmp_path / "shops.results.csv").exists()  # nothing ran


def test_apprise_warnings_do_not_leak_into_the_log(tmp_path: Path, closed_port: int,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    from batch.notify import send

    caplog.set_level(logging.DEBUG)
    assert not send([f"json://127.0.0.1:{closed_port}/x"], title="t", body="b", exit_code=0)
    ours = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.name for r in ours] == ["batch.notify"]


def test_sigterm_mid_run_notifies_stopped_with_the_figures(tmp_path: Path, receiver: Receiver,
                                                          sandbox_factory: Callable[..., SandboxServer]) -> None:
    server = sandbox_factory(latency_ms=50)
    inp = shops(tmp_path, [f"shop{i}@example.com" for i in range(40)])
    cfg = write_config(tmp_path / "c.yaml", server.url, "invoicebox", limits={"workers": 1, "rate": []},
                       notify=[receiver.url()], metrics={"file": str(tmp_path / "m.prom")})
    proc = subprocess.Popen([sys.executable, "-m", "batch", "run", str(inp), "-c", str(cfg), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while server.ledger()["requests"] < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 3, err
    [body] = receiver.bodies
    assert body["title"] == "invite-batch stopped: shops.csv"
    text = body["message"]
    assert text.startswith("stopped (exit 3): ") and "SIGTERM" in text
    sent = server.ledger()["requests"]
    assert f"sent {sent}," in text and f"pending {40 - sent}" in text
    assert "invite_batch_exit_code{" in (tmp_path / "m.prom").read_text(encoding="utf-8")


@pytest.mark.parametrize(("notify", "warned"), [
    ([f"tgram://{TG_TOKEN}/987654321"], "notify[0]"),
    (["json://127.0.0.1:9/hook", "json://hook:Lit3ral-pw@127.0.0.1:9/hook"], "notify[1]"),
    (["json://127.0.0.1:9/hook?+Authorization=Lit3ral-key"], "notify[0]"),
    (["json://127.0.0.1:9/hook"], None),
    (["tgram://${TG_TOKEN}/987654321"], None),
], ids=["telegram-token", "json-password", "json-header", "no-secret", "from-env"])
def test_literal_secret_notify_url_in_a_readable_config_warns(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
        notify: list[str], warned: str | None) -> None:
    monkeypatch.setenv("TG_TOKEN", TG_TOKEN)
    cfg = write_config(tmp_path / "c.yaml", "https://api.invoicebox.ru", "invoicebox",
                       auth={"token": "${IB_TOKEN:-unused-Token-3141}"}, notify=notify)
    cfg.chmod(0o644)
    caplog.set_level(logging.WARNING, logger="batch")
    assert run("validate", shops(tmp_path, ["a@shops.example"]), "-c", cfg, "-q") == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    if warned is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and warned in warnings[0] and "chmod 600" in warnings[0]
        assert "Lit3ral" not in warnings[0] and TG_TOKEN not in warnings[0]
