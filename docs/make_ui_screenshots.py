"""Make docs/ui-*.png: each view of `invite-batch ui` in the same headless Chromium the browser tests use.

    python docs/make_ui_screenshots.py        # needs Debian's `chromium` and the `playwright` package

The page runs over the real engine against the built-in sandbox (some latency, so the run view is caught
mid-run, and injected 5xx answers once it runs, one attempt each, so the results view has failed rows), fed with
`samples/partners.xlsx`. Nothing is sent anywhere else.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml
from playwright.sync_api import Page, expect, sync_playwright

from batch.config import SandboxOptions, load_config
from batch.sandbox import SandboxServer
from batch.ui import UiServer

HERE = Path(__file__).resolve().parent
SAMPLE = HERE.parent / "samples" / "partners.xlsx"
WIDTH = 1100


def shot(page: Page, name: str) -> None:
    page.wait_for_timeout(150)
    page.screenshot(path=str(HERE / name), full_page=True)
    print(HERE / name)


def config(folder: Path, url: str, name: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "provider": "edin", "base_url": url,
        "auth": {"email": "demo@example.com", "password": "demo-password"},
        "invite": {"contract_template_id": 5551}, "limits": {"workers": 1, "rate": []},
        "retry": {"attempts": 1},
    }), encoding="utf-8")
    return path


def main() -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("needs Debian's chromium (apt-get install -y chromium)")
    options = SandboxOptions(latency_ms=120, seed=4)
    with tempfile.TemporaryDirectory() as tmp, SandboxServer(options) as sandbox:
        folder = Path(tmp)
        configs = {name: load_config(config(folder, sandbox.url, name)) for name in ("edin-sandbox", "edin-live")}
        with UiServer(configs, folder / "work") as ui, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True)
            page = browser.new_page(locale="en-US", viewport={"width": WIDTH, "height": 700})
            page.goto(ui.url)
            page.get_by_label("Configuration").select_option("edin-sandbox")
            page.get_by_label("Spreadsheet").set_input_files(str(SAMPLE))
            page.get_by_role("button", name="Validate").click()
            expect(page.get_by_role("status")).to_contain_text("validated")
            shot(page, "ui-validation.png")

            page.get_by_role("button", name="Send invitations").click()
            expect(page.get_by_role("status")).to_contain_text("sent 6,", timeout=30_000)
            sandbox.configure(error_rate=0.15)  # after the login: a few rows fail (one attempt only)
            time.sleep(0.6)  # one more poll, so rows per second and time left are filled in
            shot(page, "ui-run.png")
            expect(page.get_by_role("status")).to_contain_text("finished", timeout=60_000)
            shot(page, "ui-results.png")

            page.goto(f"{ui.base}/?lang=en")
            shot(page, "ui-upload.png")
            uk = browser.new_page(locale="uk-UA", viewport={"width": WIDTH, "height": 700},
                                  extra_http_headers={"Accept-Language": "uk-UA,uk;q=0.9"})
            uk.goto(ui.url)
            shot(uk, "ui-upload-uk.png")
            browser.close()


if __name__ == "__main__":
    main()
