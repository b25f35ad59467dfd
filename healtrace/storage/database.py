"""Engine, transactions and migrations. SQLite by default; PostgreSQL (psycopg 3) by URL.

Each transaction is a plain synchronous function run on a database worker thread:
``await db.run(fn)`` hands the whole transaction over in one hop. Async drivers
(aiosqlite, asyncpg) hop threads or yield to the loop on every statement, which measured
at 1-3 ms per short transaction on a 2-core machine against ~0.3 ms this way; the
latency of a turn is dominated by exactly these short transactions.

SQLite has one writer at a time, so it gets one worker thread (no lock upgrades, no
"database is locked"); PostgreSQL gets a small pool.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from healtrace.errors import ConfigurationError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
T = TypeVar("T")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    # WAL lets readers run beside the writer; NORMAL still survives a process kill
    # (only an OS crash can lose the last commits).
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def normalise_url(url: str) -> str:
    """Accept the usual spellings; reject drivers HealTrace does not ship."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    if url.startswith("sqlite:///") or url.startswith("postgresql+psycopg://"):
        return url
    raise ConfigurationError(
        "HEALTRACE_DATABASE_URL must be sqlite:///PATH or postgresql://USER:PASS@HOST/DB "
        f"(got a URL starting with {url.split(':', 1)[0]!r})"
    )


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def _upgrade(connection: Connection) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "head")


class Database:
    """Owns the engine and the worker threads. ``await db.migrate()`` before first use."""

    def __init__(self, url: str, *, echo: bool = False, pool_size: int = 8) -> None:
        self.url = normalise_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        if self.is_sqlite:
            path = self.url.removeprefix("sqlite:///")
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = create_engine(self.url, echo=echo)
            event.listen(self.engine, "connect", _sqlite_pragmas)
            workers = 1
        else:
            self.engine = create_engine(
                self.url, echo=echo, pool_size=pool_size, pool_pre_ping=True
            )
            workers = pool_size
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="healtrace-db")

    def _in_transaction(self, fn: Callable[[Session], T]) -> T:
        with self.sessionmaker.begin() as session:
            return fn(session)

    async def run(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn`` in one transaction on a database thread (committed unless it raises).

        If the caller is cancelled, the transaction still runs to its end: a commit is
        never left half-done.
        """
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._in_transaction, fn)

    def migrate_sync(self) -> None:
        with self.engine.begin() as conn:
            _upgrade(conn)

    async def migrate(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self.migrate_sync)

    async def ping(self) -> None:
        def check(session: Session) -> None:
            session.execute(text("SELECT 1"))

        await self.run(check)

    async def dispose(self) -> None:
        """Let running transactions finish (they may outlive a cancelled caller), then close."""

        def close() -> None:
            self._executor.shutdown(wait=True)
            self.engine.dispose()

        await asyncio.to_thread(close)
