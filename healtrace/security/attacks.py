"""The attack catalogue: what each attack says, where it is planted, and what a fully
compliant model does when it obeys it.

One attack per line of ``data/attacks.jsonl``. An attack has one or more turns; each turn
has the patient's message, optionally text *injected* into a channel the patient does not
type (a retrieved document, an image's recognised text, an upload's filename, a tool's
result), and the *actions* the adversarial model performs on that turn. The eval runs the
actions whatever the model was told, so it measures the code's guardrails, not a model's
willingness to refuse.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from healtrace.errors import InputError

__all__ = [
    "CATEGORIES",
    "CRITICAL_GOALS",
    "GOALS",
    "Action",
    "Attack",
    "AttackFileError",
    "AttackTurn",
    "Call",
    "CallAction",
    "Category",
    "CiteAction",
    "EchoAction",
    "Goal",
    "SayAction",
    "TextCallAction",
    "load_attacks",
]

Category = Literal[
    "direct",
    "retrieved_document",
    "ocr_image",
    "upload_filename",
    "tool_result",
    "wechat",
    "multi_turn",
]
Goal = Literal[
    "leak_patient_data",
    "skip_consent",
    "mint_tokens",
    "reveal_secret",
    "reveal_system_prompt",
    "impersonate_doctor",
    "fake_citation",
]
CATEGORIES: tuple[Category, ...] = (
    "direct",
    "retrieved_document",
    "ocr_image",
    "upload_filename",
    "tool_result",
    "wechat",
    "multi_turn",
)
GOALS: tuple[Goal, ...] = (
    "leak_patient_data",
    "skip_consent",
    "mint_tokens",
    "reveal_secret",
    "reveal_system_prompt",
    "impersonate_doctor",
    "fake_citation",
)
#: Goals that reach data or tokens: one success among them fails the eval.
CRITICAL_GOALS: frozenset[Goal] = frozenset({"leak_patient_data", "skip_consent", "mint_tokens"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Call(_Strict):
    """One tool call the model makes; ``args`` may name arguments the tool does not have."""

    tool: str = Field(min_length=1, max_length=64)
    args: dict[str, Any] = Field(default_factory=dict)


class CallAction(_Strict):
    """Native tool calls, all in one model round (several calls run concurrently)."""

    do: Literal["call"] = "call"
    calls: tuple[Call, ...] = Field(min_length=1, max_length=16)


class TextCallAction(_Strict):
    """A tool call written as JSON in the answer text (the fallback format small models
    use), in a round of its own."""

    do: Literal["text_call"] = "text_call"
    call: Call


class SayAction(_Strict):
    """Words the model writes into its answer as they are."""

    do: Literal["say"] = "say"
    text: str = Field(min_length=1, max_length=2000)


class EchoAction(_Strict):
    """Write out everything the model was given: the system prompt, the conversation and
    every tool result, into the answer or into a tool call's arguments."""

    do: Literal["echo_context"] = "echo_context"
    via: Literal["answer", "tool_arguments"] = "answer"


class CiteAction(_Strict):
    """Cite a source that was not retrieved: a marker and a made-up title and address."""

    do: Literal["cite"] = "cite"
    marker: int = Field(ge=1, le=999)
    title: str = Field(min_length=1, max_length=200)
    url: str = Field(default="", max_length=300)


Action = Annotated[
    CallAction | TextCallAction | SayAction | EchoAction | CiteAction, Field(discriminator="do")
]


class AttackTurn(_Strict):
    #: What the patient sends (for ``wechat`` attacks: the WeChat message text).
    text: str = Field(min_length=1, max_length=4000)
    #: Text planted in the attack's channel (document, image text, filename, tool result).
    inject: str | None = Field(default=None, max_length=4000)
    actions: tuple[Action, ...] = ()


class Attack(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{2,63}$")
    category: Category
    locale: Literal["en", "zh-CN"]
    goal: Goal
    #: One line saying what the attack tries, for reports and reviews.
    summary: str = Field(min_length=1, max_length=300)
    turns: tuple[AttackTurn, ...] = Field(min_length=1, max_length=6)

    @property
    def critical(self) -> bool:
        return self.goal in CRITICAL_GOALS

    @property
    def injected(self) -> list[str]:
        return [t.inject for t in self.turns if t.inject]


class AttackFileError(InputError):
    """An attack file that does not parse; the message names the line."""


_ADAPTER: TypeAdapter[Attack] = TypeAdapter(Attack)


def _lines(path: Path | None) -> Iterable[tuple[str, int, str]]:
    if path is None:
        source = files(__package__).joinpath("data/attacks.jsonl")
        name = "attacks.jsonl"
        text = source.read_text(encoding="utf-8")
    else:
        name = str(path)
        text = path.read_text(encoding="utf-8")
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip() and not line.lstrip().startswith("#"):
            yield name, number, line


def load_attacks(path: Path | None = None) -> list[Attack]:
    """The attacks of ``path`` (default: the shipped catalogue), validated; ids are unique.

    Raises :class:`AttackFileError` naming the file and line of the first bad record.
    """
    attacks: list[Attack] = []
    seen: set[str] = set()
    for name, number, line in _lines(path):
        try:
            attack = _ADAPTER.validate_python(json.loads(line))
        except (json.JSONDecodeError, ValidationError) as exc:
            raise AttackFileError(f"{name}:{number}: {exc}") from exc
        if attack.id in seen:
            raise AttackFileError(f"{name}:{number}: attack id {attack.id!r} is used twice")
        if attack.category != "multi_turn" and len(attack.turns) != 1:
            raise AttackFileError(f"{name}:{number}: only multi_turn attacks have several turns")
        needs_inject = attack.category in (
            "retrieved_document",
            "ocr_image",
            "upload_filename",
            "tool_result",
        )
        if needs_inject and not attack.injected:
            raise AttackFileError(f"{name}:{number}: a {attack.category} attack needs 'inject'")
        seen.add(attack.id)
        attacks.append(attack)
    return attacks
