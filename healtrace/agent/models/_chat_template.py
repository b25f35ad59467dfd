"""Chat templates as stored in GGUF files, rendered like Hugging Face's ``apply_chat_template``.

Rendering the model's own template (rather than a hand-written prompt format) keeps the
prompt exactly as the model was trained to see it, including its tool-calling format.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

from healtrace.agent._textcalls import flatten_tool_messages, loads_or_text
from healtrace.agent.models.base import ChatMessage, ToolSpec

# Used only when a GGUF carries no chat template; most instruction-tuned models speak ChatML.
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

_PROBE_DESCRIPTION = "probe-description-7f3a"
_PROBE_ARGUMENT = "probe-argument-7f3a"
_PROBE_RESULT = "probe-result-7f3a"
_PROBE_ANSWER = "probe-answer-7f3a"


class ChatTemplate:
    """A GGUF chat template rendered the way Hugging Face ``apply_chat_template`` does."""

    def __init__(self, source: str, *, bos_token: str, eos_token: str) -> None:
        env = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]
        )
        # Jinja's own tojson escapes <, > and & for HTML and non-ASCII text; templates are
        # written against HF's plain json.dumps, and Chinese tool descriptions must stay
        # readable to the model.
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = _strftime_now
        self._template = env.from_string(source)
        self._bos_token = bos_token
        self._eos_token = eos_token
        self.supports_tools = self._probe_tools()
        self.end_of_turn = self._probe_end_of_turn() or eos_token

    def render(
        self,
        messages: Sequence[dict[str, Any]],
        *,
        tools: Sequence[dict[str, Any]] = (),
        add_generation_prompt: bool = True,
    ) -> str:
        return self._template.render(
            messages=list(messages),
            tools=list(tools) or None,
            add_generation_prompt=add_generation_prompt,
            bos_token=self._bos_token,
            eos_token=self._eos_token,
        )

    def _probe_tools(self) -> bool:
        """True if the template shows tools, assistant tool calls and tool results."""
        spec = ToolSpec(
            name="probe_tool",
            description=_PROBE_DESCRIPTION,
            parameters={"type": "object", "properties": {"x": {"type": "string"}}},
        )
        call = {
            "id": "call_probe",
            "type": "function",
            "function": {"name": "probe_tool", "arguments": {"x": _PROBE_ARGUMENT}},
        }
        messages: list[dict[str, Any]] = [
            {"role": "user", "content": "probe"},
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_probe", "content": _PROBE_RESULT},
        ]
        try:
            text = self.render(messages, tools=[spec.to_openai()])
        except jinja2.TemplateError:
            return False
        return all(s in text for s in (_PROBE_DESCRIPTION, _PROBE_ARGUMENT, _PROBE_RESULT))

    def _probe_end_of_turn(self) -> str:
        """The marker the template writes after an assistant turn (``<|im_end|>``, …)."""
        messages = [
            {"role": "user", "content": "probe"},
            {"role": "assistant", "content": _PROBE_ANSWER},
        ]
        try:
            text = self.render(messages, add_generation_prompt=False)
        except jinja2.TemplateError:
            return ""
        _, _, after = text.partition(_PROBE_ANSWER)
        words = after.split()
        return words[0] if words else ""


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _raise_exception(message: str) -> None:
    raise jinja2.TemplateError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def template_messages(
    messages: Sequence[ChatMessage], *, native_tools: bool
) -> list[dict[str, Any]]:
    """Messages as chat templates expect them.

    With native tools, assistant calls are in OpenAI shape but with *parsed* arguments
    (templates apply ``tojson`` to them, as HF transformers passes dicts) and results keep
    the ``tool`` role. Without, tool traffic is flattened into plain text turns.
    """
    if not native_tools:
        return [
            {"role": m.role, "content": m.content} for m in flatten_tool_messages(tuple(messages))
        ]
    out: list[dict[str, Any]] = []
    for m in messages:
        msg = m.to_openai()
        if m.tool_calls:
            msg["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": loads_or_text(c.arguments)},
                }
                for c in m.tool_calls
            ]
        out.append(msg)
    return out
