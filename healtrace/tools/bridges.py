"""Bridges between HealTrace tools and LangChain or LlamaIndex tools.

- :func:`from_langchain` and :func:`from_llamaindex` turn another library's tool into a
  HealTrace :class:`~healtrace.tools.core.Tool`. HealTrace checks the arguments against the
  schema the other library would send to a model, then that library runs the tool.
- :func:`to_langchain` and :func:`to_langchain_tools` hand HealTrace tools to a LangChain
  or LangGraph agent as ``StructuredTool`` objects whose OpenAI function spec is HealTrace's.

A plugin package can offer bridged tools through the ``healtrace.tools`` entry-point group::

    TOOLS = [from_langchain(my_lc_tool, permissions=("network",))]

The libraries are imported inside the functions, so importing this module costs nothing.
LangChain's core is a base dependency; LlamaIndex comes with the ``bridges`` extra.
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from healtrace.errors import ConfigurationError, ToolInfraError
from healtrace.tools.core import (
    Permission,
    Tool,
    ToolContext,
    ToolRegistry,
    ToolRetry,
    schema_tool,
    validation_text,
)

if TYPE_CHECKING:
    from langchain_core.messages import ToolMessage
    from langchain_core.tools import BaseTool as LangChainTool
    from langchain_core.tools import StructuredTool
    from llama_index.core.tools import BaseTool as LlamaIndexTool
    from llama_index.core.tools import ToolOutput

__all__ = ["from_langchain", "from_llamaindex", "to_langchain", "to_langchain_tools"]

_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9_-]+")
_RETRY_FALLBACK = "The tool could not run with those arguments; check them and try again."


def _tool_name(given: str | None, theirs: str | None, library: str) -> str:
    """``given`` as it is (``check_tool`` rejects a bad one), else ``theirs`` made into an
    OpenAI function name: other characters become "_", at most 64 characters."""
    if given is not None:
        return given
    cleaned = _NOT_IN_NAME.sub("_", theirs or "").strip("_")[:64]
    if not cleaned:
        raise TypeError(f"{library} tool {theirs!r} has no usable name; pass name=...")
    return cleaned


def from_langchain(
    tool: LangChainTool,
    *,
    name: str | None = None,
    permissions: Iterable[Permission] = (),
    needs_consent: bool = False,
    needs_approval: bool = False,
    timeout_s: float | None = None,
    locales: Iterable[str] = (),
    source: str = "langchain",
) -> Tool:
    """A LangChain tool (``@tool``, ``StructuredTool``, a ``BaseTool`` subclass) as a HealTrace
    tool.

    The model sees the tool's description and the parameters ``bind_tools`` would send: its
    call schema without injected arguments, ``$ref`` inlined. The tool runs as a model tool
    call (``await tool.ainvoke(tool_call)``), the way a LangChain agent runs it, so tools that
    take their call id get one, and sync-only tools run in a worker thread (a timeout stops
    the wait, not the thread). A ``ToolException``, a rejected argument, or an error the tool
    handles itself (``handle_tool_error``) goes back to the model as :class:`ToolRetry`; any
    other exception ends the turn. Arguments a LangChain tool has injected by its caller,
    other than the call id, are not supplied.
    """
    from langchain_core.messages import ToolMessage
    from langchain_core.messages.tool import tool_call
    from langchain_core.tools import BaseTool, ToolException
    from langchain_core.utils.function_calling import convert_to_openai_function

    if not isinstance(tool, BaseTool):
        raise TypeError(f"from_langchain needs a LangChain BaseTool, not {type(tool).__name__}")
    tool_name = _tool_name(name, tool.name, "LangChain")
    parameters = convert_to_openai_function(tool).get("parameters") or {"type": "object"}

    async def run(ctx: ToolContext, arguments: dict[str, Any]) -> str:
        call = tool_call(name=tool.name, args=arguments, id=f"call_{uuid.uuid4().hex}")
        try:
            out = await tool.ainvoke(call)
        except ToolException as exc:
            raise ToolRetry(str(exc) or _RETRY_FALLBACK) from exc
        except ValidationError as exc:
            raise ToolRetry(validation_text(exc)) from exc
        if not isinstance(out, ToolMessage):
            # A LangGraph Command or a list of them: graph control HealTrace has no use for.
            raise ToolInfraError(
                f"LangChain tool {tool.name} returned {type(out).__name__}, not a tool result",
                tool=tool_name,
            )
        text = _message_text(out)
        if out.status == "error":
            raise ToolRetry(text or _RETRY_FALLBACK)
        return text

    return schema_tool(
        tool_name,
        tool.description.strip(),
        parameters,
        run,
        timeout_s=timeout_s,
        permissions=permissions,
        needs_consent=needs_consent,
        needs_approval=needs_approval,
        locales=locales,
        source=source,
    )


def _message_text(message: ToolMessage) -> str:
    """The tool message's content as text: text blocks joined, anything else as JSON."""
    content = message.content
    if isinstance(content, str):
        return content
    texts: list[str] = []
    for block in content:
        if isinstance(block, str):
            texts.append(block)
        elif block.get("type") == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        else:
            return json.dumps(content, ensure_ascii=False, default=str)
    return "\n".join(texts)


