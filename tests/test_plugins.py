"""Plugin tools: metadata, validation at load time, per-tenant switches, the approval gate
and ``healtrace tools list``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from healtrace.agent.events import ApprovalRequired, Event, ToolResultEvent
from healtrace.agent.memory import ChatStore
from healtrace.agent.models.base import ModelRequest, ToolCall
from healtrace.agent.models.testing import ScriptedModel, Step, call_step, text_step
from healtrace.agent.orchestrator import Orchestrator, UserTurn, approval_id
from healtrace.audit import AuditLog
from healtrace.config import Settings
from healtrace.tenants import TenantConfig
from healtrace.tools import ToolContext, ToolRegistry, load_tools, tool
from healtrace.tools.builtin import body_mass_index
from healtrace.tools.core import check_tool, schema_tool

ROOT = Path(__file__).resolve().parents[1]


@tool(needs_approval=True, timeout_s=5)
async def book_appointment(ctx: ToolContext, department: str, day: str) -> dict[str, str]:
    """Book an appointment for the patient.

    Args:
        department: Clinic department.
        day: ISO date.
    """
    booked.append((ctx.session_id, department, day))
    return {"booked": f"{department} on {day}"}


booked: list[tuple[str, str, str]] = []


@tool(locales=("zh-CN",))
async def tcm_glossary(term: str) -> str:
    """Explain a traditional Chinese medicine term (Chinese only).

    Args:
        term: The term.
    """
    return term


async def _echo(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    return {"echo": args, "locale": ctx.locale}


ECHO_SCHEMA = {
    "type": "object",
    "properties": {"text": {"type": "string", "maxLength": 20}, "n": {"type": "integer"}},
    "required": ["text"],
    "additionalProperties": False,
}


# --- schema-described tools ------------------------------------------------------------------


async def test_schema_tool_validates_against_its_json_schema(settings: Settings) -> None:
    echo = schema_tool("echo", "Echo the arguments.", ECHO_SCHEMA, _echo, source="test")
    assert echo.spec.parameters["required"] == ["text"]
    reg = ToolRegistry([echo])
    ctx = ToolContext(session_id="s", locale="zh-CN", settings=settings)
    ok = await reg.run("c1", "echo", json.dumps({"text": "hi", "n": 2}), ctx)
    assert ok.ok and json.loads(ok.content) == {"echo": {"text": "hi", "n": 2}, "locale": "zh-CN"}
    for bad, problem in [
        ({}, "'text' is a required property"),
        ({"text": "x" * 21}, "text:"),
        ({"text": "hi", "n": "two"}, "n: 'two' is not of type 'integer'"),
        ({"text": "hi", "extra": 1}, "Additional properties"),
    ]:
        out = await reg.run("c2", "echo", json.dumps(bad), ctx)
        assert not out.ok and out.content.startswith("Invalid arguments") and problem in out.content


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        ({"type": "objekt"}, "input schema must describe an object"),
        ({"type": "object", "properties": {"a": {"type": "strin"}}}, "invalid input schema"),
        ({"type": "object", "required": "a"}, "invalid input schema"),
        (["not", "a", "dict"], "must be a JSON object"),
    ],
)
def test_an_invalid_schema_is_refused(schema: Any, problem: str) -> None:
    with pytest.raises(TypeError, match=problem):
        schema_tool("bad", "Bad.", schema, _echo)


def test_names_descriptions_and_permissions_are_checked() -> None:
    with pytest.raises(TypeError, match="letters, digits"):
        schema_tool("has space", "x", ECHO_SCHEMA, _echo)
    with pytest.raises(TypeError, match="needs a description"):
        schema_tool("blank", "  ", ECHO_SCHEMA, _echo)
    with pytest.raises(TypeError, match="unknown permission"):
        schema_tool("perm", "x", ECHO_SCHEMA, _echo, permissions=("root",))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="timeout_s must be positive"):
        schema_tool("slow", "x", ECHO_SCHEMA, _echo, timeout_s=0)
    check_tool(body_mass_index)


def test_locales() -> None:
    assert tcm_glossary.serves("zh-CN") and tcm_glossary.serves("zh")
    assert not tcm_glossary.serves("en")
    assert body_mass_index.serves("en") and body_mass_index.serves("zh-CN")


# --- plugins that are broken -----------------------------------------------------------------


def _fake_dist(root: Path, name: str, module: str, source: str) -> None:
    dist = root / f"{name}-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[healtrace.tools]\n{name} = {module}:TOOLS\n")
    (root / f"{module}.py").write_text(textwrap.dedent(source))


GOOD = '''
from healtrace.tools import tool

@tool(permissions=("network",), timeout_s=3)
async def clinic_hours(department: str) -> str:
    """Opening hours of a clinic department.

    Args:
        department: Which department.
    """
    return department + ": 08:00-17:00"

TOOLS = [clinic_hours]
'''
RAISES_ON_IMPORT = """
raise RuntimeError("plugin configuration missing")
"""
INVALID_SCHEMA = """
from healtrace.tools.core import schema_tool

