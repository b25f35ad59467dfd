"""External MCP servers' tools, mounted into the tool registry the orchestrator uses.

:func:`mount_servers` connects to every server in ``HEALTRACE_MCP_SERVERS`` and registers
each of its tools as ``<server>__<tool>``, with the permissions, approval rule and timeout
the configuration gives (not what the server claims). A server that cannot be reached and a
tool that cannot be offered to a model are reported in ``registry.load_errors`` and
skipped; start-up goes on.

The SDK's sessions live in anyio task groups, which must be entered and left by one task.
Each connection therefore has a task of its own that opens it, waits, and closes it;
turns, running in other tasks, only send requests over it. A connection found dead before
a call is opened again once. A call during which the connection drops is not repeated
(it may have taken effect, or be what brought the server down): it fails the turn, and the
next call reconnects.

Arguments and results are patient data and never logged; logs name the server and the
tool. Header values may be credentials and are never logged either.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from types import TracebackType
from typing import Any, TextIO
from urllib.parse import urlsplit

import anyio
import httpx2
import mcp_types
from mcp import Client, StdioServerParameters, stdio_client
from mcp.client import Transport

# The stream types a Transport yields; the SDK exports them from here.
from mcp.client._transport import ReadStream, TransportStreams
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage
from pydantic import ValidationError

from healtrace.config import Settings
from healtrace.errors import ToolInfraError
from healtrace.mcp.config import McpServerConfig
from healtrace.tools.core import Tool, ToolContext, ToolRegistry, ToolRetry, schema_tool

__all__ = ["McpMounts", "mount_servers"]

log = logging.getLogger(__name__)

#: Environment variables a stdio server gets from HealTrace besides its ``env`` setting.
#: The SDK adds its own short list (HOME, LOGNAME, PATH, SHELL, TERM, USER); nothing else of
#: this process (API keys, database URLs, custody secrets) reaches the server.
_PASSED_ENV = ("PATH", "HOME", "LANG")
#: A server announcing more pages than this is treated as broken.
_MAX_TOOL_PAGES = 100
#: Seconds a streamed HTTP response may stay quiet (the call itself is bounded by timeout_s).
_HTTP_READ_TIMEOUT_S = 300.0
#: Seconds closing one connection may take before its task is cancelled (the SDK allows a
#: stdio server 2 s to exit after its stdin closes, then 2 s more after SIGTERM).
_CLOSE_TIMEOUT_S = 10.0
_TRANSPORT_ERRORS = (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError)


class McpMounts:
    """The MCP servers :func:`mount_servers` connected to; :meth:`aclose` ends them."""

    def __init__(self, links: Sequence[_Link] = ()) -> None:
        self._links = tuple(links)

    @property
    def servers(self) -> tuple[str, ...]:
        """Names of the servers whose tools are mounted."""
        return tuple(link.cfg.name for link in self._links)

    async def aclose(self) -> None:
        """Close every connection and wait for stdio servers to exit."""
        await asyncio.gather(*(link.aclose() for link in self._links))

    async def __aenter__(self) -> McpMounts:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


async def mount_servers(settings: Settings, registry: ToolRegistry) -> McpMounts:
    """Connect to each of ``settings.mcp_servers`` and register its tools in ``registry``.

    Servers are connected concurrently; each has ``timeout_s`` to connect, initialize and
    list its tools. Never raises for a server's problems: they land in
    ``registry.load_errors``. Await it in the task that later awaits
    :meth:`McpMounts.aclose` (the app lifespan); the tools may be called from any task.
    """
    links = [_Link(cfg) for cfg in settings.mcp_servers]
    try:
        opened = await asyncio.gather(*(link.open() for link in links), return_exceptions=True)
    except BaseException:
        # Cancelled (start-up aborted): the connection tasks must not outlive this call.
        await asyncio.gather(*(link.aclose() for link in links))
        raise
    mounted: list[_Link] = []
    disabled = set(settings.tools_disabled)
    for link, outcome in zip(links, opened, strict=True):
        name = link.cfg.name
        if isinstance(outcome, BaseException):
            if not isinstance(outcome, Exception):
                raise outcome
            _report(registry, f"MCP server {name!r} was skipped: {_reason(outcome, link.cfg)}")
            await link.aclose()
            continue
        mounted.append(link)
        count = 0
        for remote in _allowed(registry, link.cfg, outcome):
            tool_name = f"{name}__{remote.name}"
            if tool_name in disabled:
                continue
            try:
                made = _remote_tool(link, remote)
                registry.register(made)
            except (TypeError, ValueError) as exc:
                _report(registry, f"tool {remote.name!r} of MCP server {name!r} was skipped: {exc}")
                continue
            count += 1
        log.info("MCP server %s mounted: %d tool(s)", name, count)
    return McpMounts(mounted)


def _report(registry: ToolRegistry, message: str) -> None:
    log.error(message)
    registry.load_errors.append(message)


def _allowed(
    registry: ToolRegistry, cfg: McpServerConfig, remote: list[mcp_types.Tool]
) -> list[mcp_types.Tool]:
    if cfg.tools is None:
        return remote
    offered = {t.name for t in remote}
    missing = [name for name in cfg.tools if name not in offered]
    if missing:
        _report(
            registry,
            f"MCP server {cfg.name!r} does not offer {', '.join(missing)} "
            "(named in its tools setting)",
        )
    wanted = set(cfg.tools)
    return [t for t in remote if t.name in wanted]


def _reason(exc: BaseException, cfg: McpServerConfig) -> str:
    """What went wrong, from the innermost error (task groups wrap them in groups)."""
    exc = _innermost(exc)
    if isinstance(exc, TimeoutError):
        return f"it did not answer within {cfg.timeout_s:g}s (timeout_s)"
    detail = str(exc) or "no detail"
    return f"cannot connect to {_where(cfg)}: {type(exc).__name__}: {detail}"


def _where(cfg: McpServerConfig) -> str:
    """The command or URL, without what may be a credential (arguments, user info, query)."""
    if cfg.transport == "stdio":
        return cfg.command[0]
    url = urlsplit(cfg.url)
    host = url.hostname or ""
    port = f":{url.port}" if url.port else ""
    return f"{url.scheme}://{host}{port}{url.path}"


def _remote_tool(link: _Link, remote: mcp_types.Tool) -> Tool:
    """The registry's view of one remote tool; ``TypeError`` if a model cannot be offered it."""
    cfg = link.cfg
    name = f"{cfg.name}__{remote.name}"
    remote_name = remote.name

    async def call(ctx: ToolContext, arguments: dict[str, Any]) -> Any:
        return _result_value(name, await link.call(name, remote_name, arguments))

    description = (remote.description or remote.title or "").strip()
    return schema_tool(
        name,
        description or f"The {remote_name} tool of the {cfg.name} MCP server.",
        dict(remote.input_schema),
        call,
        timeout_s=cfg.timeout_s,
        permissions=cfg.permissions,
        needs_approval=cfg.needs_approval,
        source=f"mcp:{cfg.name}",
    )


