"""Fitting a conversation into the model's context window.

Whole turns are kept newest first until the token budget is spent, so a tool call is never
separated from its result. Turns that no longer fit are represented by the session summary
(written by the model in the background once turns start falling out).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from healtrace.agent.memory import MessageRecord
from healtrace.agent.models.base import ChatMessage

# Byte-based estimate: ~4 UTF-8 bytes per token for English, ~3 for Chinese (3 bytes per
# character, a bit over one character per token in Qwen's vocabulary). Overestimating is safe.
_BYTES_PER_TOKEN = 3.0
_PER_MESSAGE_OVERHEAD = 6
#: Turns a summary leaves verbatim (the current one included).
KEEP_RECENT_TURNS = 3


def estimate_tokens(text: str) -> int:
    return int(len(text.encode("utf-8")) / _BYTES_PER_TOKEN) + _PER_MESSAGE_OVERHEAD


def _message_tokens(m: MessageRecord) -> int:
    extra = sum(len(c.arguments) + len(c.name) for c in m.tool_calls)
    return estimate_tokens(m.content) + int(extra / _BYTES_PER_TOKEN)


def _group_turns(history: Sequence[MessageRecord]) -> list[list[MessageRecord]]:
    turns: list[list[MessageRecord]] = []
    for m in history:
        if turns and turns[-1][0].turn_id == m.turn_id:
            turns[-1].append(m)
        else:
            turns.append([m])
    return turns


@dataclass(frozen=True, slots=True)
class ContextWindow:
    messages: tuple[ChatMessage, ...]
    #: Position of the newest message that did not fit (0: everything fitted).
    dropped_until: int
    #: Position of the first message of the newest turns a summary should leave out.
    keep_recent_from: int = 0


def _as_model_messages(turn: list[MessageRecord]) -> list[ChatMessage]:
    out: list[ChatMessage] = []
    for m in turn:
        if m.role == "assistant" and not m.content and not m.tool_calls:
            continue  # an answer cut before its first token says nothing
        out.append(m.to_chat())
    # A tool call whose result never arrived (the turn was cut) would be rejected by
    # OpenAI-compatible servers; drop such dangling calls.
    answered = {m.tool_call_id for m in turn if m.role == "tool"}
    return [
        m
        if not m.tool_calls or all(c.id in answered for c in m.tool_calls)
        else ChatMessage(role="assistant", content=m.content)
        for m in out
        if m.role != "tool" or m.tool_call_id is not None
    ]


def build_context(
    system_prompt: str,
    history: Sequence[MessageRecord],
    *,
    budget_tokens: int,
    summary: str = "",
    summary_until: int = 0,
    summary_label: str = "Summary of the earlier conversation",
) -> ContextWindow:
    """System prompt, summary of old turns, and as many recent whole turns as fit."""
    used = estimate_tokens(system_prompt)
    summary_msg: ChatMessage | None = None
    if summary:
        summary_msg = ChatMessage(role="system", content=f"{summary_label}:\n{summary}")
        used += estimate_tokens(summary_msg.content)
    turns = _group_turns([m for m in history if m.position > summary_until])
    kept: list[list[MessageRecord]] = []
    dropped_until = 0
    for index in range(len(turns) - 1, -1, -1):
        turn = turns[index]
        cost = sum(_message_tokens(m) for m in turn)
        # The newest turn (the question being answered) is always kept.
        if kept and used + cost > budget_tokens:
            dropped_until = turn[-1].position
            break
        used += cost
        kept.append(turn)
    messages: list[ChatMessage] = [ChatMessage(role="system", content=system_prompt)]
    if summary_msg is not None:
        messages.append(summary_msg)
    for turn in reversed(kept):
        messages.extend(_as_model_messages(turn))
    recent = turns[-KEEP_RECENT_TURNS:]
    keep_from = recent[0][0].position if recent else 0
    return ContextWindow(
        messages=tuple(messages), dropped_until=dropped_until, keep_recent_from=keep_from
    )


def transcript_for_summary(history: Sequence[MessageRecord], *, until: int) -> str:
    lines = []
    for m in history:
        if m.position > until:
            break
        if m.role in ("user", "assistant") and m.content:
            lines.append(f"{m.role}: {m.content}")
    return "\n".join(lines)
