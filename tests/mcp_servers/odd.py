"""An MCP server whose tool listing has problems: one good tool, one with an invalid
input schema, one whose name a model cannot be offered. Serves stdio."""

from __future__ import annotations

import anyio
from mcp.server import Server, ServerRequestContext
from mcp.server.stdio import stdio_server
from mcp.types import (
    CallToolRequestParams,
    CallToolResult,
    ListToolsResult,
    PaginatedRequestParams,
    TextContent,
    Tool,
)

TOOLS = [
    Tool(
        name="echo",
        description="Repeats its text.",
        input_schema={"type": "object", "properties": {"text": {"type": "string"}}},
    ),
    Tool(
        name="broken_schema",
        description="Its schema uses a type JSON Schema does not have.",
        input_schema={"type": "object", "properties": {"n": {"type": "integr"}}},
    ),
    Tool(
        name="has spaces",
        description="Its name is not a valid function name.",
        input_schema={"type": "object", "properties": {}},
    ),
]


async def list_tools(
    ctx: ServerRequestContext[object], params: PaginatedRequestParams | None
) -> ListToolsResult:
    return ListToolsResult(tools=TOOLS)


async def call_tool(
    ctx: ServerRequestContext[object], params: CallToolRequestParams
) -> CallToolResult:
    text = str((params.arguments or {}).get("text", ""))
    return CallToolResult(content=[TextContent(type="text", text=text)])


server = Server("odd", on_list_tools=list_tools, on_call_tool=call_tool)


async def main() -> None:
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


if __name__ == "__main__":
    anyio.run(main)