def from_llamaindex(
    tool: LlamaIndexTool,
    *,
    name: str | None = None,
    permissions: Iterable[Permission] = (),
    needs_consent: bool = False,
    needs_approval: bool = False,
    timeout_s: float | None = None,
    locales: Iterable[str] = (),
    source: str = "llamaindex",
) -> Tool:
    """A LlamaIndex tool (``FunctionTool``, a query engine tool, any ``BaseTool``) as a
    HealTrace tool. Needs the ``bridges`` extra.

    The model sees ``tool.metadata``: its description and ``get_parameters_dict()``, what
    LlamaIndex sends to OpenAI. The call is ``await tool.acall(**arguments)`` (sync tools run
    in a worker thread). The result is the tool's raw output when that is JSON (or a pydantic
    model) and is what its text shows, else the output's text. An output marked
    ``is_error`` goes back to the model as :class:`ToolRetry`; an exception ends the turn,
    since LlamaIndex has no way to say "bad arguments" apart from "broken".
    """
    try:
        from llama_index.core.tools import BaseTool, FunctionTool, adapt_to_async_tool
    except ImportError as exc:
        raise ConfigurationError(
            "LlamaIndex tools need llama-index-core: pip install 'healtrace[bridges]'"
        ) from exc

    if not isinstance(tool, BaseTool):
        raise TypeError(f"from_llamaindex needs a LlamaIndex BaseTool, not {type(tool).__name__}")
    metadata = tool.metadata
    tool_name = _tool_name(name, metadata.name, "LlamaIndex")
    parameters = metadata.get_parameters_dict()
    runner = adapt_to_async_tool(tool)
    # LlamaIndex's own agents pass a one-parameter tool's argument positionally (query engine
    # tools take their input that way); function tools always get keywords.
    positional = not isinstance(tool, FunctionTool) and len(parameters.get("properties", {})) == 1

    async def run(ctx: ToolContext, arguments: dict[str, Any]) -> Any:
        if positional and len(arguments) == 1:
            out = await runner.acall(next(iter(arguments.values())))
        else:
            out = await runner.acall(**arguments)
        if out.is_error:
            raise ToolRetry(out.content or _RETRY_FALLBACK)
        return _output_value(out)

    return schema_tool(
        tool_name,
        metadata.description.strip(),
        parameters,
        run,
        timeout_s=timeout_s,
        permissions=permissions,
        needs_consent=needs_consent,
        needs_approval=needs_approval,
        locales=locales,
        source=source,
    )


def _output_value(out: ToolOutput) -> Any:
    raw, text = out.raw_output, out.content
    # When the text is not just str(raw) (a callback rewrote it, or raw is a document), the
    # text is what the tool meant the model to read.
    if text != str(raw):
        return text
    if isinstance(raw, BaseModel):
        return raw
    try:
        json.dumps(raw)
    except (TypeError, ValueError):
        return text
    return raw


def to_langchain(
    tool: Tool,
    context: ToolContext | Callable[[], ToolContext],
    *,
    default_timeout_s: float | None = None,
) -> StructuredTool:
    """A HealTrace tool as a LangChain ``StructuredTool``, for LangChain and LangGraph agents.

    ``args_schema`` is the tool's JSON schema (``tool.spec.parameters``), so ``bind_tools``
    sends the model the same function spec HealTrace does (LangChain drops the titles and
    inlines ``$ref``); a pydantic ``args_schema`` would lose ``additionalProperties`` and
    ``examples`` in LangChain's copy of the model. Each call runs exactly as in
    :meth:`ToolRegistry.run`: arguments checked by ``tool.parse``, the tool's timeout (else
    ``default_timeout_s``, else the registry's default), ``tool.call(ctx, args)``.

    ``context`` is a :class:`ToolContext`, or a function called for each call that returns
    one. A :class:`ToolRetry` becomes a ``ToolException`` that the tool handles, so the
    agent's model reads the message; an infrastructure failure raises
    :class:`~healtrace.errors.ToolInfraError`. The result is the text HealTrace's model would
    read (JSON for pydantic models); invoked with a tool call, the ``ToolMessage`` carries
    the Python value as its ``artifact``. The tool is async only (``ainvoke``).

    Consent, approval and permission gates are the orchestrator's, not the tool's: offer a
    LangChain agent only the tools it may run, e.g.
    ``registry.where(lambda t: not t.needs_approval)``. ``metadata["healtrace"]`` tells
    what each tool needs.
    """
    from langchain_core.tools import StructuredTool, ToolException

    registry = (
        ToolRegistry([tool])
        if default_timeout_s is None
        else ToolRegistry([tool], default_timeout_s=default_timeout_s)
    )

    async def run(**arguments: Any) -> tuple[str, Any]:
        ctx = context if isinstance(context, ToolContext) else context()
        # Through the registry, so the agent gets what HealTrace's own model would.
        outcome = await registry.run(
            f"call_{uuid.uuid4().hex}", tool.name, json.dumps(arguments, default=str), ctx
        )
        if not outcome.ok:
            raise ToolException(outcome.content)
        return outcome.content, outcome.data

    return StructuredTool(
        name=tool.name,
        description=tool.description,
        args_schema=copy.deepcopy(tool.spec.parameters),
        coroutine=run,
        handle_tool_error=True,
        response_format="content_and_artifact",
        metadata={
            "healtrace": {
                "source": tool.source,
                "permissions": list(tool.permissions),
                "needs_consent": tool.needs_consent,
                "needs_approval": tool.needs_approval,
            }
        },
    )


def to_langchain_tools(
    tools: ToolRegistry | Iterable[Tool],
    context: ToolContext | Callable[[], ToolContext],
    *,
    default_timeout_s: float | None = None,
) -> list[StructuredTool]:
    """:func:`to_langchain` for each tool; a registry's default timeout carries over."""
    if default_timeout_s is None and isinstance(tools, ToolRegistry):
        default_timeout_s = tools.default_timeout_s
    return [to_langchain(t, context, default_timeout_s=default_timeout_s) for t in tools]
