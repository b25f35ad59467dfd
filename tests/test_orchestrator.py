from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import pytest

from healtrace.agent.events import AnswerDone, ErrorEvent, Event, ToolResultEvent
from healtrace.agent.memory import ChatStore
from healtrace.agent.models.base import ModelRequest
from healtrace.agent.models.testing import (
    DemoModel,
    ScriptedModel,
    Step,
    call_step,
    text_step,
)
from healtrace.agent.orchestrator import Orchestrator, UserTurn
from healtrace.config import Settings
from healtrace.errors import BackendUnavailable
from healtrace.tools import ToolContext, ToolRegistry, tool
from healtrace.tools.builtin import body_mass_index


@tool(timeout_s=5)
async def wait_forever(ctx: ToolContext) -> str:
    """Never finishes."""
    await asyncio.Event().wait()
    return ""


async def _session(store: ChatStore, locale: str = "en") -> str:
    key = await store.ensure_named_key("test")
    return (await store.create_session(key, locale=locale)).id


def _orch(store: ChatStore, settings: Settings, model: object, *tools: object) -> Orchestrator:
    registry = ToolRegistry(tools or [body_mass_index])  # type: ignore[arg-type]
    return Orchestrator(model=model, tools=registry, store=store, settings=settings)  # type: ignore[arg-type]


async def _run(orch: Orchestrator, session_id: str, text: str, **kw: object) -> list[Event]:
    return [e async for e in orch.run_turn(UserTurn(session_id, text, "en"), **kw)]  # type: ignore[arg-type]


def _types(events: list[Event]) -> list[str]:
    out: list[str] = []
    for e in events:
        if not (e.type == "token" and out and out[-1] == "token"):
            out.append(e.type)
    return out


async def test_plain_answer_streams_and_is_stored(store: ChatStore, settings: Settings) -> None:
    sid = await _session(store)

    def check_user_message_committed(request: ModelRequest) -> Step:
        # The model is called only after the question is in the database.
        assert request.messages[-1].content == "What is a normal resting heart rate?"
        return text_step("Between 60 and 100 beats per minute for adults.")

    model = ScriptedModel([check_user_message_committed])
    events = await _run(_orch(store, settings, model), sid, "What is a normal resting heart rate?")
    assert _types(events) == ["turn_started", "token", "answer_done"]
    done = events[-1]
    assert isinstance(done, AnswerDone) and done.finish_reason == "stop"
    assert done.text == "Between 60 and 100 beats per minute for adults."
    stored = await store.messages(sid)
    assert [(m.role, m.status) for m in stored] == [("user", "complete"), ("assistant", "complete")]
    assert stored[1].content == done.text and stored[1].id == done.message_id
    system = model.requests[0].messages[0]
    assert system.role == "system" and "not a doctor" in system.content
    model.assert_used_up()


async def test_native_tool_call_round_trip(store: ChatStore, settings: Settings) -> None:
    sid = await _session(store)

    def answer(request: ModelRequest) -> Step:
        result = request.messages[-1]
        assert result.role == "tool" and result.tool_call_id == "call_1"
        assert json.loads(result.content)["bmi"] == 22.9
        return text_step("Your BMI is 22.9, in the healthy range.")

    model = ScriptedModel([call_step("body_mass_index", {"weight": 70, "height": 175}), answer])
    events = await _run(_orch(store, settings, model), sid, "BMI for 70 kg, 175 cm?")
    assert _types(events) == ["turn_started", "tool_call", "tool_result", "token", "answer_done"]
    assert model.requests[0].tools[0].name == "body_mass_index"
    result = next(e for e in events if isinstance(e, ToolResultEvent))
    assert result.ok
    stored = await store.messages(sid)
    assert [m.role for m in stored] == ["user", "assistant", "tool", "assistant"]
    assert stored[1].tool_calls[0].name == "body_mass_index"
    model.assert_used_up()


@pytest.mark.parametrize(
    "written",
    [
        '{"name": "body_mass_index", "arguments": {"weight": 70, "height": 175}}',
        '<tool_call>\n{"name": "body_mass_index", "arguments": {"weight": 70, "height": 175}}'
        "\n</tool_call>",
    ],
    ids=["bare-json", "qwen-tool-call"],
)
async def test_tool_call_written_as_text(
    store: ChatStore, settings: Settings, written: str
) -> None:
    sid = await _session(store)

    def answer(request: ModelRequest) -> Step:
        # Text-mode models see the result as a note, since their template has no tool role.
        assert request.messages[-1].role == "tool"
        return text_step("Your BMI is 22.9.")

    # Cut the call into small pieces, as a tokenizer would.
    pieces = [written[i : i + 7] for i in range(0, len(written), 7)]
    model = ScriptedModel([Step(deltas=pieces), answer], native_tools=False)
    events = await _run(_orch(store, settings, model), sid, "BMI 70 kg 175 cm")
    assert _types(events) == ["turn_started", "tool_call", "tool_result", "token", "answer_done"]
    # No JSON leaked into the answer, and no tools parameter for a text-mode model.
    assert events[-1].text == "Your BMI is 22.9."  # type: ignore[union-attr]
    assert model.requests[0].tools == ()
    assert "body_mass_index" in model.requests[0].messages[0].content
    model.assert_used_up()


