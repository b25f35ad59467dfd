"""Errors the knowledge base raises, each with a stable code and a bilingual message."""

from __future__ import annotations

from typing import Literal

from healtrace.errors import ConfigurationError, HealTraceError

#: Why one file could not be ingested; the ingest report carries these codes.
IngestErrorCode = Literal[
    "corrupt_file", "empty_file", "unsupported_type", "file_too_large", "unreadable_file"
]

# code -> (English, Simplified Chinese); placeholders come from the error's params.
MESSAGES: dict[str, tuple[str, str]] = {
    "corrupt_file": (
        "{name} could not be read as {kind}: the file is damaged or not really {kind}.",
        "无法将 {name} 作为 {kind} 读取：文件已损坏或并非 {kind} 格式。",
    ),
    "empty_file": (
        "{name} has no text to index.",
        "{name} 中没有可索引的文本。",
    ),
    "unsupported_type": (
        "{name}: files of this type cannot be ingested. Use .md, .txt, .html, .pdf or .docx.",
        "{name}：不支持此类文件。请使用 .md、.txt、.html、.pdf 或 .docx。",
    ),
    "file_too_large": (
        "{name} is {size} bytes; the limit is {limit} (HEALTRACE_KNOWLEDGE__MAX_FILE_BYTES).",
        "{name} 大小为 {size} 字节，超过上限 {limit}（HEALTRACE_KNOWLEDGE__MAX_FILE_BYTES）。",
    ),
    "unreadable_file": (
        "{name} could not be opened: {reason}.",
        "无法打开 {name}：{reason}。",
    ),
    "invalid_pack": (
        "The knowledge pack article {name} is invalid: {reason}.",
        "知识包文章 {name} 无效：{reason}。",
    ),
    "knowledge_unavailable": (
        "The knowledge base is unavailable right now. Please try again shortly.",
        "知识库暂时不可用，请稍后重试。",
    ),
    "invalid_collection": (
        "'{name}' is not a valid collection name: use 3-63 letters, digits, '.', '_' or '-'.",
        "“{name}”不是有效的集合名称：请使用 3 到 63 个字母、数字、“.”、“_”或“-”。",
    ),
    "embedder_mismatch": (
        "Collection '{name}' was indexed with the embedder {stored}, but {current} is "
        "configured. Set HEALTRACE_KNOWLEDGE__EMBEDDER to match, or ingest into a new collection.",
        "集合“{name}”使用嵌入模型 {stored} 建立索引，但当前配置的是 {current}。请设置 "
        "HEALTRACE_KNOWLEDGE__EMBEDDER 与之一致，或导入到新的集合。",
    ),
    "knowledge_error": (
        "The knowledge base could not do that: {detail}",
        "知识库无法完成该操作：{detail}",
    ),
}


class KnowledgeError(HealTraceError):
    """Root of the knowledge base's errors."""

    code = "knowledge_error"
    catalogue = MESSAGES
    fallback_code = "knowledge_error"


class DocumentError(KnowledgeError):
    """One file could not be turned into text; ``code`` says why (see ``IngestErrorCode``)."""

    code = "corrupt_file"


class PackError(KnowledgeError):
    """A starter-pack article is malformed; the message names the file."""

    code = "invalid_pack"


class EmbedderUnavailable(KnowledgeError):
    """The embedding backend could not be reached or answered with something unusable."""

    code = "knowledge_unavailable"


class IndexUnavailable(KnowledgeError):
    """The vector store (embedded or a chroma server) failed."""

    code = "knowledge_unavailable"


class CollectionError(KnowledgeError):
    """A collection name is invalid or the collection cannot be used as asked."""

    code = "invalid_collection"


class EmbedderMismatch(KnowledgeError, ConfigurationError):
    """A collection's vectors come from another embedder than the configured one."""

    code = "embedder_mismatch"
