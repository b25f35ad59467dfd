"""The retry loop shared by the chain's batchers (anchoring evidence, minting rewards).

A worker runs ``run_once`` in one owned task: after a success it waits for ``notify`` or
its tick; after a failure it backs off exponentially with jitter, and new work does not
cut a backoff short. A node that is unreachable (``ChainUnavailable``) or a database that
failed is retried at that pace; a node that refused the transaction (``ChainRejected``, an
operator's problem) is retried at the slowest pace. ``last_error`` and ``retries`` say what
happened, for status pages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

from sqlalchemy.exc import SQLAlchemyError

from healtrace.chain.client import ChainRejected, ChainUnavailable

__all__ = ["RetryingWorker"]

log = logging.getLogger(__name__)


class RetryingWorker:
    """Subclasses give ``run_once`` and ``_tick_s``; this runs them until :meth:`aclose`."""

    #: The task's name and the word used in log lines ("anchoring", "minting").
    task_name = "healtrace-chain-worker"
    what = "chain work"

    def __init__(self, *, retry_base_s: float, retry_max_s: float) -> None:
        self._retry_base_s = retry_base_s
        self._retry_max_s = retry_max_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._connected = False
        self._failures = 0
        #: Failed attempts since start (each followed by a backoff).
        self.retries = 0
        self.last_error = ""

    async def run_once(self, *, force: bool = False) -> int:
        raise NotImplementedError

    @property
    def _tick_s(self) -> float:
        raise NotImplementedError

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=self.task_name)

    def notify(self) -> None:
        """New work was added: re-check whether a batch is due."""
        self._wake.set()

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
                self._failures = 0
                delay = self._tick_s
            except ChainUnavailable as exc:
                self._failures += 1
                self._connected = False
                delay = self._backoff()
                self.last_error = f"chain unavailable: {exc.detail}"
                log.warning("%s paused, retrying in %.1f s: %s", self.what, delay, exc.detail)
            except ChainRejected as exc:
                self._failures += 1
                delay = max(self._backoff(), self._retry_max_s)
                self.last_error = f"chain rejected: {exc.detail}"
                log.error("%s rejected by the node, retrying in %.0f s: %s", self.what, delay, exc)
            except SQLAlchemyError as exc:
                self._failures += 1
                delay = self._backoff()
                self.last_error = f"database: {type(exc).__name__}"
                log.warning("%s paused (database error %s)", self.what, type(exc).__name__)
            self._wake.clear()
            if self._failures:
                self.retries += 1
                await asyncio.sleep(delay)
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    def _backoff(self) -> float:
        cap = min(self._retry_max_s, self._retry_base_s * 2 ** (self._failures - 1))
        return random.uniform(cap / 2, cap)