def _result_value(name: str, result: mcp_types.CallToolResult) -> Any:
    """What the model sees: the structured content if there is any, else the text parts."""
    if result.is_error:
        raise ToolRetry(_content_text(result.content) or f"{name} failed without saying why.")
    if result.structured_content is not None:
        return result.structured_content
    return _content_text(result.content)


def _content_text(content: Sequence[mcp_types.ContentBlock]) -> str:
    parts: list[str] = []
    for block in content:
        if isinstance(block, mcp_types.TextContent):
            parts.append(block.text)
        elif isinstance(block, mcp_types.EmbeddedResource) and isinstance(
            block.resource, mcp_types.TextResourceContents
        ):
            parts.append(block.resource.text)
        elif isinstance(block, mcp_types.ResourceLink):
            parts.append(f"[resource: {block.uri}]")
        else:
            parts.append(f"[{block.type} content, not shown]")
    return "\n".join(parts)


class _Link:
    """One configured server: its current connection, opened again when found dead."""

    def __init__(self, cfg: McpServerConfig) -> None:
        self.cfg = cfg
        self._current: _Connection | None = None
        #: Every connection not yet closed (a replaced one may still be winding down).
        self._open: list[_Connection] = []
        self._lock = asyncio.Lock()
        self._closed = False

    async def open(self) -> list[mcp_types.Tool]:
        """Connect; the server's tools. Raises what connecting raised."""
        conn = self._connect()
        _client, tools = await conn.opened()
        return tools

    def _connect(self) -> _Connection:
        conn = _Connection(self.cfg)
        self._current = conn
        self._open = [c for c in self._open if not c.finished]
        self._open.append(conn)
        return conn

    async def _connection(self, tool: str) -> _Connection:
        """The live connection, reconnecting once if the last one ended."""
        conn = self._current
        if conn is not None and conn.alive:
            return conn
        async with self._lock:
            if self._closed:
                raise ToolInfraError(f"MCP server {self.cfg.name} is closed", tool=tool)
            conn = self._current
            # Alive: another call reconnected meanwhile. Connecting: a call cancelled while
            # reconnecting left its attempt running.
            if conn is None or not (conn.alive or conn.connecting):
                if conn is not None:
                    await conn.aclose()
                log.warning("MCP server %s: connection lost; reconnecting", self.cfg.name)
                conn = self._connect()
            try:
                await conn.opened()
            except Exception as exc:  # every cause means "unreachable"
                cause = type(_innermost(exc)).__name__
                log.error("MCP server %s: reconnecting failed: %s", self.cfg.name, cause)
                raise ToolInfraError(
                    f"MCP server {self.cfg.name} is unreachable: {_reason(exc, self.cfg)}",
                    tool=tool,
                ) from exc
            return conn

    async def call(
        self, tool: str, remote: str, arguments: dict[str, Any]
    ) -> mcp_types.CallToolResult:
        conn = await self._connection(tool)
        try:
            return await conn.client.call_tool(remote, arguments)
        except MCPError as exc:
            if exc.code == mcp_types.INVALID_PARAMS:
                raise ToolRetry(exc.message or "The arguments were rejected.") from exc
            if exc.code == mcp_types.CONNECTION_CLOSED:
                conn.lost()
                problem = "lost the connection"
            else:
                problem = f"was refused (error {exc.code})"
            log.warning("MCP server %s: call to %s %s", self.cfg.name, remote, problem)
            raise ToolInfraError(f"tool {tool} failed: MCP error {exc.code}", tool=tool) from exc
        except _TRANSPORT_ERRORS as exc:
            conn.lost()
            log.warning(
                "MCP server %s: call to %s failed: %s", self.cfg.name, remote, type(exc).__name__
            )
            raise ToolInfraError(f"tool {tool} failed: {type(exc).__name__}", tool=tool) from exc
        except (ValidationError, RuntimeError) as exc:
            # The SDK checks results against the protocol and the tool's output schema.
            log.warning("MCP server %s: %s sent an invalid result", self.cfg.name, remote)
            raise ToolInfraError(f"tool {tool} sent an invalid result", tool=tool) from exc

    async def aclose(self) -> None:
        self._closed = True
        conns, self._open, self._current = self._open, [], None
        await asyncio.gather(*(c.aclose() for c in conns))


