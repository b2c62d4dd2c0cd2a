"""The page in a real headless Chromium (Debian's `chromium`, driven by Playwright), found by SPEC §11's names.

Playwright cannot download its own browsers on these machines, so the system's chromium is used. Without it
these tests skip with a loud reason on a developer machine, and fail when the env var CI is set.
"""

from __future__ import annotations

import http.client
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ui_support import partners_csv, partners_xlsx, sandbox_config, xlsx_statuses

from batch.sandbox import SandboxServer
from batch.ui import UiServer

CHROMIUM = os.environ.get("INVITE_BATCH_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
TIMEOUT_MS = 30_000


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the browser tests (apt-get install -y chromium)")
    pytest.skip(f"BROWSER TESTS NOT RUN: {reason} (apt-get install -y chromium)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the whole module."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package is not installed (pip install '.[test]')")
    if CHROMIUM is None:
        _missing("no chromium executable found")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield b
        b.close()


@pytest.fixture
def page_for(browser: Any, tmp_path: Path) -> Iterator[Callable[..., tuple[Any, UiServer]]]:
    """`page_for(sandbox_url, **config_sections)` → (a fresh English page at the UI's URL, the UI server)."""
    servers: list[UiServer] = []
    contexts: list[Any] = []

    def make(url: str, **sections: Any) -> tuple[Any, UiServer]:
        configs = dict([sandbox_config(tmp_path / "cfg", url, **sections)])
        server = UiServer(configs, tmp_path / "work").start()
        servers.append(server)
        context = browser.new_context(locale="en-US", accept_downloads=True)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        page.goto(server.url)
        return page, server

    yield make
    for context in contexts:
        context.close()
    for server in servers:
        server.stop()


def upload_and_validate(page: Any, path: Path) -> None:
    page.get_by_label("Configuration").select_option("sandbox")
    page.get_by_label("Spreadsheet").set_input_files(str(path))
    page.get_by_role("button", name="Validate").click()


def test_upload_validate_send_download(tmp_path: Path, sandbox: SandboxServer,
                                       page_for: Callable[..., tuple[Any, UiServer]]) -> None:
    from playwright.sync_api import expect

    page, _ = page_for(sandbox.url)
    inp, codes = partners_xlsx(tmp_path / "partners.xlsx", 20)
    upload_and_validate(page, inp)
    status = page.get_by_role("status")
    expect(status).to_contain_text("sent 0, skipped 0, duplicate 1, invalid 1, failed 0, unknown 0, pending 20")
    expect(page.get_by_role("row").nth(1)).to_contain_text("invalid")  # problems first
    assert sandbox.ledger()["edin"]["partners"] == {}  # validating sent nothing

    page.get_by_role("button", name="Send invitations").click()
    expect(status).to_contain_text("finished", timeout=TIMEOUT_MS)
    expect(status).to_contain_text("sent 20, skipped 0, duplicate 1, invalid 1, failed 0, unknown 0, pending 0")
    with page.expect_download() as info:
        page.get_by_role("link", name="Download results").click()
    download = info.value
    assert download.suggested_filename == "partners.results.xlsx"
    statuses = xlsx_statuses(Path(download.path()).read_bytes(), tmp_path)
    assert statuses == ["sent"] * 20 + ["duplicate", "invalid"]
    assert {p["code"] for p in sandbox.ledger()["edin"]["partners"].values()} == set(codes)


def test_stop_mid_run_then_resume(tmp_path: Path, sandbox_factory: Callable[..., SandboxServer],
                                  page_for: Callable[..., tuple[Any, UiServer]]) -> None:
    from playwright.sync_api import expect

    server = sandbox_factory(latency_ms=40)
    page, _ = page_for(server.url, limits={"workers": 4, "rate": []})
    inp, codes = partners_csv(tmp_path / "partners.csv", 40)
    upload_and_validate(page, inp)
    page.get_by_role("button", name="Send invitations").click()
    status = page.get_by_role("status")
    expect(status).to_contain_text("running")
    expect(status).not_to_contain_text("sent 0,")  # live progress, without reloading
    page.get_by_role("button", name="Stop").click()
    expect(status).to_contain_text("stopped")
    stopped_at = server.ledger()["edin"]["partners"]
    assert 0 < len(stopped_at) < 40, "Stop landed mid-run"
    expect(page.get_by_role("link", name="Download results")).to_be_visible()

    page.get_by_role("button", name="Send invitations").click()  # resume
    expect(status).to_contain_text("finished", timeout=TIMEOUT_MS)
    expect(status).to_contain_text("duplicate 1, invalid 1, failed 0, unknown 0, pending 0")
    partners = server.ledger()["edin"]["partners"].values()
    assert sorted(p["code"] for p in partners) == sorted(codes)
    assert all(p["invitations"] == 1 for p in partners)  # every partner invited exactly once


def _status(ui: UiServer, target: str, *, host: str | None = None, method: str = "GET", body: bytes | None = None,
            headers: dict[str, str] | None = None) -> int:
    """One raw request to the UI's socket (no redirects followed, no cookies), with any Host header."""
    conn = http.client.HTTPConnection("127.0.0.1", ui.port, timeout=10)
    try:
        conn.request(method, target, body=body, headers={"Host": host or f"127.0.0.1:{ui.port}", **(headers or {})})
        return conn.getresponse().status
    finally:
        conn.close()


def test_403_without_token_foreign_host_or_csrf(tmp_path: Path, sandbox: SandboxServer,
                                               page_for: Callable[..., tuple[Any, UiServer]]) -> None:
    from playwright.sync_api import expect

    page, ui = page_for(sandbox.url)
    with_token = f"/?token={ui.token}"
    assert _status(ui, "/") == 403  # no token
    assert _status(ui, with_token, host=f"attacker.example:{ui.port}") == 403  # DNS rebinding
    assert _status(ui, with_token, host=f"localhost:{ui.port}") == 303  # the token is taken, into a cookie

    inp, _ = partners_csv(tmp_path / "partners.csv", 5)
    upload_and_validate(page, inp)
    expect(page.get_by_role("status")).to_contain_text("validated")
    job = page.url.rsplit("/", 1)[1]
    # The browser holds the session cookie; a request without the page's CSRF token still changes nothing.
    for path in (f"/jobs/{job}/send", "/upload"):
        assert page.request.post(f"{ui.base}{path}", form={"config": "sandbox"}).status == 403
    assert page.request.post(f"{ui.base}/jobs/{job}/send", form={"csrf": "forged"}).status == 403
    # A page elsewhere cannot post either: its request carries no SameSite=Strict cookie and no CSRF token.
    assert _status(ui, f"/jobs/{job}/send", method="POST", body=b"csrf=",
                   headers={"Content-Type": "application/x-www-form-urlencoded"}) == 403
    page.reload()
    expect(page.get_by_role("status")).to_contain_text("validated")
    assert sandbox.ledger()["edin"]["partners"] == {}  # nothing sent
