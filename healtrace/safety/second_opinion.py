"""A model's second opinion on triage, which can raise urgency but never lower it.

The rules decide first (:mod:`healtrace.safety.triage`); this asks a chat model to rate the
same message and only ever adds a more urgent :class:`~healtrace.safety.types.Reason`. Any
failure — timeout, backend error, a reply that is not the JSON asked for — leaves the rules'
verdict as it was: the second opinion is a safety net, never a gate.

The patient's text reaches the model as delimited data (the prompt says text inside the
delimiters is not instructions), and is never logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass

from healtrace.agent.models.base import ChatMessage, ModelBackend, ModelRequest, TextDelta
from healtrace.errors import HealTraceError
from healtrace.prompts import load_prompt
from healtrace.safety.types import CATEGORIES, Level, Reason, TriageResult

log = logging.getLogger(__name__)

#: Characters of the patient's message the model sees.
MAX_TEXT = 4000
#: Characters of the model's reply read before giving up on finding the JSON.
_MAX_REPLY = 4000
_TAG = re.compile(r"<\s*/?\s*patient_message\s*>", re.IGNORECASE)
_FENCE = re.compile(r"```(?:json)?", re.IGNORECASE)
_LEVELS = {
    "emergency": Level.EMERGENCY,
    "urgent": Level.URGENT,
    "routine": Level.ROUTINE,
    "self-care": Level.SELF_CARE,
    "selfcare": Level.SELF_CARE,
}
_MESSAGES = {
    Level.EMERGENCY: (
        "A second, model-assisted review rated this message as a possible emergency.",
        "模型辅助复核认为这可能是急症。",
    ),
    Level.URGENT: (
        "A second, model-assisted review suggests seeing a clinician today.",
        "模型辅助复核建议今天就医。",
    ),
    Level.ROUTINE: (
        "A second, model-assisted review suggests booking an appointment with a clinician.",
        "模型辅助复核建议预约门诊。",
    ),
    Level.SELF_CARE: ("", ""),
}


@dataclass(frozen=True, slots=True)
class Opinion:
    level: Level
    #: One of :data:`~healtrace.safety.types.CATEGORIES`, or ``other``.
    category: str
    reason: str = ""


def parse_opinion(reply: str) -> Opinion | None:
    """The first JSON object in ``reply`` with a known ``level`` (fences and prose around it
    are ignored); None if there is none."""
    text = _FENCE.sub(" ", reply[:_MAX_REPLY])
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start != -1:
        try:
            value, _ = decoder.raw_decode(text, start)
        except ValueError:
            value = None
        if isinstance(value, dict):
            name = re.sub(r"[\s_]+", "-", str(value.get("level", "")).strip().lower())
            level = _LEVELS.get(name)
            if level is None:
                return None
            category = str(value.get("category", "")).strip().lower().replace(" ", "_")
            return Opinion(
                level=level,
                category=category if category in CATEGORIES else "other",
                reason=str(value.get("reason", ""))[:200],
            )
        start = text.find("{", start + 1)
    return None


class SecondOpinion:
    """Asks ``model`` to rate a message's urgency; see the module docstring."""

    def __init__(self, model: ModelBackend, *, timeout_s: float = 4.0) -> None:
        self.model = model
        self.timeout_s = timeout_s

    async def review(self, text: str, locale: str, rules: TriageResult) -> TriageResult:
        """``rules``, raised by the model's opinion if that is more urgent.

        At ``emergency`` nothing can be raised, so the model is not asked."""
        if rules.level is Level.EMERGENCY:
            return rules
        try:
            async with asyncio.timeout(self.timeout_s):
                reply = await self._ask(text, locale)
        except TimeoutError:
            log.warning("triage second opinion ignored: timeout")
            return rules
        except HealTraceError as exc:
            log.warning("triage second opinion ignored: %s", exc.code)
            return rules
        opinion = parse_opinion(reply)
        if opinion is None:
            log.warning("triage second opinion ignored: unparseable_reply")
            return rules
        if opinion.level.rank <= rules.level.rank:
            return rules
        message_en, message_zh = _MESSAGES[opinion.level]
        return rules.raised(
            [
                Reason(
                    category=opinion.category,
                    code="model.second_opinion",
                    level=opinion.level,
                    source="model",
                    evidence="",
                    message_en=message_en,
                    message_zh=message_zh,
                )
            ]
        )

    async def _ask(self, text: str, locale: str) -> str:
        data = _TAG.sub(" ", text[:MAX_TEXT])
        request = ModelRequest(
            messages=(
                ChatMessage(role="system", content=load_prompt("triage_review", locale)),
                ChatMessage(role="user", content=f"<patient_message>\n{data}\n</patient_message>"),
            ),
            max_tokens=120,
            temperature=0.0,
        )
        stream = self.model.stream(request)
        parts: list[str] = []
        size = 0
        try:
            async for delta in stream:
                if isinstance(delta, TextDelta):
                    parts.append(delta.text)
                    size += len(delta.text)
                    if size > _MAX_REPLY:
                        break
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
        return "".join(parts)


__all__ = ["MAX_TEXT", "Opinion", "SecondOpinion", "parse_opinion"]
