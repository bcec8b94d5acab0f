"""Real headless Chromium (Debian's, driven by playwright) for the dashboard tests: a
page of a given size whose script errors fail the test, and a screenshot of each page
in the test's tmp dir."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import anyio
import pytest
from playwright.async_api import Page, async_playwright

CHROMIUM = os.environ.get("CONVEYOR_CHROMIUM", "/usr/bin/chromium")

OpenPage = Callable[..., Awaitable[Page]]


@pytest.fixture
async def open_page(tmp_path: Path) -> AsyncIterator[OpenPage]:
    """``await open_page(width=1400, height=900)``: a new page in a context of that
    viewport (``accept_downloads`` on)."""
    if not await anyio.Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install chromium (make test does)")
    errors: list[str] = []
    pages: list[Page] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )

        async def new_page(width: int = 1400, height: int = 900) -> Page:
            context = await browser.new_context(
                viewport={"width": width, "height": height}, accept_downloads=True
            )
            page = await context.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            pages.append(page)
            return page

        try:
            yield new_page
        finally:
            for n, page in enumerate(pages):
                name = "dashboard.png" if n == 0 else f"dashboard-{n}.png"
                await page.screenshot(path=tmp_path / name, full_page=True)
            await browser.close()
    assert not errors, f"the page raised: {errors}"


@pytest.fixture
async def page(open_page: OpenPage) -> Page:
    return await open_page()
