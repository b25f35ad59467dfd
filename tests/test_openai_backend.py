"""OpenAIBackend over real HTTP against the package's scripted OpenAI-compatible server."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from openai import AsyncOpenAI

from healtrace.agent._textcalls import flatten_tool_messages
from healtrace.agent.models.base import (
    ChatMessage,
    Finish,
    ModelBackend,
    ModelDelta,
    ModelRequest,
    ReasoningDelta,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
)
from healtrace.agent.models.openai_backend import OpenAIBackend
from healtrace.agent.models.router import FallbackBackend
from healtrace.agent.models.testing_server import (
    Answer,
    CutStream,
    Garbage,
    Hang,
    HttpError,
    ScriptedOpenAIServer,
    ToolCalls,
)
from healtrace.config import OpenAIBackendConfig
from healtrace.errors import BackendResponseError, BackendUnavailable

QUESTION = "My child has a fever of 39.5 and a rash, what should I do?"
REQUEST = ModelRequest(messages=(ChatMessage("user", QUESTION),))
LOOKUP = ToolSpec(
    name="knowledge_search",
    description="Search the medical knowledge base.",
    parameters={"type": "object", "properties": {"query": {"type": "string"}}},
)


class SleepRecorder:
    """Stands in for asyncio.sleep: records the backoff delays instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture(scope="module")
def shared_servers() -> Iterator[tuple[ScriptedOpenAIServer, ScriptedOpenAIServer]]:
    # Started once per module: a uvicorn shutdown takes ~0.1 s, and reset() isolates tests.
    with ScriptedOpenAIServer() as first, ScriptedOpenAIServer() as second:
        yield first, second


@pytest.fixture
def server(
    shared_servers: tuple[ScriptedOpenAIServer, ScriptedOpenAIServer],
) -> Iterator[ScriptedOpenAIServer]:
    first, _ = shared_servers
    first.reset()
    yield first
    first.first_token_ms = first.token_interval_ms = 0.0


@pytest.fixture
def second_server(
    shared_servers: tuple[ScriptedOpenAIServer, ScriptedOpenAIServer],
) -> ScriptedOpenAIServer:
    _, second = shared_servers
    second.reset()
    return second


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


def make_config(server: ScriptedOpenAIServer, **overrides: Any) -> OpenAIBackendConfig:
    values: dict[str, Any] = {
        "name": "vllm",
        "base_url": server.base_url,
        "model": "qwen2.5-7b",
        "timeout_s": 5.0,
        "max_retries": 2,
        "backoff_base_s": 0.5,
        "backoff_max_s": 8.0,
    }
    return OpenAIBackendConfig(**(values | overrides))


@pytest.fixture
async def backend(
    server: ScriptedOpenAIServer, sleeps: SleepRecorder
) -> AsyncIterator[OpenAIBackend]:
    b = OpenAIBackend(make_config(server), sleep=sleeps)
    yield b
    await b.aclose()


async def collect(backend: ModelBackend, request: ModelRequest = REQUEST) -> list[ModelDelta]:
    return [d async for d in backend.stream(request)]


def text_of(deltas: list[ModelDelta]) -> str:
    return "".join(d.text for d in deltas if isinstance(d, TextDelta))


def only_finish(deltas: list[ModelDelta]) -> Finish:
    finishes = [d for d in deltas if isinstance(d, Finish)]
    assert len(finishes) == 1
    assert deltas[-1] is finishes[0]
    return finishes[0]


async def test_implements_the_protocol(backend: OpenAIBackend) -> None:
    assert isinstance(backend, ModelBackend)
    assert backend.name == "vllm"
    assert backend.model_id == "vllm:qwen2.5-7b"
    assert backend.native_tools is True


