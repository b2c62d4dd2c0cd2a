"""The page's routes through Starlette's TestClient, over the real engine and the real sandbox (SPEC §11).

The browser itself is driven in test_ui_browser.py; here every guard and view is checked quickly.
"""

from __future__ import annotations

import re
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from ui_support import partners_csv, partners_xlsx, sandbox_config, xlsx_statuses

from batch.cli import main
from batch.errors import Interrupted
from batch.runner import RunOptions, Watch, run_batch
from batch.sandbox import SandboxServer
from batch.ui import create_app
from batch.ui.i18n import choose
from batch.ui.jobs import Jobs
from batch.ui.providers import template_providers
from batch.ui.security import csrf_token

TOKEN = "test-session-token-0123456789"
PORT = 8765
BASE = f"http://127.0.0.1:{PORT}"
CSRF = csrf_token(TOKEN)


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    clients: list[TestClient] = []

    def make(url: str, *, login: bool = True, **sections: object) -> TestClient:
        configs = dict([sandbox_config(tmp_path / "cfg", url, **sections)])
        app = create_app(configs, tmp_path / "work", token=TOKEN, port=PORT)
        client = TestClient(app, base_url=BASE, follow_redirects=False)
        clients.append(client)
        if login:
            assert client.get(f"/?token={TOKEN}").status_code == 303
        return client

    yield make
    for client in clients:
        client.app.state.jobs.shutdown()  # type: ignore[attr-defined]


def upload(client: TestClient, path: Path, *, name: str | None = None, csrf: str | None = CSRF,
           config: str = "sandbox") -> object:
    data = {"config": config} | ({"csrf": csrf} if csrf else {})
    return client.post("/upload", data=data, files={"file": (name or path.name, path.read_bytes(), "text/csv")})


def job_of(client: TestClient, response: object) -> str:
    location = response.headers["location"]  # type: ignore[attr-defined]
    m = re.fullmatch(r"/jobs/([0-9a-f]{16})", location)
    assert m, location
    return m.group(1)


def wait_phase(client: TestClient, job: str, *phases: str, timeout: float = 30) -> dict[str, object]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        p: dict[str, object] = client.get(f"/jobs/{job}/progress").json()
        if p["phase"] in phases:
            return p
        time.sleep(0.02)
    raise AssertionError(f"job {job} never reached {phases}: {p}")


def workdir_files(tmp_path: Path) -> set[Path]:
    work = tmp_path / "work"
    return {p for p in work.rglob("*")} if work.exists() else set()


# ---------------------------------------------------------------- the guards


def test_403_without_token_and_the_url_token_becomes_a_cookie(tmp_path: Path, sandbox: SandboxServer,
                                                                make_client: Callable[..., TestClient]) -> None:
    client = make_client(sandbox.url, login=False)
    for path in ("/", "/static/app.js", "/jobs/0123456789abcdef", "/template/edin", f"/?token={TOKEN}x"):
        assert client.get(path).status_code == 403, path
    first = client.get(f"/?token={TOKEN}&lang=uk")
    assert first.status_code == 303 and first.headers["location"] == "/?lang=uk"  # the token leaves the URL
    cookie = first.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    page = client.get("/")
    assert page.status_code == 200 and 'for="file">Spreadsheet' in page.text
    assert TOKEN not in page.text  # the page never shows the session token


@pytest.mark.parametrize("host", ["evil.example:8765", "127.0.0.1:9999", "localhost", "", "127.0.0.1.nip.io:8765"],
                         ids=["rebinding-name", "other-port", "no-port", "empty", "lookalike"])
def test_403_for_a_foreign_host_header(sandbox: SandboxServer, make_client: Callable[..., TestClient],
                                       host: str) -> None:
    client = make_client(sandbox.url)
    assert client.get("/", headers={"host": host}).status_code == 403
    assert client.get(f"/?token={TOKEN}", headers={"host": host}).status_code == 403
    assert client.get("/", headers={"host": f"localhost:{PORT}"}).status_code == 200


