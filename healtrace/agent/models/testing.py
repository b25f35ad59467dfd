"""Scripted model backends shipped in the package, for tests and offline demos.

- :class:`DemoModel` needs no setup: it calls each offered tool once with arguments taken
  from the tool's schema examples, then writes an answer that quotes the results.
- :class:`ScriptedModel` plays back a script, one step per model request, records every
  request, and can check that the script was used up.

Both stream with optional fixed delays so they can stand in for a real backend with a
known token rate (benchmarks subtract that known latency).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from healtrace.agent.models.base import (
    Finish,
    ModelDelta,
    ModelRequest,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
    Usage,
)
from healtrace.errors import HealTraceError

_WORD = re.compile(r"\S+\s*")


def split_tokens(text: str) -> list[str]:
    """Word-sized pieces (CJK text one character at a time), like a tokenizer would stream."""
    pieces: list[str] = []
    for word in _WORD.findall(text) or [text]:
        if any("\u4e00" <= ch <= "\u9fff" for ch in word):
            pieces.extend(word)
        else:
            pieces.append(word)
    return pieces


def example_arguments(spec: ToolSpec, variant: int = 0) -> dict[str, Any]:
    """Valid-looking arguments from a tool's JSON schema (examples, defaults, enum, type).

    ``variant`` shifts the first numeric argument, so repeated calls are distinct calls.
    """
    props: dict[str, Any] = spec.parameters.get("properties", {})
    required = set(spec.parameters.get("required", []))
    out: dict[str, Any] = {}
    for name, schema in props.items():
        if name not in required and "examples" not in schema:
            continue
        if schema.get("examples"):
            out[name] = schema["examples"][0]
        elif "default" in schema:
            out[name] = schema["default"]
        elif schema.get("enum"):
            out[name] = schema["enum"][0]
        else:
            out[name] = {"integer": 1, "number": 1.0, "boolean": False, "string": "example"}.get(
                schema.get("type", "string"), "example"
            )
    if variant:
        for name, value in out.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                out[name] = value + variant
                break
    return out


class _Timing:
    def __init__(self, first_token_ms: float, token_interval_ms: float) -> None:
        self.first = first_token_ms / 1000.0
        self.interval = token_interval_ms / 1000.0

    async def before(self, index: int) -> None:
        delay = self.first if index == 0 else self.interval
        if delay > 0:
            await asyncio.sleep(delay)


class DemoModel:
    """Calls every offered tool once (or ``tool_rounds`` times), then answers."""

    native_tools = True

    def __init__(
        self,
        *,
        first_token_ms: float = 0.0,
        token_interval_ms: float = 0.0,
        tool_rounds: int = -1,
        name: str = "scripted",
        answer: str = "This is the HealTrace demo model answering offline.",
    ) -> None:
        self._name = name
        self._timing = _Timing(first_token_ms, token_interval_ms)
        self.tool_rounds = tool_rounds
        self.answer = answer
        self.requests: list[ModelRequest] = []

    @property
    def name(self) -> str:
        return self._name

    @property
    def model_id(self) -> str:
        return f"healtrace-demo:{self._name}"

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelDelta]:
        self.requests.append(request)
        last_user = max((i for i, m in enumerate(request.messages) if m.role == "user"), default=-1)
        this_turn = request.messages[last_user + 1 :]
        results = [m for m in this_turn if m.role == "tool"]
        called = {c.name for m in this_turn for c in m.tool_calls}
        rounds_done = sum(1 for m in this_turn if m.tool_calls)
        limit = len(request.tools) if self.tool_rounds < 0 else self.tool_rounds
        pending = [t for t in request.tools if t.name not in called]
        if request.tools and rounds_done < limit:
            spec = pending[0] if pending else request.tools[0]
            await self._timing.before(0)
            call = ToolCall(
                id=f"call_{rounds_done + 1}",
                name=spec.name,
                arguments=json.dumps(example_arguments(spec, variant=rounds_done)),
            )
            yield ToolCallDelta(call)
            yield Finish(reason="tool_calls", model=self.model_id)
            return
        text = self.answer
        if results:
            text += " Tool results: " + "; ".join(f"{m.name} → {m.content}" for m in results)
        pieces = split_tokens(text)
        for index, piece in enumerate(pieces):
            await self._timing.before(index)
            yield TextDelta(piece)
        yield Finish(reason="stop", usage=Usage(0, len(pieces)), model=self.model_id)

    async def aclose(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class Step:
    """One scripted model response: deltas to stream, or an error to raise after them."""

    deltas: Sequence[ModelDelta | str] = ()
    raises: HealTraceError | None = None
    #: Seconds to wait before each delta (imitates a slow backend; used by cancel tests).
    delay_s: float = 0.0


ScriptItem = Step | Callable[[ModelRequest], Step]


class ScriptedModel:
    """Plays back ``script`` one step per request; ``assert_used_up`` checks nothing is left."""

    def __init__(
        self, script: Sequence[ScriptItem], *, native_tools: bool = True, name: str = "scripted"
    ) -> None:
        self._script = list(script)
        self._used = 0
        self.native_tools = native_tools
        self._name = name
        self.requests: list[ModelRequest] = []

    @property
    def name(self) -> str:
        return self._name

    @property
    def model_id(self) -> str:
        return f"scripted:{self._name}"

    def assert_used_up(self) -> None:
        left = len(self._script) - self._used
        assert left == 0, f"{left} scripted model step(s) were never requested"

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelDelta]:
        self.requests.append(request)
        if self._used >= len(self._script):
            raise AssertionError(
                f"the model was called {self._used + 1} times but the script has "
                f"{len(self._script)} step(s)"
            )
        item = self._script[self._used]
        self._used += 1
        step = item(request) if callable(item) else item
        saw_finish = False
        for delta in step.deltas:
            if step.delay_s:
                await asyncio.sleep(step.delay_s)
            out = TextDelta(delta) if isinstance(delta, str) else delta
            saw_finish = saw_finish or isinstance(out, Finish)
            yield out
        if step.raises is not None:
            raise step.raises
        if not saw_finish:
            yield Finish(model=self.model_id)

    async def aclose(self) -> None:
        return None


def text_step(text: str, **kwargs: Any) -> Step:
    """A step that streams ``text`` word by word."""
    return Step(deltas=split_tokens(text), **kwargs)


def call_step(name: str, arguments: dict[str, Any] | str, call_id: str = "call_1") -> Step:
    """A step that asks for one tool with native ``tool_calls``."""
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return Step(
        deltas=[
            ToolCallDelta(ToolCall(id=call_id, name=name, arguments=args)),
            Finish("tool_calls"),
        ]
    )
