"""Debian's Chromium, headless, driven by Playwright for Python, with the network closed: how the
tests look at a run's pages and how `make screenshots` photographs them.

Playwright launches the Chromium `make chromium` installs (/usr/bin/chromium), never a browser of its
own (no `playwright install`). Chromium runs with the flags this machine needs: no sandbox (root), no
GPU, none of its background connections. Every page's context is offline, and any request to
anything but a file is refused and recorded, so a page that needed the network shows it.
"""

import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field

from playwright.sync_api import sync_playwright

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
VIEWPORT = {"width": 1280, "height": 900}


def executable():
    found = shutil.which("chromium") or shutil.which("chromium", path="/usr/bin")
    if not found:
        raise RuntimeError("Chromium is missing: `make chromium` installs it")
    return found


@contextmanager
def chromium():
    """A headless Chromium for the block's pages."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable(), args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Visit:
    """A page, and what it asked of the network and said wrong while it was open."""
    page: object
    requests: list = field(default_factory=list)
    errors: list = field(default_factory=list)


@contextmanager
def offline_page(browser, viewport=None):
    context = browser.new_context(offline=True, viewport=viewport or VIEWPORT, device_scale_factor=1)
    visit = Visit(context.new_page())

    def refuse(route):
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            visit.requests.append(route.request.url)
            route.abort()

    context.route("**/*", refuse)
    visit.page.on("console", lambda message: message.type == "error" and visit.errors.append(message.text))
    visit.page.on("pageerror", lambda error: visit.errors.append(str(error)))
    try:
        yield visit
    finally:
        context.close()
