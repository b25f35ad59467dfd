"""Lexical retrieval: BM25 (bm25s) over jieba-segmented Chinese and plain English words.

Both languages share one index: Chinese runs are cut with jieba's search mode (which also
emits the shorter words inside long ones), Latin runs become lower-case words.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

log = logging.getLogger(__name__)

_RUNS = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+|[A-Za-z0-9]+(?:['’][a-z]+)?")
_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


# Words so common that they only add noise to BM25 scores.
def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_STOP_EN = _words(
    """a about after all also am an and any are as at be been before being but by can could
    did do does doing for from had has have having he her here hers him his how i if in into
    is it its it's itself just me more most my no nor not now of off on once only or other
    our out over own same she should so some such than that the their them then there these
    they this those through to too under until up very was we were what when where which
    while who whom why will with would you your yours"""
)
_STOP_ZH = _words(
    """的 了 是 在 和 与 或 及 也 就 都 而 着 吗 呢 吧 啊 么 什么 怎么 怎样 如何 我 你 他 她 它
    我们 你们 他们 这 那 这个 那个 有 没有 会 要 能 可以 一个 一些 哪些 为什么 应该 需要 时候"""
)

_jieba_lock = threading.Lock()
_jieba: Any = None


def _segmenter() -> Any:
    global _jieba
    with _jieba_lock:
        if _jieba is None:
            import jieba

            # jieba logs its dictionary loading at DEBUG to its own stderr handler.
            jieba.setLogLevel(logging.WARNING)
            tokenizer = jieba.Tokenizer()
            tokenizer.initialize()
            _jieba = tokenizer
        return _jieba


def _normalise_en(word: str) -> str:
    # A light plural fold ("headaches" → "headache") without a stemmer dependency.
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def tokenize(text: str) -> list[str]:
    """BM25 tokens for mixed Chinese/English text."""
    tokens: list[str] = []
    for run in _RUNS.findall(text.lower()):
        if _CJK_RUN.match(run):
            for word in _segmenter().cut_for_search(run):
                if word not in _STOP_ZH:
                    tokens.append(word)
        elif run not in _STOP_EN:
            tokens.append(_normalise_en(run.replace("’", "'")))
    return tokens


#: Metadata fields the lexical side can filter on, as the vector store does.
FILTER_FIELDS = ("language", "category", "doc_id")


@dataclass
class LexicalIndex:
    """A BM25 index over one collection's chunks, with the fields filters need."""

    generation: str
    ids: list[str]
    fields: dict[str, NDArray[np.str_]] = field(default_factory=dict)
    _bm25: Any = None

    @classmethod
    def build(
        cls,
        generation: str,
        ids: Sequence[str],
        texts: Sequence[str],
        metadatas: Sequence[Mapping[str, Any]],
    ) -> LexicalIndex:
        import bm25s

        index = cls(
            generation=generation,
            ids=list(ids),
            fields={
                name: np.asarray([str(m.get(name, "")) for m in metadatas], dtype=np.str_)
                for name in FILTER_FIELDS
            },
        )
        if ids:
            # An empty document still needs one token for bm25s to keep rows aligned.
            corpus = [tokenize(t) or ["\x00"] for t in texts]
            bm25 = bm25s.BM25()
            bm25.index(corpus, show_progress=False)
            index._bm25 = bm25
        return index

    def mask(self, filters: Mapping[str, Sequence[str]] | None) -> NDArray[np.bool_] | None:
        if not filters:
            return None
        keep = np.ones(len(self.ids), dtype=bool)
        for name, allowed in filters.items():
            keep &= np.isin(self.fields[name], np.asarray(list(allowed), dtype=np.str_))
        return keep

    def search(
        self, query: str, k: int, filters: Mapping[str, Sequence[str]] | None = None
    ) -> list[tuple[str, float]]:
        """Up to ``k`` (chunk id, BM25 score) pairs with a positive score, best first."""
        if self._bm25 is None or k <= 0:
            return []
        token_ids = self._bm25.get_tokens_ids(tokenize(query))
        if not token_ids:
            return []
        scores = np.asarray(self._bm25.get_scores_from_ids(token_ids), dtype=np.float32)
        keep = self.mask(filters)
        if keep is not None:
            scores = np.where(keep, scores, 0.0)
        top = np.argsort(-scores, kind="stable")[:k]
        return [(self.ids[i], float(scores[i])) for i in top if scores[i] > 0]

    def save(self, directory: Path) -> None:
        """Write the index to ``directory``, replacing what was there in one rename."""
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
        try:
            if self._bm25 is not None:
                self._bm25.save(tmp / "bm25", show_progress=False)
            meta = {
                "generation": self.generation,
                "ids": self.ids,
                "fields": {name: values.tolist() for name, values in self.fields.items()},
            }
            (tmp / "meta.json").write_text(json.dumps(meta, ensure_ascii=False), "utf-8")
            old = directory.with_name(f".{directory.name}-old")
            if directory.exists():
                os.replace(directory, old)
            os.replace(tmp, directory)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @classmethod
    def load(cls, directory: Path) -> LexicalIndex | None:
        """The index saved in ``directory``, or None if there is none or it is unreadable."""
        import bm25s

        try:
            meta = json.loads((directory / "meta.json").read_text("utf-8"))
            index = cls(
                generation=str(meta["generation"]),
                ids=list(meta["ids"]),
                fields={
                    name: np.asarray(meta["fields"][name], dtype=np.str_) for name in FILTER_FIELDS
                },
            )
            if index.ids:
                index._bm25 = bm25s.BM25.load(directory / "bm25", show_progress=False)
        except (OSError, ValueError, KeyError) as exc:
            log.info("rebuilding the BM25 index in %s: %s", directory, exc)
            return None
        return index
