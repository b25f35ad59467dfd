"""Starter pack: validation, precomputed vectors, loading without re-embedding; evaluation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from healtrace.knowledge import (
    FakeEmbedder,
    KnowledgeBase,
    KnowledgeConfig,
    PackError,
    QAItem,
    build_pack_vectors,
    check_pack_vectors,
    evaluate,
    ingest,
    load_pack,
    load_qa,
    load_starter_pack,
    validate_pack,
)
from healtrace.knowledge.cli import eval_app
from healtrace.knowledge.pack import PACK_DIR, VECTORS_PATH, load_article, pack_chunks

ARTICLES = {
    "gout": (
        "conditions",
        "Gout: sudden painful joints",
        "痛风：突然关节剧痛",
        [
            ("Overview", "Gout is caused by uric acid crystals in a joint, often the big toe."),
            ("Treatment", "Colchicine or an anti-inflammatory eases an attack within days."),
            ("See a doctor", "See a doctor if a hot swollen joint comes with fever."),
        ],
        [
            ("概述", "痛风由尿酸结晶沉积在关节引起，常见于大脚趾。"),
            ("治疗", "秋水仙碱或消炎止痛药可在几天内缓解发作。"),
            ("就医", "关节红肿发热并伴有发烧时应及时就医。"),
        ],
    ),
    "anaemia": (
        "lab-tests",
        "Anaemia: low haemoglobin",
        "贫血：血红蛋白偏低",
        [
            ("Overview", "Anaemia means too little haemoglobin to carry oxygen in the blood."),
            ("Causes", "Iron deficiency from heavy periods or poor diet is the commonest cause."),
            ("What you can do", "Eat iron-rich food such as red meat, beans and leafy greens."),
        ],
        [
            ("概述", "贫血是指血液中的血红蛋白太少，不能运送足够的氧气。"),
            ("原因", "月经量多或饮食缺铁导致的缺铁性贫血最常见。"),
            ("自己能做什么", "多吃红肉、豆类和绿叶蔬菜等含铁丰富的食物。"),
        ],
    ),
}


def _article(doc_id: str, lang: str, sections: list[tuple[str, str]], **front: str) -> str:
    category, en_title, zh_title, _, _ = ARTICLES[doc_id]
    title = en_title if lang == "en" else zh_title
    head = {"id": doc_id, "lang": lang, "title": title, "category": category, **front}
    lines = ["---", *(f"{k}: {json.dumps(v, ensure_ascii=False)}" for k, v in head.items())]
    lines += [
        "last_reviewed: 2026-11-01",
        "sources:",
        '  - title: "NHS: Example"',
        f"    url: https://www.nhs.uk/conditions/{doc_id}/",
        "---",
        "",
        f"# {title}",
        "",
    ]
    for name, text in sections:
        lines += [f"## {name}", text, ""]
    return "\n".join(lines)


def make_pack(root: Path) -> Path:
    for doc_id, (_, _, _, en, zh) in ARTICLES.items():
        for lang, sections in (("en", en), ("zh-CN", zh)):
            (root / lang).mkdir(parents=True, exist_ok=True)
            (root / lang / f"{doc_id}.md").write_text(_article(doc_id, lang, sections), "utf-8")
    return root


@pytest.fixture
def pack(tmp_path: Path) -> Path:
    return make_pack(tmp_path / "pack")


@pytest.fixture
def kb(tmp_path: Path) -> Iterator[KnowledgeBase]:
    embedder = FakeEmbedder()
    with KnowledgeBase.open(KnowledgeConfig(embedder="fake"), tmp_path, embedder=embedder) as kb:
        yield kb


def test_a_valid_pack_has_no_problems(pack: Path) -> None:
    assert validate_pack(pack) == []
    documents = load_pack(pack)
    assert {(d.doc_id, d.language) for d in documents} == {
        (i, lang) for i in ARTICLES for lang in ("en", "zh-CN")
    }
    assert documents[0].source.startswith("pack/") and documents[0].source_url.startswith("https")


def test_validator_names_each_problem(pack: Path) -> None:
    (pack / "zh-CN" / "gout.md").unlink()
    anaemia = pack / "en" / "anaemia.md"
    text = anaemia.read_text().replace("https://www.nhs.uk", "www.nhs.uk")
    text = text.replace('category: "lab-tests"', 'category: "labs"')
    anaemia.write_text(text.replace("## Causes", "Causes:"))
    problems = validate_pack(pack)
    assert "en/gout.md: no zh-CN/gout.md (or only_in: en)" in problems
    assert any("anaemia.md: source 1 needs an http(s) url" in p for p in problems)
    assert any("anaemia.md: category 'labs'" in p for p in problems)
    assert any("anaemia.md: 2 '##' sections" in p for p in problems)
    gout = pack / "en" / "gout.md"
    gout.write_text(_article("gout", "en", ARTICLES["gout"][3], only_in="en"))
    assert not any("gout" in p for p in validate_pack(pack))


def test_a_malformed_article_fails_loading_with_its_name(pack: Path) -> None:
    path = pack / "en" / "gout.md"
    path.write_text(path.read_text().replace('category: "conditions"\n', ""))
    with pytest.raises(PackError, match=r"en/gout\.md: missing 'category'") as caught:
        load_article(path)
    assert "gout.md" in caught.value.message("en") and "gout.md" in caught.value.message("zh-CN")
    path.write_text("---\nid: [unclosed\n---\n# x\n")
    with pytest.raises(PackError, match=r"gout\.md"):
        load_pack(pack)


def test_stored_vectors_load_without_embedding(
    pack: Path, kb: KnowledgeBase, tmp_path: Path
) -> None:
    vectors = tmp_path / "vectors.npz"
    status = build_pack_vectors(vectors, pack_dir=pack, embedder=FakeEmbedder())
    assert status.fresh and status.chunks == 12 and status.embedder == "fake/hash-64"
    embedder = kb.embedder
    assert isinstance(embedder, FakeEmbedder)
    report = load_starter_pack(kb, pack_dir=pack, vectors_path=vectors)
    assert (report.chunks, report.reused, report.embedded, report.skipped) == (12, 12, 0, False)
    assert embedder.calls == []  # nothing was embedded
    assert kb.count("starter") == 12
    hits = kb.search("uric acid crystals", k=1)
    assert hits[0].doc_id == "gout" and hits[0].source == "pack/en/gout.md"

    again = load_starter_pack(kb, pack_dir=pack, vectors_path=vectors)
    assert again.skipped and again.pack_hash == report.pack_hash

    # Edit one section: only that chunk is embedded; drop an article: its chunks go.
    embedder.calls.clear()  # the search above embedded its query
    gout = pack / "zh-CN" / "gout.md"
    gout.write_text(gout.read_text().replace("几天内", "两三天内"))
    (pack / "en" / "anaemia.md").unlink()
    changed = load_starter_pack(kb, pack_dir=pack, vectors_path=vectors)
    # removed: the article's 3 chunks and the edited chunk's old version
    assert (changed.embedded, changed.reused, changed.removed) == (1, 8, 4)
    assert embedder.calls == [("passage", 1)]
    assert kb.count("starter") == 9


def test_vectors_already_in_the_collection_are_reused(pack: Path, kb: KnowledgeBase) -> None:
    missing = pack / "no-vectors.npz"
    first = load_starter_pack(kb, pack_dir=pack, vectors_path=missing)
    assert first.embedded == 12
    forced = load_starter_pack(kb, pack_dir=pack, vectors_path=missing, force=True)
    assert (forced.embedded, forced.reused, forced.skipped) == (0, 12, False)


def test_loading_the_pack_leaves_ingested_files_alone(
    pack: Path, kb: KnowledgeBase, tmp_path: Path
) -> None:
    own = tmp_path / "own"
    own.mkdir()
    (own / "clinic.txt").write_text("Clinic hours\n\nThe clinic opens at 8 am on weekdays.")
    ingest(kb, own, "starter")
    load_starter_pack(kb, pack_dir=pack, vectors_path=tmp_path / "none.npz")
    (pack / "en" / "gout.md").unlink()
    load_starter_pack(kb, pack_dir=pack, vectors_path=tmp_path / "none.npz")
    assert kb.search("clinic opening hours", k=1)[0].title == "Clinic hours"
    # Ingesting into the same collection does not make the pack look out of date.
    (own / "clinic.txt").write_text("Clinic hours\n\nThe clinic opens at 9 am on weekdays.")
    assert ingest(kb, own, "starter").updated == 1
    assert load_starter_pack(kb, pack_dir=pack, vectors_path=tmp_path / "none.npz").skipped


def test_stale_vectors_are_detected(pack: Path, tmp_path: Path) -> None:
    vectors = tmp_path / "vectors.npz"
    build_pack_vectors(vectors, pack_dir=pack, embedder=FakeEmbedder())
    gout = pack / "en" / "gout.md"
    gout.write_text(gout.read_text().replace("big toe", "big toe or ankle"))
    status = check_pack_vectors(pack, vectors, embedder_name="fake/hash-64")
    assert not status.fresh and len(status.missing) == 1 and status.unused == 1
    assert status.missing[0].startswith("gout:en:0.0:")
    assert not check_pack_vectors(pack, vectors).fresh  # made with another embedder
    rebuilt = build_pack_vectors(vectors, pack_dir=pack, embedder=FakeEmbedder())
    assert rebuilt.missing == [] and rebuilt.fresh


# -- the real pack --------------------------------------------------------------------------


def test_the_starter_pack_is_valid() -> None:
    assert validate_pack(PACK_DIR) == []
    documents = load_pack(PACK_DIR)
    # 160 articles, each in English and Chinese.
    assert len({d.doc_id for d in documents}) >= 150
    assert {d.language for d in documents} == {"en", "zh-CN"}


def test_the_shipped_vectors_match_the_pack_text() -> None:
    assert VECTORS_PATH.exists(), "run `healtrace knowledge build-pack`"
    status = check_pack_vectors()
    assert status.fresh, (
        f"{len(status.missing)} pack chunks have no stored vector and {status.unused} stored "
        "vectors are unused: run `healtrace knowledge build-pack`"
    )


def test_the_question_sets_name_real_articles() -> None:
    qa_dir = PACK_DIR / "qa"
    ids = {p.stem for p in (PACK_DIR / "en").glob("*.md")} | {
        p.stem for p in (PACK_DIR / "zh-CN").glob("*.md")
    }
    items = load_qa(qa_dir)
    assert len(items) >= 200 and {i.lang for i in items} == {"en", "zh-CN"}
    unknown = {e for item in items for e in item.expected} - ids
    assert not unknown, f"questions expect articles that do not exist: {sorted(unknown)}"


# -- evaluation -----------------------------------------------------------------------------


def test_recall_and_mrr(pack: Path, kb: KnowledgeBase, tmp_path: Path) -> None:
    load_starter_pack(kb, pack_dir=pack, vectors_path=tmp_path / "none.npz")
    items = [
        QAItem("uric acid crystals in the big toe", "en", ("gout",)),
        QAItem("iron deficiency heavy periods", "en", ("anaemia",)),
        QAItem("尿酸结晶 大脚趾", "zh-CN", ("gout",)),
        QAItem("uric acid crystals in the big toe", "en", ("no-such-article",)),
    ]
    result = evaluate(kb, items, k=1, mode="lexical")
    assert result.overall.questions == 4
    assert result.overall.recall == pytest.approx(3 / 4)
    assert result.overall.mrr == pytest.approx(3 / 4)
    assert result.by_language["zh-CN"].recall == 1.0
    assert result.by_language["en"].recall == pytest.approx(2 / 3)
    assert [r.rank for r in result.results] == [1, 1, 1, None]
    assert result.misses[0].retrieved == ("gout",)
    wider = evaluate(kb, items[3:], k=2, mode="lexical")
    # BM25 returns only documents sharing a word with the question.
    assert wider.results[0].retrieved == ("gout",) and wider.overall.mrr == 0.0


def test_qa_loader_reports_bad_lines(tmp_path: Path) -> None:
    good = tmp_path / "a.jsonl"
    good.write_text('{"question": "q", "lang": "en", "expected": ["x"]}\n\n')
    (tmp_path / "b.jsonl").write_text('{"question": "q2", "lang": "zh-CN", "expected": "y"}\n')
    assert [i.expected for i in load_qa(tmp_path)] == [("x",), ("y",)]
    bad = tmp_path / "bad" / "c.jsonl"
    bad.parent.mkdir()
    bad.write_text('{"question": "q"}\n')
    with pytest.raises(Exception, match=r"c\.jsonl:1"):
        load_qa(bad)


def test_eval_cli_json(pack: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEALTRACE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HEALTRACE_KNOWLEDGE__EMBEDDER", "fake")
    with KnowledgeBase.open(KnowledgeConfig(embedder="fake"), tmp_path / "data") as kb:
        ingest(kb, pack, "mini")
    qa = tmp_path / "qa.jsonl"
    qa.write_text(
        '{"question": "uric acid crystals big toe", "lang": "en", "expected": ["gout"]}\n'
        '{"question": "缺铁 贫血 血红蛋白", "lang": "zh-CN", "expected": ["anaemia"]}\n'
    )
    result = CliRunner().invoke(
        eval_app, ["retrieval", "--qa", str(qa), "-c", "mini", "-k", "3", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["overall"]["questions"] == 2 and data["overall"]["recall"] == 1.0
    assert set(data["by_language"]) == {"en", "zh-CN"} and data["k"] == 3
    table = CliRunner().invoke(eval_app, ["retrieval", "--qa", str(qa), "-c", "mini"])
    assert table.exit_code == 0 and "recall@5" in table.output


def test_pack_chunks_follow_the_chunk_settings(pack: Path) -> None:
    small = pack_chunks(pack, KnowledgeConfig(chunk_tokens=32, chunk_overlap_tokens=0))
    assert len(small) >= len(pack_chunks(pack))
