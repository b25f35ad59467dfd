"""A small OpenAI-compatible chat server around HealTrace's LocalBackend (llama.cpp).

``llama_cpp.server`` is not usable here (it needs ``starlette_context``, which is not
installed), so this serves ``POST /v1/chat/completions`` with streaming only, for the
plain workload: text messages in, text deltas out in the OpenAI chunk shape. Requests
queue on the backend's lock, one generation at a time.

    python benchmarks/compare/llama_server.py --port 8012 [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from healtrace.agent.models.base import ChatMessage, ModelRequest, TextDelta
from healtrace.agent.models.local import LocalBackend
from healtrace.config import LocalBackendConfig, Settings


def build_app(backend: LocalBackend) -> Starlette:
    async def chat(request: Request) -> StreamingResponse:
        body = await request.json()
        messages = tuple(
            ChatMessage(role=m["role"], content=m.get("content") or "") for m in body["messages"]
        )
        model_request = ModelRequest(
            messages=messages,
            max_tokens=body.get("max_tokens") or body.get("max_completion_tokens"),
            temperature=body.get("temperature"),
        )
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            data = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": body.get("model", "local"),
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()

        async def events() -> AsyncIterator[bytes]:
            yield chunk({"role": "assistant", "content": ""})
            async for delta in backend.stream(model_request):
                if isinstance(delta, TextDelta):
                    yield chunk({"content": delta.text})
            yield chunk({}, "stop")
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    config = LocalBackendConfig(model=args.model, n_threads=args.threads, seed=1)
    backend = LocalBackend(config, models_dir=Settings().models_dir)
    uvicorn.run(
        build_app(backend), host="127.0.0.1", port=args.port, log_level="warning", ws="none"
    )


if __name__ == "__main__":
    main()