async def test_unknown_tool_and_bad_arguments_go_back_to_the_model(
    store: ChatStore, settings: Settings
) -> None:
    sid = await _session(store)
    seen: list[str] = []

    def after_unknown(request: ModelRequest) -> Step:
        seen.append(request.messages[-1].content)
        return call_step("body_mass_index", {"weight": "heavy"}, call_id="call_2")

    def after_invalid(request: ModelRequest) -> Step:
        seen.append(request.messages[-1].content)
        return text_step("Please tell me your weight in kilograms.")

    model = ScriptedModel([call_step("diagnose_me", {}), after_unknown, after_invalid])
    events = await _run(_orch(store, settings, model), sid, "BMI?")
    assert _types(events) == [
        "turn_started",
        "tool_call",
        "tool_result",
        "tool_call",
        "tool_result",
        "token",
        "answer_done",
    ]
    results = [e for e in events if isinstance(e, ToolResultEvent)]
    assert [r.ok for r in results] == [False, False]
    assert seen[0].startswith("ERROR: Unknown tool 'diagnose_me'")
    assert "weight" in seen[1] and "height" in seen[1]
    model.assert_used_up()


async def test_tool_rounds_are_bounded(store: ChatStore, settings: Settings) -> None:
    settings.max_tool_rounds = 2
    sid = await _session(store)

    def last_round(request: ModelRequest) -> Step:
        assert request.tools == ()  # the last round offers no tools
        return call_step("body_mass_index", {"weight": 70, "height": 175}, "call_9")

    args = {"weight": 70, "height": 175}
    model = ScriptedModel(
        [
            call_step("body_mass_index", args, "c1"),
            call_step("body_mass_index", args, "c2"),
            last_round,
        ]
    )
    events = await _run(_orch(store, settings, model), sid, "loop")
    assert isinstance(events[-1], ErrorEvent) and events[-1].code == "too_many_tool_rounds"
    model.assert_used_up()


async def test_backend_failure_ends_turn_with_error_and_keeps_partial(
    store: ChatStore, settings: Settings
) -> None:
    sid = await _session(store)
    model = ScriptedModel(
        [Step(deltas=["Resting heart ", "rate is"], raises=BackendUnavailable("stream cut"))]
    )
    events = await _run(_orch(store, settings, model), sid, "heart rate?")
    assert _types(events) == ["turn_started", "token", "error"]
    error = events[-1]
    assert isinstance(error, ErrorEvent) and error.code == "model_unavailable" and error.retryable
    stored = await store.messages(sid)
    assert stored[-1].role == "assistant" and stored[-1].status == "error"
    assert stored[-1].content == "Resting heart rate is"


async def test_cancel_mid_stream(store: ChatStore, settings: Settings) -> None:
    sid = await _session(store)
    cancel = asyncio.Event()
    model = ScriptedModel([Step(deltas=[f"w{i} " for i in range(1000)], delay_s=0.01)])
    orch = _orch(store, settings, model)
    events: list[Event] = []
    async for event in orch.run_turn(UserTurn(sid, "long answer please", "en"), cancel=cancel):
        events.append(event)
        if sum(e.type == "token" for e in events) == 3:
            cancel.set()
    done = events[-1]
    assert isinstance(done, AnswerDone) and done.finish_reason == "cancelled"
    assert done.text == "w0 w1 w2 "
    stored = await store.messages(sid)
    assert stored[-1].status == "cancelled" and stored[-1].content == "w0 w1 w2 "


async def test_cancel_while_a_tool_runs(store: ChatStore, settings: Settings) -> None:
    sid = await _session(store)
    cancel = asyncio.Event()
    model = ScriptedModel([call_step("wait_forever", {})])
    orch = _orch(store, settings, model, wait_forever)
    events: list[Event] = []
    async for event in orch.run_turn(UserTurn(sid, "go", "en"), cancel=cancel):
        events.append(event)
        if event.type == "tool_call":
            asyncio.get_running_loop().call_later(0.05, cancel.set)
    assert events[-1].type == "answer_done" and events[-1].finish_reason == "cancelled"  # type: ignore[union-attr]


