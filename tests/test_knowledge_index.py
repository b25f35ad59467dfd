"""Hybrid index with the fake embedder; the OpenAI-compatible embedder over MockTransport."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from healtrace.knowledge import (
    EmbedderMismatch,
    EmbedderUnavailable,
    FakeEmbedder,
    KnowledgeBase,
    KnowledgeConfig,
    OpenAIEmbedder,
    SearchMode,
    chunk_document,
    load_document,
)
from healtrace.knowledge.errors import CollectionError
from healtrace.knowledge.lexical import LexicalIndex

DOCS = Path(__file__).parent / "data" / "knowledge" / "docs"
CONFIG = KnowledgeConfig(embedder="fake")


def _fill(kb: KnowledgeBase, collection: str = "docs") -> None:
    for path in sorted(DOCS.iterdir()):
        kb.upsert(collection, chunk_document(load_document(path)))


@pytest.fixture
def kb(tmp_path: Path) -> Iterator[KnowledgeBase]:
    with KnowledgeBase.open(CONFIG, tmp_path) as opened:
        _fill(opened)
        yield opened


def test_hybrid_search_returns_fused_hits(kb: KnowledgeBase) -> None:
    hits = kb.search("reliever inhaler for asthma", k=3, collection="docs")
    top = hits[0]
    assert top.doc_id == "asthma-basics" and top.section == "Inhalers"
    assert top.text.startswith("A reliever inhaler") and "Asthma: inhalers" not in top.text
    assert top.title == "Asthma: inhalers and attacks" and top.language == "en"
    assert top.source_url == "https://www.nhs.uk/conditions/asthma/"
    assert top.source_title == "NHS: Asthma" and top.category == "conditions"
    assert top.source.endswith("asthma.md")
    assert top.dense_rank is not None and top.lexical_rank is not None
    assert top.score == pytest.approx(1 / (60 + top.dense_rank) + 1 / (60 + top.lexical_rank))
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert kb.count("docs") == 10


def test_modes_use_one_retriever_each(kb: KnowledgeBase) -> None:
    dense = kb.search("metformin glucose", k=2, collection="docs", mode="dense")
    assert all(h.lexical_rank is None and h.dense_rank is not None for h in dense)
    lexical = kb.search("metformin glucose", k=2, collection="docs", mode="lexical")
    assert all(h.dense_rank is None and h.lexical_rank is not None for h in lexical)
    assert lexical[0].section == "Checking glucose"
    assert kb.search("zzzqqq", k=2, collection="docs", mode="lexical") == []


@pytest.mark.parametrize("mode", ["hybrid", "dense", "lexical"])
def test_filters_apply_to_both_retrievers(kb: KnowledgeBase, mode: SearchMode) -> None:
    zh = kb.search("睡眠 高血压", k=5, collection="docs", filters={"language": "zh-CN"}, mode=mode)
    assert zh and {h.language for h in zh} == {"zh-CN"}
    en = kb.search(
        "高血压 blood pressure", k=5, collection="docs", filters={"language": "en"}, mode=mode
    )
    assert en and {h.language for h in en} == {"en"}
    by_doc = kb.search(
        "asthma blood pressure",
        k=5,
        collection="docs",
        filters={"doc_id": ["asthma-basics"]},
        mode=mode,
    )
    assert by_doc and {h.doc_id for h in by_doc} == {"asthma-basics"}
    both = kb.search(
        "asthma",
        k=5,
        collection="docs",
        filters={"category": "conditions", "language": "en"},
        mode=mode,
    )
    assert both and {h.category for h in both} == {"conditions"}


def test_empty_and_missing_collections(kb: KnowledgeBase) -> None:
    assert kb.search("asthma", collection="nothing-here") == []
    assert kb.count("nothing-here") == 0
    assert kb.search("   ", collection="docs") == []
    with pytest.raises(CollectionError):
        kb.search("asthma", collection="no spaces allowed")


def test_each_language_is_searched_in_its_own_part_without_a_filter(
    kb: KnowledgeBase, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, dict[str, list[str]]]] = []
    real_nearest = KnowledgeBase._nearest

    def spy(self: KnowledgeBase, col: Any, vector: Any, depth: int, filters: Any) -> list[str]:
        calls.append((col.name, dict(filters)))
        return real_nearest(self, col, vector, depth, filters)

    monkeypatch.setattr(KnowledgeBase, "_nearest", spy)
    assert kb.collections() == ["docs"]
    raw = sorted(c.name for c in kb.client.list_collections())
    assert raw == ["docs", "docs--en", "docs--zh-CN"]
    en = kb.search("blood pressure", k=3, collection="docs", filters={"language": "en"})
    assert en and {h.language for h in en} == {"en"}
    assert calls == [("docs--en", {})]
    calls.clear()
    kb.search("高血压", k=3, collection="docs", mode="dense")
    assert calls == [("docs--zh-CN", {}), ("docs--en", {})]  # the query's language first
    calls.clear()
    kb.search("asthma", k=3, collection="docs", filters={"category": "conditions"}, mode="dense")
    assert [name for name, _ in calls] == ["docs--en", "docs--zh-CN"]
    assert all(f == {"category": ["conditions"]} for _, f in calls)
    with pytest.raises(CollectionError):
        kb.search("asthma", collection="docs--en")


def test_language_parts_follow_deletes_and_drops(kb: KnowledgeBase) -> None:
    doc = load_document(DOCS / "asthma.md")
    ids = [c.chunk_id for c in chunk_document(doc)]
    kb.delete("docs", ids)
    part = kb.client.get_collection("docs--en")
    assert part.get(ids=ids)["ids"] == []
    hits = kb.search("reliever inhaler", k=5, collection="docs", mode="dense")
    assert all(h.doc_id != "asthma-basics" for h in hits)
    kb.drop("docs")
    assert kb.client.list_collections() == []


def test_a_collection_from_before_the_language_parts_is_split(kb: KnowledgeBase) -> None:
    source = kb.client.get_collection("docs")
    rows = source.get(include=["documents", "metadatas", "embeddings"])
    legacy = kb.client.create_collection(
        "legacy",
        embedding_function=kb._chroma_function,
        configuration={"hnsw": {"space": "cosine"}},
        metadata={"healtrace_generation": "g1", "healtrace_embedder": kb.embedder.name},
    )
    legacy.add(
        ids=rows["ids"],
        documents=rows["documents"],
        metadatas=rows["metadatas"],
        embeddings=rows["embeddings"],
    )
    zh = kb.search("睡眠 高血压", k=3, collection="legacy", filters={"language": "zh-CN"})
    assert zh and {h.language for h in zh} == {"zh-CN"}
    assert kb.client.get_collection("legacy--zh-CN").count() + kb.client.get_collection(
        "legacy--en"
    ).count() == kb.count("legacy")
    assert kb.metadata("legacy")["healtrace_generation"] == "g1"  # the BM25 index stays valid
    assert kb.search("asthma", k=3, collection="legacy") == kb.search(
        "asthma", k=3, collection="docs"
    )


async def test_asearch_matches_search(kb: KnowledgeBase) -> None:
    hits = await kb.asearch("migraine triptan", k=2, collection="docs")
    assert hits == kb.search("migraine triptan", k=2, collection="docs")
    default = await kb.asearch("migraine", filters={"language": "en"})
    assert default == []  # the default collection (starter) is empty here


def test_reopens_with_the_registered_embedding_function(tmp_path: Path) -> None:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    with KnowledgeBase.open(CONFIG, tmp_path) as kb:
        _fill(kb)
        before = kb.search("salt and blood pressure tablets", k=3, collection="docs")
    with KnowledgeBase.open(CONFIG, tmp_path) as kb:
        assert kb.count("docs") == 10
        assert kb.search("salt and blood pressure tablets", k=3, collection="docs") == before
    # A plain chroma client, given no function, rebuilds ours from the collection's
    # configuration and can query by text offline.
    client = chromadb.PersistentClient(
        path=str(tmp_path / "knowledge" / "chroma"),
        settings=ChromaSettings(anonymized_telemetry=False),
    )
    try:
        col = client.get_collection("docs")
        assert col.configuration_json["embedding_function"]["name"] == "healtrace-fake"
        assert col.configuration_json["hnsw"]["space"] == "cosine"
        result = col.query(query_texts=["sumatriptan migraine"], n_results=1)
        assert result["ids"][0][0].startswith("migraine-")
    finally:
        client.close()  # type: ignore[attr-defined]


def test_another_embedder_is_refused(tmp_path: Path) -> None:
    with KnowledgeBase.open(CONFIG, tmp_path) as kb:
        _fill(kb)
    with KnowledgeBase.open(CONFIG, tmp_path, embedder=FakeEmbedder(dim=32)) as kb:
        with pytest.raises(EmbedderMismatch) as caught:
            kb.search("asthma", collection="docs")
        assert "HEALTRACE_KNOWLEDGE__EMBEDDER" in caught.value.message("en")


def test_bm25_is_saved_and_reused_until_the_collection_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds: list[int] = []
    real_build = LexicalIndex.build.__func__  # type: ignore[attr-defined]

    def counting_build(cls: type[LexicalIndex], *args: object) -> LexicalIndex:
        builds.append(1)
        return real_build(cls, *args)  # type: ignore[no-any-return]

    monkeypatch.setattr(LexicalIndex, "build", classmethod(counting_build))
    with KnowledgeBase.open(CONFIG, tmp_path) as kb:
        _fill(kb)
        kb.search("asthma", collection="docs", mode="lexical")
        kb.search("asthma inhaler", collection="docs", mode="lexical")
        assert len(builds) == 1
    assert (tmp_path / "knowledge" / "bm25" / "docs" / "meta.json").exists()
    with (
        KnowledgeBase.open(CONFIG, tmp_path) as first,
        KnowledgeBase.open(CONFIG, tmp_path) as other,
    ):
        assert first.search("asthma", k=1, collection="docs", mode="lexical")
        assert len(builds) == 1  # loaded from disk
        doc = load_document(DOCS / "asthma.md")
        other.delete("docs", [c.chunk_id for c in chunk_document(doc)])
        # A write through another instance renews the generation: the index is rebuilt.
        hits = first.search("asthma inhaler", k=5, collection="docs", mode="lexical")
        assert len(builds) == 2
        assert all(h.doc_id != "asthma-basics" for h in hits)


# -- OpenAI-compatible embeddings ---------------------------------------------------------


def _embeddings_server(
    log: list[dict[str, Any]], failures: list[int] | None = None
) -> httpx.MockTransport:
    fake = FakeEmbedder(dim=8)
    pending = list(failures or [])

    def handler(request: httpx.Request) -> httpx.Response:
        if pending:
            return httpx.Response(pending.pop(0), json={"error": "busy"})
        body = json.loads(request.content)
        log.append({"body": body, "auth": request.headers.get("authorization")})
        vectors = fake.embed_passages(body["input"]) * 3.0  # not normalised, on purpose
        data = [
            {"object": "embedding", "index": i, "embedding": v.tolist()}
            for i, v in enumerate(vectors)
        ]
        return httpx.Response(200, json={"object": "list", "data": data[::-1]})

    return httpx.MockTransport(handler)


def _openai(transport: httpx.MockTransport, **kwargs: Any) -> OpenAIEmbedder:
    return OpenAIEmbedder(
        base_url="http://embeddings.test/v1",
        model="e5-small",
        dim=8,
        api_key="sk-test",
        backoff_s=0.0,
        transport=transport,
        **kwargs,
    )


def test_openai_embedder_sends_prefixes_and_normalises() -> None:
    log: list[dict[str, Any]] = []
    embedder = _openai(_embeddings_server(log), batch=2)
    vectors = embedder.embed_passages(["one", "two", "three"])
    assert vectors.shape == (3, 8) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    assert np.allclose(
        vectors,
        FakeEmbedder(dim=8).embed_passages(["passage: one", "passage: two", "passage: three"]),
    )
    assert [e["body"]["input"] for e in log] == [
        ["passage: one", "passage: two"],
        ["passage: three"],
    ]
    assert log[0]["auth"] == "Bearer sk-test" and log[0]["body"]["model"] == "e5-small"
    embedder.embed_queries(["q"])
    assert log[-1]["body"]["input"] == ["query: q"]
    assert embedder.name == "openai/e5-small"
    embedder.close()


def test_openai_embedder_retries_then_fails_clearly() -> None:
    log: list[dict[str, Any]] = []
    embedder = _openai(_embeddings_server(log, failures=[503, 429]), max_retries=2)
    assert embedder.embed_queries(["x"]).shape == (1, 8)
    embedder = _openai(_embeddings_server(log, failures=[503, 503, 503]), max_retries=2)
    with pytest.raises(EmbedderUnavailable, match="after 3 attempts"):
        embedder.embed_queries(["x"])
    embedder = _openai(_embeddings_server(log, failures=[401]))
    with pytest.raises(EmbedderUnavailable, match="HTTP 401"):
        embedder.embed_queries(["x"])

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(EmbedderUnavailable, match="ConnectError"):
        _openai(httpx.MockTransport(refuse), max_retries=1).embed_queries(["x"])
    wrong = httpx.MockTransport(
        lambda r: httpx.Response(200, json={"data": [{"index": 0, "embedding": [1.0, 2.0]}]})
    )
    with pytest.raises(EmbedderUnavailable, match="EMBEDDINGS_DIM"):
        _openai(wrong).embed_queries(["x"])
    garbage = httpx.MockTransport(lambda r: httpx.Response(200, text="<html>"))
    with pytest.raises(EmbedderUnavailable, match="unusable"):
        _openai(garbage).embed_queries(["x"])


def test_knowledge_base_over_openai_embeddings(tmp_path: Path) -> None:
    log: list[dict[str, Any]] = []
    config = KnowledgeConfig(embedder="openai", embeddings_dim=8)
    with KnowledgeBase.open(config, tmp_path, embedder=_openai(_embeddings_server(log))) as kb:
        _fill(kb)
        hits = kb.search("sumatriptan for migraine", k=1, collection="docs", mode="dense")
        assert hits[0].doc_id.startswith("migraine-")
        assert log[-1]["body"]["input"] == ["query: sumatriptan for migraine"]
