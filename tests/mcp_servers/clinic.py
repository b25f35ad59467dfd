"""A small clinic MCP server for the MCP client tests.

``python clinic.py`` serves stdio; ``python clinic.py http`` serves streamable HTTP on a
free loopback port and prints the port on its first line of output.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations

server = MCPServer("clinic", log_level="WARNING")


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def next_appointment_slot(department: str) -> str:
    """The next free appointment slot in a department."""
    return f"{department}: Monday 09:30, room 2"


@server.tool()
def fully_booked(department: str) -> str:
    """Always fails: the department has no free slot."""
    raise ToolError(f"No free slots in {department} this week.")


@server.tool()
async def slow_lookup() -> str:
    """Takes far longer than any test allows."""
    await asyncio.sleep(600)
    return "too late"


@server.tool()
def environment_keys() -> list[str]:
    """The names of the server's environment variables."""
    return sorted(os.environ)


@server.tool()
def process_id() -> int:
    """The server's process id."""
    return os.getpid()


@server.tool()
def crash() -> str:
    """Ends the server process in the middle of the call."""
    os._exit(3)


def serve_http() -> None:
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    # Connections wait in the backlog until uvicorn accepts them, so the port can be
    # announced before the server is up.
    print(sock.getsockname()[1], flush=True)
    config = uvicorn.Config(server.streamable_http_app(), log_level="warning")
    asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))


if __name__ == "__main__":
    if sys.argv[1:] == ["http"]:
        serve_http()
    else:
        server.run()
