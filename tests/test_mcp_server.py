"""HealTrace's tools served over MCP, spoken to with the ``mcp`` SDK's own client: over
streamable HTTP against the real app under uvicorn, and over stdio against
``healtrace mcp serve`` in a child process."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import httpx2
import mcp_types as types
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.session import ClientRequestContext
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from typer.testing import CliRunner

from healtrace.agent.memory import ChatStore
from healtrace.api.app import create_app
from healtrace.api.testing import LiveServer
from healtrace.cli import app as cli
from healtrace.config import Settings
from healtrace.mcp.server import AUTH_ERROR
from healtrace.records.ledger import FakeConsentLedger
from healtrace.storage import Database
from healtrace.tenants import TenantConfig
from healtrace.tools.builtin import body_mass_index, lookup_records
from healtrace.tools.core import ToolContext, ToolRegistry, load_tools, tool
from tests.test_records_consent import CONDITION, LAB

BMI = {"weight": 70, "height": 175}


@asynccontextmanager
async def mcp_client(
    url: str, key: str | None, *, mode: str = "auto", **options: Any
) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode, **options) as client,
    ):
        yield client


def _texts(result: types.CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))


def _names(listed: types.ListToolsResult) -> set[str]:
    return {t.name for t in listed.tools}


async def _tenant_key(app: Any, tenant: str = "clinic") -> str:
    store: ChatStore = app.state.services.store
    _kid, key = await store.create_api_key("mcp client", tenant_id=tenant)
    return key


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_key_lists_and_calls_the_tools_it_may_use(settings: Settings, mode: str) -> None:
    app = create_app(settings, consent_ledger=FakeConsentLedger())
    async with LiveServer(app) as live:
        key = await _tenant_key(app)
        async with mcp_client(f"{live.http}/mcp", key, mode=mode) as client:
            # Both eras: per-request envelopes (2026-07-28) and the initialize handshake.
            assert (client.protocol_version in MODERN_PROTOCOL_VERSIONS) == (mode == "auto")
            names = _names(await client.list_tools())
            assert {"body_mass_index", "interpret_labs"} <= names
            # Nobody to act for, no photos to look at.
            assert not names & {"lookup_records", "reward", "analyze_image"}

            result = await client.call_tool("body_mass_index", BMI)
            assert not result.is_error, _texts(result)
            assert result.structured_content is not None
            assert result.structured_content["bmi"] == 22.9
            assert json.loads(_texts(result))["category_who"] == "normal"

            # Bad arguments come back as a tool error; the server goes on serving.
            bad = await client.call_tool("body_mass_index", {"weight": 70, "height": "tall"})
            assert bad.is_error and "Invalid arguments" in _texts(bad) and "height" in _texts(bad)
            implausible = await client.call_tool("body_mass_index", {"weight": 70, "height": 1.75})
            assert implausible.is_error and "not plausible" in _texts(implausible)
            again = await client.call_tool("body_mass_index", BMI)
            assert not again.is_error

            # Tools the key may not see cannot be called either, and look like missing ones.
            for hidden in ("lookup_records", "analyze_image", "no_such_tool"):
                with pytest.raises(MCPError) as refused:
                    await client.call_tool(hidden, {})
                assert refused.value.code == types.INVALID_PARAMS
                assert f"Unknown tool: {hidden}" in refused.value.message

        entries = await app.state.services.audit.entries(tenant_id="clinic")
        calls = [e for e in entries if e.action == "mcp_tool_call"]
        assert [(e.details, e.actor) for e in calls] == [
            ({"tool": "body_mass_index", "ok": True}, "mcp"),
            ({"tool": "body_mass_index", "ok": False}, "mcp"),
            ({"tool": "body_mass_index", "ok": False}, "mcp"),
            ({"tool": "body_mass_index", "ok": True}, "mcp"),
        ]


async def test_a_patient_key_reads_their_records_only_with_consent(settings: Settings) -> None:
    app = create_app(settings, consent_ledger=FakeConsentLedger())
    async with LiveServer(app) as live:
        services = app.state.services
        tenant_key = await _tenant_key(app)
        for pid, value in (("pat-a", 4.1), ("pat-b", 6.9)):
            ref = {"reference": f"Patient/{pid}"}
            lab = {**LAB, "id": f"k-{pid}", "subject": ref, "valueQuantity": {"value": value}}
            await services.records.fhir.put(lab, tenant_id="clinic")
            await services.records.fhir.put(
                {**CONDITION, "id": f"c-{pid}", "subject": ref}, tenant_id="clinic"
            )
        async with httpx.AsyncClient(base_url=live.http) as http:
            made = await http.post(
                "/v1/patients",
                json={"fhir_patient_id": "pat-a"},
                headers={"Authorization": f"Bearer {tenant_key}"},
            )
            assert made.status_code == 201, made.text
            patient_key = made.json()["api_key"]

            async with mcp_client(f"{live.http}/mcp", patient_key) as client:
                names = _names(await client.list_tools())
                assert {"lookup_records", "body_mass_index"} <= names
                assert "analyze_image" not in names

                refused = await client.call_tool("lookup_records", {"kinds": ["labs"]})
                text = _texts(refused)
                assert refused.is_error, text
                assert "4.1" not in text and "6.9" not in text and "Potassium" not in text
                assert "I may not read your Observation records" in text
                assert refused.structured_content is not None
                assert refused.structured_content["summary"] is None
                assert refused.structured_content["denied"]

                granted = await http.post(
                    "/v1/me/consents",
                    json={"scopes": ["patient/Observation.rs?category=laboratory"]},
                    headers={"Authorization": f"Bearer {patient_key}"},
                )
                assert granted.status_code == 201, granted.text

                read = await client.call_tool("lookup_records", {"kinds": ["labs"]})
                assert not read.is_error, _texts(read)
                assert read.structured_content is not None
                labs = read.structured_content["summary"]["labs"]
                assert [lab["value"] for lab in labs] == ["4.1"]  # pat-a's, never pat-b's
                assert "6.9" not in _texts(read)

        log = await services.audit.for_patient("clinic", made.json()["patient_id"])
        calls = [e for e in log if e.action == "mcp_tool_call"]
        # Which tool and whether it worked (and, as every entry, whom it was about); never
        # what it read.
        assert [e.details for e in calls] == [
            {"tool": "lookup_records", "ok": True, "patient_id": made.json()["patient_id"]},
            {"tool": "lookup_records", "ok": False, "patient_id": made.json()["patient_id"]},
        ]


async def test_requests_without_a_valid_key_are_refused(settings: Settings) -> None:
    app = create_app(settings)
    async with LiveServer(app) as live:
        store: ChatStore = app.state.services.store
        _kid, website = await store.create_api_key(
            "site", kind="publishable", allowed_origins=["https://clinic.example"]
        )
        ping = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
        async with httpx.AsyncClient(base_url=live.http) as http:
            for headers, code in [
                ({}, "auth_required"),
                ({"Authorization": "Bearer ht_not-a-key"}, "auth_invalid"),
                ({"Authorization": f"Bearer {website}"}, "auth_invalid"),
            ]:
                answer = await http.post("/mcp", json=ping, headers=headers)
                assert answer.status_code == 401, answer.text
                assert answer.headers["www-authenticate"] == "Bearer"
                error = answer.json()["error"]
                assert error["code"] == AUTH_ERROR and error["data"]["code"] == code
        # The SDK's client shows the refusal as it is, not as a bare HTTP status.
        refusal = pytest.RaisesExc(
            MCPError, check=lambda e: e.code == AUTH_ERROR and "API key" in e.message
        )
        for key in (None, "ht_not-a-key"):
            with pytest.RaisesGroup(refusal, flatten_subgroups=True):
                async with mcp_client(f"{live.http}/mcp", key) as client:
                    await client.list_tools()


async def test_a_tenant_that_switched_a_tool_off_does_not_get_it(settings: Settings) -> None:
    settings = settings.model_copy(
        update={"tenants": {"clinic": TenantConfig(tools_disabled=["body_mass_index"])}}
    )
    app = create_app(settings)
    async with LiveServer(app) as live:
        clinic, other = await _tenant_key(app, "clinic"), await _tenant_key(app, "other")
        async with mcp_client(f"{live.http}/mcp", clinic) as client:
            names = _names(await client.list_tools())
            assert "body_mass_index" not in names and "interpret_labs" in names
            with pytest.raises(MCPError):
                await client.call_tool("body_mass_index", BMI)
        async with mcp_client(f"{live.http}/mcp", other) as client:
            assert "body_mass_index" in _names(await client.list_tools())


@tool(needs_approval=True)
async def send_reminder(ctx: ToolContext, text: str) -> dict[str, str]:
    """Send the patient a reminder message.

    Args:
        text: What the reminder says.
    """
    return {"sent": text}


def _accepting(approve: bool) -> Any:
    async def answer(
        context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult:
        assert isinstance(params, types.ElicitRequestFormParams)
        assert "send_reminder" in params.message
        return types.ElicitResult(action="accept", content={"approve": approve})

    return answer


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_tool_that_needs_approval_runs_only_once_the_user_accepts(
    settings: Settings, mode: str
) -> None:
    tools = ToolRegistry([body_mass_index, lookup_records, send_reminder])
    app = create_app(settings, tools=tools)
    async with LiveServer(app) as live:
        key = await _tenant_key(app)
        url = f"{live.http}/mcp"
        async with mcp_client(url, key, mode=mode, elicitation_callback=_accepting(True)) as c:
            done = await c.call_tool("send_reminder", {"text": "Take your tablets"})
            assert not done.is_error, _texts(done)
            assert done.structured_content == {"sent": "Take your tablets"}
        async with mcp_client(url, key, mode=mode, elicitation_callback=_accepting(False)) as c:
            declined = await c.call_tool("send_reminder", {"text": "Take your tablets"})
            assert declined.is_error and "did not approve" in _texts(declined)
        async with mcp_client(url, key, mode=mode) as c:
            unsupported = await c.call_tool("send_reminder", {"text": "Take your tablets"})
            assert unsupported.is_error and "cannot ask them" in _texts(unsupported)


async def test_stdio_serves_the_tools_of_the_given_key(settings: Settings, tmp_path: Path) -> None:
    db = Database(settings.resolved_database_url)
    await db.migrate()
    try:
        _kid, key = await ChatStore(db).create_api_key("desktop client")
    finally:
        await db.dispose()
    env = {
        "HEALTRACE_DATA_DIR": str(settings.data_dir),
        "HEALTRACE_LLM_BACKENDS": json.dumps([{"kind": "scripted"}]),
        "HEALTRACE_KNOWLEDGE__ENABLED": "false",
        "HEALTRACE_CHAIN__ENABLED": "false",
        "HEALTRACE_DEV_KEY": "false",
        "HEALTRACE_MCP_API_KEY": key,
    }
    if "HEALTRACE_HOME" in os.environ:
        env["HEALTRACE_HOME"] = os.environ["HEALTRACE_HOME"]
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "healtrace", "mcp", "serve", "--transport", "stdio"],
        env=env,
        cwd=str(tmp_path),
    )
    async with Client(params) as client:
        names = _names(await client.list_tools())
        assert "body_mass_index" in names and "lookup_records" not in names
        bad = await client.call_tool("body_mass_index", {"weight": -1, "height": 175})
        assert bad.is_error and "weight" in _texts(bad)
        result = await client.call_tool("body_mass_index", {**BMI, "unit_system": "metric"})
        assert not result.is_error, _texts(result)
        assert result.structured_content is not None
        assert result.structured_content["bmi"] == 22.9


def test_the_builtin_tools_are_what_the_tests_assume(settings: Settings) -> None:
    assert {"body_mass_index", "lookup_records", "analyze_image"} <= {
        t.name for t in load_tools(settings)
    }


def test_stdio_needs_a_valid_secret_key(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "HEALTRACE_DATA_DIR": str(settings.data_dir),
        "HEALTRACE_LLM_BACKENDS": json.dumps([{"kind": "scripted"}]),
        "HEALTRACE_KNOWLEDGE__ENABLED": "false",
        "HEALTRACE_CHAIN__ENABLED": "false",
    }.items():
        monkeypatch.setenv(name, value)
    runner = CliRunner()
    missing = runner.invoke(cli, ["mcp", "serve", "--transport", "stdio"])
    assert missing.exit_code == 2 and "HEALTRACE_MCP_API_KEY" in missing.stderr
    invalid = runner.invoke(cli, ["mcp", "serve", "--api-key", "ht_not-a-key"])
    assert invalid.exit_code == 1
    assert "That API key is not valid or has been revoked." in invalid.stderr
    wrong = runner.invoke(cli, ["mcp", "serve", "--transport", "sse"])
    assert wrong.exit_code == 2
