"""The public surface of each package is deliberate: listed in ``__all__`` and importable."""

from __future__ import annotations

import importlib

import pytest

PACKAGES = {
    "healtrace.agent": {"Orchestrator", "UserTurn", "ChatStore", "EventHub", "TurnRunner"},
    "healtrace.agent.models": {"ModelBackend", "FallbackBackend", "ScriptedModel", "DemoModel"},
    "healtrace.tools": {"tool", "ToolContext", "ToolRegistry", "ToolRetry", "load_tools"},
    "healtrace.storage": {"Database"},
    "healtrace.api": {"create_app"},
    "healtrace.prompts": {"load_prompt", "PROMPT_VERSION"},
    "healtrace.chain": {"ChainService", "EvidenceOutbox", "MerkleTree", "verify_onchain"},
}


@pytest.mark.parametrize("name", sorted(PACKAGES))
def test_exported_members(name: str) -> None:
    module = importlib.import_module(name)
    exported = set(module.__all__)
    assert PACKAGES[name] <= exported
    assert len(exported) == len(module.__all__), "duplicates in __all__"
    for member in exported:
        assert hasattr(module, member), member
    public = {
        n
        for n, v in vars(module).items()
        if not n.startswith("_") and getattr(v, "__module__", "").startswith("healtrace")
    }
    assert public <= exported, f"public but not exported: {public - exported}"


@pytest.mark.parametrize("name", ["healtrace.agent", "healtrace.knowledge", "healtrace.chain"])
def test_lazy_exports_match(name: str) -> None:
    module = importlib.import_module(name)
    assert sorted(module._WHERE) == sorted(module.__all__)


@pytest.mark.parametrize("name", ["healtrace.tools", "healtrace.tools.builtin", "healtrace.api"])
def test_packages_import_first_in_a_fresh_interpreter(name: str) -> None:
    # Plugins import healtrace.tools before anything else; that must not hit an import cycle.
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", f"import {name}"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
