"""Fixtures: settings that need nothing outside the test's own directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from healtrace.config import ChainConfig, ScriptedBackendConfig, Settings
from healtrace.knowledge.config import KnowledgeConfig


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No developer .env or HEALTRACE_* variable (a database URL, say) leaks into a test."""
    for name in list(os.environ):
        if name.startswith("HEALTRACE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        llm_backends=[ScriptedBackendConfig()],
        dev_key=False,
        knowledge=KnowledgeConfig(enabled=False),
        chain=ChainConfig(anchoring=False),
    )
