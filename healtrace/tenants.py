"""Per-tenant settings (``HEALTRACE_TENANTS``) and what they change: retrieval and locale.

A tenant is whoever an API key belongs to (a hospital, a clinic; ``default`` unless the key
names one). A tenant with its own knowledge collection — documents ingested with
``healtrace knowledge ingest PATH --collection NAME`` — gets excerpts from it, fused with the
shared default collection (the starter pack) unless it opts out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from healtrace.knowledge.fusion import reciprocal_rank_fusion

if TYPE_CHECKING:
    from healtrace.agent.citations import KnowledgeSearch, SearchHit
    from healtrace.config import Settings

__all__ = [
    "TenantConfig",
    "fuse_hits",
    "tenant_allows_tool",
    "tenant_config",
    "tenant_locale",
    "tenant_search",
]


class TenantConfig(BaseModel):
    """One tenant's settings, an entry of ``HEALTRACE_TENANTS`` keyed by tenant id."""

    #: The tenant's own knowledge collection; None: the default collection only.
    knowledge_collection: str | None = Field(default=None, min_length=1)
    #: Also search the default collection and fuse both lists (with a tenant collection).
    include_starter_pack: bool = True
    #: Locale of new sessions when neither the client nor ``Accept-Language`` names one;
    #: None: ``HEALTRACE_DEFAULT_LOCALE``.
    default_locale: Literal["en", "zh-CN"] | None = None
    #: How people know the tenant (e.g. the hospital's name).
    display_name: str = ""
    #: Only these tools (by name) are offered to the tenant's sessions; None: all.
    tools_enabled: list[str] | None = None
    #: Tools the tenant's sessions are never offered.
    tools_disabled: list[str] = Field(default_factory=list)


def tenant_config(settings: Settings, tenant_id: str | None) -> TenantConfig | None:
    """The settings of ``tenant_id`` (None: the ``default`` tenant), if it has any."""
    return settings.tenants.get(tenant_id or "default")


def tenant_allows_tool(settings: Settings, tenant_id: str | None, name: str) -> bool:
    """Whether ``tenant_id``'s sessions may be offered the tool ``name``."""
    if name in settings.tools_disabled:
        return False
    tenant = tenant_config(settings, tenant_id)
    if tenant is None:
        return True
    if tenant.tools_enabled is not None and name not in tenant.tools_enabled:
        return False
    return name not in tenant.tools_disabled


def tenant_locale(settings: Settings, tenant_id: str | None) -> str:
    """The locale a tenant's sessions fall back to."""
    tenant = tenant_config(settings, tenant_id)
    return (tenant.default_locale if tenant else None) or settings.default_locale


async def tenant_search(
    knowledge: KnowledgeSearch,
    query: str,
    *,
    k: int,
    settings: Settings,
    tenant_id: str | None,
    filters: dict[str, Any] | None = None,
) -> list[SearchHit]:
    """The ``k`` best excerpts for ``query`` from the collections ``tenant_id`` reads."""
    tenant = tenant_config(settings, tenant_id)
    own = tenant.knowledge_collection if tenant else None
    shared = settings.knowledge.default_collection
    # ``collection=`` only when there is one to name: simple knowledge bases (test fakes,
    # plugins) implement the search without it.
    if tenant is None or own is None:
        return list(await knowledge.asearch(query, k=k, filters=filters))
    hits = list(await knowledge.asearch(query, k=k, filters=filters, collection=own))
    if not tenant.include_starter_pack or own == shared:
        return hits
    # One search after the other, not gathered: the embedder is not known to be thread-safe.
    common = await knowledge.asearch(query, k=k, filters=filters, collection=shared)
    return fuse_hits([hits, common], k=k, rrf_k=settings.knowledge.rrf_k)


def fuse_hits(lists: Sequence[Sequence[SearchHit]], *, k: int, rrf_k: int = 60) -> list[SearchHit]:
    """The ``k`` best hits of several ranked lists by reciprocal rank fusion.

    A chunk id found in more than one list is one hit, the one of the earliest list (a
    tenant's copy of a document wins over the shared one); ties keep list order.
    """
    by_id: dict[str, SearchHit] = {}
    for hits in lists:
        for hit in hits:
            by_id.setdefault(hit.chunk_id, hit)
    fused = reciprocal_rank_fusion([[h.chunk_id for h in hits] for hits in lists], k=rrf_k)
    return [by_id[chunk_id] for chunk_id, _, _ in fused[:k]]
