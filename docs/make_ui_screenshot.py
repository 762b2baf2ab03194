"""Make docs/images/ui.png: `conr ui` after a render of the demo character, in headless Chromium.

    .venv/bin/python docs/make_ui_screenshot.py [OUT.png]

Needs the `ui` and `test` extras and Debian's chromium (the README's set-up installs them).
"""

from __future__ import annotations

import socket
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from conr.ui.app import serve
from conr.ui.service import RenderService

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def main(out: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as work:
        app = serve(RenderService(None, "cpu", workdir=work), "127.0.0.1", port, block=False)
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
                page = browser.new_page(viewport={"width": 1500, "height": 1000})
                page.goto(f"http://127.0.0.1:{port}/")
                page.locator("#sheet-gallery img").nth(3).wait_for(timeout=120_000)
                page.get_by_role("button", name="Preview poses").click()
                page.locator("#pose-gallery img").nth(3).wait_for(timeout=120_000)
                page.locator("#render").click()
                page.locator("#downloads").get_by_label("frames.zip").wait_for(timeout=600_000)
                page.locator("#result-video video").evaluate("v => { v.pause(); v.currentTime = 0.6; }")
                page.wait_for_timeout(500)
                page.screenshot(path=str(out), full_page=True)
                browser.close()
        finally:
            app.close()
    print(f"wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "images" / "ui.png")
