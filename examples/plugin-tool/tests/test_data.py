"""The shipped tables: read from the installed package, as the tool reads them."""

from __future__ import annotations

import json
from collections import Counter
from importlib.resources import files
from typing import Any

import pytest

from healtrace_drug_interactions._data import LANGUAGES, SEVERITIES, normalise, tables


def _raw(name: str) -> Any:
    resource = files("healtrace_drug_interactions").joinpath("data", name)
    return json.loads(resource.read_text(encoding="utf-8"))


INTERACTIONS: list[dict[str, Any]] = _raw("interactions.json")["interactions"]
DRUGS: dict[str, dict[str, list[str]]] = _raw("drugs.json")["drugs"]


def _has_chinese(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def test_the_tables_load() -> None:
    loaded = tables()
    assert len(loaded.interactions) == len(INTERACTIONS) >= 25
    assert set(loaded.drugs) == set(DRUGS)


def test_every_severity_is_represented() -> None:
    counts = Counter(item["severity"] for item in INTERACTIONS)
    assert set(counts) == set(SEVERITIES)


def test_no_pair_is_listed_twice() -> None:
    seen = Counter(frozenset(item["drugs"]) for item in INTERACTIONS)
    assert [sorted(pair) for pair, n in seen.items() if n > 1] == []
    assert all(len(item["drugs"]) == 2 == len(set(item["drugs"])) for item in INTERACTIONS)


@pytest.mark.parametrize("item", INTERACTIONS, ids=lambda item: "+".join(item["drugs"]))
def test_every_entry_is_complete(item: dict[str, Any]) -> None:
    assert set(item["drugs"]) <= set(DRUGS), "every drug needs its names in drugs.json"
    assert item["severity"] in SEVERITIES
    for part in ("mechanism", "advice"):
        assert set(item[part]) == set(LANGUAGES)
        assert item[part]["en"].strip() and not _has_chinese(item[part]["en"])
        assert _has_chinese(item[part]["zh-CN"])
    assert len(item["source"].strip()) > 10


def test_every_drug_has_a_chinese_name_and_no_name_is_shared() -> None:
    owners: dict[str, set[str]] = {}
    for generic, info in DRUGS.items():
        assert info["zh"] and all(_has_chinese(name) for name in info["zh"])
        for name in (generic, *info["zh"], *info["aliases"]):
            owners.setdefault(normalise(name), set()).add(generic)
    assert {key: gs for key, gs in owners.items() if len(gs) > 1} == {}