def test_state_changing_requests_need_the_csrf_token_and_change_nothing(
        tmp_path: Path, sandbox: SandboxServer, make_client: Callable[..., TestClient]) -> None:
    client = make_client(sandbox.url)
    inp, _ = partners_csv(tmp_path / "p.csv", 3)
    before = workdir_files(tmp_path)
    for csrf in (None, "wrong", TOKEN):  # the session token itself is not the CSRF token
        assert upload(client, inp, csrf=csrf).status_code == 403  # type: ignore[attr-defined]
    assert workdir_files(tmp_path) == before  # no job folder, no file

    job = job_of(client, upload(client, inp))
    wait_phase(client, job, "validated")
    app = client.app
    posts = [r.path for r in app.routes if "POST" in (getattr(r, "methods", None) or ())]  # type: ignore[attr-defined]
    assert set(posts) == {"/upload", "/jobs/{job_id}/validate", "/jobs/{job_id}/send", "/jobs/{job_id}/stop"}
    for path in posts:
        url = path.replace("{job_id}", job)
        assert client.post(url, data={}).status_code == 403, url
        assert client.post(url, data={"csrf": "x"}, headers={"x-csrf-token": "y"}).status_code == 403, url
    assert client.get(f"/jobs/{job}/progress").json()["phase"] == "validated"
    assert sandbox.ledger()["edin"]["partners"] == {}  # nothing was sent
    # The header works as well as the form field.
    assert client.post(f"/jobs/{job}/send", headers={"x-csrf-token": CSRF}).status_code == 303
    wait_phase(client, job, "finished")
    assert len(sandbox.ledger()["edin"]["partners"]) == 3


# ---------------------------------------------------------------- uploads


def test_uploaded_names_are_never_paths_and_files_are_private(tmp_path: Path, sandbox: SandboxServer,
                                                              make_client: Callable[..., TestClient]) -> None:
    client = make_client(sandbox.url)
    inp, _ = partners_csv(tmp_path / "p.csv", 2)
    job = job_of(client, upload(client, inp, name="../../../escape<b>.csv"))
    wait_phase(client, job, "validated")
    assert not list(tmp_path.glob("escape*")) and not list((tmp_path / "work").glob("escape*"))
    folder = tmp_path / "work" / job
    assert sorted(p.name for p in folder.iterdir()) == ["input.csv", "input.results.csv", "job.json"]
    page = client.get(f"/jobs/{job}").text
    assert "escape&lt;b&gt;.csv" in page and "<b>.csv" not in page  # shown, escaped
    client.post(f"/jobs/{job}/send", data={"csrf": CSRF})
    wait_phase(client, job, "finished")
    for path in workdir_files(tmp_path):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path} is {oct(mode)}"


def test_upload_limits_and_wrong_types(tmp_path: Path, sandbox: SandboxServer,
                                       make_client: Callable[..., TestClient]) -> None:
    client = make_client(sandbox.url, limits={"max_file_size": 300})
    inp, _ = partners_csv(tmp_path / "p.csv", 10)  # ~450 bytes
    refused = upload(client, inp)
    assert refused.status_code == 400 and "larger than this configuration allows (300 bytes)" in refused.text
    small, _ = partners_csv(tmp_path / "s.csv", 1)
    assert upload(client, small, name="s.exe").status_code == 400  # type: ignore[attr-defined]
    assert upload(client, small, config="other").status_code == 400  # type: ignore[attr-defined]
    huge = client.post("/upload", content=b"x" * 70_000, headers={"content-type": "multipart/form-data; boundary=b"})
    assert huge.status_code == 413
    assert workdir_files(tmp_path) == set()


# ---------------------------------------------------------------- the flow


