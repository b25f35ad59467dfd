"""Safety inside a turn: triage first and stored, the output guard's edits streamed and
stored exactly as shown, the model's second opinion raising but never lowering."""

from __future__ import annotations

import json

from pydantic import BaseModel

from healtrace.agent.events import AnswerDone, ErrorEvent, Event, TriageEvent
from healtrace.agent.memory import ChatStore
from healtrace.agent.models.base import ModelRequest
from healtrace.agent.models.testing import ScriptedModel, Step, call_step, text_step
from healtrace.agent.orchestrator import Orchestrator, UserTurn
from healtrace.audit import AuditLog
from healtrace.config import SafetyConfig, Settings
from healtrace.errors import BackendUnavailable
from healtrace.safety.policy import SafetyPolicy
from healtrace.safety.second_opinion import SecondOpinion
from healtrace.safety.types import Level, Reason
from healtrace.tools import ToolContext, ToolRegistry, tool


async def _session(store: ChatStore, locale: str = "en") -> str:
    key = await store.ensure_named_key("test")
    return (await store.create_session(key, locale=locale)).id


def _orch(
    store: ChatStore, settings: Settings, model: ScriptedModel, policy: SafetyPolicy | None = None
) -> Orchestrator:
    return Orchestrator(
        model=model,
        tools=ToolRegistry([]),
        store=store,
        settings=settings,
        safety=policy or SafetyPolicy(SafetyConfig()),
        audit=AuditLog(store.db),
    )


async def _run(orch: Orchestrator, sid: str, text: str, locale: str = "en") -> list[Event]:
    return [e async for e in orch.run_turn(UserTurn(sid, text, locale))]


async def test_triage_comes_before_the_model_and_is_stored(
    store: ChatStore, settings: Settings
) -> None:
    sid = await _session(store)
    seen: list[str] = []

    def answer(request: ModelRequest) -> Step:
        # The model is told what triage found, so its answer starts where the banner does.
        question = request.messages[-1].content
        assert question.startswith("My husband's face is drooping")
        assert "urgency emergency" in question and "call 911 now" in question
        seen.append("model")
        return text_step("Please call 911 now.")

    model = ScriptedModel([answer])
    events = await _run(
        _orch(store, settings, model),
        sid,
        "My husband's face is drooping and his speech is slurred",
    )
    assert [e.type for e in events[:2]] == ["turn_started", "triage"]
    triage = events[1]
    assert isinstance(triage, TriageEvent)
    assert triage.level == "emergency" and triage.emergency_number == "911"
    assert any(r["category"] == "stroke" for r in triage.reasons)
    (user, _answer) = await store.messages(sid)
    assert user.safety is not None and user.safety["triage"]["level"] == "emergency"
    audit = await AuditLog(store.db).entries(session_id=sid)
    assert [e.action for e in audit] == ["triage_escalated", "output_checked"]
    assert "drooping" not in json.dumps(audit[0].details)


async def test_triage_reaches_the_patient_when_the_model_is_down(
    store: ChatStore, settings: Settings
) -> None:
    sid = await _session(store, "zh-CN")
    model = ScriptedModel([Step(raises=BackendUnavailable("down"))])
    events = await _run(
        _orch(store, settings, model), sid, "孩子把一瓶安眠药都吃了，叫不醒", locale="zh-CN"
    )
    assert [e.type for e in events] == ["turn_started", "triage", "error"]
    triage = events[1]
    assert isinstance(triage, TriageEvent) and triage.level == "emergency"
    assert "120" in triage.advice
    assert isinstance(events[-1], ErrorEvent) and events[-1].code == "model_unavailable"


