"""The interpret_labs tool in a turn: the model is told the flags and what was not guessed,
and a critical value raises the turn's triage before the answer."""

from __future__ import annotations

import json

from healtrace.agent.events import ToolResultEvent, TriageEvent
from healtrace.agent.memory import ChatStore
from healtrace.agent.models.testing import ScriptedModel, call_step, text_step
from healtrace.agent.orchestrator import Orchestrator, UserTurn
from healtrace.config import SafetyConfig, Settings
from healtrace.safety.policy import SafetyPolicy
from healtrace.tools import ToolRegistry
from healtrace.tools.builtin import interpret_labs


async def _turn(store: ChatStore, settings: Settings, text: str, locale: str = "en") -> list:
    key = await store.ensure_named_key("test")
    sid = (await store.create_session(key, locale=locale)).id
    model = ScriptedModel([call_step("interpret_labs", {"text": text}), text_step("Done.")])
    orch = Orchestrator(
        model=model,
        tools=ToolRegistry([interpret_labs]),
        store=store,
        settings=settings,
        safety=SafetyPolicy(SafetyConfig()),
    )
    events = [e async for e in orch.run_turn(UserTurn(sid, "what do my labs mean?", locale))]
    model.assert_used_up()
    return events


async def test_a_critical_value_raises_triage(store: ChatStore, settings: Settings) -> None:
    events = await _turn(store, settings, "K+ 6.9 mmol/L ↑\nNa 140 mmol/L")
    result = next(e for e in events if isinstance(e, ToolResultEvent))
    assert result.ok
    told = json.loads(result.content)
    assert told["urgent"] is True
    assert [r["flag"] for r in told["results"]] == ["HH", "N"]
    triages = [e for e in events if isinstance(e, TriageEvent)]
    assert [t.level for t in triages] == ["self-care", "emergency"]
    assert triages[-1].reasons[-1]["category"] == "critical_lab"


async def test_ambiguity_is_told_to_the_model(store: ChatStore, settings: Settings) -> None:
    events = await _turn(store, settings, "血糖 99\n血红蛋白 135 g/L", locale="zh-CN")
    result = next(e for e in events if isinstance(e, ToolResultEvent))
    told = json.loads(result.content)
    assert told["warnings"], told
    assert "不是诊断" in told["note"]


async def test_unreadable_input_goes_back_to_the_model(
    store: ChatStore, settings: Settings
) -> None:
    events = await _turn(store, settings, "no numbers in here at all")
    result = next(e for e in events if isinstance(e, ToolResultEvent))
    assert not result.ok and "No lab results" in result.content
