"""Settings of the MCP servers HealTrace mounts (``HEALTRACE_MCP_SERVERS``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

McpPermission = Literal["records", "rewards", "network", "images", "speech", "knowledge"]
_NETWORK: list[McpPermission] = ["network"]


class McpServerConfig(BaseModel):
    """One external MCP server whose tools the orchestrator may call.

    Its tools appear as ``<name>__<tool>`` with the permissions, approval rule and timeout
    given here (the server's own claims about its tools are not trusted).
    """

    #: Namespace of its tools (``<name>__<tool>``).
    name: str = Field(pattern=r"^[A-Za-z0-9_]{1,24}$")
    transport: Literal["stdio", "http"]
    #: stdio: the command and its arguments that start the server.
    command: list[str] = Field(default_factory=list)
    #: stdio: environment variables for it (nothing of HealTrace's own is passed on).
    env: dict[str, str] = Field(default_factory=dict)
    #: http: the streamable-HTTP endpoint, e.g. ``https://tools.example.org/mcp``.
    url: str = ""
    #: http: headers sent with every request (an ``Authorization`` token, say).
    headers: dict[str, str] = Field(default_factory=dict)
    #: Seconds a call may take; also the limit for connecting and listing tools.
    timeout_s: float = Field(default=20.0, gt=0)
    #: What its tools may reach, as for plugin tools; "network" by default.
    permissions: list[McpPermission] = Field(default_factory=lambda: list(_NETWORK))
    #: Every call needs the patient's approval first.
    needs_approval: bool = False
    #: Only these of its tools (by their own names); None: all.
    tools: list[str] | None = None

    @model_validator(mode="after")
    def _transport_fields(self) -> McpServerConfig:
        if self.transport == "stdio" and not self.command:
            raise ValueError(f"MCP server {self.name}: stdio needs a command")
        if self.transport == "http" and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"MCP server {self.name}: http needs an http(s) url")
        return self
