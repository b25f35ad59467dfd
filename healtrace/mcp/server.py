"""HealTrace's tools served to MCP clients (the Model Context Protocol), over streamable
HTTP (``/mcp`` of the service, or ``healtrace mcp serve --transport http``) and stdio.

The caller is an API key, as everywhere else: ``Authorization: Bearer KEY`` over HTTP, the
key given to ``healtrace mcp serve`` over stdio. What a caller sees and may call is decided
here, in code, with the rules of a chat turn (:meth:`Orchestrator.tools_for`): record and
reward tools only for a patient's own key, only tools the tenant allows and that serve the
locale. Tools that look at a chat turn's photos are never offered: an MCP call has none. A
tool that needs the patient's approval runs only once the client asked its user (MCP
elicitation) and they accepted; clients that cannot ask are refused.

Every call goes through the tool registry (the same validation and timeouts as in chat) and
writes one audit entry naming the tool and whether it worked; never its arguments or result.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import mcp_types as types
from mcp.server import Server, ServerRequestContext
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from healtrace import __version__
from healtrace.agent.orchestrator import UserTurn
from healtrace.api._http import bearer_token, pick_locale
from healtrace.api.services import Services, build_services
from healtrace.config import Settings
from healtrace.errors import AuthError, HealTraceError, localized
from healtrace.tenants import tenant_locale
from healtrace.tools.builtin.records import RecordsResult
from healtrace.tools.core import Tool, ToolContext, ToolOutcome, ToolRegistry

__all__ = [
    "AUTH_ERROR",
    "McpCaller",
    "McpHttp",
    "McpHttpEndpoint",
    "build_mcp_server",
    "caller_locale",
    "create_mcp_app",
    "offered_tools",
    "resolve_caller",
    "serve_stdio",
    "tool_result",
]

log = logging.getLogger(__name__)

#: Where the HTTP endpoint leaves the authenticated caller in the ASGI scope.
CALLER_SCOPE_KEY = "healtrace.mcp_caller"
#: JSON-RPC error code of a request without a valid API key (server-defined range).
AUTH_ERROR = -32001
#: The key of the approval question in an ``input_required`` result (MCP 2026-07-28).
APPROVAL_INPUT = "healtrace_approval"

MESSAGES: dict[str, tuple[str, str]] = {
    "mcp_approval_prompt": (
        "HealTrace wants to run the tool {tool}: {description} Allow this call?",
        "HealTrace 需要运行工具 {tool}：{description} 是否允许本次调用？",
    ),
    "mcp_approval_field": ("Allow this call", "允许本次调用"),
    "mcp_approval_declined": (
        "The tool {tool} was not run: the user did not approve the call.",
        "未运行工具 {tool}：用户没有批准本次调用。",
    ),
    "mcp_approval_unsupported": (
        "The tool {tool} runs only after the user approves each call, and this MCP client "
        "cannot ask them (it does not support elicitation). Use a client that does, or the "
        "HealTrace chat.",
        "工具 {tool} 每次调用都需要用户批准，而此 MCP 客户端无法询问用户（不支持 elicitation）。"
        "请换用支持的客户端，或使用 HealTrace 对话。",
    ),
}


@dataclass(frozen=True, slots=True)
class McpCaller:
    """Who is calling: an API key, its tenant and, for a patient's key, the patient."""

    key_id: str
    tenant_id: str
    patient_id: str | None = None
    #: The locale asked for (``Accept-Language`` over HTTP); None: the tenant's default.
    locale: str | None = None


async def resolve_caller(
    services: Services, token: str | None, *, locale: str | None = None
) -> McpCaller:
    """The caller ``token`` (an API key) names; :class:`AuthError` if there is none.

    Publishable keys are refused like invalid ones: they live in web pages and may only
    chat."""
    if not token:
        raise AuthError("no API key", code="auth_required")
    key = await services.store.lookup_api_key(token)
    if key is None or key.kind != "secret":
        raise AuthError("invalid API key", code="auth_invalid")
    patient_id = await services.store.key_patient(key.id)
    return McpCaller(key_id=key.id, tenant_id=key.tenant_id, patient_id=patient_id, locale=locale)


def caller_locale(services: Services, caller: McpCaller) -> str:
    """The locale of the caller's calls: the one asked for, else their tenant's."""
    return caller.locale or tenant_locale(services.settings, caller.tenant_id)


def offered_tools(services: Services, caller: McpCaller, locale: str) -> ToolRegistry:
    """The tools ``caller`` may see and call: those a chat turn of theirs without images
    would be offered, less the image tools and, for keys that are not a patient's own,
    the tools that read consent-governed data."""
    turn = UserTurn(
        session_id="",
        text="",
        locale=locale,
        patient_id=caller.patient_id,
        tenant_id=caller.tenant_id,
    )
    return services.orchestrator.tools_for(turn).where(
        lambda t: (
            "images" not in t.permissions and (caller.patient_id is not None or not t.needs_consent)
        )
    )


