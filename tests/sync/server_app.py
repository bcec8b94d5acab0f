"""A conveyor server for the sync tests, as a process of its own: a Runtime without
workers that knows tests/worker_app.py's queues (so it takes enqueues for them) and
serves the websocket protocol; worker processes (worker_app.py) run the jobs.

Usage: python server_app.py DB [TOKEN]. Prints ``url ws://...`` once it serves.
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).parent.parent))

from conveyor import Runtime
from worker_app import QUEUES


async def main() -> None:
    token = sys.argv[2] if len(sys.argv) > 2 else None
    async with Runtime(
        sys.argv[1], queues=QUEUES, workers=False, serve=("127.0.0.1", 0), token=token
    ) as rt:
        print("url", rt.server_url, flush=True)
        await rt.run_until_signalled()


if __name__ == "__main__":
    anyio.run(main)