def test_validate_send_and_download(tmp_path: Path, sandbox: SandboxServer,
                                    make_client: Callable[..., TestClient]) -> None:
    client = make_client(sandbox.url)
    inp, codes = partners_csv(tmp_path / "p.csv", 150)
    job = job_of(client, upload(client, inp))
    p = wait_phase(client, job, "validated")
    assert p["line"] == "sent 0, skipped 0, duplicate 1, invalid 1, failed 0, unknown 0, pending 150 — validated"
    page = client.get(f"/jobs/{job}").text
    assert 'role="status"' in page and "Send invitations" in page and "Page 1 of 2" in page
    statuses = re.findall(r'<span class="st (\w+)">', page)
    assert statuses[:3] == ["invalid", "duplicate", "pending"] and len(statuses) == 100  # problems first
    second = client.get(f"/jobs/{job}?page=2").text
    assert re.findall(r'<span class="st (\w+)">', second) == ["pending"] * 52
    assert f'href="/jobs/{job}?page=2&amp;lang=uk"' in second  # the language switch keeps the page
    assert client.get(f"/jobs/{job}?page=99").status_code == 200  # clamped to the last page
    assert sandbox.ledger()["edin"]["partners"] == {}

    assert client.post(f"/jobs/{job}/send", data={"csrf": CSRF}).status_code == 303
    p = wait_phase(client, job, "finished")
    assert p["line"] == "sent 150, skipped 0, duplicate 1, invalid 1, failed 0, unknown 0, pending 0 — finished"
    page = client.get(f"/jobs/{job}").text
    assert "Download results" in page and "exit code 1" in page  # one invalid row: exit 1, as `run`
    download = client.get(f"/jobs/{job}/results")
    assert download.status_code == 200 and 'filename="p.results.csv"' in download.headers["content-disposition"]
    lines = download.text.splitlines()
    assert len(lines) == 153 and lines[-1].count(",invalid,") == 1
    assert {p["code"] for p in sandbox.ledger()["edin"]["partners"].values()} == set(codes)
    for view in (page, client.get("/").text, client.get(f"/jobs/{job}/progress").text):
        assert "demo-password" not in view and "demo@example.com" not in view  # no credential on the page

    # A new page over the same workdir lists the run, with its counts.
    again = create_app(dict([sandbox_config(tmp_path / "cfg", sandbox.url)]), tmp_path / "work", token=TOKEN, port=PORT)
    with TestClient(again, base_url=BASE, follow_redirects=True) as other:
        index = other.get(f"/?token={TOKEN}").text
    assert "p.csv" in index and "finished" in index and "sent 150" in index


def test_xlsx_results_download(tmp_path: Path, sandbox: SandboxServer,
                               make_client: Callable[..., TestClient]) -> None:
    inp, _ = partners_xlsx(tmp_path / "p.xlsx", 3)
    client = make_client(sandbox.url)
    job = job_of(client, client.post("/upload", data={"config": "sandbox", "csrf": CSRF},
                                     files={"file": ("p.xlsx", inp.read_bytes())}))
    wait_phase(client, job, "validated")
    client.post(f"/jobs/{job}/send", data={"csrf": CSRF})
    wait_phase(client, job, "finished")
    statuses = xlsx_statuses(client.get(f"/jobs/{job}/results").content, tmp_path)
    assert statuses == ["sent"] * 3 + ["duplicate", "invalid"]


def test_a_busy_job_refuses_a_second_start(tmp_path: Path, sandbox_factory: Callable[..., SandboxServer],
                                           make_client: Callable[..., TestClient]) -> None:
    server = sandbox_factory(latency_ms=40)
    client = make_client(server.url, limits={"workers": 1, "rate": []})
    inp, _ = partners_csv(tmp_path / "p.csv", 30)
    job = job_of(client, upload(client, inp))
    wait_phase(client, job, "validated")
    client.post(f"/jobs/{job}/send", data={"csrf": CSRF})
    assert client.post(f"/jobs/{job}/send", data={"csrf": CSRF}).status_code == 409
    assert client.post(f"/jobs/{job}/validate", data={"csrf": CSRF}).status_code == 409
    assert client.post(f"/jobs/{job}/stop", data={"csrf": CSRF}).status_code == 303
    p = wait_phase(client, job, "stopped")
    assert "stopped" in str(p["line"]) and int(p["counts"]["pending"]) > 0  # type: ignore[index]
    page = client.get(f"/jobs/{job}").text
    assert "Download results" in page and "Send again to resume" in page


