"""Tool calls that a model wrote as text instead of native ``tool_calls``.

Small local models (and servers started without a tool parser) write calls in the answer:
a bare JSON object ``{"name": ..., "arguments": {...}}``, a fenced ```json block, or
Qwen's ``<tool_call>{...}</tool_call>``. :class:`TextCallSplitter` sits on the token
stream: ordinary prose passes straight through, while anything that may be a call is held
back until the stream ends and then parsed. What does not parse as a call is released as
text, so a legitimate JSON answer is never swallowed.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from healtrace.agent.models.base import ChatMessage, ToolCall

_MARKER = "<tool_call>"
_FENCE = "```"
_CALL_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
_FENCED = re.compile(r"```(?:json|tool_call)?\s*(.*?)\s*```", re.DOTALL)


def _as_call(obj: Any) -> ToolCall | None:
    if not isinstance(obj, dict):
        return None
    if "function" in obj and isinstance(obj["function"], dict):
        obj = obj["function"]
    name = obj.get("name") or obj.get("tool")
    if not isinstance(name, str) or not name:
        return None
    args = obj.get("arguments", obj.get("parameters", obj.get("args")))
    if args is None:
        return None
    arguments = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
    return ToolCall(id=f"call_{uuid.uuid4().hex[:12]}", name=name, arguments=arguments)


def parse_text_tool_calls(text: str) -> list[ToolCall]:
    """The tool calls ``text`` opens with, or [] if it does not open with a call.

    Small models often add a sentence after the call ("This function computes ...");
    that commentary is dropped with the call rather than shown as an answer.
    """
    stripped = text.strip()
    if not stripped:
        return []
    if _MARKER in stripped:
        bodies = [m.group(1) for m in _CALL_BLOCK.finditer(stripped)]
    elif stripped.startswith(_FENCE):
        match = _FENCED.match(stripped)
        if match is None:
            return []
        bodies = [match.group(1)]
    else:
        bodies = [stripped]
    calls: list[ToolCall] = []
    for body in bodies:
        for value in _leading_values(body):
            call = _as_call(value)
            if call is None:
                return []
            calls.append(call)
    return calls


def _leading_values(text: str) -> list[Any]:
    """The JSON values at the start of ``text`` (several calls may follow each other)."""
    decoder = json.JSONDecoder()
    values: list[Any] = []
    index = 0
    while index < len(text):
        while index < len(text) and text[index] in " \t\r\n,;":
            index += 1
        if index >= len(text) or text[index] not in "{[":
            break
        try:
            value, index = decoder.raw_decode(text, index)
        except json.JSONDecodeError:
            return values if values else []
        values.extend(value if isinstance(value, list) else [value])
    return values


@dataclass
class SplitResult:
    text: str = ""
    calls: list[ToolCall] = field(default_factory=list)


@dataclass
class TextCallSplitter:
    """Feed streamed text; get back what is safe to show now, and calls at the end."""

    mode: Literal["start", "text", "capture"] = "start"
    _pending: str = ""
    _captured: str = ""

    def feed(self, chunk: str) -> str:
        if self.mode == "capture":
            self._captured += chunk
            return ""
        self._pending += chunk
        if self.mode == "start":
            head = self._pending.lstrip()
            if not head:
                return ""
            # "[" starts a call only as a JSON list of objects: "[1] Source" is prose.
            after_bracket = head[1:].lstrip() if head.startswith("[") else None
            if head.startswith(("{", _FENCE, _MARKER)) or (
                after_bracket is not None and after_bracket.startswith("{")
            ):
                self.mode = "capture"
                self._captured, self._pending = self._pending, ""
                return ""
            if _FENCE.startswith(head) or _MARKER.startswith(head) or after_bracket == "":
                return ""  # could still become a call; wait for more
            self.mode = "text"
        return self._release()

    def _release(self) -> str:
        marker_at = self._pending.find(_MARKER)
        if marker_at >= 0:
            out, self._captured = self._pending[:marker_at], self._pending[marker_at:]
            self._pending = ""
            self.mode = "capture"
            return out
        # Hold back a tail that may be the start of a marker split across chunks.
        keep = 0
        for size in range(min(len(_MARKER) - 1, len(self._pending)), 0, -1):
            if _MARKER.startswith(self._pending[-size:]):
                keep = size
                break
        out = self._pending[: len(self._pending) - keep]
        self._pending = self._pending[len(self._pending) - keep :]
        return out

    def finish(self) -> SplitResult:
        """End of stream: parse what was held back, or release it as text."""
        held = self._captured + self._pending
        self._captured = self._pending = ""
        if self.mode != "capture":
            return SplitResult(text=held)
        calls = parse_text_tool_calls(held)
        if calls:
            return SplitResult(calls=calls)
        return SplitResult(text=held)


def flatten_tool_messages(messages: tuple[ChatMessage, ...]) -> list[ChatMessage]:
    """Rewrite tool traffic for a backend without native tools.

    An assistant message that called tools becomes the JSON the model would have written,
    and tool results become a user-side note (many chat templates have no tool role).
    """
    out: list[ChatMessage] = []
    for m in messages:
        if m.role == "assistant" and m.tool_calls:
            written = "\n".join(
                json.dumps(
                    {"name": c.name, "arguments": loads_or_text(c.arguments)}, ensure_ascii=False
                )
                for c in m.tool_calls
            )
            out.append(ChatMessage(role="assistant", content=(m.content + "\n" + written).strip()))
        elif m.role == "tool":
            note = f"[tool result: {m.name or 'tool'}] {m.content}"
            if out and out[-1].role == "user" and out[-1].content.startswith("[tool result"):
                out[-1] = ChatMessage(role="user", content=out[-1].content + "\n" + note)
            else:
                out.append(ChatMessage(role="user", content=note))
        else:
            out.append(m)
    return out


def loads_or_text(arguments: str) -> Any:
    """Parsed JSON arguments, or the raw text when they are not JSON."""
    try:
        return json.loads(arguments)
    except json.JSONDecodeError:
        return arguments


_FOLD_NOTE = {
    "en": (
        "Results from the tools I ran for this question:",
        "Answer the question above in plain sentences using these results. Do not call a tool.",
    ),
    "zh": (
        "针对这个问题已运行的工具结果：",
        "请根据这些结果，用通顺的句子回答上面的问题，不要再调用工具。",
    ),
}


def has_pending_tool_results(messages: tuple[ChatMessage, ...]) -> bool:
    """True if tool results arrived after the newest user message (an answering round)."""
    for m in reversed(messages):
        if m.role == "user":
            return False
        if m.role == "tool":
            return True
    return False


def fold_tool_results(messages: tuple[ChatMessage, ...]) -> list[ChatMessage]:
    """Put this turn's tool results into the question itself, retrieval-style.

    Small local models shown their own tool call and its result tend to repeat the call
    instead of answering; given the results as part of the question they answer. Earlier
    turns are flattened to plain text.
    """
    last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)
    if last_user < 0:
        return flatten_tool_messages(messages)
    question = messages[last_user]
    results = [m for m in messages[last_user + 1 :] if m.role == "tool"]
    cjk = any("\u4e00" <= ch <= "\u9fff" for ch in question.content)
    head, tail = _FOLD_NOTE["zh" if cjk else "en"]
    lines = [question.content, "", head]
    lines += [f"- {m.name or 'tool'}: {m.content}" for m in results]
    lines += ["", tail]
    folded = ChatMessage(role="user", content="\n".join(lines))
    return [*flatten_tool_messages(messages[:last_user]), folded]