async def test_streams_text_and_sends_the_configured_parameters(
    server: ScriptedOpenAIServer, backend: OpenAIBackend
) -> None:
    server.push(Answer("Keep your child cool and give fluids."))

    deltas = await collect(backend)

    assert [d.type for d in deltas] == ["text"] * 7 + ["finish"]
    assert text_of(deltas) == "Keep your child cool and give fluids."
    finish = only_finish(deltas)
    assert finish.reason == "stop"
    assert finish.model == "qwen2.5-7b"
    assert finish.usage.completion_tokens == 7
    assert finish.usage.prompt_tokens > 0
    (body,) = server.requests
    assert body["model"] == "qwen2.5-7b"
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"] == [{"role": "user", "content": QUESTION}]
    assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.7, 0.8, 1024)
    assert "tools" not in body


async def test_request_overrides_temperature_and_max_tokens(
    server: ScriptedOpenAIServer, backend: OpenAIBackend
) -> None:
    request = ModelRequest(messages=REQUEST.messages, temperature=0.1, max_tokens=64)

    await collect(backend, request)

    (body,) = server.requests
    assert (body["temperature"], body["max_tokens"]) == (0.1, 64)


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
async def test_reasoning_is_kept_apart_from_the_answer(
    server: ScriptedOpenAIServer, backend: OpenAIBackend, field: Any
) -> None:
    server.push(
        Answer(
            "See a doctor today.",
            reasoning="Fever with rash may be serious.",
            reasoning_field=field,
        )
    )

    deltas = await collect(backend)

    reasoning = "".join(d.text for d in deltas if isinstance(d, ReasoningDelta))
    assert reasoning == "Fever with rash may be serious."
    assert text_of(deltas) == "See a doctor today."
    first_text = next(i for i, d in enumerate(deltas) if isinstance(d, TextDelta))
    assert all(isinstance(d, ReasoningDelta) for d in deltas[:first_text])


async def test_native_tool_calls_are_assembled_from_fragments(
    server: ScriptedOpenAIServer, backend: OpenAIBackend
) -> None:
    calls = (
        ToolCall("call_a", "knowledge_search", '{"query": "fever and rash in children"}'),
        ToolCall("call_b", "knowledge_search", '{"query": "儿童发烧 皮疹"}'),
    )
    server.push(ToolCalls(calls, text="Let me check."))
    history = (
        ChatMessage("user", "earlier question"),
        ChatMessage("assistant", "", tool_calls=(ToolCall("call_0", "knowledge_search", "{}"),)),
        ChatMessage("tool", "earlier result", tool_call_id="call_0", name="knowledge_search"),
        ChatMessage("user", QUESTION),
    )
    request = ModelRequest(messages=history, tools=(LOOKUP,))

    deltas = await collect(backend, request)

    assert [d.call for d in deltas if isinstance(d, ToolCallDelta)] == list(calls)
    assert text_of(deltas) == "Let me check."
    assert only_finish(deltas).reason == "tool_calls"
    (body,) = server.requests
    assert body["tools"] == [LOOKUP.to_openai()]
    assert body["messages"] == [m.to_openai() for m in history]


async def test_without_native_tools_messages_are_flattened_and_no_tools_sent(
    server: ScriptedOpenAIServer, sleeps: SleepRecorder
) -> None:
    history = (
        ChatMessage("user", QUESTION),
        ChatMessage("assistant", "", tool_calls=(ToolCall("c1", "knowledge_search", "{}"),)),
        ChatMessage("tool", "rest and fluids", tool_call_id="c1", name="knowledge_search"),
    )
    backend = OpenAIBackend(make_config(server, native_tools=False), sleep=sleeps)
    try:
        assert backend.native_tools is False
        await collect(backend, ModelRequest(messages=history, tools=(LOOKUP,)))
    finally:
        await backend.aclose()

    (body,) = server.requests
    assert "tools" not in body
    assert body["messages"] == [m.to_openai() for m in flatten_tool_messages(history)]
    assert {m["role"] for m in body["messages"]} == {"user", "assistant"}


async def test_a_500_is_retried_then_succeeds(
    server: ScriptedOpenAIServer, backend: OpenAIBackend, sleeps: SleepRecorder
) -> None:
    server.push(HttpError(500), Answer("Recovered."))

    deltas = await collect(backend)

    assert text_of(deltas) == "Recovered."
    assert len(server.requests) == 2
    (delay,) = sleeps.delays
    assert 0 <= delay <= 0.5  # full jitter below backoff_base_s * 2**0


