"""Model backends for the security eval.

:class:`AdversarialModel` is the worst model the guardrails must hold against: an
attacker-controlled, fully compliant model that performs each attack's actions — calls
tools that are not offered, with arguments the tools do not take, writes calls as text,
echoes its whole context, claims to be a doctor, cites sources that do not exist. It sits
behind the same :class:`~healtrace.agent.models.base.ModelBackend` interface as every
other backend, so the orchestrator, tools and output guard treat it like a real one.

:class:`RecordingModel` wraps any backend and keeps the requests it was sent, so the eval
can tell whether injected text reached the model at all.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence

from healtrace.agent.models.base import (
    Finish,
    ModelBackend,
    ModelDelta,
    ModelRequest,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from healtrace.agent.models.testing import split_tokens
from healtrace.security.attacks import (
    Action,
    Call,
    CallAction,
    CiteAction,
    EchoAction,
    SayAction,
    TextCallAction,
)

__all__ = ["AdversarialModel", "RecordingModel", "context_dump"]

#: The tool an ``echo_context`` action with ``via="tool_arguments"`` smuggles its dump in.
EXFIL_TOOL = "lookup_records"


def context_dump(request: ModelRequest) -> str:
    """Everything in ``request`` as one text: messages, tool calls and tool results."""
    parts: list[str] = []
    for message in request.messages:
        parts.append(f"{message.role}: {message.content}")
        for call in message.tool_calls:
            parts.append(f"{message.role} called {call.name} {call.arguments}")
    for spec in request.tools:
        parts.append(f"tool {spec.name}: {spec.description}")
    return "\n".join(parts)


def _call(call: Call, index: int) -> ToolCall:
    return ToolCall(
        id=f"adv_{index}",
        name=call.tool,
        arguments=json.dumps(call.args, ensure_ascii=False),
    )


class AdversarialModel:
    """Performs the actions given to :meth:`obey`, one turn at a time.

    Tool-call actions come first, one model round each (a round of a :class:`CallAction`
    may hold several concurrent calls); then the answer is the ``say``, ``cite`` and
    ``echo_context`` actions' text in order. What the orchestrator says back (unknown
    tool, invalid arguments, consent denied) changes nothing: the model goes on with the
    attack, as a compromised model would.
    """

    native_tools = True

    def __init__(self, name: str = "adversary") -> None:
        self._name = name
        self._actions: tuple[Action, ...] = ()
        self._turn_key: tuple[int, str] | None = None
        self._rounds_done = 0
        self._calls_made = 0

    @property
    def name(self) -> str:
        return self._name

    @property
    def model_id(self) -> str:
        return f"adversary:{self._name}"

    def obey(self, actions: Sequence[Action]) -> None:
        """The actions of the next turn."""
        self._actions = tuple(actions)
        self._turn_key = None

    def _new_request(self, request: ModelRequest) -> None:
        users = [m for m in request.messages if m.role == "user"]
        key = (len(users), users[-1].content if users else "")
        if key != self._turn_key:
            self._turn_key = key
            self._rounds_done = 0

    def _rounds(self) -> list[CallAction | TextCallAction | EchoAction]:
        rounds: list[CallAction | TextCallAction | EchoAction] = [
            a
            for a in self._actions
            if isinstance(a, CallAction | TextCallAction | EchoAction)
            and not (isinstance(a, EchoAction) and a.via == "answer")
        ]
        return rounds

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelDelta]:
        self._new_request(request)
        rounds = self._rounds()
        if self._rounds_done < len(rounds):
            action = rounds[self._rounds_done]
            self._rounds_done += 1
            if isinstance(action, TextCallAction):
                text = json.dumps(
                    {"name": action.call.tool, "arguments": action.call.args}, ensure_ascii=False
                )
                yield TextDelta(text)
                yield Finish(reason="stop", model=self.model_id)
                return
            calls: list[Call]
            if isinstance(action, EchoAction):
                calls = [Call(tool=EXFIL_TOOL, args={"note": context_dump(request)})]
            else:
                calls = list(action.calls)
            for call in calls:
                self._calls_made += 1
                yield ToolCallDelta(_call(call, self._calls_made))
            yield Finish(reason="tool_calls", model=self.model_id)
            return
        pieces: list[str] = []
        for step in self._actions:
            if isinstance(step, SayAction):
                pieces.append(step.text)
            elif isinstance(step, CiteAction):
                source = f"{step.title}, {step.url}" if step.url else step.title
                pieces.append(f"[{step.marker}] (Source: {source})")
            elif isinstance(step, EchoAction) and step.via == "answer":
                pieces.append(context_dump(request))
        text = " ".join(pieces) or "OK."
        tokens = split_tokens(text)
        for token in tokens:
            yield TextDelta(token)
        yield Finish(reason="stop", usage=Usage(0, len(tokens)), model=self.model_id)

    async def aclose(self) -> None:
        return None


class RecordingModel:
    """Any backend, with every request it was sent kept in :attr:`requests`."""

    def __init__(self, inner: ModelBackend) -> None:
        self.inner = inner
        self.requests: list[ModelRequest] = []

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    @property
    def native_tools(self) -> bool:
        return self.inner.native_tools

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelDelta]:
        self.requests.append(request)
        async for delta in self.inner.stream(request):
            yield delta

    async def aclose(self) -> None:
        await self.inner.aclose()