async def test_errors_are_in_the_users_language(store: ChatStore, settings: Settings) -> None:
    key = await store.ensure_named_key("t")
    sid = (await store.create_session(key, locale="zh-CN")).id
    model = ScriptedModel([Step(raises=BackendUnavailable("down"))])
    orch = _orch(store, settings, model)
    events = [e async for e in orch.run_turn(UserTurn(sid, "你好", "zh-CN"))]
    assert isinstance(events[-1], ErrorEvent)
    assert "语言模型暂时不可用" in events[-1].message
    assert "中文" in model.requests[0].messages[0].content


async def test_history_is_sent_and_trimmed_with_a_summary(
    store: ChatStore, settings: Settings
) -> None:
    settings.context_tokens = 400
    sid = await _session(store)
    model = DemoModel(answer="ok " * 60)
    summariser = DemoModel(answer="The user asked eight detailed questions.")
    orch = Orchestrator(
        model=model,
        tools=ToolRegistry([body_mass_index]),
        store=store,
        settings=settings,
        summary_model=summariser,
    )
    for i in range(8):
        await _run(orch, sid, f"question {i} " + "detail " * 20)
    await asyncio.gather(*orch._summary_tasks)
    last = model.requests[-1]
    contents = [m.content for m in last.messages]
    # The newest question is there; the oldest fell out of the window.
    assert any(c.startswith("question 7") for c in contents)
    assert not any(c.startswith("question 0") for c in contents)
    info = await store.get_session(sid)
    assert info.summary.startswith("The user asked eight") and info.summary_until > 0
    assert "question 0" in summariser.requests[0].messages[-1].content
    await _run(orch, sid, "and now?")
    await orch.aclose()
    assert any(
        m.role == "system" and m.content.startswith("Summary of the earlier conversation")
        for m in model.requests[-1].messages
    )


async def test_demo_model_exercises_every_tool(store: ChatStore, settings: Settings) -> None:
    sid = await _session(store)
    model = DemoModel()
    events = await _run(_orch(store, settings, model), sid, "hi")
    assert _types(events) == ["turn_started", "tool_call", "tool_result", "token", "answer_done"]
    assert all(e.ok for e in events if isinstance(e, ToolResultEvent))


async def test_a_repeated_call_forces_an_answer(store: ChatStore, settings: Settings) -> None:
    sid = await _session(store)
    args = {"weight": 70, "height": 175}

    def forced(request: ModelRequest) -> Step:
        assert request.tools == ()  # the repeat was not run again; tools are withdrawn
        assert [m.role for m in request.messages[-2:]] == ["assistant", "tool"]
        return text_step("Your BMI is 22.9.")

    model = ScriptedModel(
        [call_step("body_mass_index", args, "c1"), call_step("body_mass_index", args, "c2"), forced]
    )
    events = await _run(_orch(store, settings, model), sid, "BMI?")
    assert _types(events) == ["turn_started", "tool_call", "tool_result", "token", "answer_done"]
    assert events[-1].tool_calls == 1  # type: ignore[union-attr]
    model.assert_used_up()


async def test_a_call_written_where_an_answer_is_due_is_not_shown(
    store: ChatStore, settings: Settings
) -> None:
    sid = await _session(store)
    args = {"weight": 70, "height": 175}
    again = Step(deltas=['{"name": "body_mass_index", ', '"arguments": {"weight": 70}}'])
    model = ScriptedModel(
        [call_step("body_mass_index", args, "c1"), call_step("body_mass_index", args, "c2"), again],
        native_tools=True,
    )
    events = await _run(_orch(store, settings, model), sid, "BMI?")
    assert not any(e.type == "token" for e in events)
    assert isinstance(events[-1], ErrorEvent) and events[-1].code == "model_error"


async def test_length_cut_is_reported(store: ChatStore, settings: Settings) -> None:
    from healtrace.agent.models.base import Finish

    sid = await _session(store)
    model = ScriptedModel([Step(deltas=["Resting heart rate is", Finish(reason="length")])])
    events = await _run(_orch(store, settings, model), sid, "q")
    assert events[-1].finish_reason == "length"  # type: ignore[union-attr]


async def test_event_hub_numbers_replays_and_forgets_idle_sessions(store: ChatStore) -> None:
    from healtrace.agent.events import Token
    from healtrace.agent.sessions import RESTART_SEQ_GAP, EventHub

    hub = EventHub(store, buffer_events=3, max_sessions=1)
    a, b = await _session(store), await _session(store)
    for i in range(5):
        await hub.publish(Token(session_id=a, turn_id="t", text=str(i)))
    assert await hub.last_seq(a) == 5
    stream = await hub.subscribe(a, after_seq=3)
    assert stream.complete
    assert [(await anext(stream)).seq for _ in range(2)] == [4, 5]
    await stream.aclose()
    stream = await hub.subscribe(a, after_seq=1)  # 2 fell out of the 3-event buffer
    assert not stream.complete
    await stream.aclose()
    done = AnswerDone(
        session_id=a, turn_id="t", message_id="m", text="", finish_reason="stop", model="x"
    )
    await hub.publish(done)
    # Touching another session pushes the idle one out; it comes back numbered after a gap.
    await hub.last_seq(b)
    assert a not in hub._logs
    assert await hub.last_seq(a) == 6 + RESTART_SEQ_GAP - 1
    stream = await hub.subscribe(a, after_seq=6)  # saw everything stored
    assert stream.complete
    await stream.aclose()


