"""Cited answers over the real starter pack, through the real WebSocket."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
import websockets

from healtrace.agent.models.base import ModelRequest
from healtrace.agent.models.testing import ScriptedModel, Step, text_step
from healtrace.api.app import create_app
from healtrace.api.testing import LiveServer
from healtrace.config import Settings
from healtrace.knowledge import KnowledgeBase, KnowledgeConfig, load_starter_pack
from tests.test_api import _make_key, hello, until


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KnowledgeBase]:
    base = KnowledgeBase.open(KnowledgeConfig(), tmp_path_factory.mktemp("kb"))
    report = load_starter_pack(base)
    assert report.embedded == 0  # the shipped vectors cover the pack
    yield base
    base.close()


def _cite_first_two() -> Step:
    def answer(request: ModelRequest) -> Step:
        question = request.messages[-1].content
        excerpts = dict(re.findall(r"^\[(\d+)\] (.+)$", question, re.MULTILINE))
        assert {"1", "2"} <= set(excerpts), question
        return text_step("Warning signs are listed here [1], and more detail here [2].")

    return answer  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("question", "locale", "expected"),
    [
        ("What are the warning signs of a stroke?", "en", {"stroke"}),
        (
            "突然一侧手脚没力气、说话不清楚，是怎么回事？",
            "zh-CN",
            {"stroke", "one-sided-weakness-numbness"},
        ),
    ],
)
async def test_websocket_answer_carries_citations_matching_its_markers(
    settings: Settings, kb: KnowledgeBase, question: str, locale: str, expected: set[str]
) -> None:
    key = await _make_key(settings)
    model = ScriptedModel([_cite_first_two()])
    async with LiveServer(create_app(settings, model=model, knowledge=kb)) as live:
        async with websockets.connect(live.ws) as ws:
            await hello(ws, key, locale=locale)
            await ws.send(json.dumps({"type": "user_message", "text": question}))
            frames = await until(ws, "answer_done", "error")
    done = frames[-1]
    assert done["type"] == "answer_done"
    citations = [f for f in frames if f["type"] == "citation"]
    markers = [int(m) for m in re.findall(r"\[(\d+)\]", done["text"])]
    assert [c["marker"] for c in citations] == markers == [1, 2]
    for c in citations:
        assert c["title"] and c["snippet"] and c["source_url"].startswith("http")
    # The cited sources are the articles that answer the question.
    assert expected & {c["doc_id"] for c in citations}
    # The excerpts the model saw were the ones cited.
    sent = model.requests[0].messages[-1].content
    assert citations[0]["title"] in sent
