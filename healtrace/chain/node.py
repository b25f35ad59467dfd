"""The embedded chain: an anvil node the service starts itself, and the registry deployed on it.

anvil (npm ``@foundry-rs/anvil``, installed by the Makefile) is a real JSON-RPC node. It keeps
its state in a file (``--state``): loaded at start, written on SIGTERM and every few seconds,
so anchors survive restarts. The node is started with a parent-death signal (SIGTERM), so a
service killed outright still lets anvil write its state before it exits. If a node from an
earlier run still answers on the port with the expected chain, it is reused.

The registry address is kept in ``DATA_DIR/chain.json`` with the chain id; the registry is
deployed again only when the node has no code at that address (a new state file).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from eth_account import Account
from eth_utils.address import to_checksum_address
from web3 import AsyncHTTPProvider, AsyncWeb3

from healtrace.chain.contracts import ContractName, load_artifact
from healtrace.config import ChainConfig
from healtrace.errors import ConfigurationError

__all__ = [
    "AnvilNode",
    "Deployment",
    "deploy_contract",
    "ensure_contracts",
    "find_anvil",
]

log = logging.getLogger(__name__)

ANVIL_CHAIN_ID = 31337
_STATE_INTERVAL_S = 2
_PR_SET_PDEATHSIG = 1


def find_anvil(configured: str = "") -> Path:
    """The anvil executable: the setting, else PATH, else npm's copy in ``node_modules``
    here or in the source checkout."""
    if configured:
        path = Path(configured)
        if not path.exists():
            raise ConfigurationError(
                f"HEALTRACE_CHAIN__ANVIL_PATH points at {configured}, which does not exist"
            )
        return path
    found = shutil.which("anvil")
    if found:
        return Path(found)
    checkout = Path(__file__).resolve().parents[2]
    for base in (Path.cwd(), checkout):
        modules = base / "node_modules"
        # The platform package's native binary first: the .bin entry is a Node wrapper
        # that would sit between us and anvil (and its parent-death signal).
        for native in sorted(modules.glob("@foundry-rs/anvil-linux-*/bin/anvil")):
            return native
        candidate = modules / ".bin" / "anvil"
        if candidate.exists():
            return candidate
    raise ConfigurationError(
        "anvil was not found: run `make install` (it installs npm @foundry-rs/anvil), set "
        "HEALTRACE_CHAIN__ANVIL_PATH, or point HEALTRACE_CHAIN__RPC_URL at an EVM node"
    )


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    # SIGTERM (not SIGKILL) so anvil writes its state file when the service dies.
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


async def _chain_id(url: str, timeout_s: float = 1.0) -> int | None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as http,
            http.post(url, json=body) as resp,
        ):
            data = await resp.json(content_type=None)
            return int(data["result"], 16)
    except (OSError, TimeoutError, aiohttp.ClientError, ValueError, KeyError, TypeError):
        return None


class AnvilNode:
    """A local anvil process on ``port`` keeping its state in ``state_path``."""

    def __init__(self, anvil: Path, port: int, state_path: Path) -> None:
        self.anvil = anvil
        self.port = port
        self.state_path = state_path
        self.url = f"http://127.0.0.1:{port}"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def owned(self) -> bool:
        """Whether this object started the process (else an earlier node was reused)."""
        return self._proc is not None

    async def start(self, *, timeout_s: float = 15.0) -> None:
        existing = await _chain_id(self.url)
        if existing == ANVIL_CHAIN_ID:
            log.info("reusing the anvil node already running on port %d", self.port)
            return
        if existing is not None:
            raise ConfigurationError(
                f"port {self.port} answers as chain {existing}, not anvil: set "
                "HEALTRACE_CHAIN__ANVIL_PORT to a free port"
            )
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        args = [
            str(self.anvil),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--chain-id",
            str(ANVIL_CHAIN_ID),
            "--state",
            str(self.state_path),
            "--state-interval",
            str(_STATE_INTERVAL_S),
            "--silent",
        ]
        log_path = self.state_path.with_suffix(".log")
        self._proc = self._spawn(args, log_path)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            if self._proc.poll() is not None:
                raise ConfigurationError(
                    f"anvil exited with {self._proc.returncode} at start; see {log_path}"
                )
            if await _chain_id(self.url, timeout_s=0.5) == ANVIL_CHAIN_ID:
                return
            await asyncio.sleep(0.05)
        self.stop()
        raise ConfigurationError(f"anvil did not answer on port {self.port}; see {log_path}")

    @staticmethod
    def _spawn(args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
        # Spawned from the event loop's own thread on purpose: the parent-death signal is
        # tied to the thread that forks, and a worker thread may exit long before we do.
        with open(log_path, "ab") as out:
            return subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )

    def stop(self, *, timeout_s: float = 10.0) -> None:
        """SIGTERM (anvil writes its state), then wait; SIGKILL if it will not go."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass(frozen=True, slots=True)