def test_a_bad_file_is_one_line_on_the_page(tmp_path: Path, sandbox: SandboxServer,
                                            make_client: Callable[..., TestClient]) -> None:
    client = make_client(sandbox.url)
    bad = tmp_path / "bad.csv"
    bad.write_text("nothing,useful\n1,2\n", encoding="utf-8")
    job = job_of(client, upload(client, bad))
    p = wait_phase(client, job, "error")
    assert "no partner_id or code column" in str(p["message"])
    assert "Traceback" not in client.get(f"/jobs/{job}").text


# ---------------------------------------------------------------- language, templates, the command


def test_language_from_the_browser_and_the_switch(sandbox: SandboxServer,
                                                  make_client: Callable[..., TestClient]) -> None:
    client = make_client(sandbox.url)
    uk = client.get("/", headers={"accept-language": "uk-UA,uk;q=0.9,en;q=0.8"}).text
    assert 'lang="uk"' in uk and "Перевірити" in uk and 'href="/?lang=en"' in uk
    switched = client.get("/?lang=en", headers={"accept-language": "uk"})
    assert "Validate" in switched.text and "ib_lang=en" in switched.headers["set-cookie"]
    assert "Validate" in client.get("/", headers={"accept-language": "uk"}).text  # the cookie wins


@pytest.mark.parametrize(("query", "cookie", "header", "lang"), [
    (None, None, "", "en"), (None, None, "de-DE,uk;q=0.5", "uk"), (None, None, "en;q=0.2,uk;q=0.9", "uk"),
    (None, "en", "uk", "en"), ("uk", "en", "en", "uk"), ("xx", None, "fr", "en"), (None, None, "uk;q=x", "uk"),
], ids=["default", "second-choice", "by-weight", "cookie", "query", "unknown", "bad-weight"])
def test_choose_language(query: str | None, cookie: str | None, header: str, lang: str) -> None:
    assert choose(query, cookie, header) == lang


def test_a_template_for_each_provider(tmp_path: Path, sandbox: SandboxServer,
                                      make_client: Callable[..., TestClient]) -> None:
    client = make_client(sandbox.url)
    page = client.get("/").text
    assert template_providers()
    for provider in template_providers():
        assert f'href="/template/{provider}"' in page
        got = client.get(f"/template/{provider}")
        assert got.status_code == 200 and got.content[:2] == b"PK"
    assert client.get("/template/..%2Fetc").status_code == 404


