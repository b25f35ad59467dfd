"""Sources for one turn: numbered excerpts the model may cite as [1], [2], ...

Retrieval (up front, and through the ``search_knowledge`` tool) adds excerpts to the turn's
:class:`CitationLedger`, which numbers them once per turn. After the answer, the markers
it actually uses become ``citation`` events and are stored with the message.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

_MARKER = re.compile(r"\[(\d{1,3})\]")
SNIPPET_CHARS = 240


class SearchHit(Protocol):
    """What a knowledge base returns for one matching chunk."""

    @property
    def chunk_id(self) -> str: ...
    @property
    def doc_id(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def section(self) -> str: ...
    @property
    def source_url(self) -> str: ...
    @property
    def source_title(self) -> str: ...
    @property
    def language(self) -> str: ...
    @property
    def text(self) -> str: ...


class KnowledgeSearch(Protocol):
    async def asearch(
        self,
        query: str,
        *,
        k: int = 5,
        filters: dict[str, Any] | None = None,
        collection: str | None = None,
    ) -> Sequence[SearchHit]:
        """The ``k`` best chunks of ``collection`` (None: the default one) for ``query``."""
        ...


@dataclass(frozen=True, slots=True)
class Source:
    marker: int
    chunk_id: str
    doc_id: str
    title: str
    section: str
    source_url: str
    source_title: str
    language: str
    text: str

    @property
    def snippet(self) -> str:
        flat = " ".join(self.text.split())
        return flat if len(flat) <= SNIPPET_CHARS else flat[: SNIPPET_CHARS - 1] + "…"

    def stored(self) -> dict[str, Any]:
        """What the message row keeps (everything but the full text)."""
        data = asdict(self)
        data.pop("text")
        data["snippet"] = self.snippet
        return data


@dataclass
class CitationLedger:
    sources: list[Source] = field(default_factory=list)

    def add(self, hits: Sequence[SearchHit]) -> list[Source]:
        """Number new hits (a chunk seen before keeps its number); return them in order."""
        known = {s.chunk_id: s for s in self.sources}
        out = []
        for hit in hits:
            source = known.get(hit.chunk_id)
            if source is None:
                source = Source(
                    marker=len(self.sources) + 1,
                    chunk_id=hit.chunk_id,
                    doc_id=hit.doc_id,
                    title=hit.title,
                    section=hit.section,
                    source_url=hit.source_url,
                    source_title=hit.source_title,
                    language=hit.language,
                    text=hit.text,
                )
                self.sources.append(source)
                known[hit.chunk_id] = source
            out.append(source)
        return out

    def cited_in(self, answer: str) -> list[Source]:
        """The sources whose markers appear in ``answer``, in order of first use."""
        by_marker = {s.marker: s for s in self.sources}
        seen: list[Source] = []
        for match in _MARKER.finditer(answer):
            source = by_marker.get(int(match.group(1)))
            if source is not None and source not in seen:
                seen.append(source)
        return seen


def render_excerpts(sources: Sequence[Source]) -> str:
    """Numbered excerpts as the model sees them."""
    blocks = []
    for s in sources:
        heading = f"{s.title} — {s.section}" if s.section and s.section != s.title else s.title
        blocks.append(f"[{s.marker}] {heading}\n{s.text.strip()}")
    return "\n\n".join(blocks)
