"""The example plugin (examples/plugin-tool), installed as a separate package, as HealTrace
sees it: loaded through its entry point, listed by ``healtrace tools list``, called by the
orchestrator of a real ``healtrace serve``, and switched off per tenant.

``make plugin-example`` installs it into build/plugins rather than into the venv (every
other test would otherwise be offered its tool); these tests put that directory on the
path themselves.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import websockets

from healtrace.agent.memory import ChatStore
from healtrace.agent.models.testing import DemoModel
from healtrace.agent.orchestrator import Orchestrator, UserTurn
from healtrace.config import Settings
from healtrace.storage import Database
from healtrace.tenants import TenantConfig
from healtrace.tools import load_tools
from tests.test_e2e_serve import Service, _free_port

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "plugin-tool"
PLUGINS = REPO / "build" / "plugins"
TOOL = "check_drug_interactions"
SOURCE = "plugin:drug_interactions"


def _plugins_dir() -> Path:
    """build/plugins, or a failure that says how to make it (never a skip)."""
    stamp = PLUGINS / ".installed"
    if not stamp.exists() or not list(PLUGINS.glob("healtrace_drug_interactions-*.dist-info")):
        pytest.fail(
            f"the example plugin is not installed in {PLUGINS.relative_to(REPO)}: "
            "run `make plugin-example` (it installs examples/plugin-tool there and runs its tests)"
        )
    sources = [EXAMPLE / "pyproject.toml", *(EXAMPLE / "src").rglob("*.py")]
    sources += (EXAMPLE / "src").rglob("*.json")
    stale = [p for p in sources if p.stat().st_mtime > stamp.stat().st_mtime]
    if stale:
        pytest.fail(
            f"{PLUGINS.relative_to(REPO)} is older than {stale[0].relative_to(REPO)}: "
            "run `make plugin-example` to reinstall the example plugin"
        )
    return PLUGINS


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> Path:
    """build/plugins on sys.path: importlib.metadata finds the dist-info there."""
    path = _plugins_dir()
    monkeypatch.syspath_prepend(str(path))
    return path


def _pythonpath() -> str:
    """PYTHONPATH of a ``healtrace`` subprocess that sees the example plugin."""
    return os.pathsep.join(p for p in (str(_plugins_dir()), os.environ.get("PYTHONPATH")) if p)


def _env(**settings: str) -> dict[str, str]:
    # The autouse _isolated_env fixture has removed HEALTRACE_* (all but HEALTRACE_HOME).
    return {**os.environ, "PYTHONPATH": _pythonpath(), **settings}


def _tools_list(*args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "healtrace", "tools", "list", *args],
        env=_env(**settings),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# --- loading and listing -------------------------------------------------------------------


def test_load_tools_finds_the_plugin_through_its_entry_point(
    plugins: Path, settings: Settings
) -> None:
    registry = load_tools(settings)
    assert registry.load_errors == []
    tool = registry.get(TOOL)
    assert tool is not None and tool.source == SOURCE
    assert tool.fn.__module__ == "healtrace_drug_interactions.tool"
    assert Path(sys.modules[tool.fn.__module__].__file__ or "").is_relative_to(plugins)
    assert (tool.timeout_s, tool.permissions, tool.locales) == (5, (), ("en", "zh-CN"))
    # Built-ins first, plugins after them.
    names = [t.name for t in registry]
    assert names.index("body_mass_index") < names.index(TOOL)


def test_load_tools_leaves_out_globally_disabled_tools(plugins: Path, settings: Settings) -> None:
    registry = load_tools(settings.model_copy(update={"tools_disabled": [TOOL]}))
    assert TOOL not in registry and "body_mass_index" in registry


def test_tools_list_prints_the_plugin_with_permissions_and_schema() -> None:
    tenants = json.dumps({"clinic-b": {"tools_disabled": [TOOL]}})
    result = _tools_list(HEALTRACE_TENANTS=tenants)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(f"{TOOL}  "))
    assert lines[at] == (
        f"{TOOL}  [{SOURCE}]  permissions: -  needs: -  timeout: 5s  locales: en, zh-CN"
    )
    assert lines[at + 1] == "    off for tenants: clinic-b"
    assert lines[at + 2].startswith("    Check a list of medicines for well-known")
    assert lines[at + 3].startswith("    arguments: ")
    arguments = json.loads(lines[at + 3].removeprefix("    arguments: "))
    assert arguments["medications"]["type"] == "array"
    assert (arguments["medications"]["minItems"], arguments["medications"]["maxItems"]) == (2, 10)
    assert lines[at + 4] == "    required: medications"
    assert "SKIPPED" not in result.stderr


def test_tools_list_json_has_the_plugins_schema(plugins: Path) -> None:
    result = _tools_list("--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["skipped"] == []
    [listed] = [t for t in info["tools"] if t["name"] == TOOL]
    from healtrace_drug_interactions import check_drug_interactions

    assert listed["source"] == SOURCE
    assert listed["permissions"] == [] and listed["locales"] == ["en", "zh-CN"]
    assert not listed["needs_consent"] and not listed["needs_approval"]
    assert listed["schema"] == check_drug_interactions.spec.parameters
    assert listed["schema"]["properties"]["medications"]["examples"] == [["warfarin", "aspirin"]]


# --- per tenant, in process ----------------------------------------------------------------


async def test_the_orchestrator_offers_it_only_to_tenants_that_allow_it(
    plugins: Path, settings: Settings
) -> None:
    tenants = {
        "clinic-b": TenantConfig(tools_disabled=[TOOL]),
        "clinic-c": TenantConfig(tools_enabled=["body_mass_index"]),
    }
    configured = settings.model_copy(update={"tenants": tenants})
    db = Database(configured.resolved_database_url)
    await db.migrate()
    try:
        orch = Orchestrator(
            model=DemoModel(),
            tools=load_tools(configured),
            store=ChatStore(db),
            settings=configured,
        )

        def offered(tenant: str | None, locale: str = "en") -> set[str]:
            turn = UserTurn("s1", "hello", locale, tenant_id=tenant)
            return {t.name for t in orch.tools_for(turn)}

        assert TOOL in offered(None) and TOOL in offered("clinic-a", "zh-CN")
        assert TOOL not in offered("clinic-b")
        assert offered("clinic-b") == offered(None) - {TOOL}
        assert offered("clinic-c") == {"body_mass_index"}
        assert TOOL not in offered(None, "fr")  # it serves en and zh-CN only
    finally:
        await db.dispose()


# --- a chat turn on the real service ---------------------------------------------------------


async def _keys(data_dir: Path) -> dict[str, str]:
    """A key of the default tenant and one of clinic-b, made before the service starts."""
    db = Database(f"sqlite:///{(data_dir / 'healtrace.db').resolve()}")
    await db.migrate()
    try:
        store = ChatStore(db)
        return {
            tenant: (await store.create_api_key(f"plugin-test-{tenant}", tenant_id=tenant))[1]
            for tenant in ("default", "clinic-b")
        }
    finally:
        await db.dispose()


async def _turn(port: int, key: str, text: str) -> list[dict[str, Any]]:
    """hello (zh-CN), one user_message, and every frame up to the end of the turn."""
    async with websockets.connect(f"ws://127.0.0.1:{port}/v1/ws/chat") as ws:
        await ws.send(json.dumps({"type": "hello", "api_key": key, "locale": "zh-CN"}))
        ok = json.loads(await asyncio.wait_for(ws.recv(), 60))
        assert ok["type"] == "hello_ok", ok
        await ws.send(json.dumps({"type": "user_message", "text": text}))
        frames: list[dict[str, Any]] = []
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 60))
            frames.append(frame)
            if frame["type"] == "answer_done" or (
                frame["type"] == "error" and frame.get("turn_id")
            ):
                return frames


@pytest.mark.e2e
async def test_healtrace_serve_calls_the_plugin_in_a_chat_turn(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    keys = await _keys(data_dir)
    port = _free_port()
    extra = {
        "PYTHONPATH": _pythonpath(),
        # The demo model calls every tool it is offered, with the schema's example arguments.
        "HEALTRACE_MAX_TOOL_ROUNDS": "8",
        "HEALTRACE_DEV_KEY": "false",
        "HEALTRACE_KNOWLEDGE__ENABLED": "false",
        "HEALTRACE_CHAIN__ENABLED": "false",
        "HEALTRACE_TENANTS": json.dumps({"clinic-b": {"tools_disabled": [TOOL]}}),
    }
    service = Service(data_dir, port, [{"kind": "scripted"}], extra_env=extra)
    try:
        await asyncio.to_thread(service.wait_ready)
        question = "华法林和阿司匹林能一起吃吗？"
        default = await _turn(port, keys["default"], question)
        clinic_b = await _turn(port, keys["clinic-b"], question)
    finally:
        log = service.stop()

    assert default[-1]["type"] == "answer_done", (default[-1], log)
    calls = {f["name"]: f for f in default if f["type"] == "tool_call"}
    results = {f["name"]: f for f in default if f["type"] == "tool_result"}
    assert calls[TOOL]["arguments"] == {"medications": ["warfarin", "aspirin"]}
    assert results[TOOL]["ok"] and results[TOOL]["call_id"] == calls[TOOL]["call_id"]
    report = json.loads(results[TOOL]["content"])
    assert report["language"] == "zh-CN"
    [interaction] = report["interactions"]
    assert interaction["generics"] == ["warfarin", "aspirin"]
    assert interaction["drugs"] == ["华法林", "阿司匹林"]
    assert interaction["severity"] == "major" and "出血" in interaction["mechanism"]
    assert "药师或医生" in report["note"]
    assert f"{TOOL} → " in default[-1]["text"]  # the demo model quotes what the tools said

    # clinic-b switched it off: the demo model calls every tool it is offered, and that
    # is everything the default tenant got except the plugin's tool.
    assert clinic_b[-1]["type"] == "answer_done", (clinic_b[-1], log)
    called_b = {f["name"] for f in clinic_b if f["type"] == "tool_call"}
    assert TOOL not in called_b
    assert called_b == set(calls) - {TOOL}
    assert all(TOOL not in json.dumps(f, ensure_ascii=False) for f in clinic_b)