@dataclass(frozen=True)
class _Hit:
    chunk_id: str
    doc_id: str
    title: str
    section: str
    text: str
    language: str = "en"
    source_url: str = "https://www.nhs.uk/conditions/chest-pain/"
    source_title: str = "NHS: Chest pain"


class _FakeKnowledge:
    """A scripted knowledge base behind the same interface as the real one."""

    def __init__(self, hits: dict[str, list[_Hit]]) -> None:
        self.hits = hits
        self.queries: list[str] = []

    async def asearch(
        self, query: str, *, k: int = 5, filters: dict[str, object] | None = None
    ) -> list[_Hit]:
        self.queries.append(query)
        for key, hits in self.hits.items():
            if key in query:
                return hits[:k]
        return []


PAIN = _Hit(
    "chest-pain.en#1", "chest-pain", "Chest pain", "Call 999 if", "Pain spreading to the arm."
)
HEART = _Hit("heart-attack.en#0", "heart-attack", "Heart attack", "Symptoms", "Crushing pain.")
AF = _Hit("af.en#0", "atrial-fibrillation", "Atrial fibrillation", "Overview", "Irregular beat.")


async def test_answers_cite_retrieved_sources(store: ChatStore, settings: Settings) -> None:
    from healtrace.agent.events import Citation
    from healtrace.tools.builtin import search_knowledge

    sid = await _session(store)
    kb = _FakeKnowledge({"chest": [PAIN, HEART], "irregular": [AF, PAIN]})

    def first(request: ModelRequest) -> Step:
        question = request.messages[-1].content
        assert question.startswith("Is my chest pain serious?")
        assert "[1] Chest pain — Call 999 if\nPain spreading to the arm." in question
        assert "[2] Heart attack — Symptoms" in question
        return call_step("search_knowledge", {"query": "irregular heartbeat"})

    def answer(request: ModelRequest) -> Step:
        # The tool continues the turn's numbering; a chunk seen before keeps its number.
        assert request.messages[-1].content.startswith("[3] Atrial fibrillation")
        assert "[1] Chest pain" in request.messages[-1].content
        return text_step("Pain spreading to the arm is a warning sign [1]. It may be AF [3].")

    model = ScriptedModel([first, answer])
    orch = Orchestrator(
        model=model,
        tools=ToolRegistry([search_knowledge]),
        store=store,
        settings=settings,
        knowledge=kb,
    )
    events = await _run(orch, sid, "Is my chest pain serious?")
    assert _types(events)[-3:] == ["citation", "citation", "answer_done"]
    citations = [e for e in events if isinstance(e, Citation)]
    assert [(c.marker, c.doc_id) for c in citations] == [
        (1, "chest-pain"),
        (3, "atrial-fibrillation"),
    ]
    assert citations[0].source_url.startswith("https://") and citations[0].snippet
    stored = (await store.messages(sid))[-1]
    assert [c["marker"] for c in stored.citations] == [1, 3]
    # The question is stored as the user wrote it, without the excerpts.
    assert (await store.messages(sid))[0].content == "Is my chest pain serious?"
    model.assert_used_up()


async def test_no_knowledge_hits_means_no_excerpts(store: ChatStore, settings: Settings) -> None:
    sid = await _session(store)
    kb = _FakeKnowledge({})

    def answer(request: ModelRequest) -> Step:
        assert request.messages[-1].content == "hello"
        return text_step("Hello! [1]")  # a stray marker cites nothing

    orch = Orchestrator(
        model=ScriptedModel([answer]),
        tools=ToolRegistry([body_mass_index]),
        store=store,
        settings=settings,
        knowledge=kb,
    )
    events = await _run(orch, sid, "hello")
    assert "citation" not in _types(events) and kb.queries == ["hello"]


async def test_reasoning_is_stored_apart_from_the_answer(
    store: ChatStore, settings: Settings
) -> None:
    from healtrace.agent.models.base import ReasoningDelta

    sid = await _session(store)
    model = ScriptedModel([Step(deltas=[ReasoningDelta("think first. "), "60 to 100 bpm."])])
    events = await _run(_orch(store, settings, model), sid, "heart rate?")
    assert "reasoning" not in _types(events)  # not streamed unless the setting allows it
    assert events[-1].text == "60 to 100 bpm."  # type: ignore[union-attr]
    answer = (await store.messages(sid))[-1]
    assert (answer.content, answer.reasoning) == ("60 to 100 bpm.", "think first. ")