class _Connection:
    """One session with a server, opened, held and closed by a task of its own."""

    def __init__(self, cfg: McpServerConfig) -> None:
        self.cfg = cfg
        loop = asyncio.get_running_loop()
        self._ready: asyncio.Future[tuple[Client, list[mcp_types.Tool]]] = loop.create_future()
        # Retrieved even when nobody waits any more (a cancelled reconnect), so asyncio
        # does not report a lost exception.
        self._ready.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._stop = asyncio.Event()
        #: The server stopped sending (its process ended, the stream was cut), or a call
        #: found the connection closed.
        self._ended = False
        self._task = loop.create_task(self._run(), name=f"mcp-server-{cfg.name}")

    @property
    def finished(self) -> bool:
        return self._task.done()

    @property
    def connecting(self) -> bool:
        return not self._ready.done() and not self._task.done()

    @property
    def alive(self) -> bool:
        return (
            self._ready.done()
            and not self._ready.cancelled()
            and self._ready.exception() is None
            and not self._ended
            and not self._task.done()
        )

    @property
    def client(self) -> Client:
        return self._ready.result()[0]

    async def opened(self) -> tuple[Client, list[mcp_types.Tool]]:
        """The connected client and the server's tools, once connected; raises if it failed."""
        waiters: set[asyncio.Future[Any]] = {self._ready, self._task}
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        if not self._ready.done():
            raise ConnectionError("the connection task ended before connecting")
        return self._ready.result()

    async def aclose(self) -> None:
        self._stop.set()
        _done, pending = await asyncio.wait({self._task}, timeout=_CLOSE_TIMEOUT_S)
        if pending:
            log.warning("MCP server %s: closing took too long; cancelled", self.cfg.name)
            self._task.cancel()
            await asyncio.wait({self._task})

    def lost(self) -> None:
        """Take it out of use: the next call opens a new connection."""
        self._ended = True

    async def _run(self) -> None:
        try:
            with anyio.fail_after(self.cfg.timeout_s) as deadline:
                async with AsyncExitStack() as stack:
                    client = await stack.enter_async_context(
                        Client(_watched(_transport(self.cfg, stack), self.lost))
                    )
                    tools = await _list_tools(client)
                    deadline.deadline = math.inf
                    self._ready.set_result((client, tools))
                    await self._stop.wait()
        except Exception as exc:  # noqa: BLE001 - reported to the waiter or logged
            if not self._ready.done():
                self._ready.set_exception(exc)
            else:
                cause = type(_innermost(exc)).__name__
                log.warning("MCP server %s: the connection ended with %s", self.cfg.name, cause)