def _mcp_tool(t: Tool) -> types.Tool:
    return types.Tool(name=t.name, description=t.description, input_schema=t.spec.parameters)


def _text(text: str) -> types.TextContent:
    return types.TextContent(type="text", text=text)


def _error(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[_text(message)], is_error=True)


def _structured(content: str) -> dict[str, Any] | None:
    try:
        value = json.loads(content)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def tool_result(outcome: ToolOutcome) -> types.CallToolResult:
    """An outcome as MCP returns it: the tool's JSON as text (and as structured content);
    a failed outcome, or a records lookup that could read nothing, as an error."""
    if not outcome.ok:
        return _error(outcome.content)
    structured = _structured(outcome.content)
    data = outcome.data
    if isinstance(data, RecordsResult) and data.summary is None and data.denied:
        # Nothing at all was readable: a refusal, which clients should show as one.
        return types.CallToolResult(
            content=[_text(data.how_to_grant), _text(outcome.content)],
            structured_content=structured,
            is_error=True,
        )
    return types.CallToolResult(content=[_text(outcome.content)], structured_content=structured)


def _call_digest(name: str, arguments: dict[str, Any]) -> str:
    """Ties an approval to the exact call it was asked for."""
    canonical = json.dumps([name, arguments], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _accepted(answer: object) -> bool:
    return (
        isinstance(answer, types.ElicitResult)
        and answer.action == "accept"
        and (answer.content or {}).get("approve") is True
    )


def _can_elicit(ctx: ServerRequestContext[Any, Any]) -> bool:
    wanted = types.ClientCapabilities(elicitation=types.ElicitationCapability())
    return ctx.session.check_client_capability(wanted)


def build_mcp_server(services: Services, *, caller: McpCaller | None = None) -> Server[Any]:
    """The MCP server of ``services``' tools.

    ``caller`` fixes who calls (stdio: one key for the process); without it every request
    must carry the caller the HTTP endpoint authenticated (:class:`McpHttpEndpoint`).
    """

    def caller_of(ctx: ServerRequestContext[Any, Any]) -> McpCaller:
        if caller is not None:
            return caller
        request = ctx.request
        found = request.scope.get(CALLER_SCOPE_KEY) if isinstance(request, Request) else None
        if not isinstance(found, McpCaller):
            raise MCPError(code=types.INVALID_REQUEST, message="no API key")
        return found

    async def list_tools(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        who = caller_of(ctx)
        offered = offered_tools(services, who, caller_locale(services, who))
        return types.ListToolsResult(tools=[_mcp_tool(t) for t in offered])

    async def approval(
        ctx: ServerRequestContext[Any, Any],
        params: types.CallToolRequestParams,
        t: Tool,
        locale: str,
    ) -> types.CallToolResult | types.InputRequiredResult | None:
        """None once the user approved this call; else the refusal or the question."""
        arguments = params.arguments or {}
        description = t.description.strip().splitlines()[0]
        message = localized(
            "mcp_approval_prompt", locale, catalogue=MESSAGES, tool=t.name, description=description
        )
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {
                "approve": {
                    "type": "boolean",
                    "title": localized("mcp_approval_field", locale, catalogue=MESSAGES),
                }
            },
            "required": ["approve"],
        }
        declined = _error(
            localized("mcp_approval_declined", locale, catalogue=MESSAGES, tool=t.name)
        )
        unsupported = _error(
            localized("mcp_approval_unsupported", locale, catalogue=MESSAGES, tool=t.name)
        )
        digest = _call_digest(t.name, arguments)
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            # 2026-07-28: the question goes back as an input_required result and the client
            # retries the call with the answer.
            answer = (params.input_responses or {}).get(APPROVAL_INPUT)
            if answer is None:
                if not _can_elicit(ctx):
                    return unsupported
                question = types.ElicitRequest(
                    params=types.ElicitRequestFormParams(message=message, requested_schema=schema)
                )
                return types.InputRequiredResult(
                    input_requests={APPROVAL_INPUT: question}, request_state=digest
                )
            if params.request_state != digest or not _accepted(answer):
                return declined
            return None
        if not _can_elicit(ctx) or not ctx.session.can_send_request:
            return unsupported
        answer = await ctx.session.elicit_form(message, schema, related_request_id=ctx.request_id)
        return None if _accepted(answer) else declined

    async def run(
        t: Tool, params: types.CallToolRequestParams, who: McpCaller, locale: str, call_id: str
    ) -> types.CallToolResult:
        orchestrator = services.orchestrator
        tool_ctx = ToolContext(
            session_id=call_id,
            locale=locale,
            settings=services.settings,
            patient_id=who.patient_id,
            tenant_id=who.tenant_id,
            knowledge=orchestrator.knowledge,
            stores=orchestrator.stores,
        )
        arguments = json.dumps(params.arguments or {}, ensure_ascii=False)
        try:
            outcome = await services.tools.run(call_id, t.name, arguments, tool_ctx)
        except HealTraceError as exc:
            log.warning("MCP call of tool %s failed: %s", t.name, exc.code)
            return _error(exc.message(locale))
        return tool_result(outcome)

    async def call_tool(
        ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult | types.InputRequiredResult:
        who = caller_of(ctx)
        locale = caller_locale(services, who)
        t = offered_tools(services, who, locale).get(params.name)
        if t is None:
            # Hidden and missing tools look the same: a caller learns nothing of the others.
            raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown tool: {params.name}")
        call_id = f"mcp-{uuid.uuid4().hex[:28]}"
        refused = await approval(ctx, params, t, locale) if t.needs_approval else None
        if isinstance(refused, types.InputRequiredResult):
            return refused
        result = refused if refused is not None else await run(t, params, who, locale, call_id)
        await services.audit.append(
            tenant_id=who.tenant_id,
            actor="mcp",
            action="mcp_tool_call",
            session_id=call_id,
            details={"tool": t.name, "ok": not result.is_error},
            patient_id=who.patient_id,
        )
        return result

    return Server(
        "healtrace",
        version=__version__,
        title="HealTrace",
        instructions=(
            "HealTrace's medical assistant tools. Results are general health information, "
            "not a diagnosis; tell the user to see a clinician about their own care."
        ),
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


def _auth_refusal(exc: AuthError, locale: str) -> JSONResponse:
    """401 with a JSON-RPC error body, which MCP clients show, naming HealTrace's code."""
    message = exc.message(locale)
    return JSONResponse(
        {
            "jsonrpc": "2.0",
            "id": None,
            "error": {"code": AUTH_ERROR, "message": message, "data": {"code": exc.code}},
        },
        status_code=401,
        headers={"WWW-Authenticate": "Bearer"},
    )


class McpHttp:
    """The streamable-HTTP side of a running service: the MCP server of its tools and the
    session manager, run with :meth:`run` inside the app's lifespan."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.server = build_mcp_server(services)
        self.sessions = StreamableHTTPSessionManager(app=self.server)

    @asynccontextmanager
    async def run(self) -> AsyncIterator[McpHttp]:
        async with self.sessions.run():
            yield self

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the request's API key (401 without a valid one), then serve it."""
        headers = Headers(scope=scope)
        settings = self.services.settings
        accept = headers.get("accept-language")
        asked = pick_locale(accept, settings.default_locale) if accept else None
        token = bearer_token(headers.get("authorization"), headers.get("x-api-key"))
        try:
            caller = await resolve_caller(self.services, token, locale=asked)
        except AuthError as exc:
            await _auth_refusal(exc, asked or settings.default_locale)(scope, receive, send)
            return
        # The session manager binds each MCP session to the key that opened it.
        user = AuthenticatedUser(
            AccessToken(token=caller.key_id, client_id=caller.key_id, scopes=[])
        )
        await self.sessions.handle_request(
            {**scope, "user": user, CALLER_SCOPE_KEY: caller}, receive, send
        )


class McpHttpEndpoint:
    """The ASGI endpoint of ``/mcp``; the app's lifespan puts its :class:`McpHttp` in
    ``app.state.mcp``."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        mcp: McpHttp = scope["app"].state.mcp
        await mcp.handle(scope, receive, send)


async def serve_stdio(settings: Settings, api_key: str, *, locale: str | None = None) -> None:
    """Serve the tools ``api_key`` may use over this process's stdin and stdout until the
    client closes them. Raises :class:`AuthError` for a key that is not a valid secret key.
    """
    from mcp.server.stdio import stdio_server

    # stdout is the protocol's: nothing else may write to it, start-up included.
    with contextlib.redirect_stdout(sys.stderr):
        services = await build_services(settings)
    try:
        caller = await resolve_caller(services, api_key, locale=locale)
        server = build_mcp_server(services, caller=caller)
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())
    finally:
        await services.aclose()


def create_mcp_app(settings: Settings) -> Starlette:
    """An ASGI app serving only the MCP endpoint, ``/mcp``, of a service built from
    ``settings`` (``healtrace serve`` serves it too, next to everything else)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        services = await build_services(settings)
        for problem in services.tools.load_errors:
            log.error("%s", problem)
        try:
            async with McpHttp(services).run() as app.state.mcp:
                yield
        finally:
            await services.aclose()

    return Starlette(routes=[Route("/mcp", McpHttpEndpoint())], lifespan=lifespan)
