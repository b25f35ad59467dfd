"""The running service's chain side: the embedded node (or a configured one), the registry,
and the anchoring batcher, started in the background so the chat never waits for a chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from pathlib import Path

import aiohttp

from healtrace.chain.anchoring import AnchorBatcher, OnAnchored
from healtrace.chain.client import ANVIL_DEV_KEY, ChainUnavailable, RegistryChain, Web3Registry
from healtrace.chain.node import AnvilNode, Deployment, ensure_contracts, find_anvil
from healtrace.chain.outbox import EvidenceOutbox
from healtrace.config import Settings
from healtrace.errors import ConfigurationError, HealTraceError
from healtrace.storage import Database

__all__ = ["ChainService", "chain_record_path"]

log = logging.getLogger(__name__)


def chain_record_path(settings: Settings) -> Path:
    """Where the deployed registry's address is remembered."""
    return settings.data_dir / "chain.json"


class ChainService:
    """Owns the anvil process (embedded mode), the registry client and the batcher."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        *,
        registry: RegistryChain | None = None,
        on_anchored: OnAnchored | None = None,
        anchor: bool = True,
    ) -> None:
        self.settings = settings
        self.config = settings.chain
        self.outbox = EvidenceOutbox(db)
        self.node: AnvilNode | None = None
        self.registry = registry
        self.rpc_url = self.config.rpc_url
        self.on_anchored = on_anchored
        #: Run the anchoring batcher once connected (off: connect for consent and rewards only).
        self.anchor = anchor
        self.batcher: AnchorBatcher | None = None
        #: Where the contracts are, once connected (records and rewards use it too).
        self.deployment: Deployment | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        #: Why the chain side is not running yet ("" once it is).
        self.status = "starting"

    @property
    def public_rpc_url(self) -> str:
        return self.config.public_rpc_url or self.rpc_url

    def signing_key(self) -> str:
        """The key that signs this service's transactions (anchors, mints, relayed grants)."""
        return self._key()

    def _key(self) -> str:
        key = self.config.private_key.get_secret_value()
        if key:
            return key
        if self.config.rpc_url:
            raise ConfigurationError(
                "HEALTRACE_CHAIN__PRIVATE_KEY must be set when HEALTRACE_CHAIN__RPC_URL is"
            )
        return ANVIL_DEV_KEY

    async def start(self) -> None:
        """Start the node (embedded mode) and the batcher in one owned background task."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="healtrace-chain")

    async def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Wait until connected (and the batcher runs); ChainUnavailable after
        ``timeout_s``, or at once when the chain side gave up (a configuration problem)."""
        try:
            async with asyncio.timeout(timeout_s):
                while not self._ready.is_set():
                    if self._task is None or self._task.done():
                        raise ChainUnavailable(self.status or "the chain side is not running")
                    await asyncio.sleep(0.05)
        except TimeoutError as exc:
            raise ChainUnavailable(f"not connected after {timeout_s:.0f} s: {self.status}") from exc

    async def connected(self) -> Deployment:
        """Where the contracts are, starting the chain side first if it is not running
        (records and rewards connect this way on first use); ChainUnavailable otherwise."""
        await self.start()
        await self.wait_ready(timeout_s=self.config.rpc_timeout_s * 3)
        assert self.deployment is not None
        return self.deployment

    def notify(self) -> None:
        if self.batcher is not None:
            self.batcher.notify()

    async def _run(self) -> None:
        failures = 0
        while self.registry is None:
            try:
                self.registry = await self._connect()
            except ChainUnavailable as exc:
                failures += 1
                delay = random.uniform(0.5, 1.0) * min(
                    self.config.retry_max_s, self.config.retry_base_s * 2 ** (failures - 1)
                )
                self.status = f"chain unavailable: {exc.detail}"
                log.warning("chain not reachable yet, retrying in %.1f s", delay)
                await asyncio.sleep(delay)
            except HealTraceError as exc:
                # A configuration problem: chat works, anchoring waits for a fix and restart.
                self.status = f"chain not configured: {exc.detail}"
                log.error("evidence anchoring is off: %s", exc.detail)
                return
        if self.anchor:
            self.batcher = AnchorBatcher(
                self.outbox, self.registry, self.config, on_anchored=self.on_anchored
            )
            self.batcher.start()
        self.status = ""
        self._ready.set()

    async def _connect(self) -> RegistryChain:
        key = self._key()
        if not self.config.rpc_url:
            if self.node is None:
                state = Path(self.config.anvil_state or self.settings.data_dir / "chain" / "anvil")
                if state.suffix != ".json":
                    state = state.with_suffix(".json")
                self.node = AnvilNode(
                    find_anvil(self.config.anvil_path), self.config.anvil_port, state
                )
                await self.node.start()
            self.rpc_url = self.node.url
        try:
            deployment = await ensure_contracts(
                self.config, self.rpc_url, key, chain_record_path(self.settings)
            )
        except (OSError, TimeoutError, aiohttp.ClientError) as exc:
            raise ChainUnavailable(f"registry set-up: {type(exc).__name__}") from exc
        self.deployment = deployment
        registry = Web3Registry(
            self.rpc_url,
            deployment.registry,
            key,
            expected_chain_id=self.config.chain_id,
            timeout_s=self.config.rpc_timeout_s,
            receipt_timeout_s=self.config.receipt_timeout_s,
        )
        return registry

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.batcher is not None:
            await self.batcher.aclose()
        if self.registry is not None:
            await self.registry.aclose()
        if self.node is not None:
            await asyncio.to_thread(self.node.stop)
