"""Medicine names on prescription photos are matched to knowledge-pack articles."""

from __future__ import annotations

from healtrace.knowledge.pack import article_paths, load_article
from healtrace.vision.medications import _entries, find_medications


def test_every_medicine_points_at_an_article_in_both_languages() -> None:
    ids: dict[str, set[str]] = {}
    for path in article_paths():
        ids.setdefault(path.parent.name, set()).add(load_article(path).doc_id)
    for _en, _zh, article, _pattern in _entries():
        assert article in ids["en"] and article in ids["zh-CN"], article


def test_names_brands_and_chinese_text() -> None:
    text = "处方：阿莫西林胶囊 0.5g tid；布洛芬缓释胶囊 0.3g；Tylenol 500 mg prn；扑热息痛"
    found = find_medications(text)
    assert [(m.name_en, m.matched) for m in found] == [
        ("amoxicillin", "阿莫西林"),
        ("ibuprofen", "布洛芬"),
        ("paracetamol", "Tylenol"),
    ]
    assert found[0].to_dict("zh-CN") == {
        "name": "阿莫西林",
        "matched": "阿莫西林",
        "article": "antibiotics-correct-use",
    }


def test_latin_names_match_whole_words_only() -> None:
    assert find_medications("aspirinx and metformins") == []
    assert [m.name_en for m in find_medications("ASPIRIN 81 mg")] == ["aspirin"]
