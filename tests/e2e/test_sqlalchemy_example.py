"""examples/orders_sqlalchemy.py, run as printed against the real PostgreSQL server: jobs
enqueued in SQLAlchemy's transaction, handlers' writes committed with their outcomes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anyio
import asyncpg
import pytest

from ..conftest import POSTGRES_URL, postgres_schema

EXAMPLE = Path(__file__).parents[2] / "examples" / "orders_sqlalchemy.py"


@pytest.mark.anyio
@pytest.mark.timeout(90)
async def test_orders_ship_once_and_an_unpaid_order_leaves_no_job() -> None:
    async with postgres_schema():  # skips (or fails, in CI) without a server
        pass
    try:
        result = await anyio.run_process(
            [sys.executable, str(EXAMPLE), POSTGRES_URL], check=False, stderr=subprocess.STDOUT
        )
        output = result.stdout.decode()
        assert result.returncode == 0, output
        assert output.splitlines() == [
            "books: completed after 1 attempt(s)",
            "fragile: completed after 2 attempt(s)",
            "tea: completed after 1 attempt(s)",
            "jobs: 3 (the unpaid order has none)",
            "orders: 3, shipments: 3 (one per order, the retry's)",
        ]
    finally:
        conn = await asyncpg.connect(POSTGRES_URL)
        try:
            await conn.execute("DROP SCHEMA IF EXISTS shop_example CASCADE")
        finally:
            await conn.close()