def _innermost(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


async def _list_tools(client: Client) -> list[mcp_types.Tool]:
    tools: list[mcp_types.Tool] = []
    cursor: str | None = None
    for _ in range(_MAX_TOOL_PAGES):
        page = await client.list_tools(cursor=cursor)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if cursor is None:
            return tools
    raise ValueError(f"the tool list has more than {_MAX_TOOL_PAGES} pages")


def _transport(cfg: McpServerConfig, stack: AsyncExitStack) -> Transport:
    if cfg.transport == "stdio":
        params = StdioServerParameters(
            command=cfg.command[0],
            args=cfg.command[1:],
            env={k: os.environ[k] for k in _PASSED_ENV if k in os.environ} | cfg.env,
        )
        return stdio_client(params, errlog=_child_stderr(stack))
    http = httpx2.AsyncClient(
        headers=cfg.headers,
        timeout=httpx2.Timeout(cfg.timeout_s, read=max(cfg.timeout_s, _HTTP_READ_TIMEOUT_S)),
    )
    stack.push_async_callback(http.aclose)
    return streamable_http_client(cfg.url, http_client=http)


def _child_stderr(stack: AsyncExitStack) -> TextIO:
    """Where a stdio server's own log goes: this process's stderr, as for any child process
    (never into HealTrace's log, since a server may log what it was asked)."""
    for stream in (sys.stderr, sys.__stderr__):
        if stream is None:
            continue
        try:
            stream.fileno()
        except (AttributeError, OSError, ValueError):
            continue  # replaced by something without a file descriptor (a test runner)
        return stream
    devnull = open(os.devnull, "w")  # noqa: SIM115 - closed with the connection
    stack.callback(devnull.close)
    return devnull


def _watched(
    transport: Transport, on_end: Callable[[], None]
) -> AbstractAsyncContextManager[TransportStreams]:
    """``transport``, with ``on_end()`` called once the server's messages stop coming."""

    @asynccontextmanager
    async def watched() -> AsyncIterator[TransportStreams]:
        async with transport as (read_stream, write_stream):
            yield _EndWatch(read_stream, on_end), write_stream

    return watched()


class _EndWatch:
    """A read stream that reports its end (the session only sees "connection closed")."""

    def __init__(
        self, inner: ReadStream[SessionMessage | Exception], on_end: Callable[[], None]
    ) -> None:
        self._inner = inner
        self._on_end = on_end

    @property
    def last_context(self) -> Any:
        # The dispatcher looks for it on streams that carry the sender's context.
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> SessionMessage | Exception:
        try:
            return await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._on_end()
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __aiter__(self) -> _EndWatch:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self._inner.__anext__()
        except (StopAsyncIteration, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._on_end()
            raise

    async def __aenter__(self) -> _EndWatch:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._inner.aclose()
