"""Documents to chunks: one per section, long sections cut at paragraph and sentence ends.

Every chunk starts with its heading path ("Title > Section") so both retrievers see the
context a bare paragraph lacks.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from functools import lru_cache

from langchain_text_splitters import RecursiveCharacterTextSplitter

from healtrace.knowledge.documents import Document, Language

#: Bumped when chunk boundaries or chunk text change for the same input, so stored pack
#: vectors and pack versions are recomputed.
CHUNKER_VERSION = "1"

# Paragraphs first, then lines, then sentence ends (Chinese full-width punctuation has no
# following space), then clauses, then words.
_SEPARATORS = [
    "\n\n",
    "\n",
    "。",
    "！",
    "？",
    ". ",
    "! ",
    "? ",
    "；",
    "; ",
    "，",
    ", ",
    "、",
    " ",
    "",
]
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_WORD = re.compile(r"[A-Za-z0-9]+")


def estimate_tokens(text: str) -> int:
    """Rough XLM-R token count: one per Chinese character, about 1.3 per English word."""
    cjk = len(_CJK.findall(text))
    words = len(_WORD.findall(text))
    return cjk + math.ceil(words * 1.3) + text.count("\n")


@dataclass(frozen=True, slots=True)
class Chunk:
    """One retrievable piece of a document, with the metadata stored beside its vector."""

    chunk_id: str
    doc_id: str
    #: What is embedded, indexed and stored: the heading path, a blank line, the body.
    text: str
    title: str
    section: str
    language: Language
    source: str
    source_url: str
    source_title: str
    category: str
    checksum: str
    content_hash: str
    section_index: int
    part: int

    @property
    def context(self) -> str:
        return " > ".join(p for p in (self.title, self.section) if p)

    @property
    def body(self) -> str:
        """The text without its heading-path prefix."""
        return body_of(self.text, self.context)

    def metadata(self) -> dict[str, str | int]:
        """Flat metadata for the vector store (strings and ints only)."""
        return {
            "doc_id": self.doc_id,
            "title": self.title,
            "section": self.section,
            "language": self.language,
            "source": self.source,
            "source_url": self.source_url,
            "source_title": self.source_title,
            "category": self.category,
            "checksum": self.checksum,
            "content_hash": self.content_hash,
            "section_index": self.section_index,
            "part": self.part,
        }


def body_of(text: str, context: str) -> str:
    prefix = context + "\n\n"
    return text[len(prefix) :] if context and text.startswith(prefix) else text


@lru_cache(maxsize=16)
def _splitter(size: int, overlap: int) -> RecursiveCharacterTextSplitter:
    return RecursiveCharacterTextSplitter(
        chunk_size=size,
        chunk_overlap=min(overlap, size // 2),
        length_function=estimate_tokens,
        separators=_SEPARATORS,
        keep_separator="end",
        strip_whitespace=True,
    )


def chunk_document(
    document: Document, *, chunk_tokens: int = 256, overlap: int = 32
) -> list[Chunk]:
    """Cut ``document`` into chunks of at most about ``chunk_tokens`` estimated tokens.

    Chunk ids are stable: the same text at the same place gets the same id, so re-ingesting
    an edited file re-embeds only the chunks that changed.
    """
    chunks: list[Chunk] = []
    for index, section in enumerate(document.sections):
        section_name = " > ".join(section.path)
        context = " > ".join(p for p in (document.title, section_name) if p)
        budget = max(chunk_tokens - estimate_tokens(context) - 2, chunk_tokens // 2)
        if estimate_tokens(section.text) <= budget:
            pieces = [section.text]
        else:
            pieces = _splitter(budget, overlap).split_text(section.text)
        for part, piece in enumerate(p for p in pieces if p.strip()):
            text = f"{context}\n\n{piece}" if context else piece
            content_hash = hashlib.sha256(text.encode()).hexdigest()
            chunks.append(
                Chunk(
                    chunk_id=(
                        f"{document.doc_id}:{document.language}:{index}.{part}:{content_hash[:12]}"
                    ),
                    doc_id=document.doc_id,
                    text=text,
                    title=document.title,
                    section=section_name,
                    language=document.language,
                    source=document.source,
                    source_url=document.source_url,
                    source_title=document.source_title,
                    category=document.category,
                    checksum=document.checksum,
                    content_hash=content_hash,
                    section_index=index,
                    part=part,
                )
            )
    return chunks
