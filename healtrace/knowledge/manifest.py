"""What has been ingested: per collection, each file's checksum and the chunk ids it gave.

Kept in SQLite beside the index (``<dir>/manifest.sqlite3``) so re-ingesting a folder
skips unchanged files, replaces changed ones and removes deleted ones.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from healtrace.knowledge.errors import IndexUnavailable

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    collection TEXT NOT NULL,
    path TEXT NOT NULL,
    checksum TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    doc_id TEXT NOT NULL,
    chunk_ids TEXT NOT NULL,
    ingested_at TEXT NOT NULL,
    PRIMARY KEY (collection, path)
)
"""


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    path: str
    checksum: str
    size: int
    mtime_ns: int
    doc_id: str
    chunk_ids: tuple[str, ...]


class Manifest:
    """A small SQLite table; one connection, used from one thread at a time."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(path)
            with self._db:
                self._db.execute(_SCHEMA)
        except sqlite3.Error as exc:
            raise IndexUnavailable(f"cannot open the ingest manifest {path}: {exc}") from exc

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def get(self, collection: str, path: str) -> ManifestEntry | None:
        row = self._db.execute(
            "SELECT path, checksum, size, mtime_ns, doc_id, chunk_ids FROM files "
            "WHERE collection = ? AND path = ?",
            (collection, path),
        ).fetchone()
        return _entry(row) if row else None

    def entries(self, collection: str) -> Iterator[ManifestEntry]:
        rows = self._db.execute(
            "SELECT path, checksum, size, mtime_ns, doc_id, chunk_ids FROM files "
            "WHERE collection = ? ORDER BY path",
            (collection,),
        ).fetchall()
        return (_entry(row) for row in rows)

    def put(self, collection: str, entry: ManifestEntry) -> None:
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    collection,
                    entry.path,
                    entry.checksum,
                    entry.size,
                    entry.mtime_ns,
                    entry.doc_id,
                    json.dumps(list(entry.chunk_ids)),
                    dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                ),
            )

    def remove(self, collection: str, path: str) -> None:
        with self._db:
            self._db.execute(
                "DELETE FROM files WHERE collection = ? AND path = ?", (collection, path)
            )

    def drop(self, collection: str) -> None:
        with self._db:
            self._db.execute("DELETE FROM files WHERE collection = ?", (collection,))


def _entry(row: tuple[str, str, int, int, str, str]) -> ManifestEntry:
    path, checksum, size, mtime_ns, doc_id, chunk_ids = row
    return ManifestEntry(path, checksum, size, mtime_ns, doc_id, tuple(json.loads(chunk_ids)))
