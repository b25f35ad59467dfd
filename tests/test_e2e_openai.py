"""The whole service configured with OpenAI-compatible backends, over real HTTP both ways.

Two scripted OpenAI-compatible servers stand in for a primary (vLLM) and a fallback
(DeepSeek). The service is built from settings exactly as in production.
"""

from __future__ import annotations

import json

import websockets
from pydantic import SecretStr

from healtrace.agent.models.base import ToolCall
from healtrace.agent.models.testing_server import (
    Answer,
    HttpError,
    ScriptedOpenAIServer,
    ToolCalls,
)
from healtrace.api.app import create_app
from healtrace.api.testing import LiveServer
from healtrace.config import OpenAIBackendConfig, Settings
from tests.test_api import _make_key, hello, until


def _backend(server: ScriptedOpenAIServer, name: str) -> OpenAIBackendConfig:
    return OpenAIBackendConfig(
        name=name,
        base_url=server.base_url,
        model=f"{name}-model",
        api_key=SecretStr("sk-test"),
        max_retries=1,
        backoff_base_s=0.01,
        backoff_max_s=0.02,
    )


async def test_primary_fails_then_fallback_answers_with_a_tool(settings: Settings) -> None:
    bmi = ToolCall(id="call_a", name="body_mass_index", arguments='{"weight": 70, "height": 175}')
    primary = ScriptedOpenAIServer([HttpError(500), HttpError(503)], default=HttpError(500))
    fallback = ScriptedOpenAIServer(
        [ToolCalls([bmi]), Answer("Your BMI is 22.9 (healthy range).", reasoning="compute")],
        token_interval_ms=1,
    )
    with primary, fallback:
        settings.llm_backends = [_backend(primary, "vllm"), _backend(fallback, "deepseek")]
        key = await _make_key(settings)
        async with LiveServer(create_app(settings)) as live:
            async with websockets.connect(live.ws) as ws:
                await hello(ws, key)
                await ws.send(json.dumps({"type": "user_message", "text": "BMI 70 kg 175 cm?"}))
                frames = await until(ws, "answer_done", "error")
        # The primary was tried (first attempt + one retry) for each model call.
        assert len(primary.requests) == 4
        assert len(fallback.requests) == 2
        fallback.assert_used_up()
    types = [f["type"] for f in frames]
    assert types[:4] == ["turn_started", "triage", "tool_call", "tool_result"]
    assert "reasoning" not in types  # reasoning is kept out of the stream by default
    done = frames[-1]
    assert done["type"] == "answer_done"
    assert done["text"] == "Your BMI is 22.9 (healthy range)."
    assert done["model"] == "deepseek:deepseek-model"
    # The tool definition went out as a native tool, and its result came back to the model.
    first, second = fallback.requests
    assert first["tools"][0]["function"]["name"] == "body_mass_index"
    tool_msg = second["messages"][-1]
    assert tool_msg["role"] == "tool" and json.loads(tool_msg["content"])["bmi"] == 22.9


async def test_all_backends_down_is_a_clear_error(settings: Settings) -> None:
    down = ScriptedOpenAIServer(default=HttpError(502))
    with down:
        settings.llm_backends = [_backend(down, "only")]
        key = await _make_key(settings)
        async with LiveServer(create_app(settings)) as live:
            async with websockets.connect(live.ws) as ws:
                await hello(ws, key, locale="zh-CN")
                await ws.send(json.dumps({"type": "user_message", "text": "你好"}))
                frames = await until(ws, "answer_done", "error")
                error = frames[-1]
                assert error["code"] == "model_unavailable" and error["retryable"] is True
                assert "稍后重试" in error["message"]
                # The server keeps serving: the next turn works once the backend is back.
                down.push(Answer("好的。"))
                await ws.send(json.dumps({"type": "user_message", "text": "再试一次"}))
                frames = await until(ws, "answer_done", "error")
                assert frames[-1]["type"] == "answer_done" and frames[-1]["text"] == "好的。"
