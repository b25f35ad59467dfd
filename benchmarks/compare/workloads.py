"""What every variant runs: the questions, the scripted model's replies, the tools.

The scripted server decides each reply from the request alone (the question, and whether
tool results are already in the conversation), so the direct floor, the LangGraph agent
and HealTrace get the same replies in the same order, also with 100 sessions at once.

Tools, the same Python functions for every variant:

- ``search_knowledge`` (HealTrace's built-in retrieval tool) over :class:`FixedKnowledge`,
  a fixed in-memory knowledge base (three excerpts, no embedding), so the retrieval
  costs the same wherever it runs;
- ``body_mass_index`` (built in), and ``heart_rate_zones`` and ``daily_water`` (small
  deterministic tools defined here with HealTrace's ``@tool``).

HealTrace runs them through its registry; LangGraph gets them through
``healtrace.tools.bridges.to_langchain_tools`` (which also goes through the registry); the
direct floor parses the arguments with the tool's own model and calls the function.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field

from healtrace.agent.models.base import ToolCall
from healtrace.agent.models.testing_server import Answer, Reply, ToolCalls
from healtrace.tools.builtin import body_mass_index, search_knowledge
from healtrace.tools.core import Tool, ToolContext, ToolRegistry, tool

FIRST_TOKEN_MS = 40.0
TOKEN_INTERVAL_MS = 2.0
MODEL = "scripted-model"
#: Sampling options every variant sends (the scripted server ignores them; llama.cpp not).
TEMPERATURE = 0.0
TOP_P = 0.8
MAX_TOKENS = 256


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    label: str
    question: str
    #: The tool calls of the first model round (empty: the model answers at once).
    calls: tuple[ToolCall, ...]
    answer: str


PLAIN = Workload(
    "plain",
    "plain question",
    "What is a normal resting heart rate for adults?",
    (),
    "For most adults a normal resting heart rate is between 60 and 100 beats per minute. "
    "Well-trained athletes can be lower, around 40 to 60. If yours is often above 100 or "
    "below 50 and you feel dizzy or short of breath, see a doctor.",
)
RETRIEVAL = Workload(
    "retrieval",
    "one retrieval (1 tool call)",
    "How much exercise should an adult get each week?",
    (
        ToolCall(
            "call_kb_1",
            "search_knowledge",
            json.dumps({"query": "weekly physical activity adults", "k": 3}),
        ),
    ),
    "Adults should aim for at least 150 to 300 minutes of moderate aerobic activity a week, "
    "or 75 to 150 minutes of vigorous activity [1], plus muscle-strengthening activities on "
    "two or more days [2]. Some activity is better than none [3].",
)
THREE_TOOLS = Workload(
    "three_tools",
    "three tool calls",
    "I am 40, weigh 70 kg and am 175 cm tall: my BMI, heart-rate zones and daily water?",
    (
        ToolCall("call_bmi_1", "body_mass_index", json.dumps({"weight": 70, "height": 175})),
        ToolCall("call_hr_1", "heart_rate_zones", json.dumps({"age": 40})),
        ToolCall("call_water_1", "daily_water", json.dumps({"weight_kg": 70})),
    ),
    "Your BMI is 22.9, a healthy weight. At 40 your estimated maximum heart rate is 180, so "
    "moderate exercise is about 108 to 126 beats per minute and vigorous about 126 to 153. "
    "Aim for roughly 2.3 litres of fluid a day, more in hot weather or when you exercise.",
)
WORKLOADS: dict[str, Workload] = {w.name: w for w in (PLAIN, RETRIEVAL, THREE_TOOLS)}
#: The workload every one of the concurrent sessions runs.
CONCURRENT = PLAIN


def _is_tool_message(message: Any) -> bool:
    return isinstance(message, dict) and message.get("role") == "tool"


def _last_user_text(messages: Sequence[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(
                    p.get("text", "") for p in content if isinstance(p, dict) and "text" in p
                )
    return ""


def scripted_reply(body: dict[str, Any]) -> Reply:
    """The reply to one chat request: tool calls first, the answer once results are in."""
    messages = body.get("messages")
    messages = messages if isinstance(messages, list) else []
    question = _last_user_text(messages)
    for workload in WORKLOADS.values():
        if question.startswith(workload.question):
            if workload.calls and not any(_is_tool_message(m) for m in messages):
                return ToolCalls(workload.calls)
            return Answer(workload.answer)
    return Answer("Unknown question.")


@dataclass(frozen=True, slots=True)
class Excerpt:
    chunk_id: str
    doc_id: str
    title: str
    section: str
    source_url: str
    source_title: str
    language: str
    text: str


_EXCERPTS = (
    Excerpt(
        "activity-1",
        "physical-activity",
        "Physical activity",
        "Adults",
        "https://www.who.int/news-room/fact-sheets/detail/physical-activity",
        "WHO: Physical activity",
        "en",
        "Adults aged 18-64 should do at least 150-300 minutes of moderate-intensity aerobic "
        "physical activity, or at least 75-150 minutes of vigorous-intensity activity, or an "
        "equivalent combination, throughout the week.",
    ),
    Excerpt(
        "activity-2",
        "physical-activity",
        "Physical activity",
        "Strength",
        "https://www.who.int/news-room/fact-sheets/detail/physical-activity",
        "WHO: Physical activity",
        "en",
        "Adults should also do muscle-strengthening activities at moderate or greater "
        "intensity that involve all major muscle groups on 2 or more days a week.",
    ),
    Excerpt(
        "activity-3",
        "physical-activity",
        "Physical activity",
        "Any activity",
        "https://www.who.int/news-room/fact-sheets/detail/physical-activity",
        "WHO: Physical activity",
        "en",
        "Doing some physical activity is better than doing none. Adults should limit the "
        "amount of time spent being sedentary.",
    ),
)


class FixedKnowledge:
    """A knowledge base that answers every query with the same three excerpts."""

    def __init__(self) -> None:
        self.queries = 0

    async def asearch(
        self,
        query: str,
        *,
        k: int = 5,
        filters: dict[str, Any] | None = None,
        collection: str | None = None,
    ) -> Sequence[Excerpt]:
        self.queries += 1
        return _EXCERPTS[:k]


@tool(timeout_s=2.0)
async def heart_rate_zones(age: Annotated[int, Field(ge=10, le=110)]) -> dict[str, Any]:
    """Estimated maximum heart rate and the moderate and vigorous exercise zones for an age.

    Args:
        age: Age in years.
    """
    top = 220 - age
    return {
        "max_heart_rate": top,
        "moderate": [round(top * 0.6), round(top * 0.7)],
        "vigorous": [round(top * 0.7), round(top * 0.85)],
        "method": "220 - age; moderate 60-70 %, vigorous 70-85 % of the maximum",
    }


@tool(timeout_s=2.0)
async def daily_water(weight_kg: Annotated[float, Field(gt=0, le=400)]) -> dict[str, Any]:
    """A rough daily fluid target for an adult from body weight (about 33 ml per kg).

    Args:
        weight_kg: Body weight in kilograms.
    """
    return {"litres": round(weight_kg * 0.033, 1), "rule": "33 ml per kg of body weight"}


TOOLS: tuple[Tool, ...] = (search_knowledge, body_mass_index, heart_rate_zones, daily_water)


def registry() -> ToolRegistry:
    return ToolRegistry(TOOLS)


def result_text(value: Any) -> str:
    """A tool's return value as the model reads it (what HealTrace's registry sends)."""
    if isinstance(value, str):
        return value
    dump = getattr(value, "model_dump_json", None)
    if callable(dump):
        return str(dump())
    return json.dumps(value, ensure_ascii=False, default=str)


async def call_tool_directly(call: ToolCall, ctx: ToolContext) -> str:
    """The floor's tool step: the tool's own argument model, then the function itself."""
    chosen = next(t for t in TOOLS if t.name == call.name)
    args = chosen.parse(json.loads(call.arguments))
    return result_text(await chosen.call(ctx, args))
