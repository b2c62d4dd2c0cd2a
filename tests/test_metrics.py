"""Metrics (SPEC §12): the textfile read back by prometheus_client's parser, a real Pushgateway, node_exporter."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import responses
from prometheus_client.parser import text_string_to_metric_families
from support import FAST_RETRY, write_config

from batch.cli import main
from batch.config import RetryPolicy, Timeouts, load_config
from batch.errors import AuthError
from batch.http import HttpClient
from batch.metrics import RunMetrics, write_textfile
from batch.model import Status
from batch.runner import RunOptions
from batch.tell import run_and_tell

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def series(text: str) -> Series:
    """Every sample as (name, labels) → value, through prometheus_client's own parser."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(found: Series, name: str, **labels: str) -> float | None:
    """The one sample of `name` whose labels include `labels`."""
    hits = [v for (n, ls), v in found.items() if n == name and set(labels.items()) <= ls]
    assert len(hits) <= 1, (name, labels, hits)
    return hits[0] if hits else None


def shops(tmp_path: Path, emails: list[str], name: str = "shops.csv") -> Path:
    path = tmp_path / name
    path.write_text("email\n" + "\n".join(emails) + "\n", encoding="utf-8")
    return path


def run(*args: str | Path) -> int:
    return main([str(a) for a in args])


def ib_config(tmp_path: Path, **sections: Any) -> Path:
    return write_config(tmp_path / "c.yaml", "embedded", "invoicebox", **sections)


# ---------------------------------------------------------------- real consumers as processes

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def binary(name: str) -> str:
    """The Debian binary, or a skip with the reason on a developer machine (never under CI)."""
    path = shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/sbin")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing under CI; .ci/run installs it with apt-get")
        pytest.skip(f"{name} is not installed, so this real-consumer test did NOT run: apt-get install {name}")
    return path


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 (a loopback URL of ours)
        return str(r.read().decode("utf-8"))