async def test_5xx_until_retries_run_out_raises_backend_unavailable(
    server: ScriptedOpenAIServer, backend: OpenAIBackend, sleeps: SleepRecorder
) -> None:
    server.push(HttpError(503), HttpError(500), HttpError(502), Answer("never sent"))

    with pytest.raises(BackendUnavailable, match="3 attempt"):
        await collect(backend)

    assert len(server.requests) == 3
    assert len(sleeps.delays) == 2
    assert 0 <= sleeps.delays[0] <= 0.5
    assert 0 <= sleeps.delays[1] <= 1.0
    assert server.pending == 1


async def test_fallback_moves_to_the_second_server_when_the_first_keeps_failing(
    server: ScriptedOpenAIServer, second_server: ScriptedOpenAIServer, sleeps: SleepRecorder
) -> None:
    server.push(*[HttpError(500)] * 3)
    second_server.push(Answer("Answer from the second backend."))
    router = FallbackBackend(
        [
            OpenAIBackend(make_config(server, name="primary"), sleep=sleeps),
            OpenAIBackend(make_config(second_server, name="secondary"), sleep=sleeps),
        ]
    )
    try:
        deltas = await collect(router)
    finally:
        await router.aclose()

    assert text_of(deltas) == "Answer from the second backend."
    assert router.model_id == "secondary:qwen2.5-7b"
    assert len(server.requests) == 3
    assert len(second_server.requests) == 1


@pytest.mark.parametrize(("retry_after", "expected"), [(3, 3.0), (60, 8.0)])
async def test_429_waits_as_long_as_retry_after_says_capped(
    server: ScriptedOpenAIServer,
    backend: OpenAIBackend,
    sleeps: SleepRecorder,
    retry_after: float,
    expected: float,
) -> None:
    server.push(HttpError(429, retry_after_s=retry_after), Answer("ok"))

    deltas = await collect(backend)

    assert text_of(deltas) == "ok"
    assert sleeps.delays == [expected]


async def test_a_timeout_is_retried(server: ScriptedOpenAIServer, sleeps: SleepRecorder) -> None:
    server.push(Hang(30), Answer("After the timeout."))
    backend = OpenAIBackend(make_config(server, timeout_s=0.3), sleep=sleeps)
    started = time.monotonic()
    try:
        deltas = await collect(backend)
    finally:
        await backend.aclose()

    assert text_of(deltas) == "After the timeout."
    assert len(server.requests) == 2
    assert len(sleeps.delays) == 1
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("data", ["this is not json", '{"unexpected": true}'])
async def test_a_garbage_stream_is_a_response_error(
    server: ScriptedOpenAIServer, backend: OpenAIBackend, sleeps: SleepRecorder, data: str
) -> None:
    server.push(Garbage(data), Answer("never sent"))

    with pytest.raises(BackendResponseError, match="malformed"):
        await collect(backend)

    assert len(server.requests) == 1
    assert sleeps.delays == []


async def test_a_stream_cut_after_output_raises_without_retrying(
    server: ScriptedOpenAIServer, backend: OpenAIBackend, sleeps: SleepRecorder
) -> None:
    server.push(CutStream("Fever is common in young children.", after_tokens=2), Answer("no"))
    received: list[ModelDelta] = []

    with pytest.raises(BackendUnavailable, match="mid-answer"):
        async for delta in backend.stream(REQUEST):
            received.append(delta)

    assert text_of(received) == "Fever is "
    assert len(server.requests) == 1
    assert sleeps.delays == []


async def test_a_stream_cut_before_output_is_retried(
    server: ScriptedOpenAIServer, backend: OpenAIBackend, sleeps: SleepRecorder
) -> None:
    server.push(CutStream("Never seen.", after_tokens=0), Answer("Second try."))

    deltas = await collect(backend)

    assert text_of(deltas) == "Second try."
    assert len(server.requests) == 2