class Deployment:
    """Where HealTrace's contracts are on one chain."""

    chain_id: int
    registry: str
    token: str
    consent: str


#: HealthToken: 18 decimals, capped at a billion tokens.
TOKEN_NAME, TOKEN_SYMBOL, TOKEN_CAP = "HealTrace Health Token", "HEAL", 10**9 * 10**18


async def deploy_contract(
    w3: AsyncWeb3[Any], private_key: str, name: ContractName, *args: Any, timeout_s: float = 60.0
) -> str:
    """Deploy the artifact ``name`` with constructor ``args``; return its address."""
    artifact = load_artifact(name)
    account = Account.from_key(private_key)
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    tx = await factory.constructor(*args).build_transaction(
        {
            "from": account.address,
            "nonce": await w3.eth.get_transaction_count(account.address, "pending"),
            "chainId": await w3.eth.chain_id,
        }
    )
    receipt = await _send(w3, account, tx, timeout_s)
    if not receipt["contractAddress"]:
        raise ConfigurationError(f"deploying {name} created no contract")
    return str(to_checksum_address(receipt["contractAddress"]))


async def _send(w3: AsyncWeb3[Any], account: Any, tx: Any, timeout_s: float) -> Any:
    signed = account.sign_transaction(tx)
    tx_hash = await w3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = await w3.eth.wait_for_transaction_receipt(tx_hash, timeout=timeout_s)
    if receipt["status"] != 1:
        raise ConfigurationError(f"transaction {tx_hash.hex()} reverted")
    return receipt


async def _deploy_token(w3: AsyncWeb3[Any], private_key: str) -> str:
    """HealthToken with the signing account as admin, minter and pauser."""
    account = Account.from_key(private_key)
    address = await deploy_contract(
        w3, private_key, "HealthToken", TOKEN_NAME, TOKEN_SYMBOL, TOKEN_CAP, account.address
    )
    token = w3.eth.contract(
        address=to_checksum_address(address), abi=load_artifact("HealthToken").abi
    )
    for role in ("MINTER_ROLE", "PAUSER_ROLE"):
        role_id = await getattr(token.functions, role)().call()
        tx = await token.functions.grantRole(role_id, account.address).build_transaction(
            {
                "from": account.address,
                "nonce": await w3.eth.get_transaction_count(account.address, "pending"),
                "chainId": await w3.eth.chain_id,
            }
        )
        await _send(w3, account, tx, 60.0)
    return address


async def ensure_contracts(
    config: ChainConfig, rpc_url: str, private_key: str, record: Path
) -> Deployment:
    """HealTrace's contracts on the node at ``rpc_url``: configured, remembered in
    ``record``, or deployed now.

    Configured addresses (``registry_address``, ``token_address``, ``consent_address``) are
    used as they are. Otherwise an address remembered for this chain is reused when the node
    has code there; else that contract is deployed — the registry with the signing account
    as admin and anchorer, the token with it as admin, minter and pauser — and remembered.
    """
    provider = AsyncHTTPProvider(
        rpc_url, request_kwargs={"timeout": aiohttp.ClientTimeout(total=config.rpc_timeout_s)}
    )
    w3: AsyncWeb3[Any] = AsyncWeb3(provider)
    try:
        chain_id = int(await w3.eth.chain_id)
        remembered = _read_record(record)
        if remembered.get("chain_id") != chain_id:
            remembered = {}
        me = Account.from_key(private_key).address
        deployers: dict[str, Callable[[], Awaitable[str]]] = {
            "registry": lambda: deploy_contract(w3, private_key, "EvidenceRegistry", me, me),
            "token": lambda: _deploy_token(w3, private_key),
            "consent": lambda: deploy_contract(w3, private_key, "ConsentRegistry"),
        }
        configured = {
            "registry": config.registry_address,
            "token": config.token_address,
            "consent": config.consent_address,
        }
        addresses: dict[str, str] = {}
        changed = False
        for part, deploy in deployers.items():
            if configured[part]:
                addresses[part] = str(to_checksum_address(configured[part]))
                continue
            known = remembered.get(part)
            if known and await w3.eth.get_code(to_checksum_address(known)):
                addresses[part] = str(to_checksum_address(known))
                continue
            if known:
                log.warning("no %s at %s any more (new chain state); deploying again", part, known)
            addresses[part] = await deploy()
            changed = True
            log.info("deployed the %s contract at %s on chain %d", part, addresses[part], chain_id)
        if changed:
            record.parent.mkdir(parents=True, exist_ok=True)
            tmp = record.with_suffix(".tmp")
            tmp.write_text(json.dumps({"chain_id": chain_id, **addresses}, indent=2) + "\n")
            os.replace(tmp, record)
        return Deployment(chain_id, addresses["registry"], addresses["token"], addresses["consent"])
    finally:
        await provider.disconnect()


def _read_record(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