def test_ui_command_refuses_a_non_loopback_host(tmp_path: Path, sandbox: SandboxServer,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    name, _ = sandbox_config(tmp_path, sandbox.url)
    assert main(["ui", "-c", str(tmp_path / f"{name}.yaml"), "--host", "0.0.0.0", "--no-browser"]) == 2
    assert "loopback" in capsys.readouterr().err
    assert main(["ui", "-c", str(tmp_path / f"{name}.yaml"), "-c", str(tmp_path / f"{name}.yaml")]) == 2


# ---------------------------------------------------------------- the runner's hooks


def test_watch_stops_a_run_gracefully_and_counts_progress(tmp_path: Path,
                                                           sandbox_factory: Callable[..., SandboxServer]) -> None:
    server = sandbox_factory(latency_ms=20)
    _, config = sandbox_config(tmp_path, server.url, limits={"workers": 2, "rate": []})
    inp, codes = partners_csv(tmp_path / "p.csv", 40)
    watch = Watch()

    def stop_when_busy() -> None:
        while watch.done < 5:
            time.sleep(0.005)
        watch.stop.set()

    stopper = threading.Thread(target=stop_when_busy)
    stopper.start()
    with pytest.raises(Interrupted, match="stopped on request"):
        run_batch(config, RunOptions(input=inp), watch=watch)
    stopper.join()
    assert watch.total == 40 and 5 <= watch.done < 40
    sent = sum(r.status == "sent" for r in watch.results)
    assert 5 <= sent <= watch.done  # a row the stop caught between its look-up and its invitation stays pending
    report = run_batch(config, RunOptions(input=inp))
    assert report.summary.counts["sent"] == 40 - sent
    assert all(p["invitations"] == 1 for p in server.ledger()["edin"]["partners"].values())
    assert len(server.ledger()["edin"]["partners"]) == len(codes)


def test_jobs_left_running_by_a_closed_page_show_as_stopped(tmp_path: Path, sandbox: SandboxServer) -> None:
    name, config = sandbox_config(tmp_path / "cfg", sandbox.url)
    jobs = Jobs(tmp_path / "work", {name: config})
    job = jobs.create("p.csv", name, b"code\n")
    job.phase = "running"
    job.save()
    again = Jobs(tmp_path / "work", {name: config}).get(job.id)
    assert again is not None and again.phase == "stopped" and "closed" in again.message
    assert Jobs(tmp_path / "work", {name: config}).get("../x") is None


def test_the_ui_command_prints_its_url_serves_and_stops_on_sigterm(tmp_path: Path, sandbox: SandboxServer) -> None:
    import http.client
    import signal
    import subprocess
    import sys

    name, _ = sandbox_config(tmp_path, sandbox.url)
    proc = subprocess.Popen([sys.executable, "-m", "batch", "ui", "-c", str(tmp_path / f"{name}.yaml"), "-v",
                             "--no-browser", "--workdir", str(tmp_path / "w")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        m = re.fullmatch(r"invite-batch ui: http://127\.0\.0\.1:(\d+)/\?token=([\w-]{40,})", line)
        assert m, line
        conn = http.client.HTTPConnection("127.0.0.1", int(m.group(1)), timeout=10)
        conn.request("GET", f"/?token={m.group(2)}")
        first = conn.getresponse()
        first.read()
        assert first.status == 303
        conn.request("GET", f"//evil.example/x?token={m.group(2)}")
        assert conn.getresponse().getheader("location") == "/evil.example/x"  # never an open redirect
        conn.close()
        assert stat.S_IMODE((tmp_path / "w").stat().st_mode) == 0o700
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert m.group(2) not in err  # the token never reaches a log line


def test_the_results_view_lists_failed_rows_with_their_details(tmp_path: Path, sandbox: SandboxServer,
                                                               make_client: Callable[..., TestClient]) -> None:
    client = make_client(sandbox.url)
    inp = tmp_path / "ids.csv"
    inp.write_text("partner_id,name\n1234567,Not ours\n", encoding="utf-8")  # an id the sandbox does not know
    job = job_of(client, upload(client, inp))
    wait_phase(client, job, "validated")
    client.post(f"/jobs/{job}/send", data={"csrf": CSRF})
    wait_phase(client, job, "finished")
    page = client.get(f"/jobs/{job}").text
    need_you = page.split("Rows that need you", 1)[1].split("What to do next", 1)[0]
    assert '<span class="st failed">failed</span>' in need_you and "HTTP 404" in need_you
    assert "--retry-failed" in page


def test_a_run_holding_the_checkpoint_elsewhere_is_refused_as_on_the_command_line(
        tmp_path: Path, sandbox: SandboxServer, make_client: Callable[..., TestClient]) -> None:
    from batch.checkpoint import Journal
    from batch.runner import default_checkpoint_path

    client = make_client(sandbox.url)
    inp, _ = partners_csv(tmp_path / "p.csv", 3)
    job = job_of(client, upload(client, inp))
    wait_phase(client, job, "validated")
    with Journal.open(default_checkpoint_path(tmp_path / "work" / job / "input.csv")):  # another run holds it
        client.post(f"/jobs/{job}/send", data={"csrf": CSRF})
        p = wait_phase(client, job, "error")
    page = client.get(f"/jobs/{job}").text
    assert "held by pid" in str(p["message"]) and "exit code 4" in page and "Send invitations" in page
    assert sandbox.ledger()["edin"]["partners"] == {}
    client.post(f"/jobs/{job}/send", data={"csrf": CSRF})  # the other run is over: sending works again
    assert wait_phase(client, job, "finished")["counts"]["sent"] == 3  # type: ignore[index]
