"""The knowledge base: dense (chroma) + lexical (BM25) retrieval fused by reciprocal rank.

Chroma holds every chunk's text, metadata and vector in the collection of the same name,
the source of truth. Two indexes are derived from it:

- the *language parts*, chroma collections ``<collection>--en`` and ``<collection>--zh-CN``
  holding each language's vectors again (with the filterable metadata, no text). Dense
  search runs per language (see :meth:`KnowledgeBase._dense`), and chroma answers a query
  with a ``where`` filter by scanning: 53 ms instead of 1.5 ms at 30k chunks. A part answers
  a one-language query from its own HNSW index, unfiltered. Writes through
  :class:`KnowledgeBase` keep the parts in step; a collection from before the parts is split
  when first opened.
- the BM25 index, saved under ``<dir>/bm25/<collection>`` and tagged with the collection's
  *generation* (a token every write through :class:`KnowledgeBase` renews), so it is
  reloaded when current and rebuilt from chroma's documents when not.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, assert_never, cast

import httpx
import numpy as np
from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection
from chromadb.api.types import Embeddable, EmbeddingFunction, Metadata, Where
from chromadb.errors import ChromaError, NotFoundError

from healtrace.knowledge._chroma import (
    PART_SEPARATOR,
    check_collection_name,
    close_client,
    embedding_function,
    open_client,
    translate_errors,
)
from healtrace.knowledge.chunking import Chunk, body_of
from healtrace.knowledge.config import KnowledgeConfig
from healtrace.knowledge.documents import detect_language
from healtrace.knowledge.embeddings import Embedder, Vectors, close_embedder, make_embedder
from healtrace.knowledge.errors import EmbedderMismatch, IndexUnavailable, KnowledgeError
from healtrace.knowledge.fusion import reciprocal_rank_fusion
from healtrace.knowledge.lexical import FILTER_FIELDS, LexicalIndex

SearchMode = Literal["hybrid", "dense", "lexical"]
Filters = Mapping[str, str | Sequence[str] | None]

_GENERATION = "healtrace_generation"
_EMBEDDER = "healtrace_embedder"
#: Set on a collection once its language parts exist (see the module docstring).
_LAYOUT = "healtrace_layout"
_PER_LANGUAGE = "language-parts"
_PAGE = 2000
LANGUAGES = ("en", "zh-CN")
_LANGUAGES = {"en": "en", "zh": "zh-CN", "zh-cn": "zh-CN", "zh_cn": "zh-CN", "zh-hans": "zh-CN"}


@dataclass(frozen=True, slots=True)
class Hit:
    """One retrieved chunk. Ranks are 1-based positions in each retriever's list."""

    chunk_id: str
    doc_id: str
    title: str
    section: str
    language: str
    source: str
    source_url: str
    source_title: str
    category: str
    #: The chunk's text without its heading-path prefix.
    text: str
    #: Reciprocal-rank-fusion score over the retrievers the search used.
    score: float
    dense_rank: int | None
    lexical_rank: int | None


def normalise_filters(filters: Filters | None) -> dict[str, list[str]]:
    """Filters as ``{field: [allowed values]}``; unknown fields are an error."""
    out: dict[str, list[str]] = {}
    for name, value in (filters or {}).items():
        if name not in FILTER_FIELDS:
            raise KnowledgeError(
                f"cannot filter on {name!r}; use one of {', '.join(FILTER_FIELDS)}"
            )
        if value is None:
            continue
        values = [value] if isinstance(value, str) else list(value)
        if name == "language":
            values = [_LANGUAGES.get(v.lower(), v) for v in values]
        out[name] = values
    return out


def _where(filters: Mapping[str, list[str]]) -> Where | None:
    clauses = [{name: {"$in": values}} for name, values in filters.items()]
    if not clauses:
        return None
    return cast(Where, clauses[0] if len(clauses) == 1 else {"$and": clauses})


