"""Ingest a file or a folder into a collection, idempotently.

Unchanged files are skipped (same size and mtime, or same sha256), changed files have their
old chunks replaced (chunks whose text did not change keep their id and vector), and files
gone from an ingested folder are removed from the index. A file that cannot be read is
reported with a code and the run goes on; its earlier chunks, if any, stay until it reads.
A failing embedder or vector store stops the run: every later file would fail the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from healtrace.knowledge.chunking import chunk_document
from healtrace.knowledge.documents import load_bytes, sha256_bytes
from healtrace.knowledge.errors import DocumentError, KnowledgeError
from healtrace.knowledge.index import KnowledgeBase
from healtrace.knowledge.manifest import Manifest, ManifestEntry

FileStatus = Literal["added", "updated", "unchanged", "removed", "failed"]


@dataclass(frozen=True, slots=True)
class FileResult:
    path: str
    status: FileStatus
    #: Chunks the file has in the index after this run.
    chunks: int = 0
    #: Chunks embedded in this run (unchanged text keeps its vector).
    embedded: int = 0
    #: For failures: ``corrupt_file``, ``empty_file``, ``unsupported_type``,
    #: ``file_too_large`` or ``unreadable_file``.
    code: str = ""
    message: str = ""


@dataclass(frozen=True, slots=True)
class IngestProgress:
    """Reported after each file: how far the run is and what happened to that file."""

    done: int
    total: int
    result: FileResult


@dataclass
class IngestReport:
    collection: str
    files: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0

    def _count(self, status: FileStatus) -> int:
        return sum(1 for f in self.files if f.status == status)

    @property
    def added(self) -> int:
        return self._count("added")

    @property
    def updated(self) -> int:
        return self._count("updated")

    @property
    def unchanged(self) -> int:
        return self._count("unchanged")

    @property
    def removed(self) -> int:
        return self._count("removed")

    @property
    def failed(self) -> int:
        return self._count("failed")

    @property
    def chunks(self) -> int:
        """Chunks written in this run (added or changed text)."""
        return sum(f.embedded for f in self.files)

    @property
    def failures(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "failed"]


ProgressCallback = Callable[[IngestProgress], None]


def _skipped(path: Path, root: Path) -> bool:
    # Hidden files and folders (.git, .DS_Store) and Office lock files are not documents.
    parts = path.relative_to(root).parts
    return any(p.startswith(".") for p in parts) or path.name.startswith("~$")


def _list_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file() and not _skipped(p, root))


def ingest(
    kb: KnowledgeBase,
    path: Path,
    collection: str | None = None,
    *,
    progress: ProgressCallback | None = None,
) -> IngestReport:
    """Bring ``collection`` in line with the file or folder at ``path``."""
    name = collection or kb.config.default_collection
    root = path.resolve()
    started = time.perf_counter()
    report = IngestReport(collection=name)
    with Manifest(kb.directory / "manifest.sqlite3") as manifest:
        known = [
            e
            for e in manifest.entries(name)
            if e.path == str(root) or e.path.startswith(str(root) + "/")
        ]
        if not root.exists() and not known:
            raise KnowledgeError(f"{path} does not exist")
        files = _list_files(root) if root.exists() else []
        present = {str(f) for f in files}
        gone = [e for e in known if e.path not in present]
        total = len(files) + len(gone)
        kb.collection(name)  # create it now so an all-failed run still leaves it usable
        for done, file in enumerate(files, start=1):
            result = _ingest_file(kb, manifest, name, file)
            report.files.append(result)
            if progress is not None:
                progress(IngestProgress(done, total, result))
        for done, entry in enumerate(gone, start=len(files) + 1):
            kb.delete(name, entry.chunk_ids)
            manifest.remove(name, entry.path)
            result = FileResult(entry.path, "removed")
            report.files.append(result)
            if progress is not None:
                progress(IngestProgress(done, total, result))
    report.seconds = time.perf_counter() - started
    return report


def _ingest_file(kb: KnowledgeBase, manifest: Manifest, collection: str, file: Path) -> FileResult:
    key = str(file)
    previous = manifest.get(collection, key)
    try:
        stat = file.stat()
        if previous and (previous.size, previous.mtime_ns) == (stat.st_size, stat.st_mtime_ns):
            return FileResult(key, "unchanged", chunks=len(previous.chunk_ids))
        if stat.st_size > kb.config.max_file_bytes:
            raise DocumentError(
                f"{file.name} is too large",
                code="file_too_large",
                name=file.name,
                size=stat.st_size,
                limit=kb.config.max_file_bytes,
            )
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise DocumentError(
                str(exc), code="unreadable_file", name=file.name, reason=exc.strerror
            ) from exc
        checksum = sha256_bytes(data)
        if previous and previous.checksum == checksum:
            manifest.put(
                collection,
                ManifestEntry(
                    key,
                    checksum,
                    stat.st_size,
                    stat.st_mtime_ns,
                    previous.doc_id,
                    previous.chunk_ids,
                ),
            )
            return FileResult(key, "unchanged", chunks=len(previous.chunk_ids))
        document = load_bytes(data, file)
    except DocumentError as exc:
        return FileResult(key, "failed", code=exc.code, message=exc.message("en"))
    chunks = chunk_document(
        document, chunk_tokens=kb.config.chunk_tokens, overlap=kb.config.chunk_overlap_tokens
    )
    new_ids = [c.chunk_id for c in chunks]
    kept = kb.existing_ids(collection, new_ids)
    fresh = [c for c in chunks if c.chunk_id not in kept]
    kb.upsert(collection, fresh)
    if previous:
        kb.delete(collection, sorted(set(previous.chunk_ids) - set(new_ids)))
    manifest.put(
        collection,
        ManifestEntry(
            key, checksum, stat.st_size, stat.st_mtime_ns, document.doc_id, tuple(new_ids)
        ),
    )
    return FileResult(
        key, "updated" if previous else "added", chunks=len(chunks), embedded=len(fresh)
    )
