"""``healtrace mcp serve``: HealTrace's tools for MCP clients, over stdio or HTTP."""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated, Literal

import typer

from healtrace.config import ScriptedBackendConfig, Settings
from healtrace.errors import HealTraceError
from healtrace.logs import configure_logging

mcp_app = typer.Typer(
    no_args_is_help=True, help="HealTrace's tools over the Model Context Protocol"
)


@mcp_app.command("serve")
def serve(
    transport: Annotated[
        str, typer.Option(help="stdio (for a client that starts this command) or http")
    ] = "stdio",
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="HEALTRACE_MCP_API_KEY",
            help="stdio: the API key whose tools are served (a patient key for their records)",
        ),
    ] = None,
    locale: Annotated[
        str | None, typer.Option(help="stdio: en or zh-CN (default: the key's tenant's)")
    ] = None,
    host: Annotated[str | None, typer.Option(help="http: bind address (HEALTRACE_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="http: port (HEALTRACE_PORT)")] = None,
    offline: Annotated[
        bool, typer.Option(help="Use the scripted demo model instead of the configured ones")
    ] = False,
) -> None:
    """Serve the tools to MCP clients. Over http the endpoint is /mcp and every request
    needs the header "Authorization: Bearer KEY"; healtrace serve serves /mcp as well."""
    chosen: Literal["stdio", "http"]
    if transport == "stdio":
        chosen = "stdio"
    elif transport == "http":
        chosen = "http"
    else:
        raise typer.BadParameter("stdio or http", param_hint="--transport")
    overrides: dict[str, object] = {}
    if host:
        overrides["host"] = host
    if port:
        overrides["port"] = port
    if offline:
        overrides["llm_backends"] = [ScriptedBackendConfig()]
    settings = Settings(**overrides)  # type: ignore[arg-type]
    # stdout carries the protocol in stdio mode: every log line goes to stderr.
    configure_logging(settings.log_level, stream=sys.stderr, settings=settings)
    if chosen == "http":
        import uvicorn

        from healtrace.mcp.server import create_mcp_app

        uvicorn.run(
            create_mcp_app(settings),
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level,
            log_config=None,
            proxy_headers=True,
        )
        return
    if not api_key:
        typer.echo(
            "healtrace mcp serve --transport stdio needs an API key: set HEALTRACE_MCP_API_KEY "
            "or pass --api-key (create one with `healtrace keys create NAME`).",
            err=True,
        )
        raise typer.Exit(2)
    from healtrace.mcp.server import serve_stdio

    try:
        asyncio.run(serve_stdio(settings, api_key, locale=locale))
    except HealTraceError as exc:
        typer.echo(f"healtrace mcp serve: {exc.message('en')}", err=True)
        raise typer.Exit(1) from exc