class KnowledgeBase:
    """Hybrid search over named collections of chunks, plus the writes ingestion needs."""

    def __init__(
        self,
        client: ClientAPI,
        config: KnowledgeConfig,
        directory: Path,
        embedder: Embedder,
        *,
        owns_embedder: bool = True,
    ) -> None:
        self.client = client
        self.config = config
        self.directory = directory
        self.embedder = embedder
        # chroma types the parameter for text-or-image functions; ours embeds text only.
        self._chroma_function = cast("EmbeddingFunction[Embeddable]", embedding_function(embedder))
        self._owns_embedder = owns_embedder
        self._lexical: dict[str, LexicalIndex] = {}
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def open(
        cls, config: KnowledgeConfig, data_dir: Path, *, embedder: Embedder | None = None
    ) -> KnowledgeBase:
        """Open (creating if needed) the store ``config`` describes."""
        directory = config.resolved_dir(data_dir)
        client = open_client(config.chroma_url, directory / "chroma")
        return cls(
            client,
            config,
            directory,
            embedder if embedder is not None else make_embedder(config),
            owns_embedder=embedder is None,
        )

    def close(self) -> None:
        """Release the store and the embedder this object created. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._lexical.clear()
        close_client(self.client)
        if self._owns_embedder:
            close_embedder(self.embedder)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- collections --------------------------------------------------------------------

    def _name(self, collection: str | None) -> str:
        return check_collection_name(collection or self.config.default_collection)

    def collection(self, name: str | None = None, *, create: bool = True) -> Collection | None:
        """The chroma collection (created on first use when ``create``), or None."""
        name = self._name(name)
        col = self._open(
            name,
            create,
            {_GENERATION: uuid.uuid4().hex, _EMBEDDER: self.embedder.name, _LAYOUT: _PER_LANGUAGE},
        )
        if col is None:
            return None
        stored = (col.metadata or {}).get(_EMBEDDER)
        if stored is not None and stored != self.embedder.name:
            raise EmbedderMismatch(
                f"collection {name!r} holds {stored} vectors",
                name=name,
                stored=stored,
                current=self.embedder.name,
            )
        if (col.metadata or {}).get(_LAYOUT) != _PER_LANGUAGE:
            self._split_languages(col)
        return col

    def _part(self, col: Collection, language: str, *, create: bool) -> Collection | None:
        """The collection holding the vectors of ``col``'s chunks in ``language``, or None."""
        if language not in LANGUAGES:
            return None
        name = f"{col.name}{PART_SEPARATOR}{language}"
        return self._open(name, create, {_EMBEDDER: self.embedder.name})

    def _open(self, name: str, create: bool, metadata: dict[str, str]) -> Collection | None:
        try:
            if create:
                return self.client.get_or_create_collection(
                    name,
                    embedding_function=self._chroma_function,
                    configuration={"hnsw": {"space": "cosine"}},
                    metadata=metadata,
                )
            return self.client.get_collection(name, embedding_function=self._chroma_function)
        except NotFoundError:
            return None
        except ValueError as exc:
            # chroma's way of saying the collection was made with another function
            raise EmbedderMismatch(
                str(exc), name=name, stored="another embedder", current=self.embedder.name
            ) from exc
        except (ChromaError, httpx.HTTPError) as exc:
            raise IndexUnavailable(f"could not open collection {name!r}: {exc}") from exc

    def _split_languages(self, col: Collection) -> None:
        """Build the language parts of a collection stored before they existed."""
        with translate_errors(f"could not split collection {col.name!r} by language"):
            total = col.count()
            for offset in range(0, total, _PAGE):
                page = col.get(include=["metadatas", "embeddings"], limit=_PAGE, offset=offset)
                assert page["embeddings"] is not None
                self._write_parts(
                    col,
                    page["ids"],
                    page["metadatas"] or [],
                    np.asarray(page["embeddings"], dtype=np.float32),
                )
            col.modify(metadata={**(col.metadata or {}), _LAYOUT: _PER_LANGUAGE})

    def _write_parts(
        self,
        col: Collection,
        ids: Sequence[str],
        metadatas: Sequence[Mapping[str, Any]],
        vectors: Vectors,
        previous: Mapping[str, str] | None = None,
    ) -> None:
        """Store rows in their language parts; ``previous`` maps ids to their old language."""
        rows: dict[str, list[int]] = {}
        for row, meta in enumerate(metadatas):
            rows.setdefault(str(meta.get("language", "")), []).append(row)
        for language, picked in rows.items():
            part = self._part(col, language, create=True)
            if part is None:
                continue  # no language the dense search asks for
            part.upsert(
                ids=[ids[i] for i in picked],
                embeddings=vectors[picked],
                metadatas=[{f: metadatas[i][f] for f in FILTER_FIELDS} for i in picked],
            )
        moved: dict[str, list[str]] = {}
        for item, meta in zip(ids, metadatas, strict=True):
            old = (previous or {}).get(item)
            if old is not None and old != meta.get("language"):
                moved.setdefault(old, []).append(item)
        for language, gone in moved.items():
            part = self._part(col, language, create=False)
            if part is not None:
                part.delete(ids=gone)

    def _require(self, name: str | None) -> Collection:
        col = self.collection(name)
        assert col is not None
        return col

    def collections(self) -> list[str]:
        """Names of all collections in the store (not their language parts)."""
        with translate_errors("could not list collections"):
            names = (c.name for c in self.client.list_collections())
            return sorted(n for n in names if PART_SEPARATOR not in n)

    def count(self, collection: str | None = None) -> int:
        """Chunks in ``collection`` (0 if it does not exist)."""
        col = self.collection(collection, create=False)
        if col is None:
            return 0
        with translate_errors("could not count chunks"):
            return col.count()

    def metadata(self, collection: str | None = None) -> dict[str, Any]:
        """The collection's metadata (``{}`` if it does not exist)."""
        col = self.collection(collection, create=False)
        return dict(col.metadata or {}) if col is not None else {}

    def set_metadata(self, collection: str | None, **values: str | int) -> None:
        """Update the collection's metadata (keeping the rest) and renew its generation."""
        col = self._require(collection)
        merged = {**(col.metadata or {}), **values, _GENERATION: uuid.uuid4().hex}
        with translate_errors("could not update collection metadata"):
            col.modify(metadata=merged)

    def drop(self, collection: str) -> None:
        """Delete a whole collection, its language parts and its BM25 files."""
        name = self._name(collection)
        parts = {f"{name}{PART_SEPARATOR}{language}" for language in LANGUAGES}
        with translate_errors(f"could not delete collection {name!r}"):
            for col in self.client.list_collections():
                if col.name == name or col.name in parts:
                    self.client.delete_collection(col.name)
        with self._lock:
            self._lexical.pop(name, None)

    # -- writes -------------------------------------------------------------------------

    def existing_ids(self, collection: str | None, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` the collection already holds."""
        if not ids:
            return set()
        col = self._require(collection)
        with translate_errors("could not read chunk ids"):
            return set(col.get(ids=list(ids), include=[])["ids"])

    def pack_chunk_vectors(
        self, collection: str | None, source_prefix: str
    ) -> dict[str, tuple[str, Vectors]]:
        """``{chunk id: (content hash, vector)}`` for chunks whose source has the prefix."""
        col = self.collection(collection, create=False)
        out: dict[str, tuple[str, Vectors]] = {}
        if col is None:
            return out
        with translate_errors("could not read stored vectors"):
            total = col.count()
            for offset in range(0, total, _PAGE):
                page = col.get(include=["metadatas", "embeddings"], limit=_PAGE, offset=offset)
                embeddings = page["embeddings"]
                metadatas = page["metadatas"] or []
                assert embeddings is not None
                for item, meta, vector in zip(page["ids"], metadatas, embeddings, strict=True):
                    if str(meta.get("source", "")).startswith(source_prefix):
                        out[item] = (
                            str(meta.get("content_hash", "")),
                            np.asarray(vector, dtype=np.float32),
                        )
        return out

    def upsert(
        self, collection: str | None, chunks: Sequence[Chunk], vectors: Vectors | None = None
    ) -> None:
        """Store ``chunks`` (embedding them unless ``vectors`` are given, row per chunk)."""
        if not chunks:
            return
        if vectors is None:
            vectors = self.embedder.embed_passages([c.text for c in chunks])
        if vectors.shape != (len(chunks), self.embedder.dim):
            raise KnowledgeError(f"{len(chunks)} chunks but vectors of shape {vectors.shape}")
        col = self._require(collection)
        with translate_errors("could not store chunks"):
            step = max(1, min(self.client.get_max_batch_size(), 1000))
            for start in range(0, len(chunks), step):
                part = chunks[start : start + step]
                ids = [c.chunk_id for c in part]
                metadatas: list[Metadata] = [c.metadata() for c in part]
                rows = np.asarray(vectors[start : start + step], dtype=np.float32)
                old = col.get(ids=ids, include=["metadatas"])
                previous = {
                    i: str(m.get("language", ""))
                    for i, m in zip(old["ids"], old["metadatas"] or [], strict=True)
                }
                col.upsert(
                    ids=ids,
                    documents=[c.text for c in part],
                    metadatas=metadatas,
                    embeddings=rows,
                )
                self._write_parts(col, ids, metadatas, rows, previous)
        self.set_metadata(collection)

    def delete(self, collection: str | None, ids: Sequence[str]) -> None:
        """Remove chunks by id (unknown ids are ignored)."""
        if not ids:
            return
        col = self._require(collection)
        with translate_errors("could not delete chunks"):
            for language in LANGUAGES:
                part = self._part(col, language, create=False)
                if part is not None:
                    part.delete(ids=list(ids))
            col.delete(ids=list(ids))
        self.set_metadata(collection)

    # -- search -------------------------------------------------------------------------

    def lexical_index(
        self, collection: str | None = None, *, col: Collection | None = None
    ) -> LexicalIndex:
        """The collection's BM25 index: cached, loaded from disk, or rebuilt from chroma."""
        name = self._name(collection)
        if col is None:
            col = self.collection(name, create=False)
        generation = str((col.metadata or {}).get(_GENERATION, "")) if col is not None else ""
        with self._lock:
            cached = self._lexical.get(name)
            if cached is not None and cached.generation == generation:
                return cached
            path = self.directory / "bm25" / name
            index = LexicalIndex.load(path)
            if index is None or index.generation != generation:
                index = self._rebuild_lexical(col, generation)
                index.save(path)
            self._lexical[name] = index
            return index

    def _rebuild_lexical(self, col: Collection | None, generation: str) -> LexicalIndex:
        ids: list[str] = []
        texts: list[str] = []
        metadatas: list[Mapping[str, Any]] = []
        if col is not None:
            with translate_errors("could not read chunks for the BM25 index"):
                total = col.count()
                for offset in range(0, total, _PAGE):
                    page = col.get(include=["documents", "metadatas"], limit=_PAGE, offset=offset)
                    ids.extend(page["ids"])
                    texts.extend(page["documents"] or [])
                    metadatas.extend(page["metadatas"] or [])
        return LexicalIndex.build(generation, ids, texts, metadatas)

    def search(
        self,
        query: str,
        k: int = 5,
        collection: str | None = None,
        filters: Filters | None = None,
        *,
        mode: SearchMode = "hybrid",
    ) -> list[Hit]:
        """The ``k`` best chunks for ``query``; ``filters`` restrict both retrievers alike.

        ``filters`` maps ``language``, ``category`` or ``doc_id`` to a value or a list.
        """
        query = query.strip()
        if not query or k <= 0:
            return []
        name = self._name(collection)
        col = self.collection(name, create=False)
        if col is None:
            return []
        wanted = normalise_filters(filters)
        depth = max(k, self.config.candidates)
        if mode == "hybrid":
            kinds = ["dense", "lexical"]
        elif mode == "dense":
            kinds = ["dense"]
        elif mode == "lexical":
            kinds = ["lexical"]
        else:
            assert_never(mode)
        rankings: list[list[str]] = []
        if "dense" in kinds:
            rankings.append(self._dense(col, query, depth, wanted))
        if "lexical" in kinds:
            lexical = self.lexical_index(name, col=col)
            rankings.append([i for i, _ in lexical.search(query, depth, wanted)])
        fused = reciprocal_rank_fusion(rankings, k=self.config.rrf_k)[:k]
        return self._hits(col, fused, kinds)

    def _dense(
        self, col: Collection, query: str, depth: int, filters: Mapping[str, list[str]]
    ) -> list[str]:
        vector = np.asarray(self.embedder.embed_queries([query]), dtype=np.float32)
        # Multilingual E5 scores any passage in the query's language above the best passage
        # in the other language, so a Chinese question would never reach an English-only
        # document. Searching each language apart and interleaving the lists (the query's
        # language first) lets the best match in either language compete. Each language is
        # searched in its own part, which needs no (scanning) language filter.
        balance = self.config.balance_languages
        if "language" not in filters and not balance:
            return self._nearest(col, vector, depth, filters)
        languages = filters.get("language", list(LANGUAGES))
        if len(languages) > 1 and not balance:
            return self._nearest(col, vector, depth, filters)
        rest = {name: values for name, values in filters.items() if name != "language"}
        first = detect_language(query)
        lists = []
        for language in sorted(languages, key=lambda lang: lang != first):
            part = self._part(col, language, create=False)
            if part is not None:
                lists.append(self._nearest(part, vector, depth, rest))
        merged: list[str] = []
        for group in zip_longest(*lists):
            merged.extend(i for i in group if i is not None)
        return merged[:depth]

    def _nearest(
        self, col: Collection, vector: Vectors, depth: int, filters: Mapping[str, list[str]]
    ) -> list[str]:
        with translate_errors("vector search failed"):
            # chroma (1.x) returns what it has when asked for more results than it holds.
            result = col.query(
                query_embeddings=vector,
                n_results=depth,
                where=_where(filters),
                include=[],
            )
        return list(result["ids"][0]) if result["ids"] else []

    def _hits(
        self, col: Collection, fused: list[tuple[str, float, list[int | None]]], kinds: list[str]
    ) -> list[Hit]:
        if not fused:
            return []
        with translate_errors("could not read chunks"):
            got = col.get(ids=[item for item, _, _ in fused], include=["documents", "metadatas"])
        rows = {
            i: (doc or "", meta or {})
            for i, doc, meta in zip(
                got["ids"], got["documents"] or [], got["metadatas"] or [], strict=True
            )
        }
        hits: list[Hit] = []
        for item, score, ranks in fused:
            if item not in rows:
                continue  # deleted between the two reads
            text, meta = rows[item]
            by_kind = dict(zip(kinds, ranks, strict=True))
            title, section = str(meta.get("title", "")), str(meta.get("section", ""))
            hits.append(
                Hit(
                    chunk_id=item,
                    doc_id=str(meta.get("doc_id", "")),
                    title=title,
                    section=section,
                    language=str(meta.get("language", "")),
                    source=str(meta.get("source", "")),
                    source_url=str(meta.get("source_url", "")),
                    source_title=str(meta.get("source_title", "")),
                    category=str(meta.get("category", "")),
                    text=body_of(text, " > ".join(p for p in (title, section) if p)),
                    score=score,
                    dense_rank=by_kind.get("dense"),
                    lexical_rank=by_kind.get("lexical"),
                )
            )
        return hits

    async def asearch(
        self,
        query: str,
        *,
        k: int = 5,
        filters: Filters | None = None,
        collection: str | None = None,
        mode: SearchMode = "hybrid",
    ) -> list[Hit]:
        """:meth:`search` in a worker thread, so the event loop keeps serving."""
        return await asyncio.to_thread(self.search, query, k, collection, filters, mode=mode)