@pytest.mark.parametrize("status", [401, 403])
async def test_rejected_credentials_name_the_setting(
    server: ScriptedOpenAIServer, backend: OpenAIBackend, sleeps: SleepRecorder, status: int
) -> None:
    server.push(HttpError(status, message="invalid api key"))

    with pytest.raises(BackendResponseError, match="HEALTRACE_LLM_BACKENDS") as caught:
        await collect(backend)

    assert "api_key" in str(caught.value)
    assert len(server.requests) == 1
    assert sleeps.delays == []


async def test_a_bad_request_is_not_retried(
    server: ScriptedOpenAIServer, backend: OpenAIBackend, sleeps: SleepRecorder
) -> None:
    server.push(HttpError(400, message=f"cannot parse {QUESTION}"))

    with pytest.raises(BackendResponseError, match="HTTP 400") as caught:
        await collect(backend)

    assert QUESTION not in str(caught.value)
    assert len(server.requests) == 1


async def test_logs_never_carry_message_contents(
    server: ScriptedOpenAIServer,
    backend: OpenAIBackend,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server.push(HttpError(500, message=f"failed on {QUESTION}"), Answer("ok"))

    with caplog.at_level(logging.DEBUG, logger="healtrace"):
        await collect(backend)

    assert "HTTP 500" in caplog.text
    assert QUESTION not in caplog.text


async def test_an_injected_httpx_client_is_used(
    server: ScriptedOpenAIServer, sleeps: SleepRecorder
) -> None:
    seen: list[str] = []

    async def record(request: httpx.Request) -> None:
        seen.append(request.url.path)

    client = httpx.AsyncClient(event_hooks={"request": [record]})
    backend = OpenAIBackend(make_config(server), http_client=client, sleep=sleeps)
    try:
        deltas = await collect(backend)
    finally:
        await backend.aclose()

    assert text_of(deltas) == f"Echo: {QUESTION}"
    assert seen == ["/v1/chat/completions"]
    assert client.is_closed


async def test_the_server_streams_at_its_token_rate(
    server: ScriptedOpenAIServer, backend: OpenAIBackend
) -> None:
    server.first_token_ms, server.token_interval_ms = 40.0, 20.0
    server.push(Answer("one two three"))
    started = time.monotonic()
    arrivals: list[float] = []

    async for delta in backend.stream(REQUEST):
        if isinstance(delta, TextDelta):
            arrivals.append(time.monotonic() - started)

    assert len(arrivals) == 3
    assert arrivals[0] >= 0.04
    assert arrivals[2] - arrivals[0] >= 0.04 - 0.005


async def test_the_server_speaks_plain_openai_without_streaming() -> None:
    async with ScriptedOpenAIServer(
        [Answer("Hello.", reasoning="Greet."), ToolCalls([ToolCall("c9", "f", '{"a": 1}')])]
    ) as srv:
        client = AsyncOpenAI(base_url=srv.base_url, api_key="x", max_retries=0)
        try:
            models = await client.models.list()
            first = await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}]
            )
            second = await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}]
            )
        finally:
            await client.close()
        srv.assert_used_up()

    assert [m.id for m in models.data] == ["scripted-model"]
    assert first.choices[0].message.content == "Hello."
    assert (first.choices[0].message.model_extra or {}).get("reasoning_content") == "Greet."
    tool_calls = second.choices[0].message.tool_calls or []
    assert [(c.id, c.function.name, c.function.arguments) for c in tool_calls] == [  # type: ignore[union-attr]
        ("c9", "f", '{"a": 1}')
    ]
    assert second.choices[0].finish_reason == "tool_calls"


def test_the_server_works_from_sync_code() -> None:
    with ScriptedOpenAIServer() as srv:
        response = httpx.post(
            f"{srv.base_url}/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "ping"}]},
        )
        assert response.json()["choices"][0]["message"]["content"] == "Echo: ping"
        assert srv.requests[0]["messages"] == [{"role": "user", "content": "ping"}]
