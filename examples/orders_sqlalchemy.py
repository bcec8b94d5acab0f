"""Orders with SQLAlchemy's async session on PostgreSQL, both ways a job shares a
transaction with the application:

- an order placed and its shipping job enqueued in one transaction: a rolled-back order
  leaves no job behind, and no worker sees the job before the order is committed;
- the shipping handler's writes (the order marked shipped, a shipment row) committed in
  the same transaction as the job's completion: a handler that fails after writing keeps
  nothing, so the retry ships each order exactly once.

Run: python examples/orders_sqlalchemy.py [POSTGRESQL_URL]
(needs ``pip install 'sqlalchemy[asyncio]' asyncpg``; its tables and jobs go in the
schema ``shop_example``, emptied first.)
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio
from sqlalchemy import ForeignKey, MetaData, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import StaticPool

import conveyor
from conveyor import Queue, Runtime

SCHEMA = "shop_example"


class Base(DeclarativeBase):
    metadata = MetaData(schema=SCHEMA)


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    item: Mapped[str]
    status: Mapped[str] = mapped_column(default="placed")


class Shipment(Base):
    __tablename__ = "shipments"
    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey(Order.id), unique=True)


@contextlib.asynccontextmanager
async def job_session() -> AsyncIterator[AsyncSession]:
    """A SQLAlchemy session on the running job's transaction (conveyor.transaction()):
    what it writes commits when the handler returns, together with the completion.

    SQLAlchemy runs on conveyor's connection through a one-connection engine (made per
    run: its first use asks the server a few questions); its own begin and commit
    become a savepoint inside conveyor's transaction."""
    async with conveyor.transaction() as conn:

        async def same_connection() -> Any:
            return conn

        engine = create_async_engine(
            "postgresql+asyncpg://", async_creator=same_connection, poolclass=StaticPool
        )
        try:
            async with AsyncSession(engine, expire_on_commit=False) as session:
                async with session.begin():
                    yield session
        finally:
            await engine.dispose(close=False)  # the connection stays conveyor's


class ShipQueue(Queue):
    name = "ship"
    worker_count = 4
    max_attempts = 3
    backoff = staticmethod(lambda attempt: 0.1)

    async def handle_item(self, item: dict[str, Any]) -> dict[str, Any]:
        async with job_session() as session:
            order = await session.get(Order, item["order_id"])
            assert order is not None  # committed with the job: a worker never sees one without
            order.status = "shipped"
            session.add(Shipment(order_id=order.id))
        if order.item == "fragile" and conveyor.current_job().attempts == 1:
            raise RuntimeError("the courier dropped it")  # after writing: nothing is kept
        return {"order": order.id, "item": order.item}


class PaymentDeclined(Exception):
    pass


async def place_order(
    rt: Runtime, sessions: async_sessionmaker[AsyncSession], item: str, *, paid: bool = True
) -> str:
    """Place an order and enqueue its shipping in the same transaction: the job's id.
    Unpaid, the transaction rolls back, and the job with it."""
    async with sessions() as session, session.begin():
        order = Order(item=item)
        session.add(order)
        await session.flush()  # the order's id
        # The asyncpg connection under the session: what connection= takes.
        conn = (await (await session.connection()).get_raw_connection()).driver_connection
        job = await rt.enqueue("ship", {"order_id": order.id}, connection=conn)
        if not paid:
            raise PaymentDeclined(item)
    return job.id


async def main(url: str) -> None:
    database = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://", 1))
    async with database.begin() as conn:
        await conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        await conn.execute(text(f"CREATE SCHEMA {SCHEMA}"))
        await conn.run_sync(Base.metadata.create_all)
    sessions = async_sessionmaker(database, expire_on_commit=False)
    async with Runtime(f"{url}?schema={SCHEMA}", queues=[ShipQueue()]) as rt:
        jobs = [await place_order(rt, sessions, item) for item in ("books", "fragile", "tea")]
        with contextlib.suppress(PaymentDeclined):
            await place_order(rt, sessions, "unpaid", paid=False)
        for job_id in jobs:
            done = await rt.wait(job_id, timeout=30)
            print(f"{done.result['item']}: {done.status.value} after {done.attempts} attempt(s)")
        print(f"jobs: {len(await rt.list_jobs(queue='ship'))} (the unpaid order has none)")
    async with sessions() as session:
        shipped = await session.scalar(select(func.count()).select_from(Shipment))
        orders = await session.scalar(select(func.count()).select_from(Order))
        print(f"orders: {orders}, shipments: {shipped} (one per order, the retry's)")
    await database.dispose()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1] if len(sys.argv) > 1 else "postgresql://postgres@127.0.0.1/test")
