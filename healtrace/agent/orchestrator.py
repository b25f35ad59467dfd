"""One conversational turn: history and prompt → model → tools → streamed answer.

The orchestrator yields typed events (without sequence numbers; the event hub stamps them).
It commits the user message before the model is called, writes the answer while it
streams, and always ends a turn with ``answer_done`` or ``error`` — also when cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from healtrace.agent._textcalls import TextCallSplitter, loads_or_text
from healtrace.agent.citations import KnowledgeSearch, Source, render_excerpts
from healtrace.agent.context import ContextWindow, build_context, transcript_for_summary
from healtrace.agent.events import (
    AnswerDone,
    ApprovalRequired,
    ErrorEvent,
    Event,
    Reasoning,
    Token,
    ToolCallEvent,
    ToolResultEvent,
    TriageEvent,
    TurnHeld,
    TurnStarted,
)
from healtrace.agent.events import (
    Citation as CitationEvent,
)
from healtrace.agent.memory import ChatStore, MessageRecord, NewMessage, SessionInfo, new_id
from healtrace.agent.models.base import (
    ChatMessage,
    Finish,
    ModelBackend,
    ModelRequest,
    ReasoningDelta,
    TextDelta,
    ToolCall,
    ToolCallDelta,
)
from healtrace.chain.evidence import EvidenceRecord, build_record, sha256_text
from healtrace.config import Settings
from healtrace.errors import HealTraceError, localized
from healtrace.prompts import PROMPT_VERSION, load_prompt
from healtrace.tenants import tenant_allows_tool, tenant_search
from healtrace.tools.core import Tool, ToolContext, ToolOutcome, ToolRegistry

if TYPE_CHECKING:
    from healtrace.audit import AuditLog
    from healtrace.safety.output import OutputGuard
    from healtrace.safety.policy import SafetyPolicy
    from healtrace.safety.types import TriageResult

log = logging.getLogger(__name__)

#: How often a streaming answer is written to the database (seconds).
FLUSH_INTERVAL_S = 0.5

_A = TypeVar("_A")
_B = TypeVar("_B")


@dataclass(frozen=True, slots=True)
class UserTurn:
    session_id: str
    text: str
    locale: str
    turn_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    patient_id: str | None = None
    tenant_id: str | None = None
    client_message_id: str | None = None
    #: Set for spoken questions: duration, ASR model and language, stored with the message.
    voice: dict[str, Any] | None = None
    #: Images the patient attached (ids from ``POST /v1/images``, of the turn's tenant).
    image_ids: tuple[str, ...] = ()
    #: Tool calls the patient approved (``approval_id`` of an ``approval_required`` event).
    approvals: frozenset[str] = frozenset()


class OpenHandoff(Protocol):
    @property
    def status(self) -> str: ...


class HandoffGate(Protocol):
    """What a turn needs of the handoff desk (``healtrace.handoff.HandoffDesk``)."""

    async def current(self, session_id: str) -> OpenHandoff | None: ...

    async def request(
        self,
        session_id: str,
        *,
        reason: Literal["patient_request", "triage"],
        triage: dict[str, Any] | None = None,
    ) -> OpenHandoff: ...


class TurnCancelled(Exception):
    """Raised inside the model loop when the client cancels."""


class _AnswerWriter:
    """Persists the turn's messages.

    Tool traffic is written in the background while the model works on its next round
    (``store_later``); the answer is created at its first flush and rewritten periodically.
    Every write waits for the previous one, so positions stay in order.
    """

    def __init__(self, store: ChatStore, session_id: str, turn_id: str) -> None:
        self.store = store
        self.session_id = session_id
        self.turn_id = turn_id
        self.text = ""
        self.reasoning = ""
        self.message_id: str | None = None
        #: The answer's id, chosen up front so its evidence record can name it.
        self.planned_id = new_id()
        self._flushed_at = time.monotonic()
        self._dirty = False
        self._pending: asyncio.Task[Any] | None = None
        self.citations: list[dict[str, Any]] = []
        self.safety: dict[str, Any] | None = None

    def add(self, text: str) -> None:
        self.text += text
        self._dirty = True

    def due(self) -> bool:
        return self._dirty and time.monotonic() - self._flushed_at >= FLUSH_INTERVAL_S

    def store_later(self, items: list[NewMessage]) -> None:
        previous = self._pending

        async def write() -> None:
            if previous is not None:
                await previous
            await self.store.add_messages(self.session_id, items)

        self._pending = asyncio.ensure_future(write())

    async def settle(self) -> None:
        """Wait for background writes; they must land even if the turn is cancelled."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            await asyncio.shield(pending)

    async def flush(
        self, status: str, *, model: str = "", evidence: EvidenceRecord | None = None
    ) -> str:
        """Write the answer; ``evidence`` (the final write) goes in the same transaction."""
        await self.settle()
        self._flushed_at = time.monotonic()
        self._dirty = False
        if self.message_id is None:
            record = await self.store.add_message(
                self.session_id,
                turn_id=self.turn_id,
                role="assistant",
                content=self.text,
                status=status,  # type: ignore[arg-type]
                model=model,
                citations=self.citations,
                reasoning=self.reasoning,
                safety=self.safety,
                message_id=self.planned_id,
                evidence=evidence,
            )
            self.message_id = record.id
            return record.id
        await self.store.update_message(
            self.message_id,
            content=self.text,
            status=status,  # type: ignore[arg-type]
            reasoning=self.reasoning,
            model=model,
            citations=self.citations,
            safety=self.safety,
            evidence=evidence,
        )
        return self.message_id

    @property
    def answer_id(self) -> str:
        return self.message_id or self.planned_id


