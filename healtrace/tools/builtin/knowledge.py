"""Search the medical knowledge base; results are numbered for citation."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from healtrace.agent.citations import render_excerpts
from healtrace.tenants import tenant_search
from healtrace.tools.core import ToolContext, ToolRetry, tool


@tool(timeout_s=10.0, permissions=["knowledge"])
async def search_knowledge(
    ctx: ToolContext,
    query: Annotated[
        str, Field(min_length=2, max_length=500, examples=["chest pain warning signs"])
    ],
    k: Annotated[int, Field(ge=1, le=8)] = 4,
    language: Literal["en", "zh-CN"] | None = None,
) -> str:
    """Search HealTrace's medical knowledge base for facts to answer a health question.

    Returns numbered excerpts; cite the ones you use with their numbers, like [1].

    Args:
        query: What to look for, in the user's words or as medical terms (any language).
        k: How many excerpts to return.
        language: Only excerpts in this language; omit to search both.
    """
    if ctx.knowledge is None:
        raise ToolRetry("No knowledge base is configured; answer without it and say so.")
    filters = {"language": language} if language else None
    hits = await tenant_search(
        ctx.knowledge,
        query,
        k=k,
        settings=ctx.settings,
        tenant_id=ctx.tenant_id,
        filters=filters,
    )
    if not hits:
        raise ToolRetry(
            "The knowledge base has nothing on that. Try other words, or tell the user the "
            "knowledge base does not cover it."
        )
    return render_excerpts(ctx.citations.add(hits))
