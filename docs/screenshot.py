"""Takes docs/img/dashboard.png, the dashboard screenshot in the README and on the site.

    python docs/screenshot.py [--out docs/img/dashboard.png] [--chromium /usr/bin/chromium]

The real thing: `conveyor demo`'s queues on a fresh SQLite file, a stream of jobs (some
fail, some are retried, some cancelled), the dashboard served by the runtime and opened in
headless Chromium (Debian's, driven by playwright, as tests/server/test_dashboard.py
does). The picture is taken once jobs are running with their progress bars and others
have ended, so every part of the page has something in it. Run by hand when the
dashboard changes; the PNG is committed.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import tempfile
from pathlib import Path

import anyio
from playwright.async_api import async_playwright, expect

from conveyor import JobStatus, Runtime
from conveyor.cli._demo import cancel_some, demo_queues, produce

HERE = Path(__file__).parent
VIEWPORT = {"width": 1280, "height": 760}
WAIT_MS = 30_000


async def take(out: Path, chromium: str) -> None:
    random.seed(7)  # the same mix of jobs each time
    with tempfile.TemporaryDirectory() as folder:
        rt = Runtime(str(Path(folder) / "demo.db"), queues=demo_queues(), serve=("127.0.0.1", 0))
        async with rt, anyio.create_task_group() as tg:
            ended = anyio.Event()

            async def until_some_ended() -> None:
                seen = 0
                async with rt.events() as stream:
                    async for event in stream:
                        seen += event.status in (JobStatus.COMPLETED, JobStatus.FAILED)
                        if seen >= 8:
                            ended.set()
                            return

            tg.start_soon(until_some_ended)
            tg.start_soon(produce, rt, 2.0)  # the demo's rate
            tg.start_soon(cancel_some, rt)
            with anyio.fail_after(60):
                await ended.wait()
            url = (rt.server_url or "").replace("ws://", "http://") + "/"
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(
                    executable_path=chromium,
                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
                )
                page = await browser.new_page(viewport=VIEWPORT)  # type: ignore[arg-type]
                await page.goto(url)
                await expect(page.locator("#conn")).to_have_text("live", timeout=WAIT_MS)
                running = page.locator("#jobs tr .badge", has_text="running")
                await expect(running.first).to_be_visible(timeout=WAIT_MS)
                # the rates count completions the page saw: wait for a few of them
                rate = page.locator("#rate")
                await expect(rate).to_have_text(re.compile(r"^[3-9]|^\d\d"), timeout=WAIT_MS)
                out.parent.mkdir(parents=True, exist_ok=True)
                await page.screenshot(path=str(out))
                await browser.close()
            tg.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "img" / "dashboard.png")
    parser.add_argument(
        "--chromium", default=os.environ.get("CONVEYOR_CHROMIUM", "/usr/bin/chromium")
    )
    args = parser.parse_args()
    anyio.run(take, args.out, args.chromium)
    print(f"{args.out}: {args.out.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