@pytest.fixture
def start_process() -> Iterator[Callable[[list[str], str], str]]:
    """start(argv, ready_path) → the base URL of a process listening on a free loopback port."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(argv: list[str], ready: str) -> str:
        port = free_port()
        proc = subprocess.Popen([*argv, f"--web.listen-address=127.0.0.1:{port}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        procs.append(proc)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 15
        while True:
            try:
                get(base + ready)
                return base
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr and proc.poll() is not None else ""
                    raise RuntimeError(f"{argv[0]} did not start: {err[-500:]}") from None
                time.sleep(0.05)

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()


@pytest.fixture
def pushgateway(start_process: Callable[[list[str], str], str]) -> str:
    return start_process([binary("prometheus-pushgateway")], "/-/ready")


# ---------------------------------------------------------------- the textfile

def test_textfile_after_invalid_rows(tmp_path: Path) -> None:
    prom = tmp_path / "metrics" / "invite.prom"
    prom.parent.mkdir()
    inp = shops(tmp_path, ["a@shops.example", "b@shops.example", "a@shops.example", "nope"])
    cfg = ib_config(tmp_path)
    before = time.time()
    assert run("run", inp, "-c", cfg, "-q", "--metrics", prom) == 1
    found = series(prom.read_text(encoding="utf-8"))
    job = {"job": "shops", "provider": "invoicebox"}
    assert all(dict(labels)["job"] == "shops" and dict(labels)["provider"] == "invoicebox"
               for _, labels in found)
    rows = {s.value: value(found, "invite_batch_rows", status=s.value, **job) for s in Status}
    assert rows == {"sent": 2, "skipped": 0, "duplicate": 1, "invalid": 1, "failed": 0, "unknown": 0, "pending": 0}
    assert value(found, "invite_batch_requests_total", code="200", **job) == 2
    assert value(found, "invite_batch_requests_total", code="none", **job) == 0
    assert value(found, "invite_batch_exit_code", **job) == 1
    last_run = value(found, "invite_batch_last_run_timestamp_seconds", **job)
    assert last_run is not None and before <= last_run <= time.time()
    assert value(found, "invite_batch_last_success_timestamp_seconds", **job) == last_run  # exit 1 succeeded
    duration = value(found, "invite_batch_duration_seconds", **job)
    assert duration is not None and 0 < duration < 60
    assert [p.name for p in prom.parent.iterdir()] == ["invite.prom"]  # the temporary file was renamed


def test_refused_token_keeps_the_last_success(tmp_path: Path) -> None:
    prom = tmp_path / "invite.prom"
    inp = shops(tmp_path, ["a@shops.example"])
    cfg = ib_config(tmp_path, metrics={"file": str(prom), "job": "nightly"})
    assert run("run", inp, "-c", cfg, "-q") == 0
    first = series(prom.read_text(encoding="utf-8"))
    success = value(first, "invite_batch_last_success_timestamp_seconds", job="nightly")
    assert success is not None

    inp = shops(tmp_path, ["b@shops.example", "c@shops.example"])
    ib_config(tmp_path, metrics={"file": str(prom), "job": "nightly"}, auth={"token": "refused-token"},
              limits={"workers": 1})
    assert run("run", inp, "-c", cfg, "-q") == 3
    found = series(prom.read_text(encoding="utf-8"))
    assert value(found, "invite_batch_exit_code", job="nightly") == 3
    assert value(found, "invite_batch_last_success_timestamp_seconds", job="nightly") == success
    last_run = value(found, "invite_batch_last_run_timestamp_seconds", job="nightly")
    assert last_run is not None and last_run > success
    assert value(found, "invite_batch_requests_total", code="401", job="nightly") == 1
    assert value(found, "invite_batch_rows", status="pending", job="nightly") == 2  # the refused row was put back


def test_failed_start_without_an_earlier_success_has_no_last_success(tmp_path: Path) -> None:
    prom = tmp_path / "invite.prom"
    cfg = ib_config(tmp_path, metrics={"file": str(prom)})
    assert run("run", tmp_path / "missing.csv", "-c", cfg, "-q") == 2
    found = series(prom.read_text(encoding="utf-8"))
    assert value(found, "invite_batch_exit_code", job="missing") == 2
    assert value(found, "invite_batch_rows", status="sent", job="missing") == 0
    assert value(found, "invite_batch_last_success_timestamp_seconds") is None


def test_unwritable_metrics_path_is_a_warning(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    inp = shops(tmp_path, ["a@shops.example"])
    assert run("run", inp, "-c", ib_config(tmp_path), "--metrics", tmp_path / "no" / "such" / "dir.prom") == 0
    err = capfd.readouterr().err
    assert [line for line in err.splitlines() if " WARNING " in line] == [
        next(line for line in err.splitlines() if "metrics not written to" in line)]


def test_a_garbled_previous_file_is_replaced_readable_whatever_the_umask(tmp_path: Path) -> None:
    prom = tmp_path / "invite.prom"
    prom.write_text("this is { not prometheus\n", encoding="utf-8")
    prom.chmod(0o600)
    run_ = RunMetrics(job="j", provider="edin", rows={}, requests={}, duration=1.0, finished=100.0, exit_code=3)
    old = os.umask(0o077)  # the systemd recipe's UMask
    try:
        write_textfile(prom, run_)
    finally:
        os.umask(old)
    assert prom.stat().st_mode & 0o777 == 0o644  # node_exporter runs as another user
    assert [p.name for p in tmp_path.iterdir()] == ["invite.prom"]
    found = series(prom.read_text(encoding="utf-8"))
    assert value(found, "invite_batch_exit_code") == 3
    assert value(found, "invite_batch_last_success_timestamp_seconds") is None


@responses.activate
def test_http_client_counts_every_attempt_by_code() -> None:
    responses.add(responses.POST, "https://api.example/x", status=503)
    responses.add(responses.POST, "https://api.example/x", body=ConnectionRefusedError("refused"))
    responses.add(responses.POST, "https://api.example/x", status=200, json={})
    client = HttpClient("https://api.example", timeouts=Timeouts(), retry=RetryPolicy(**FAST_RETRY), limiter=None,
                        workers=1, sleep=lambda _: None)
    client.request("POST", "/x", mutating=True)
    assert client.answers == {"503": 1, "none": 1, "200": 1}


@responses.activate
def test_http_client_counts_concurrent_answers_exactly() -> None:
    responses.add(responses.GET, "https://api.example/y", status=200)
    client = HttpClient("https://api.example", timeouts=Timeouts(), retry=RetryPolicy(**FAST_RETRY), limiter=None,
                        workers=8, sleep=lambda _: None)
    threads = [threading.Thread(target=lambda: [client.request("GET", "/y", mutating=False) for _ in range(50)])
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert client.answers == {"200": 400}


# ---------------------------------------------------------------- real consumers

def test_pushgateway_receives_the_run_and_keeps_the_last_success(tmp_path: Path, pushgateway: str) -> None:
    inp = shops(tmp_path, ["a@shops.example", "nope"])
    cfg = ib_config(tmp_path, metrics={"pushgateway": pushgateway, "job": "nightly-shops"})
    assert run("run", inp, "-c", cfg, "-q") == 1
    first = series(get(pushgateway + "/metrics"))
    mine = {"job": "nightly-shops", "provider": "invoicebox"}
    assert value(first, "invite_batch_rows", status="invalid", **mine) == 1
    assert value(first, "invite_batch_requests_total", code="200", **mine) == 1
    assert value(first, "invite_batch_exit_code", **mine) == 1
    success = value(first, "invite_batch_last_success_timestamp_seconds", **mine)
    assert success is not None and success == value(first, "invite_batch_last_run_timestamp_seconds", **mine)

    ib_config(tmp_path, metrics={"pushgateway": pushgateway, "job": "nightly-shops"}, auth={"token": "wrong-one"})
    assert run("run", shops(tmp_path, ["b@shops.example"]), "-c", cfg, "-q") == 3
    found = series(get(pushgateway + "/metrics"))
    assert value(found, "invite_batch_exit_code", **mine) == 3
    assert value(found, "invite_batch_last_success_timestamp_seconds", **mine) == success  # not erased
    last_run = value(found, "invite_batch_last_run_timestamp_seconds", **mine)
    assert last_run is not None and last_run > success
    assert value(found, "invite_batch_requests_total", code="401", **mine) == 1


def test_unreachable_pushgateway_is_a_warning(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    inp = shops(tmp_path, ["a@shops.example"])
    assert run("run", inp, "-c", ib_config(tmp_path), "--pushgateway", f"http://127.0.0.1:{free_port()}") == 0
    err = capfd.readouterr().err
    assert sum(" WARNING " in line for line in err.splitlines()) == 1 and "metrics not pushed to" in err


def test_node_exporter_serves_the_textfile(tmp_path: Path, start_process: Callable[[list[str], str], str]) -> None:
    exporter = binary("prometheus-node-exporter")
    textfiles = tmp_path / "textfile"
    textfiles.mkdir()
    base = start_process([exporter, "--collector.disable-defaults", "--collector.textfile",
                          f"--collector.textfile.directory={textfiles}"], "/metrics")
    inp = shops(tmp_path, ["a@shops.example", "nope"])
    assert run("run", inp, "-c", ib_config(tmp_path), "-q", "--metrics", textfiles / "invite_batch.prom") == 1
    found = series(get(base + "/metrics"))
    assert value(found, "node_textfile_scrape_error") == 0
    mine = {"job": "shops", "provider": "invoicebox"}
    assert value(found, "invite_batch_rows", status="sent", **mine) == 1
    assert value(found, "invite_batch_exit_code", **mine) == 1
    assert value(found, "invite_batch_last_success_timestamp_seconds", **mine) is not None


@pytest.mark.parametrize(("url", "problem"), [
    ("ftp://gateway:9091", "must be an http(s) URL like http://pushgateway:9091, got 'ftp://gateway:9091'"),
    ("gateway:9091", "must be an http(s) URL"),
    ("http://ops:Gw-s3cret-77@gateway:9091", "credentials in the URL are not supported"),
], ids=["ftp", "no-scheme", "credentials"])
def test_bad_pushgateway_url_is_exit_2_before_anything_runs(tmp_path: Path, capfd: pytest.CaptureFixture[str],
                                                            url: str, problem: str) -> None:
    inp = shops(tmp_path, ["a@shops.example"])
    assert run("run", inp, "-c", ib_config(tmp_path), "--pushgateway", url) == 2
    assert run("run", inp, "-c", ib_config(tmp_path, metrics={"pushgateway": url})) == 2
    err = capfd.readouterr().err
    assert err.count(problem) == 2 and "Gw-s3cret-77" not in err
    assert not (tmp_path / "shops.results.csv").exists()


class StepClock:
    """A clock that moves one second per reading of the wall time and never sleeps."""

    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def now(self) -> datetime:
        self.t += 1
        return datetime.fromtimestamp(self.t, UTC)

    def monotonic(self) -> float:
        return self.t

    def wait(self, event: threading.Event, seconds: float) -> bool:
        self.t += seconds
        return event.is_set()


def test_times_come_from_the_runs_clock(tmp_path: Path) -> None:
    prom = tmp_path / "invite.prom"
    clock = StepClock()
    config = load_config(ib_config(tmp_path, metrics={"file": str(prom)}))
    opts = RunOptions(input=shops(tmp_path, ["a@shops.example"]))
    assert run_and_tell(config, opts, clock=clock).exit_code == 0
    found = series(prom.read_text(encoding="utf-8"))
    assert value(found, "invite_batch_last_run_timestamp_seconds") == clock.t  # the last reading
    assert value(found, "invite_batch_last_success_timestamp_seconds") == clock.t
    success = clock.t

    refused = load_config(ib_config(tmp_path, metrics={"file": str(prom)}, auth={"token": "wrong-token-1"}))
    with pytest.raises(AuthError):
        run_and_tell(refused, RunOptions(input=shops(tmp_path, ["b@shops.example"])), clock=clock)
    found = series(prom.read_text(encoding="utf-8"))
    assert value(found, "invite_batch_last_run_timestamp_seconds") == clock.t > success
    assert value(found, "invite_batch_last_success_timestamp_seconds") == success
    assert value(found, "invite_batch_exit_code") == 3
