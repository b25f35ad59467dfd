"""Tool decorator, registry, run context and plugin loading."""

from healtrace.tools.core import (
    ENTRY_POINT_GROUP,
    Tool,
    ToolContext,
    ToolOutcome,
    ToolRegistry,
    ToolRetry,
    load_tools,
    make_tool,
    tool,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "Tool",
    "ToolContext",
    "ToolOutcome",
    "ToolRegistry",
    "ToolRetry",
    "load_tools",
    "make_tool",
    "tool",
]
