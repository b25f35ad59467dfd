"""Shared fixtures. Tests never reach a remote model: outbound connections are refused."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from healtrace.agent.memory import ChatStore
from healtrace.config import ChainConfig, ScriptedBackendConfig, Settings
from healtrace.knowledge.config import KnowledgeConfig
from healtrace.storage import Database
from tests._postgres import postgres_server

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _check_address(sock: socket.socket, address: Any) -> None:
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    host = address[0]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is None or not ip.is_loopback:
        raise RuntimeError(
            f"a test tried to connect to {host}: tests may only reach servers on this machine"
        )


def _guarded_connect(self: socket.socket, address: Any) -> None:
    _check_address(self, address)
    _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    _check_address(self, address)
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True)
def _no_remote_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded_connect_ex)


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    """A CLI command run in-process (``serve``, ``mcp serve``) installs the service's log
    handler on the root logger; later tests must not inherit it."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No developer .env or HEALTRACE_* variable leaks into a test."""
    for name in list(os.environ):
        # HEALTRACE_HOME stays: it says where the fetched model files are.
        if name.startswith("HEALTRACE_") and name != "HEALTRACE_HOME":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        llm_backends=[ScriptedBackendConfig()],
        dev_key=False,
        hello_timeout_s=2.0,
        # Most tests are not about retrieval; tests that are open the real pack themselves.
        knowledge=KnowledgeConfig(enabled=False),
        # Answers write evidence records; only the chain tests anchor them (on a fake
        # registry or a real anvil node of their own).
        chain=ChainConfig(anchoring=False),
    )


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str | None]:
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, settings: Settings) -> str:
    """Both supported databases. PostgreSQL must be installed where CI runs (make apt)."""
    if request.param == "sqlite":
        return settings.resolved_database_url
    url: str | None = request.getfixturevalue("postgres_url")
    if url is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed; `make apt` installs it")
        pytest.skip("PostgreSQL is not installed (make apt)")
    return url


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[ChatStore]:
    db = Database(database_url)
    await db.migrate()
    try:
        yield ChatStore(db)
    finally:
        await db.dispose()
