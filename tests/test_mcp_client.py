"""External MCP servers mounted as tools: real servers (tests/mcp_servers/) over stdio and
streamable HTTP, connected by the app's own code and called in turns."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from healtrace.agent.events import AnswerDone, ErrorEvent, Event, ToolResultEvent
from healtrace.agent.models.base import ModelRequest
from healtrace.agent.models.testing import ScriptedModel, Step, call_step, text_step
from healtrace.agent.orchestrator import UserTurn
from healtrace.api.services import Services, build_services
from healtrace.config import Settings
from healtrace.errors import ToolInfraError
from healtrace.mcp.client import mount_servers
from healtrace.mcp.config import McpServerConfig
from healtrace.tools.core import ToolContext, ToolRegistry, load_tools

SERVERS = Path(__file__).parent / "mcp_servers"
CLINIC = [sys.executable, str(SERVERS / "clinic.py")]
ODD = [sys.executable, str(SERVERS / "odd.py")]
SLOT = "cardiology: Monday 09:30, room 2"
TOOL_TURN = ["turn_started", "triage", "tool_call", "tool_result", "token", "answer_done"]


def _stdio(name: str = "clinic", command: list[str] = CLINIC, **kw: Any) -> McpServerConfig:
    return McpServerConfig.model_validate(
        {"name": name, "transport": "stdio", "command": command, **kw}
    )


def _ctx(settings: Settings) -> ToolContext:
    return ToolContext(session_id="s", locale="en", settings=settings)


async def _turn(services: Services, text: str) -> list[Event]:
    """One turn, run in a task of its own (as the TurnRunner does), not the mounting one."""
    key = await services.store.ensure_named_key("test")
    sid = (await services.store.create_session(key, locale="en")).id

    async def collect() -> list[Event]:
        turn = UserTurn(sid, text, "en")
        return [e async for e in services.orchestrator.run_turn(turn)]

    return await asyncio.create_task(collect())


def _types(events: list[Event]) -> list[str]:
    out: list[str] = []
    for e in events:
        if not (e.type == "token" and out and out[-1] == "token"):
            out.append(e.type)
    return out


def _answer_seeing(expected: str, answer: str) -> Any:
    def step(request: ModelRequest) -> Step:
        result = request.messages[-1]
        assert result.role == "tool" and expected in result.content
        return text_step(answer)

    return step


async def test_stdio_server_tools_are_called_in_turns(settings: Settings) -> None:
    settings.mcp_servers = [_stdio()]
    args = {"department": "cardiology"}
    seen: list[str] = []

    def after_error(request: ModelRequest) -> Step:
        seen.append(request.messages[-1].content)
        return text_step("Cardiology is fully booked this week.")

    model = ScriptedModel(
        [
            call_step("clinic__next_appointment_slot", args),
            _answer_seeing(SLOT, "The next cardiology slot is Monday at 09:30."),
            call_step("clinic__next_appointment_slot", args),
            _answer_seeing(SLOT, "Still Monday at 09:30."),
            call_step("clinic__fully_booked", args),
            after_error,
        ]
    )
    services = await build_services(settings, model=model)
    try:
        mounted = services.tools.get("clinic__next_appointment_slot")
        assert mounted is not None and mounted.source == "mcp:clinic"
        assert mounted.permissions == ("network",) and mounted.timeout_s == 20.0
        assert mounted.spec.parameters["required"] == ["department"]
        assert services.tools.get("body_mass_index") is not None
        assert services.mcp is not None and services.mcp.servers == ("clinic",)

        # Each turn runs in a task of its own, none of them the one that connected.
        answers = ["The next cardiology slot is Monday at 09:30.", "Still Monday at 09:30."]
        for answer in answers:
            events = await _turn(services, "When can I see a cardiologist?")
            assert _types(events) == TOOL_TURN
            result = next(e for e in events if isinstance(e, ToolResultEvent))
            assert result.ok and SLOT in result.content
            done = events[-1]
            assert isinstance(done, AnswerDone) and done.text == answer
        assert "clinic__next_appointment_slot" in {t.name for t in model.requests[0].tools}

        # The server's isError result goes back to the model, and the turn goes on.
        events = await _turn(services, "Book cardiology")
        assert _types(events) == TOOL_TURN
        result = next(e for e in events if isinstance(e, ToolResultEvent))
        assert not result.ok
        assert seen[0].startswith("ERROR: ") and "No free slots in cardiology" in seen[0]
        model.assert_used_up()
    finally:
        await services.aclose()


@pytest.fixture(scope="module")
def http_clinic() -> Iterator[str]:
    """The clinic server over streamable HTTP, in a process of its own."""
    proc = subprocess.Popen([*CLINIC, "http"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


async def test_slow_tool_times_out_and_the_service_goes_on(
    settings: Settings, http_clinic: str
) -> None:
    # Over HTTP to a running server, so timeout_s (which bounds connecting too) can be short.
    settings.mcp_servers = [
        McpServerConfig(name="clinic", transport="http", url=http_clinic, timeout_s=2)
    ]
    model = ScriptedModel(
        [
            call_step("clinic__slow_lookup", {}),
            call_step("clinic__next_appointment_slot", {"department": "cardiology"}),
            _answer_seeing(SLOT, "Monday at 09:30."),
        ]
    )
    services = await build_services(settings, model=model)
    try:
        events = await _turn(services, "slow please")
        error = events[-1]
        assert isinstance(error, ErrorEvent) and error.code == "tool_failed" and error.retryable
        assert "clinic__slow_lookup" in error.message

        events = await _turn(services, "When can I see a cardiologist?")
        assert isinstance(events[-1], AnswerDone) and events[-1].text == "Monday at 09:30."
    finally:
        await services.aclose()
    model.assert_used_up()


async def test_server_that_died_is_reconnected(settings: Settings) -> None:
    settings.mcp_servers = [_stdio()]
    registry = ToolRegistry()
    async with await mount_servers(settings, registry):
        first = await registry.run("c1", "clinic__process_id", "{}", _ctx(settings))
        # A call that loses the connection is not repeated: it may be what ended the server.
        with pytest.raises(ToolInfraError) as failed:
            await registry.run("c2", "clinic__crash", "{}", _ctx(settings))
        assert failed.value.params == {"tool": "clinic__crash"}
        args = json.dumps({"department": "cardiology"})
        slot = await registry.run("c3", "clinic__next_appointment_slot", args, _ctx(settings))
        second = await registry.run("c4", "clinic__process_id", "{}", _ctx(settings))
    assert slot.ok and SLOT in slot.content
    pids = [first.data["result"], second.data["result"]]
    assert first.ok and second.ok and pids[0] != pids[1]
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


async def test_stdio_server_gets_none_of_healtraces_environment(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEALTRACE_SOME_SECRET", "do-not-pass")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-do-not-pass")
    settings.mcp_servers = [
        _stdio(
            env={"CLINIC_SITE": "north"},
            tools=["environment_keys", "book_surgery"],
            permissions=["network", "records"],
            needs_approval=True,
        )
    ]
    registry = load_tools(settings)
    async with await mount_servers(settings, registry):
        # The allow-list leaves the server's other tools out; a name it lacks is reported.
        mounted = [t for t in registry if t.source == "mcp:clinic"]
        assert [t.name for t in mounted] == ["clinic__environment_keys"]
        assert mounted[0].permissions == ("network", "records") and mounted[0].needs_approval
        outcome = await registry.run("c1", "clinic__environment_keys", "{}", _ctx(settings))
    assert outcome.ok
    keys = set(outcome.data["result"])
    assert "CLINIC_SITE" in keys and "PATH" in keys
    assert "HEALTRACE_SOME_SECRET" not in keys and "OPENAI_API_KEY" not in keys
    assert not {k for k in keys if k.startswith("HEALTRACE_")}
    assert len(registry.load_errors) == 1 and "book_surgery" in registry.load_errors[0]


async def test_unreachable_servers_are_reported_and_skipped(settings: Settings) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    settings.mcp_servers = [
        _stdio("missing", ["/nonexistent/mcp-server", "--token", "s3cret"]),
        McpServerConfig(
            name="gone",
            transport="http",
            url=f"http://127.0.0.1:{closed_port}/mcp",
            headers={"Authorization": "Bearer s3cret"},
        ),
        # Starts, reads its input, never answers; exits once its stdin closes.
        _stdio("silent", [sys.executable, "-c", "import sys; sys.stdin.read()"], timeout_s=0.5),
    ]
    registry = load_tools(settings)
    builtin = len(registry)
    mounts = await mount_servers(settings, registry)
    await mounts.aclose()
    assert mounts.servers == () and len(registry) == builtin
    missing, gone, silent = registry.load_errors
    assert "'missing'" in missing and "/nonexistent/mcp-server" in missing
    assert "'gone'" in gone and f"127.0.0.1:{closed_port}" in gone
    assert "'silent'" in silent and "did not answer within 0.5s" in silent
    # Arguments and headers may be credentials: they stay out of the report.
    assert not any("s3cret" in e for e in registry.load_errors)


async def test_remote_tools_a_model_cannot_be_offered_are_skipped(settings: Settings) -> None:
    settings.mcp_servers = [_stdio("odd", ODD)]
    registry = ToolRegistry()
    async with await mount_servers(settings, registry) as mounts:
        assert mounts.servers == ("odd",)
        assert [t.name for t in registry] == ["odd__echo"]
        outcome = await registry.run("c1", "odd__echo", '{"text": "hello"}', _ctx(settings))
        assert outcome.ok and outcome.content == "hello"
        # Calls from several tasks at once share the connection.
        calls = [
            asyncio.create_task(
                registry.run(f"c{i}", "odd__echo", json.dumps({"text": str(i)}), _ctx(settings))
            )
            for i in range(5)
        ]
        assert [o.content for o in await asyncio.gather(*calls)] == ["0", "1", "2", "3", "4"]
        # Arguments are checked against the remote schema before anything is sent.
        bad = await registry.run("c2", "odd__echo", '{"text": 3}', _ctx(settings))
        assert not bad.ok and "text" in bad.content
    broken, spaced = registry.load_errors
    assert "'broken_schema'" in broken and "invalid input schema" in broken
    assert "'has spaces'" in spaced and "OpenAI function names" in spaced


async def test_streamable_http_server_tool_is_called_in_a_turn(
    settings: Settings, http_clinic: str
) -> None:
    settings.mcp_servers = [
        McpServerConfig(
            name="clinic_http",
            transport="http",
            url=http_clinic,
            headers={"Authorization": "Bearer test-token"},
            timeout_s=15,
        )
    ]
    model = ScriptedModel(
        [
            call_step("clinic_http__next_appointment_slot", {"department": "cardiology"}),
            _answer_seeing(SLOT, "Monday at 09:30."),
        ]
    )
    services = await build_services(settings, model=model)
    try:
        mounted = services.tools.get("clinic_http__next_appointment_slot")
        assert mounted is not None and mounted.timeout_s == 15
        events = await _turn(services, "When can I see a cardiologist?")
    finally:
        await services.aclose()
    assert _types(events) == TOOL_TURN
    result = next(e for e in events if isinstance(e, ToolResultEvent))
    assert result.ok and SLOT in result.content
    model.assert_used_up()


async def test_without_servers_nothing_is_mounted(settings: Settings) -> None:
    services = await build_services(settings, model=ScriptedModel([]))
    try:
        assert services.mcp is None
        assert not [t for t in services.tools if t.source.startswith("mcp:")]
    finally:
        await services.aclose()


def test_tools_list_shows_mounted_tools(tmp_path: Path) -> None:
    from healtrace.cli import app

    servers = [{"name": "clinic", "transport": "stdio", "command": CLINIC}]
    env = {"HEALTRACE_MCP_SERVERS": json.dumps(servers), "HEALTRACE_DATA_DIR": str(tmp_path)}
    result = CliRunner().invoke(app, ["tools", "list"], env=env)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(
        line.startswith("clinic__next_appointment_slot  [mcp:clinic]  permissions: network")
        for line in lines
    )
    assert any(line.startswith("body_mass_index  [builtin]") for line in lines)
