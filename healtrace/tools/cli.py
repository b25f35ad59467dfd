"""``healtrace tools list``: every registered tool, where it comes from, what it needs."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import typer

from healtrace.config import Settings

tools_app = typer.Typer(no_args_is_help=True, help="Tools the assistant can call")


def describe_tools(settings: Settings, *, mcp: bool = True) -> dict[str, Any]:
    """The registered tools (plugins and, with ``mcp``, mounted MCP servers) and the
    plugins or servers that were skipped, as plain data."""
    from healtrace.tools.core import load_tools

    registry = load_tools(settings)

    async def with_mcp() -> None:
        from healtrace.mcp.client import mount_servers

        mounts = await mount_servers(settings, registry)
        await mounts.aclose()

    if mcp and settings.mcp_servers:
        asyncio.run(with_mcp())
    tools = [
        {
            "name": t.name,
            "source": t.source,
            "description": t.description,
            "permissions": list(t.permissions),
            "needs_consent": t.needs_consent,
            "needs_approval": t.needs_approval,
            "timeout_s": t.timeout_s if t.timeout_s is not None else registry.default_timeout_s,
            "locales": list(t.locales) or ["*"],
            "disabled_for_tenants": sorted(
                tid
                for tid, cfg in settings.tenants.items()
                if t.name in cfg.tools_disabled
                or (cfg.tools_enabled is not None and t.name not in cfg.tools_enabled)
            ),
            "schema": t.spec.parameters,
        }
        for t in registry
    ]
    return {"tools": tools, "skipped": list(registry.load_errors)}


@tools_app.command("list")
def tools_list(
    as_json: Annotated[bool, typer.Option("--json", help="Everything, as JSON.")] = False,
    schema: Annotated[bool, typer.Option("--schema", help="Show each argument schema.")] = True,
    mcp: Annotated[bool, typer.Option(help="Connect to HEALTRACE_MCP_SERVERS too.")] = True,
) -> None:
    """Every registered tool with its source, permissions and argument schema; plugins
    that were skipped, and why, come last (and make the exit status 1)."""
    info = describe_tools(Settings(), mcp=mcp)
    if as_json:
        typer.echo(json.dumps(info, ensure_ascii=False, indent=2))
    else:
        for t in info["tools"]:
            needs = [p for p in ("consent", "approval") if t[f"needs_{p}"]]
            typer.echo(
                f"{t['name']}  [{t['source']}]  permissions: {', '.join(t['permissions']) or '-'}"
                f"  needs: {', '.join(needs) or '-'}  timeout: {t['timeout_s']:g}s"
                f"  locales: {', '.join(t['locales'])}"
            )
            if t["disabled_for_tenants"]:
                typer.echo(f"    off for tenants: {', '.join(t['disabled_for_tenants'])}")
            typer.echo(f"    {t['description'].splitlines()[0]}")
            if schema:
                args = json.dumps(t["schema"].get("properties", {}), ensure_ascii=False)
                required = ", ".join(t["schema"].get("required", [])) or "-"
                typer.echo(f"    arguments: {args}")
                typer.echo(f"    required: {required}")
        for problem in info["skipped"]:
            typer.echo(f"SKIPPED {problem}", err=True)
    if info["skipped"]:
        raise typer.Exit(1)
