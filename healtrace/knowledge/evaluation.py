"""Retrieval evaluation: recall@k and MRR@k over question sets, per language and overall.

A question counts as found when one of its expected article ids is among the first ``k``
distinct documents retrieved (chunks of one article count once, at their best rank).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from healtrace.knowledge.errors import KnowledgeError
from healtrace.knowledge.index import KnowledgeBase, SearchMode


@dataclass(frozen=True, slots=True)
class QAItem:
    question: str
    lang: str
    expected: tuple[str, ...]


def load_qa(path: Path) -> list[QAItem]:
    """Questions from a ``.jsonl`` file, or from every ``*.jsonl`` in a folder."""
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    items: list[QAItem] = []
    for file in files:
        try:
            lines = file.read_text("utf-8").splitlines()
        except OSError as exc:
            raise KnowledgeError(f"cannot read {file}: {exc}") from exc
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                expected = row["expected"]
                if isinstance(expected, str):
                    expected = [expected]
                item = QAItem(str(row["question"]), str(row["lang"]), tuple(map(str, expected)))
            except (ValueError, KeyError, TypeError) as exc:
                raise KnowledgeError(
                    f"{file}:{number}: expected "
                    '{"question": ..., "lang": ..., "expected": [ids]} '
                    f"({type(exc).__name__}: {exc})"
                ) from exc
            if not item.expected:
                raise KnowledgeError(f"{file}:{number}: 'expected' lists no article id")
            items.append(item)
    return items


@dataclass(frozen=True, slots=True)
class ItemResult:
    item: QAItem
    #: Distinct document ids retrieved, best first (at most k).
    retrieved: tuple[str, ...]
    #: 1-based rank of the first expected document, or None if it was not in the top k.
    rank: int | None
    seconds: float


@dataclass(frozen=True, slots=True)
class Metrics:
    questions: int
    recall: float
    mrr: float

    @classmethod
    def of(cls, results: Sequence[ItemResult]) -> Metrics:
        if not results:
            return cls(0, 0.0, 0.0)
        found = [r.rank for r in results if r.rank is not None]
        return cls(
            questions=len(results),
            recall=len(found) / len(results),
            mrr=sum(1.0 / rank for rank in found) / len(results),
        )


@dataclass
class EvalResult:
    k: int
    mode: SearchMode
    overall: Metrics
    by_language: dict[str, Metrics]
    results: list[ItemResult] = field(default_factory=list)

    @property
    def latency_p50_ms(self) -> float:
        return statistics.median(r.seconds for r in self.results) * 1000 if self.results else 0.0

    @property
    def misses(self) -> list[ItemResult]:
        return [r for r in self.results if r.rank is None]

    def as_dict(self) -> dict[str, object]:
        def metrics(m: Metrics) -> dict[str, float | int]:
            return {"questions": m.questions, "recall": m.recall, "mrr": m.mrr}

        return {
            "k": self.k,
            "mode": self.mode,
            "overall": metrics(self.overall),
            "by_language": {lang: metrics(m) for lang, m in sorted(self.by_language.items())},
            "latency_p50_ms": round(self.latency_p50_ms, 2),
            "misses": [
                {
                    "question": r.item.question,
                    "expected": list(r.item.expected),
                    "retrieved": list(r.retrieved),
                }
                for r in self.misses
            ],
        }


def evaluate(
    kb: KnowledgeBase,
    qa_items: Sequence[QAItem],
    k: int = 5,
    mode: SearchMode = "hybrid",
    *,
    collection: str | None = None,
) -> EvalResult:
    """Search every question and score where its expected articles came."""
    results: list[ItemResult] = []
    for item in qa_items:
        start = time.perf_counter()
        # Articles have several chunks; ask for enough to fill k distinct documents.
        hits = kb.search(item.question, k=k * 8, collection=collection, mode=mode)
        seconds = time.perf_counter() - start
        docs: list[str] = []
        for hit in hits:
            if hit.doc_id not in docs:
                docs.append(hit.doc_id)
        docs = docs[:k]
        rank = next((n for n, d in enumerate(docs, start=1) if d in item.expected), None)
        results.append(ItemResult(item, tuple(docs), rank, seconds))
    languages = sorted({r.item.lang for r in results})
    return EvalResult(
        k=k,
        mode=mode,
        overall=Metrics.of(results),
        by_language={
            lang: Metrics.of([r for r in results if r.item.lang == lang]) for lang in languages
        },
        results=results,
    )