async def _both(first: Awaitable[_A], second: Awaitable[_B]) -> tuple[_A, _B]:
    """Await two awaitables side by side; if the first fails, the second is cancelled and
    waited for before the error propagates (nothing is left running)."""
    other = asyncio.ensure_future(second)
    try:
        a = await first
    except BaseException:
        other.cancel()
        await asyncio.gather(other, return_exceptions=True)
        raise
    return a, await other


async def _race_cancel(
    stream: AsyncIterator[Any], cancel: asyncio.Event | None
) -> AsyncIterator[Any]:
    """Iterate ``stream`` but stop promptly (closing it) when ``cancel`` is set."""
    if cancel is None:
        async for item in stream:
            yield item
        return
    waiter = asyncio.ensure_future(cancel.wait())
    try:
        while True:
            step = asyncio.ensure_future(anext(stream))
            done, _ = await asyncio.wait({step, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if step in done:
                try:
                    item = step.result()
                except StopAsyncIteration:
                    return
                yield item
                continue
            step.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await step
            raise TurnCancelled
    finally:
        waiter.cancel()
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()


class Orchestrator:
    """Runs turns. Holds no per-session state; everything lives in the store."""

    def __init__(
        self,
        *,
        model: ModelBackend,
        tools: ToolRegistry,
        store: ChatStore,
        settings: Settings,
        summary_model: ModelBackend | None = None,
        knowledge: KnowledgeSearch | None = None,
        safety: SafetyPolicy | None = None,
        handoffs: HandoffGate | None = None,
        audit: AuditLog | None = None,
        on_evidence: Callable[[], None] | None = None,
    ) -> None:
        self.model = model
        self.tools = tools
        self.store = store
        self.settings = settings
        self.knowledge = knowledge
        self.summary_model = summary_model or model
        self.safety = safety
        self.handoffs = handoffs
        self.audit = audit
        #: Told after each evidence record is written (the anchoring batcher's wake-up).
        self.on_evidence = on_evidence
        #: Services tools reach through ``ToolContext.stores`` (records, rewards).
        self.stores: dict[str, Any] = {}
        self._summary_tasks: set[asyncio.Task[None]] = set()
        self._summarising: set[str] = set()

    # --- prompts --------------------------------------------------------------------------

    def system_prompt(
        self, locale: str, *, with_text_tools: bool, tools: ToolRegistry | None = None
    ) -> str:
        tools = self.tools if tools is None else tools
        prompt = load_prompt("system", locale)
        if with_text_tools and len(tools):
            described = "\n".join(
                f"- {s.name}: {s.description.splitlines()[0]} Arguments (JSON schema): "
                f"{json.dumps(s.parameters.get('properties', {}), ensure_ascii=False)}"
                for s in tools.specs()
            )
            prompt += "\n\n" + load_prompt("tools_fallback", locale).replace("{tools}", described)
        return prompt

    def tools_for(self, turn: UserTurn) -> ToolRegistry:
        """The tools this turn may be offered; decided here, in code, not by the model.

        Image tools only with images (nothing to look at otherwise); record and reward
        tools only for a signed-in patient (nobody to act for otherwise); only tools that
        serve the turn's locale and that the tenant has not switched off."""
        settings = self.settings

        def offered(t: Tool) -> bool:
            if "images" in t.permissions and not turn.image_ids:
                return False
            if turn.patient_id is None and {"records", "rewards"} & set(t.permissions):
                return False
            return t.serves(turn.locale) and tenant_allows_tool(settings, turn.tenant_id, t.name)

        return self.tools.where(offered)

    # --- the turn -------------------------------------------------------------------------

    async def run_turn(
        self, turn: UserTurn, *, cancel: asyncio.Event | None = None
    ) -> AsyncIterator[Event]:
        """Run one turn, yielding its events.

        The last event is ``answer_done``, ``error`` or ``turn_held``. Triage comes first,
        in code, before the model is asked anything: a red flag reaches the patient even
        when every model backend is down.
        """
        from healtrace.safety.policy import advice, stored_triage

        triage = (
            self.safety.assess(turn.text, turn.locale, turn.tenant_id)
            if self.safety is not None
            else None
        )
        begin = self.store.begin_turn(
            turn.session_id,
            turn_id=turn.turn_id,
            text=turn.text,
            safety={"triage": stored_triage(triage, turn.locale)} if triage else None,
            voice=turn.voice,
        )
        handoff: OpenHandoff | None = None
        if triage is not None and self.handoffs is not None:
            # The handoff check reads beside the commit (one trip to the database thread
            # instead of two before the model is asked); it is used only after the commit.
            started, handoff = await _both(begin, self.handoffs.current(turn.session_id))
        else:
            started = await begin
        session = started.session
        yield TurnStarted(
            session_id=turn.session_id,
            turn_id=turn.turn_id,
            user_message_id=started.user_message.id,
            locale=turn.locale,
            client_message_id=turn.client_message_id,
            text=turn.text,
        )
        if triage is not None and self.safety is not None:
            yield self._triage_event(turn, triage, advice(triage, turn.locale))
            reviewed = await self.safety.review(turn.text, turn.locale, triage)
            if reviewed.level != triage.level:
                triage = reviewed
                yield self._triage_event(turn, triage, advice(triage, turn.locale))
            if triage.is_red_flag and self.audit is not None:
                await self.audit.append(
                    tenant_id=session.tenant_id,
                    actor="system",
                    action="triage_escalated",
                    session_id=turn.session_id,
                    details={
                        "message_id": started.user_message.id,
                        "level": triage.level.value,
                        "codes": sorted({r.code for r in triage.reasons}),
                    },
                )
            held = await self._handoff_step(turn, triage, handoff)
            if held is not None:
                yield held
                return
        writer = _AnswerWriter(self.store, turn.session_id, turn.turn_id)
        ctx = ToolContext(
            session_id=turn.session_id,
            locale=turn.locale,
            settings=self.settings,
            patient_id=turn.patient_id,
            tenant_id=turn.tenant_id,
            knowledge=self.knowledge,
            stores=self.stores,
        )
        native = self.model.native_tools
        tools = self.tools_for(turn)
        system = self.system_prompt(turn.locale, with_text_tools=not native, tools=tools)
        window = build_context(
            system,
            started.history,
            budget_tokens=self.settings.context_tokens,
            summary=session.summary,
            summary_until=session.summary_until,
            summary_label=localized_summary_label(turn.locale),
        )
        messages = list(window.messages)
        excerpts = await self._retrieve(turn, ctx)
        note = _triage_note(triage, turn.locale) if triage is not None else ""
        attached = ""
        if turn.image_ids:
            attached, events = await self._attachments(turn)
            for event in events:
                yield event
        if excerpts or note or attached:
            # Excerpts, image findings and the triage note ride with the question, where
            # small models use them best; the stored message stays what the user wrote.
            extra = "\n\n".join(part for part in (attached, excerpts, note) if part)
            question = messages[-1]
            messages[-1] = ChatMessage(role="user", content=f"{question.content}\n\n{extra}")
        guard = (
            self.safety.guard(turn.locale, knowledge_used=bool(excerpts), level=triage.level)
            if self.safety is not None and triage is not None
            else None
        )
        raw_answer = ""
        tools_ok = 0
        tool_calls_made = 0
        tool_log: list[dict[str, Any]] = []
        consent_refs: list[str] = []
        executed: set[tuple[str, str]] = set()
        force_answer = False
        try:
            for round_no in range(self.settings.max_tool_rounds + 1):
                allow_tools = (
                    not force_answer and round_no < self.settings.max_tool_rounds and len(tools) > 0
                )
                request = ModelRequest(
                    messages=tuple(messages),
                    tools=tools.specs() if allow_tools and native else (),
                )
                # Calls written as text are recognised even when no tools are offered, so
                # such an attempt is never shown to the user as an answer.
                splitter = TextCallSplitter() if len(tools) else None
                calls: list[ToolCall] = []
                round_text = ""
                finish_reason: Literal["stop", "length"] = "stop"
                async for delta in _race_cancel(self.model.stream(request), cancel):
                    if isinstance(delta, TextDelta):
                        shown = splitter.feed(delta.text) if splitter else delta.text
                        if shown:
                            round_text += shown
                            raw_answer += shown
                            if guard is not None:
                                shown = guard.feed(shown)
                        if shown:
                            writer.add(shown)
                            yield Token(
                                session_id=turn.session_id, turn_id=turn.turn_id, text=shown
                            )
                            if writer.due():
                                await writer.flush("streaming", model=self.model.model_id)
                    elif isinstance(delta, ReasoningDelta):
                        writer.reasoning += delta.text
                        if self.settings.stream_reasoning:
                            yield Reasoning(
                                session_id=turn.session_id, turn_id=turn.turn_id, text=delta.text
                            )
                    elif isinstance(delta, ToolCallDelta):
                        calls.append(delta.call)
                    elif isinstance(delta, Finish) and delta.reason == "length":
                        finish_reason = "length"
                if splitter is not None:
                    rest = splitter.finish()
                    calls.extend(rest.calls)
                    if rest.text:
                        round_text += rest.text
                        raw_answer += rest.text
                        shown = guard.feed(rest.text) if guard is not None else rest.text
                        if shown:
                            writer.add(shown)
                            yield Token(
                                session_id=turn.session_id, turn_id=turn.turn_id, text=shown
                            )
                if not calls:
                    checks: list[dict[str, str]] = []
                    if guard is not None:
                        tail = self._finish_guard(
                            guard, ctx, raw_answer, writer, tool_sourced=tools_ok > 0
                        )
                        checks = writer.safety["checks"] if writer.safety else []
                        if tail:
                            yield Token(session_id=turn.session_id, turn_id=turn.turn_id, text=tail)
                    cited = ctx.citations.cited_in(writer.text)
                    writer.citations = [c.stored() for c in cited]
                    for source in cited:
                        yield CitationEvent(
                            session_id=turn.session_id,
                            turn_id=turn.turn_id,
                            marker=source.marker,
                            chunk_id=source.chunk_id,
                            doc_id=source.doc_id,
                            title=source.title,
                            section=source.section,
                            source_url=source.source_url,
                            source_title=source.source_title,
                            snippet=source.snippet,
                        )
                    evidence = self._evidence(
                        turn,
                        session,
                        writer,
                        system,
                        cited,
                        tool_log,
                        triage,
                        checks,
                        consent_refs,
                    )
                    message_id = await writer.flush(
                        "complete", model=self.model.model_id, evidence=evidence
                    )
                    if evidence is not None and self.on_evidence is not None:
                        self.on_evidence()
                    yield AnswerDone(
                        session_id=turn.session_id,
                        turn_id=turn.turn_id,
                        message_id=message_id,
                        text=writer.text,
                        finish_reason=finish_reason,
                        model=self.model.model_id,
                        tool_calls=tool_calls_made,
                        checks=checks,
                        evidence_hash=evidence.hash_hex if evidence is not None else None,
                    )
                    if checks and self.audit is not None:
                        await self.audit.append(
                            tenant_id=session.tenant_id,
                            actor="system",
                            action="output_checked",
                            session_id=turn.session_id,
                            details={
                                "message_id": message_id,
                                "rules": sorted({c["rule"] for c in checks}),
                            },
                        )
                    self._maybe_summarise(session, turn.locale, window)
                    return
                if not allow_tools:
                    # A tool call where an answer was due: nothing usable to show.
                    limit = round_no >= self.settings.max_tool_rounds
                    code = "too_many_tool_rounds" if limit else "model_error"
                    yield await self._fail(turn, writer, code, "error")
                    return
                fresh = [c for c in calls if _call_key(c) not in executed]
                if not fresh:
                    # It asked again for results it already has (small models loop like
                    # this): the next round must answer.
                    force_answer = True
                    continue
                calls = fresh
                executed.update(_call_key(c) for c in calls)
                # The model asked for tools: run them, feed the results back, and store the
                # exchange while the model works on the next round.
                tool_calls_made += len(calls)
                for call in calls:
                    yield ToolCallEvent(
                        session_id=turn.session_id,
                        turn_id=turn.turn_id,
                        call_id=call.id,
                        name=call.name,
                        arguments=_args_for_event(call.arguments),
                    )
                runnable, waiting, approved = _approval_gate(turn, calls, tools)
                for call, approval_id in waiting:
                    yield ApprovalRequired(
                        session_id=turn.session_id,
                        turn_id=turn.turn_id,
                        call_id=call.id,
                        name=call.name,
                        arguments=_args_for_event(call.arguments),
                        approval_id=approval_id,
                        message=localized("tool_approval_needed", turn.locale, tool=call.name),
                    )
                if self.audit is not None:
                    for call, approval_id in approved:
                        await self.audit.append(
                            tenant_id=session.tenant_id,
                            actor="patient",
                            action="tool_approved",
                            session_id=turn.session_id,
                            details={"tool": call.name, "approval_id": approval_id},
                        )
                ran = await self._run_tools(runnable, ctx, cancel, tools) if runnable else []
                by_id = {o.call_id: o for o in ran}
                # What the model hears of a held call: not run, ask the patient.
                outcomes = [
                    by_id.get(c.id)
                    or ToolOutcome(c.id, c.name, False, _APPROVAL_PENDING.format(tool=c.name))
                    for c in calls
                ]
                tools_ok += sum(1 for o in outcomes if o.ok)
                messages.append(
                    ChatMessage(role="assistant", content=round_text, tool_calls=tuple(calls))
                )
                for outcome in outcomes:
                    tool_log.append(
                        {
                            "name": outcome.name,
                            "arguments": next(
                                (c.arguments for c in calls if c.id == outcome.call_id), ""
                            ),
                            "result": outcome.content,
                            "ok": outcome.ok,
                        }
                    )
                    messages.append(
                        ChatMessage(
                            role="tool",
                            content=outcome.content if outcome.ok else f"ERROR: {outcome.content}",
                            tool_call_id=outcome.call_id,
                            name=outcome.name,
                        )
                    )
                    yield ToolResultEvent(
                        session_id=turn.session_id,
                        turn_id=turn.turn_id,
                        call_id=outcome.call_id,
                        name=outcome.name,
                        ok=outcome.ok,
                        content=outcome.content,
                    )
                consent_refs += _consent_refs(outcomes)
                raised = _tool_triage(outcomes)
                if raised and triage is not None and self.safety is not None:
                    # A tool found something triage must hear (a critical lab value):
                    # the level only goes up, and the patient is told before the answer.
                    higher = triage.raised(raised)
                    if higher.level != triage.level:
                        triage = higher
                        yield self._triage_event(turn, triage, advice(triage, turn.locale))
                writer.store_later(
                    [
                        NewMessage(
                            turn.turn_id,
                            "assistant",
                            round_text,
                            tool_calls=tuple(calls),
                            model=self.model.model_id,
                        ),
                        *(
                            NewMessage(
                                turn.turn_id,
                                "tool",
                                o.content,
                                tool_call_id=o.call_id,
                                tool_name=o.name,
                            )
                            for o in outcomes
                        ),
                    ]
                )
            yield await self._fail(turn, writer, "too_many_tool_rounds", "error")
        except TurnCancelled:
            # What the patient already saw of a stopped answer is evidence too.
            partial = (
                self._evidence(
                    turn,
                    session,
                    writer,
                    system,
                    ctx.citations.cited_in(writer.text),
                    tool_log,
                    triage,
                    [],
                    consent_refs,
                )
                if writer.text
                else None
            )
            message_id = await writer.flush(
                "cancelled", model=self.model.model_id, evidence=partial
            )
            if partial is not None and self.on_evidence is not None:
                self.on_evidence()
            yield AnswerDone(
                session_id=turn.session_id,
                turn_id=turn.turn_id,
                message_id=message_id,
                text=writer.text,
                finish_reason="cancelled",
                model=self.model.model_id,
                tool_calls=tool_calls_made,
                evidence_hash=partial.hash_hex if partial is not None else None,
            )
        except HealTraceError as exc:
            log.warning("turn %s failed: %s (%s)", turn.turn_id, exc.code, type(exc).__name__)
            yield await self._fail(turn, writer, exc.code, "error", **exc.params)

    def _evidence(
        self,
        turn: UserTurn,
        session: SessionInfo,
        writer: _AnswerWriter,
        system: str,
        cited: Sequence[Source],
        tool_log: list[dict[str, Any]],
        triage: TriageResult | None,
        checks: list[dict[str, str]],
        consent_refs: list[str],
    ) -> EvidenceRecord | None:
        """The answer's evidence record (hashes and ids only), or None when it is off."""
        if not self.settings.chain.enabled:
            return None
        return build_record(
            session_id=turn.session_id,
            message_id=writer.answer_id,
            turn_id=turn.turn_id,
            tenant_id=session.tenant_id or "default",
            model=self.model.model_id or "unknown",
            # The prompt files' version, and the system prompt as assembled for this turn
            # (tool descriptions and locale included).
            prompt_version=f"{PROMPT_VERSION}/{sha256_text(system)[:16]}",
            question=turn.text,
            answer=writer.text,
            citations=[
                {
                    "chunk_id": c.chunk_id,
                    "doc_id": c.doc_id,
                    "content_sha256": sha256_text(c.text),
                }
                for c in cited
            ],
            tool_calls=tool_log,
            # The audit hashes of the consent decisions behind any record reads.
            consent_ref=",".join(consent_refs) or None,
            triage_level=triage.level.value if triage is not None else "none",
            output_actions=sorted({c["rule"] for c in checks}),
        )

    def _triage_event(self, turn: UserTurn, triage: TriageResult, text: str) -> TriageEvent:
        return TriageEvent(
            session_id=turn.session_id,
            turn_id=turn.turn_id,
            level=triage.level.value,
            reasons=[r.to_dict(turn.locale) for r in triage.reasons],
            emergency_number=triage.emergency_number,
            advice=text,
        )

    async def _handoff_step(
        self, turn: UserTurn, triage: TriageResult, current: OpenHandoff | None
    ) -> TurnHeld | None:
        """Queue the session when the patient asks for a person or triage says so; hold the
        turn (no assistant answer) while a clinician has the session. ``current`` is the
        session's open handoff, read as the turn began."""
        if self.handoffs is None or self.safety is None:
            return None
        from healtrace.handoff.desk import patient_text
        from healtrace.safety.policy import stored_triage

        if current is not None and current.status == "active":
            return TurnHeld(
                session_id=turn.session_id,
                turn_id=turn.turn_id,
                reason="clinician",
                message=patient_text("held", turn.locale),
            )
        by_triage = self.safety.wants_handoff(triage)
        if current is None and (triage.wants_human or by_triage):
            await self.handoffs.request(
                turn.session_id,
                reason="triage" if by_triage else "patient_request",
                triage=stored_triage(triage, turn.locale) if triage.is_red_flag else None,
            )
        if triage.wants_human and not triage.is_red_flag:
            # The message asked for a person: the queue event answers it, not the model.
            return TurnHeld(
                session_id=turn.session_id, turn_id=turn.turn_id, reason="handoff_requested"
            )
        return None

    @staticmethod
    def _finish_guard(
        guard: OutputGuard,
        ctx: ToolContext,
        raw_answer: str,
        writer: _AnswerWriter,
        *,
        tool_sourced: bool,
    ) -> str:
        """Release what the guard held back, and record its edits with the answer.

        An answer is sourced when it cites the knowledge base or rests on tool results
        (which the patient sees as ``tool_result`` events)."""
        cited = tool_sourced or bool(ctx.citations.cited_in(raw_answer))
        result = guard.finish(cited=cited)
        if result.text:
            writer.add(result.text)
        checks = [{"code": a.code, "rule": a.rule, "detail": a.detail} for a in result.actions]
        writer.safety = {"checks": checks, "blocked": result.blocked} if checks else None
        return result.text

    async def _retrieve(self, turn: UserTurn, ctx: ToolContext) -> str:
        """Excerpts for the question, numbered in the turn's ledger ("" without a knowledge
        base). A failing knowledge base does not fail the turn; the model is told nothing."""
        if self.knowledge is None or self.settings.retrieval_k <= 0:
            return ""
        try:
            hits = await tenant_search(
                self.knowledge,
                turn.text,
                k=self.settings.retrieval_k,
                settings=self.settings,
                tenant_id=turn.tenant_id,
            )
        except HealTraceError as exc:
            log.warning("retrieval failed for turn %s: %s", turn.turn_id, exc.code)
            return ""
        if not hits:
            return ""
        sources = ctx.citations.add(hits)
        return load_prompt("knowledge_context", turn.locale).replace(
            "{excerpts}", render_excerpts(sources)
        )

    async def _fail(
        self, turn: UserTurn, writer: _AnswerWriter, code: str, status: str, **params: Any
    ) -> ErrorEvent:
        if writer.text or writer.message_id:
            await writer.flush(status, model=self.model.model_id)
        else:
            await writer.settle()
        return ErrorEvent(
            session_id=turn.session_id,
            turn_id=turn.turn_id,
            code=code,
            message=localized(code, turn.locale, **params),
            retryable=code in ("model_unavailable", "tool_failed"),
        )

    async def _attachments(self, turn: UserTurn) -> tuple[str, list[Any]]:
        """The stored analyses of the turn's images: shown as tool traffic, told to the model."""
        from healtrace.vision.service import attachment_note, load_analysis

        events: list[Any] = []
        notes: list[str] = []
        for i, image_id in enumerate(turn.image_ids):
            call_id = f"attachment_{i + 1}"
            events.append(
                ToolCallEvent(
                    session_id=turn.session_id,
                    turn_id=turn.turn_id,
                    call_id=call_id,
                    name="analyze_image",
                    arguments={"image_id": image_id},
                )
            )
            try:
                analysis = await load_analysis(self.settings, turn.tenant_id or "default", image_id)
            except HealTraceError as exc:
                content, ok = exc.message(turn.locale), False
            else:
                content, ok = attachment_note(analysis, turn.locale), True
            notes.append(content)
            events.append(
                ToolResultEvent(
                    session_id=turn.session_id,
                    turn_id=turn.turn_id,
                    call_id=call_id,
                    name="analyze_image",
                    ok=ok,
                    content=content,
                )
            )
        return "\n\n".join(notes), events

    async def _run_tools(
        self,
        calls: list[ToolCall],
        ctx: ToolContext,
        cancel: asyncio.Event | None,
        tools: ToolRegistry | None = None,
    ) -> list[ToolOutcome]:
        """Run the calls concurrently; a cancel stops them, an infra failure ends the turn."""
        registry = self.tools if tools is None else tools
        tasks = [asyncio.ensure_future(registry.run(c.id, c.name, c.arguments, ctx)) for c in calls]
        gathered = asyncio.gather(*tasks)
        waiter = asyncio.ensure_future(cancel.wait()) if cancel is not None else None
        try:
            pending: set[asyncio.Future[Any]] = {gathered}
            if waiter is not None:
                pending.add(waiter)
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if not gathered.done():
                raise TurnCancelled
            return list(gathered.result())
        finally:
            if waiter is not None:
                waiter.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if not gathered.done():
                gathered.cancel()
            await asyncio.gather(gathered, return_exceptions=True)

    # --- memory ---------------------------------------------------------------------------

    def _maybe_summarise(self, session: SessionInfo, locale: str, window: ContextWindow) -> None:
        """Turns fell out of the window: summarise them in the background, off the hot path.

        The summary covers everything but the newest turns, so the window has room to grow
        again and summaries are written every few turns rather than on every one.
        """
        if window.dropped_until <= session.summary_until or session.id in self._summarising:
            return
        until = max(window.dropped_until, window.keep_recent_from - 1)
        self._summarising.add(session.id)
        task = asyncio.get_running_loop().create_task(self._summarise(session, locale, until))
        self._summary_tasks.add(task)
        task.add_done_callback(self._summary_tasks.discard)
        task.add_done_callback(lambda _t: self._summarising.discard(session.id))

    async def _summarise(self, session: SessionInfo, locale: str, until: int) -> None:
        history: list[MessageRecord] = await self.store.messages(
            session.id, after_position=session.summary_until
        )
        transcript = transcript_for_summary(history, until=until)
        if session.summary:
            label = localized_summary_label(locale)
            transcript = f"{label}:\n{session.summary}\n\n{transcript}"
        request = ModelRequest(
            messages=(
                ChatMessage(role="system", content=load_prompt("summary", locale)),
                ChatMessage(role="user", content=transcript[-12000:]),
            ),
            max_tokens=256,
        )
        parts: list[str] = []
        try:
            async for delta in self.summary_model.stream(request):
                if isinstance(delta, TextDelta):
                    parts.append(delta.text)
        except HealTraceError as exc:
            log.warning("summary for a session failed: %s", exc.code)
            return
        summary = "".join(parts).strip()
        if summary:
            await self.store.save_summary(session.id, summary, until)

    async def aclose(self) -> None:
        for task in list(self._summary_tasks):
            task.cancel()
        await asyncio.gather(*self._summary_tasks, return_exceptions=True)


def _consent_refs(outcomes: list[ToolOutcome]) -> list[str]:
    """Audit hashes of consent decisions tools made (``data.consent_refs()``)."""
    refs: list[str] = []
    for outcome in outcomes:
        hook = getattr(outcome.data, "consent_refs", None)
        if outcome.ok and callable(hook):
            refs.extend(hook())
    return refs


def _tool_triage(outcomes: list[ToolOutcome]) -> list[Any]:
    """Triage reasons tools attach to their results (``data.triage_reasons()``)."""
    reasons: list[Any] = []
    for outcome in outcomes:
        hook = getattr(outcome.data, "triage_reasons", None)
        if outcome.ok and callable(hook):
            reasons.extend(hook())
    return reasons


def _triage_note(triage: TriageResult, locale: str) -> str:
    """Tells the model what triage found, so its answer starts where the banner does.

    Only for red flags; the patient has the triage event whatever the model writes."""
    if not triage.is_red_flag:
        return ""
    zh = locale.lower().startswith("zh")
    emergency = triage.level.value == "emergency"
    if zh:
        action = f"立即拨打 {triage.emergency_number} 或去急诊" if emergency else "今天就去看医生"
    else:
        action = (
            f"call {triage.emergency_number} now or go to the emergency department"
            if emergency
            else "see a doctor today"
        )
    reasons = "; ".join(dict.fromkeys(r.message(locale) for r in triage.reasons[:3]))
    return (
        load_prompt("triage_note", locale)
        .replace("{level}", triage.level.value)
        .replace("{reasons}", reasons)
        .replace("{number}", triage.emergency_number)
        .replace("{action}", action)
    )


def localized_summary_label(locale: str) -> str:
    return (
        "此前对话的摘要"
        if locale.lower().startswith("zh")
        else "Summary of the earlier conversation"
    )


_APPROVAL_PENDING = (
    "Not run: {tool} needs the patient's approval first. The patient has been asked to "
    "approve it; tell them what it would do and that it runs once they approve."
)


def approval_id(session_id: str, call: ToolCall) -> str:
    """The id a patient approves one call by: the session, the tool and its arguments
    (key order ignored), so an approval fits that exact call and nothing else."""
    name, canonical = _call_key(call)
    digest = hashlib.sha256(f"{session_id}\n{name}\n{canonical}".encode()).hexdigest()
    return digest[:24]


def _approval_gate(
    turn: UserTurn, calls: list[ToolCall], tools: ToolRegistry
) -> tuple[list[ToolCall], list[tuple[ToolCall, str]], list[tuple[ToolCall, str]]]:
    """Split calls into those that may run, those held for approval (with their approval
    id), and those among the runnable that run because the patient approved them."""
    runnable: list[ToolCall] = []
    held: list[tuple[ToolCall, str]] = []
    approved: list[tuple[ToolCall, str]] = []
    for call in calls:
        t = tools.get(call.name)
        if t is None or not t.needs_approval:
            runnable.append(call)
            continue
        aid = approval_id(turn.session_id, call)
        if aid in turn.approvals:
            runnable.append(call)
            approved.append((call, aid))
        else:
            held.append((call, aid))
    return runnable, held, approved


def _call_key(call: ToolCall) -> tuple[str, str]:
    """Identity of a call: its name and its arguments, key order ignored."""
    try:
        canonical = json.dumps(json.loads(call.arguments), sort_keys=True)
    except json.JSONDecodeError:
        canonical = call.arguments
    return call.name, canonical


def _args_for_event(arguments: str) -> dict[str, Any] | str:
    value = loads_or_text(arguments)
    return value if isinstance(value, dict) else arguments


def _results_note(outcomes: list[ToolOutcome], locale: str) -> str:
    zh = locale.lower().startswith("zh")
    head = "工具结果：" if zh else "Tool results:"
    lines = [head]
    for o in outcomes:
        status = "" if o.ok else ("（出错）" if zh else " (error)")
        lines.append(f"{o.name}{status}: {o.content}")
    lines.append(
        "请根据这些结果用文字回答用户。"
        if zh
        else "Now answer the user in plain text using these results."
    )
    return "\n".join(lines)


def turn_id() -> str:
    return new_id()