async def run(ctx, args):
    return args

SCHEMA = {"type": "object", "properties": {"mg": {"type": "nmber"}}}
TOOLS = [schema_tool("dosage", "Dose.", SCHEMA, run)]
"""
HALF_BROKEN = '''
from healtrace.tools import tool

@tool
async def fine_tool() -> str:
    """Fine."""
    return "fine"

TOOLS = [fine_tool, "not a tool"]
'''
CLASHES = '''
from healtrace.tools import tool

@tool
async def body_mass_index(weight: float) -> str:
    """A second BMI tool under the built-in name."""
    return "x"

TOOLS = [body_mass_index]
'''


@pytest.fixture
def plugin_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    _fake_dist(site, "clinic", "ht_clinic", GOOD)
    _fake_dist(site, "exploding", "ht_exploding", RAISES_ON_IMPORT)
    _fake_dist(site, "badschema", "ht_badschema", INVALID_SCHEMA)
    _fake_dist(site, "halfbroken", "ht_halfbroken", HALF_BROKEN)
    _fake_dist(site, "clash", "ht_clash", CLASHES)
    monkeypatch.syspath_prepend(str(site))
    for mod in ("ht_clinic", "ht_exploding", "ht_badschema", "ht_halfbroken", "ht_clash"):
        sys.modules.pop(mod, None)
    return site


def test_broken_plugins_are_skipped_whole_and_reported(
    settings: Settings, plugin_site: Path
) -> None:
    reg = load_tools(settings)
    hours = reg.get("clinic_hours")
    assert hours is not None and hours.source == "plugin:clinic"
    assert hours.permissions == ("network",) and hours.timeout_s == 3
    assert reg.get("body_mass_index") is not None
    assert reg.get("body_mass_index").source == "builtin"  # type: ignore[union-attr]
    # A plugin with one bad entry registers none of its tools.
    assert "fine_tool" not in reg and "dosage" not in reg
    errors = "\n".join(reg.load_errors)
    assert len(reg.load_errors) == 4, errors
    assert "'exploding'" in errors and "plugin configuration missing" in errors
    assert "'badschema'" in errors and "invalid input schema" in errors
    assert "'halfbroken'" in errors and "not a healtrace Tool" in errors
    assert "'clash'" in errors and "builtin already registers that name" in errors


def test_disabled_tools_are_not_loaded(settings: Settings, plugin_site: Path) -> None:
    reg = load_tools(settings.model_copy(update={"tools_disabled": ["clinic_hours"]}))
    assert "clinic_hours" not in reg and "body_mass_index" in reg


def test_tools_list_shows_sources_schemas_and_skipped_plugins(
    plugin_site: Path, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(plugin_site), str(ROOT)]),
        "HEALTRACE_DATA_DIR": str(tmp_path / "data"),
        "HEALTRACE_TENANTS": json.dumps({"north": {"tools_disabled": ["clinic_hours"]}}),
    }
    out = subprocess.run(
        [sys.executable, "-m", "healtrace", "tools", "list"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert out.returncode == 1, out.stderr
    lines = out.stdout.splitlines()
    hours = next(i for i, line in enumerate(lines) if line.startswith("clinic_hours"))
    assert "[plugin:clinic]" in lines[hours] and "permissions: network" in lines[hours]
    assert "timeout: 3s" in lines[hours]
    block = "\n".join(lines[hours : hours + 5])
    assert "off for tenants: north" in block and '"department"' in block
    records = next(line for line in lines if line.startswith("lookup_records"))
    assert "[builtin]" in records and "needs: consent" in records
    assert out.stderr.count("SKIPPED") == 4
    assert "plugin configuration missing" in out.stderr and "invalid input schema" in out.stderr
    js = subprocess.run(
        [sys.executable, "-m", "healtrace", "tools", "list", "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    info = json.loads(js.stdout)
    by_name = {t["name"]: t for t in info["tools"]}
    assert by_name["clinic_hours"]["schema"]["required"] == ["department"]
    assert by_name["lookup_records"]["needs_consent"] is True
    assert len(info["skipped"]) == 4


# --- what a turn is offered ------------------------------------------------------------------


async def _session(store: ChatStore, locale: str = "en") -> str:
    key = await store.ensure_named_key("test")
    return (await store.create_session(key, locale=locale)).id


def _offered(orch: Orchestrator, **turn: Any) -> set[str]:
    return {t.name for t in orch.tools_for(UserTurn(session_id="s", text="q", **turn))}


async def test_tenant_switches_and_locales_decide_what_a_turn_is_offered(
    store: ChatStore, settings: Settings
) -> None:
    settings = settings.model_copy(
        update={
            "tenants": {
                "north": TenantConfig(tools_enabled=["body_mass_index", "tcm_glossary"]),
                "south": TenantConfig(tools_disabled=["body_mass_index"]),
            },
            "tools_disabled": ["book_appointment"],
        }
    )
    reg = ToolRegistry([body_mass_index, tcm_glossary, book_appointment])
    orch = Orchestrator(model=ScriptedModel([]), tools=reg, store=store, settings=settings)
    assert _offered(orch, locale="en") == {"body_mass_index"}
    assert _offered(orch, locale="zh-CN") == {"body_mass_index", "tcm_glossary"}
    assert _offered(orch, locale="zh-CN", tenant_id="north") == {"body_mass_index", "tcm_glossary"}
    assert _offered(orch, locale="zh-CN", tenant_id="south") == {"tcm_glossary"}

    # The model is told only about what it is offered; calling anything else fails.
    sid = await _session(store)
    model = ScriptedModel(
        [call_step("book_appointment", {"department": "x", "day": "y"}), text_step("ok")]
    )
    orch = Orchestrator(model=model, tools=reg, store=store, settings=settings)
    events = [e async for e in orch.run_turn(UserTurn(sid, "book", "zh-CN", tenant_id="south"))]
    assert [s.name for s in model.requests[0].tools] == ["tcm_glossary"]
    result = next(e for e in events if isinstance(e, ToolResultEvent))
    assert not result.ok and "Unknown tool" in result.content
    assert booked == []


# --- the approval gate -----------------------------------------------------------------------


async def _turn(orch: Orchestrator, sid: str, text: str, **kw: Any) -> list[Event]:
    return [e async for e in orch.run_turn(UserTurn(sid, text, "zh-CN", **kw))]


async def test_a_tool_that_needs_approval_runs_only_for_the_call_the_patient_approved(
    store: ChatStore, settings: Settings, database_url: str
) -> None:
    booked.clear()
    sid = await _session(store, "zh-CN")
    args = {"department": "cardiology", "day": "2026-12-08"}

    def told_to_ask(request: ModelRequest) -> Step:
        result = request.messages[-1]
        assert result.role == "tool" and result.content.startswith("ERROR: Not run")
        return text_step("需要您确认后才能预约。")

    audit = AuditLog(store.db)
    model = ScriptedModel(
        [
            call_step("book_appointment", args),
            told_to_ask,
            # The model tries again, with different arguments, in the approving turn…
            call_step("book_appointment", {**args, "day": "2026-12-09"}, call_id="call_2"),
            text_step("请再确认一次。"),
            # …and then with the approved ones.
            call_step("book_appointment", args, call_id="call_3"),
            text_step("已为您预约。"),
        ]
    )
    reg = ToolRegistry([book_appointment, body_mass_index])
    orch = Orchestrator(model=model, tools=reg, store=store, settings=settings, audit=audit)
    first = await _turn(orch, sid, "帮我预约心内科")
    asked = [e for e in first if isinstance(e, ApprovalRequired)]
    assert len(asked) == 1 and booked == []
    request = asked[0]
    assert request.name == "book_appointment" and request.arguments == args
    assert "book_appointment" in request.message and "同意" in request.message
    call = ToolCall(id="x", name="book_appointment", arguments=json.dumps(args))
    assert request.approval_id == approval_id(sid, call)
    # Key order does not matter; the session does.
    swapped = ToolCall(
        id="y", name="book_appointment", arguments=json.dumps(dict(reversed(args.items())))
    )
    assert approval_id(sid, swapped) == request.approval_id
    assert approval_id("other-session", call) != request.approval_id

    second = await _turn(orch, sid, "同意", approvals=frozenset({request.approval_id}))
    assert booked == []
    assert [e.arguments for e in second if isinstance(e, ApprovalRequired)] == [
        {**args, "day": "2026-12-09"}
    ]
    third = await _turn(orch, sid, "同意", approvals=frozenset({request.approval_id}))
    assert booked == [(sid, "cardiology", "2026-12-08")]
    assert not any(isinstance(e, ApprovalRequired) for e in third)
    ran = next(e for e in third if isinstance(e, ToolResultEvent))
    assert ran.ok and "cardiology" in ran.content
    entries = [e for e in await audit.entries(session_id=sid) if e.action == "tool_approved"]
    assert len(entries) == 1 and entries[0].details["approval_id"] == request.approval_id
    model.assert_used_up()


def test_the_terminal_chat_approves_what_the_last_answer_asked_about() -> None:
    from healtrace.cli_chat import _approving

    pending = ["a" * 24, "b" * 24]
    assert _approving("hello", pending, "en") == ("hello", [])
    assert _approving("/approve", pending, "zh-CN") == ("我同意。", ["a" * 24, "b" * 24])
    assert pending == []
    assert _approving("/approve", pending, "en") == ("/approve", [])