async def test_the_guard_edits_what_streams_and_what_is_stored(
    store: ChatStore, settings: Settings
) -> None:
    sid = await _session(store)
    model = ScriptedModel(
        [text_step("I am a doctor. You have pneumonia. You should take 500 mg amoxicillin.")]
    )
    events = await _run(_orch(store, settings, model), sid, "I have a cough and fever")
    streamed = "".join(e.text for e in events if e.type == "token")  # type: ignore[union-attr]
    done = events[-1]
    assert isinstance(done, AnswerDone)
    assert streamed == done.text
    assert "I am a doctor" not in streamed and "500 mg" not in streamed
    assert "You have pneumonia" not in streamed
    rules = {c["rule"] for c in done.checks}
    assert {"doctor_claim", "definitive_diagnosis", "individual_dosing"} <= rules
    stored = (await store.messages(sid))[-1]
    assert stored.content == done.text
    assert stored.safety is not None
    assert {c["rule"] for c in stored.safety["checks"]} == rules
    audit = await AuditLog(store.db).entries(session_id=sid)
    assert audit[-1].action == "output_checked"


async def test_ordinary_answers_stream_untouched(store: ChatStore, settings: Settings) -> None:
    sid = await _session(store)

    def greet(request: ModelRequest) -> Step:
        assert request.messages[-1].content == "hello"  # no triage note without a red flag
        return text_step("Hello! How can I help you today?")

    model = ScriptedModel([greet])
    events = await _run(_orch(store, settings, model), sid, "hello")
    done = events[-1]
    assert isinstance(done, AnswerDone)
    assert done.text == "Hello! How can I help you today?" and done.checks == []


async def test_second_opinion_raises_but_never_lowers(store: ChatStore, settings: Settings) -> None:
    sid = await _session(store)
    reviewer = ScriptedModel(
        [
            text_step('{"level": "emergency", "category": "sepsis", "reason": "confused, hot"}'),
            text_step('{"level": "self-care", "category": "none", "reason": "fine"}'),
        ]
    )
    answers = ScriptedModel([text_step("Get help now."), text_step("Call 911.")])
    policy = SafetyPolicy(SafetyConfig(), second_opinion=SecondOpinion(reviewer, timeout_s=5))
    orch = _orch(store, settings, answers, policy)

    events = await _run(orch, sid, "Something feels really off with me today")
    triages = [e for e in events if isinstance(e, TriageEvent)]
    assert len(triages) == 2 and triages[-1].level == "emergency"
    assert triages[-1].reasons[-1]["source"] == "model"

    events = await _run(orch, sid, "Hives are spreading all over my body since the new pills")
    triages = [e for e in events if isinstance(e, TriageEvent)]
    assert [t.level for t in triages] == ["urgent"]
    reviewer.assert_used_up()


class _CriticalLab(BaseModel):
    potassium: float

    def triage_reasons(self) -> list[Reason]:
        return [
            Reason(
                category="critical_lab",
                code="critical_lab.potassium_high",
                level=Level.EMERGENCY,
                source="labs",
                message_en="Potassium this high is dangerous.",
                message_zh="血钾这么高很危险。",
            )
        ]


@tool
async def read_lab(ctx: ToolContext) -> _CriticalLab:
    """Read the patient's lab result."""
    return _CriticalLab(potassium=6.9)


async def test_a_tool_can_raise_triage_mid_turn(store: ChatStore, settings: Settings) -> None:
    sid = await _session(store)
    model = ScriptedModel([call_step("read_lab", {}), text_step("Your potassium is high.")])
    orch = Orchestrator(
        model=model,
        tools=ToolRegistry([read_lab]),
        store=store,
        settings=settings,
        safety=SafetyPolicy(SafetyConfig()),
    )
    events = await _run(orch, sid, "what does my lab say?")
    types = [e.type for e in events if e.type != "token"]
    assert types == [
        "turn_started",
        "triage",
        "tool_call",
        "tool_result",
        "triage",
        "answer_done",
    ]
    raised = [e for e in events if isinstance(e, TriageEvent)][-1]
    assert raised.level == "emergency" and raised.reasons[-1]["source"] == "labs"
    assert "911" in raised.advice
