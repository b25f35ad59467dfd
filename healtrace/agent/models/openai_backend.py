"""Any OpenAI-compatible chat server (vLLM, DeepSeek API, xAI Grok, llama.cpp server).

Requests go through the official ``openai`` SDK with its own retries switched off: this
backend retries transient failures itself (timeouts, connection errors, 429, 5xx) with full
jitter backoff, honouring ``Retry-After``, and only while nothing has been yielded for the
request — once output has reached the caller a retry would splice two answers together.
Failures are translated at this boundary: :class:`~healtrace.errors.BackendUnavailable`
when the server cannot be used right now (the fallback router moves on to the next
backend), :class:`~healtrace.errors.BackendResponseError` when it answered unusably.

Message contents are patient data: nothing here logs them, nor the server's error text
(servers echo request fragments in validation errors); logs carry status codes and attempt
numbers only.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, cast

import httpx
import openai
from openai import AsyncOpenAI

from healtrace.agent._textcalls import flatten_tool_messages
from healtrace.agent.models.base import (
    Finish,
    ModelDelta,
    ModelRequest,
    ReasoningDelta,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from healtrace.config import OpenAIBackendConfig
from healtrace.errors import BackendResponseError, BackendUnavailable

if TYPE_CHECKING:
    import httpx2

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]

#: 408 and 429 are the 4xx statuses that say "try again later" rather than "you asked wrong".
_TRANSIENT_4XX = frozenset({408, 429})
_SETTING = "HEALTRACE_LLM_BACKENDS"


class OpenAIBackend:
    """A chat backend speaking the OpenAI chat-completions protocol over HTTP.

    ``http_client`` (an ``httpx`` or ``httpx2`` ``AsyncClient``) is handed to the SDK and
    closed by :meth:`aclose`. ``sleep`` waits between retries; tests pass a recorder.
    """

    def __init__(
        self,
        config: OpenAIBackendConfig,
        *,
        http_client: httpx.AsyncClient | httpx2.AsyncClient | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._config = config
        self._sleep = sleep
        self._client = AsyncOpenAI(
            base_url=config.base_url,
            api_key=config.api_key.get_secret_value(),
            max_retries=0,
            timeout=config.timeout_s,
            # The SDK accepts legacy httpx clients at run time but only types httpx2 ones.
            http_client=cast("httpx2.AsyncClient | None", http_client),
        )

    @property
    def name(self) -> str:
        return self._config.name

    @property
    def model_id(self) -> str:
        return f"{self._config.name}:{self._config.model}"

    @property
    def native_tools(self) -> bool:
        return self._config.native_tools

    async def aclose(self) -> None:
        await self._client.close()

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelDelta]:
        """Stream one answer; see the module docs for retries and errors."""
        attempts = max(1, self._config.max_retries + 1)
        for attempt in range(attempts):
            produced = False
            try:
                async with contextlib.aclosing(self._attempt(request)) as deltas:
                    async for delta in deltas:
                        produced = True
                        yield delta
                return
            except openai.APIStatusError as exc:
                if not _is_transient(exc.status_code):
                    raise self._rejected(exc) from exc
                failure: openai.APIError | _StreamCut = exc
            except (openai.APIError, _StreamCut) as exc:
                # Timeouts, connection errors, error events inside a stream, early ends.
                failure = exc
            what = _describe(failure)
            if produced:
                raise BackendUnavailable(
                    f"model backend {self.name!r} failed mid-answer ({what})"
                ) from failure
            if attempt + 1 >= attempts:
                raise BackendUnavailable(
                    f"model backend {self.name!r} unavailable after {attempts} attempt(s) ({what})"
                ) from failure
            delay = self._backoff_s(attempt, failure)
            log.warning(
                "model backend %s: attempt %d of %d failed (%s); retrying in %.2f s",
                self.name,
                attempt + 1,
                attempts,
                what,
                delay,
            )
            await self._sleep(delay)

    async def _attempt(self, request: ModelRequest) -> AsyncGenerator[ModelDelta, None]:
        config = self._config
        native = config.native_tools
        messages = request.messages if native else tuple(flatten_tool_messages(request.messages))
        body: dict[str, Any] = {
            "model": config.model,
            "messages": [m.to_openai() for m in messages],
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": (
                config.temperature if request.temperature is None else request.temperature
            ),
            "top_p": config.top_p,
            "max_tokens": config.max_tokens if request.max_tokens is None else request.max_tokens,
        }
        if native and request.tools:
            body["tools"] = [t.to_openai() for t in request.tools]
        # The body is already plain JSON in the wire shape, so it goes through the client's
        # generic ``post`` rather than ``chat.completions.create``: that one walks every
        # message and tool schema against its TypedDicts (milliseconds per request), and
        # builds a pydantic model of every chunk; chunks arrive here as the decoded JSON.
        stream = await self._client.post(
            "/chat/completions",
            body=body,
            cast_to=object,
            stream=True,
            stream_cls=openai.AsyncStream[object],
        )
        async with stream:
            assembler = _StreamAssembler()
            chunks = aiter(stream)
            while True:
                try:
                    chunk = await anext(chunks)
                except StopAsyncIteration:
                    break
                except ValueError as exc:
                    # Non-JSON data lines (JSONDecodeError) or undecodable bytes.
                    raise self._garbage("a data line is not JSON") from exc
                try:
                    deltas = list(assembler.feed(chunk))
                except _MalformedChunk as exc:
                    raise self._garbage(str(exc)) from exc
                for delta in deltas:
                    yield delta
            if not assembler.saw_chunk:
                raise self._garbage("the stream held no completion chunks")
            if assembler.finish_reason is None:
                # Valid chunks that stop without a finish reason: the stream was cut short.
                raise _StreamCut
            try:
                deltas = list(assembler.finish(config.model))
            except _MalformedChunk as exc:
                raise self._garbage(str(exc)) from exc
            for delta in deltas:
                yield delta

    def _backoff_s(self, attempt: int, failure: openai.APIError | _StreamCut) -> float:
        config = self._config
        retry_after = _retry_after_s(failure)
        if retry_after is not None:
            return min(retry_after, config.backoff_max_s)
        # Full jitter: spreads out clients that all failed at the same moment.
        return random.uniform(0, min(config.backoff_max_s, config.backoff_base_s * 2**attempt))

    def _rejected(self, exc: openai.APIStatusError) -> BackendResponseError:
        status = exc.status_code
        if status in (401, 403):
            return BackendResponseError(
                f"model backend {self.name!r} refused its credentials (HTTP {status}); "
                f"check this backend's api_key in {_SETTING}"
            )
        if status == 404:
            return BackendResponseError(
                f"model backend {self.name!r} has no such endpoint or model (HTTP 404); "
                f"check base_url and model for this backend in {_SETTING}"
            )
        code = f", code {exc.code}" if exc.code else ""
        return BackendResponseError(
            f"model backend {self.name!r} rejected the request (HTTP {status}{code})"
        )

    def _garbage(self, what: str) -> BackendResponseError:
        return BackendResponseError(f"model backend {self.name!r} sent a malformed stream: {what}")


def _is_transient(status: int) -> bool:
    return status >= 500 or status in _TRANSIENT_4XX


def _describe(exc: openai.APIError | _StreamCut) -> str:
    if isinstance(exc, _StreamCut):
        return "stream ended before a finish reason"
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}"
    if isinstance(exc, openai.APITimeoutError):
        return "timed out"
    if isinstance(exc, openai.APIConnectionError):
        return "connection failed"
    return "error event in the stream"


def _retry_after_s(exc: openai.APIError | _StreamCut) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms`` or ``Retry-After``), if any."""
    if not isinstance(exc, openai.APIStatusError):
        return None
    headers = exc.response.headers
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class _StreamCut(Exception):
    """The stream ended cleanly but before any finish reason: treated like a dropped one."""


class _MalformedChunk(Exception):
    """A chunk that parsed as JSON but not as a chat-completion chunk."""


@dataclass
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)
    sent: bool = False


_FinishReason = Literal["stop", "length", "tool_calls"]


@dataclass
class _StreamAssembler:
    """Turns chunks into deltas; tool calls are held until complete."""

    saw_chunk: bool = False
    finish_reason: _FinishReason | None = None
    model: str = ""
    usage: Usage | None = None
    calls: dict[int, _PartialCall] = field(default_factory=dict)

    def feed(self, chunk: object) -> Iterator[ModelDelta]:
        """One chunk as the server sent it (decoded JSON)."""
        if not isinstance(chunk, dict):
            raise _MalformedChunk("a chunk is not a JSON object")
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            raise _MalformedChunk("a chunk has no choices list")
        self.saw_chunk = True
        model = chunk.get("model")
        if isinstance(model, str) and model and not self.model:
            self.model = model
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = Usage(
                prompt_tokens=_int(usage.get("prompt_tokens")),
                completion_tokens=_int(usage.get("completion_tokens")),
            )
        for choice in choices:
            if not isinstance(choice, dict):
                raise _MalformedChunk("a choice is not a JSON object")
            # n=1 is all we ask for; a server sending other choices is ignored, not trusted.
            if choice.get("index", 0) not in (0, None):
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict):
                # DeepSeek and older vLLM send ``reasoning_content``; newer vLLM ``reasoning``.
                reasoning = _text(delta.get("reasoning_content")) or _text(delta.get("reasoning"))
                if reasoning:
                    yield ReasoningDelta(reasoning)
                content = delta.get("content")
                if isinstance(content, str) and content:
                    yield TextDelta(content)
                fragments = delta.get("tool_calls")
                if isinstance(fragments, list):
                    for fragment in fragments:
                        if isinstance(fragment, dict):
                            self._add_fragment(fragment)
            reason = choice.get("finish_reason")
            if reason is not None:
                self.finish_reason = _map_reason(reason)
                if self.finish_reason == "tool_calls":
                    yield from self._complete_calls()

    def finish(self, fallback_model: str) -> Iterator[ModelDelta]:
        yield from self._complete_calls()
        reason = self.finish_reason or "stop"
        if any(c.sent for c in self.calls.values()) and reason == "stop":
            # Some servers report "stop" after native tool calls; the calls decide.
            reason = "tool_calls"
        yield Finish(reason=reason, usage=self.usage or Usage(), model=self.model or fallback_model)

    def _add_fragment(self, fragment: dict[str, Any]) -> None:
        index = fragment.get("index")
        call_id = fragment.get("id")
        if not isinstance(index, int):
            # Without an index, a new id starts a new call and anything else continues one.
            last = max(self.calls, default=-1)
            known = {c.id for c in self.calls.values()}
            index = last + 1 if (call_id and call_id not in known) or last < 0 else last
        call = self.calls.setdefault(index, _PartialCall())
        if isinstance(call_id, str) and call_id and not call.id:
            call.id = call_id
        function = fragment.get("function")
        if not isinstance(function, dict):
            return
        name = function.get("name")
        if isinstance(name, str) and name and name != call.name:
            # Usually the whole name arrives once; some servers repeat it, a few split it.
            call.name = name if not call.name else call.name + name
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            call.arguments.append(arguments)

    def _complete_calls(self) -> Iterator[ToolCallDelta]:
        for index in sorted(self.calls):
            call = self.calls[index]
            if call.sent:
                continue
            if not call.name:
                raise _MalformedChunk(f"tool call {index} has no function name")
            call.sent = True
            arguments = "".join(call.arguments).strip() or "{}"
            yield ToolCallDelta(
                ToolCall(id=call.id or f"call_{index}", name=call.name, arguments=arguments)
            )


def _map_reason(reason: object) -> _FinishReason:
    if reason == "length":
        return "length"
    if reason in ("tool_calls", "function_call"):
        return "tool_calls"
    return "stop"


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0
