"""A scripted OpenAI-compatible chat server, for tests and benchmarks.

:class:`ScriptedOpenAIServer` is a real HTTP server (Starlette under uvicorn, on 127.0.0.1)
running in a background thread with its own event loop, so sync and async tests can use it
alike. It answers ``POST /v1/chat/completions`` (streaming SSE in the exact OpenAI chunk
shape, or a single JSON body) and ``GET /v1/models``. Each chat request takes the next
reply from a queue::

    with ScriptedOpenAIServer([HttpError(500), Answer("Drink water.")]) as server:
        client = AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        ...
        assert len(server.requests) == 2

Replies: :class:`Answer` (text, optionally after reasoning), :class:`ToolCalls` (streamed in
fragments), :class:`HttpError`, :class:`Hang`, :class:`CutStream` and :class:`Garbage`. With
an empty queue the server answers ``default`` (an echo of the last user message unless
given). Streams run at a fixed token rate (``first_token_ms``, ``token_interval_ms``) so a
benchmark can subtract the known model latency.

``python -m healtrace.agent.models.testing_server --port 8001`` serves the default answer
from a separate process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Self

import uvicorn
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from healtrace.agent.models.base import ToolCall
from healtrace.agent.models.testing import split_tokens


@dataclass(frozen=True, slots=True)
class Answer:
    """An answer streamed word by word, after ``reasoning`` (if any) in its own deltas."""

    text: str
    reasoning: str = ""
    #: DeepSeek and older vLLM send ``reasoning_content``; newer vLLM sends ``reasoning``.
    reasoning_field: Literal["reasoning_content", "reasoning"] = "reasoning_content"
    finish_reason: Literal["stop", "length"] = "stop"


@dataclass(frozen=True, slots=True)
class ToolCalls:
    """Native tool calls, streamed in fragments as vLLM and OpenAI do, after optional text."""

    calls: Sequence[ToolCall]
    text: str = ""


@dataclass(frozen=True, slots=True)
class HttpError:
    """An HTTP error status with an OpenAI-shaped error body."""

    status: int
    retry_after_s: float | None = None
    message: str = "scripted error"


@dataclass(frozen=True, slots=True)
class Hang:
    """Send nothing for ``seconds`` (meant to outlast the client's timeout).

    The wait ends early when the client disconnects or the server stops; if the client is
    still there afterwards it gets the default reply.
    """

    seconds: float = 30.0


@dataclass(frozen=True, slots=True)
class CutStream:
    """Stream the first ``after_tokens`` words of ``text``, then drop the connection.

    uvicorn logs "ASGI callable returned without completing response" for it; that is the
    point.
    """

    text: str
    after_tokens: int = 1


@dataclass(frozen=True, slots=True)
class Garbage:
    """A 200 response whose SSE data (or JSON body) is not JSON."""

    data: str = "this is not json"


Reply = Answer | ToolCalls | HttpError | Hang | CutStream | Garbage
#: Builds a reply from the request's JSON body (for answers that depend on the request).
ReplyFactory = Callable[[dict[str, Any]], Reply]

_ARGUMENT_FRAGMENT_CHARS = 8


@dataclass(frozen=True, slots=True)
class _Part:
    data: bytes
    #: Token parts wait the token delay before they are sent; framing parts go at once.
    token: bool


class _TimedBody:
    """An ASGI response sending ``parts`` at the token rate; ``cut`` ends it unfinished."""

    def __init__(
        self,
        parts: Sequence[_Part],
        *,
        media_type: str,
        first_token_s: float,
        token_interval_s: float,
        cut: bool = False,
    ) -> None:
        self._parts = parts
        self._media_type = media_type
        self._first = first_token_s
        self._interval = token_interval_s
        self._cut = cut

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", self._media_type.encode()), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        tokens_sent = 0
        for part in self._parts:
            if part.token:
                delay = self._first if tokens_sent == 0 else self._interval
                if delay > 0:
                    await asyncio.sleep(delay)
                tokens_sent += 1
            await send({"type": "http.response.body", "body": part.data, "more_body": True})
        if self._cut:
            # Returning without the final body message makes uvicorn close the connection
            # mid-response, which the client sees as a broken stream.
            return
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _error_body(message: str, status: int) -> dict[str, Any]:
    kind = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        429: "rate_limit_exceeded",
    }.get(status, "server_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": kind}}


def _message_text(message: Any) -> str:
    if not isinstance(message, dict):
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        return " ".join(t for t in texts if isinstance(t, str))
    return ""


def echo_reply(body: dict[str, Any]) -> Reply:
    """The default reply: echo the last user message."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        messages = []
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    return Answer("Echo: " + (_message_text(users[-1]) if users else ""))


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _sse(payload: dict[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else _json(payload)
    return f"data: {data}\n\n".encode()


class _Completion:
    """Builds chunks and bodies in the OpenAI wire shape for one response."""

    def __init__(self, model: str, *, include_usage: bool, prompt_tokens: int) -> None:
        self.id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())
        self.model = model
        self.include_usage = include_usage
        self.prompt_tokens = prompt_tokens

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        if self.include_usage:
            out["usage"] = None
        return out

    def usage(self, completion_tokens: int) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": self.prompt_tokens + completion_tokens,
        }

    def stream_parts(self, reply: Answer | ToolCalls | CutStream) -> list[_Part]:
        parts = [_Part(_sse(self.chunk({"role": "assistant", "content": ""})), token=False)]
        tokens: list[dict[str, Any]] = []
        finish: str
        if isinstance(reply, Answer):
            field = reply.reasoning_field
            tokens += [{field: p} for p in split_tokens(reply.reasoning)] if reply.reasoning else []
            tokens += [{"content": p} for p in split_tokens(reply.text)]
            finish = reply.finish_reason
        elif isinstance(reply, ToolCalls):
            tokens += [{"content": p} for p in split_tokens(reply.text)] if reply.text else []
            for index, call in enumerate(reply.calls):
                head = {"name": call.name, "arguments": ""}
                first = {"index": index, "id": call.id, "type": "function", "function": head}
                tokens.append({"tool_calls": [first]})
                args = call.arguments
                for at in range(0, len(args), _ARGUMENT_FRAGMENT_CHARS):
                    piece = args[at : at + _ARGUMENT_FRAGMENT_CHARS]
                    tokens.append(
                        {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
                    )
            finish = "tool_calls"
        else:
            tokens += [{"content": p} for p in split_tokens(reply.text)][: reply.after_tokens]
            return parts + [_Part(_sse(self.chunk(t)), token=True) for t in tokens]
        parts += [_Part(_sse(self.chunk(t)), token=True) for t in tokens]
        parts.append(_Part(_sse(self.chunk({}, finish)), token=False))
        if self.include_usage:
            last = {**self.chunk({}), "choices": [], "usage": self.usage(len(tokens))}
            parts.append(_Part(_sse(last), token=False))
        parts.append(_Part(b"data: [DONE]\n\n", token=False))
        return parts

    def body(self, reply: Answer | ToolCalls | CutStream) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.text}
        finish = "stop"
        if isinstance(reply, Answer):
            finish = reply.finish_reason
            if reply.reasoning:
                message[reply.reasoning_field] = reply.reasoning
        elif isinstance(reply, ToolCalls):
            finish = "tool_calls"
            message["content"] = reply.text or None
            message["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in reply.calls
            ]
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
            ],
            "usage": self.usage(len(split_tokens(reply.text)) if reply.text else 0),
        }


class ScriptedOpenAIServer:
    """An OpenAI-compatible server that plays back scripted replies; see the module docs.

    Use it as a context manager (``with`` or ``async with``) or call :meth:`start` and
    :meth:`stop`. ``requests`` holds the JSON body of every chat request received.
    """

    def __init__(
        self,
        script: Iterable[Reply | ReplyFactory] = (),
        *,
        default: Reply | ReplyFactory = echo_reply,
        first_token_ms: float = 0.0,
        token_interval_ms: float = 0.0,
        model: str = "scripted-model",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.default = default
        self.first_token_ms = first_token_ms
        self.token_interval_ms = token_interval_ms
        self.model = model
        self.host = host
        self._port = port
        self._script: deque[Reply | ReplyFactory] = deque(script)
        self._requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._uvicorn: uvicorn.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
            ]
        )

    # -- script and records -------------------------------------------------------------

    def push(self, *replies: Reply | ReplyFactory) -> None:
        """Queue more replies, answered in order after those already queued."""
        with self._lock:
            self._script.extend(replies)

    def reset(self) -> None:
        """Forget queued replies and recorded requests (for a server shared across tests)."""
        with self._lock:
            self._script.clear()
            self._requests.clear()

    @property
    def requests(self) -> list[dict[str, Any]]:
        """JSON bodies of the chat requests received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def pending(self) -> int:
        """Replies still queued."""
        with self._lock:
            return len(self._script)

    def assert_used_up(self) -> None:
        left = self.pending
        assert left == 0, f"{left} scripted server reply(ies) were never requested"

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        """The OpenAI ``base_url`` for this server (ends in ``/v1``)."""
        if not self._port:
            raise RuntimeError("the server is not started")
        return f"http://{self.host}:{self._port}/v1"

    # -- lifecycle ----------------------------------------------------------------------

    def start(self, timeout_s: float = 10.0) -> Self:
        """Start serving in a background thread; returns once the port accepts connections."""
        if self._thread is not None:
            raise RuntimeError("the server is already started")
        sock = self._bind()
        self._uvicorn = uvicorn.Server(self._config())
        self._thread = threading.Thread(
            target=asyncio.run,
            args=(self._serve(sock),),
            name=f"scripted-openai-{self._port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._uvicorn.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the scripted server did not start on port {self._port}")
            time.sleep(0.005)
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop serving: hung requests are released, then the thread is joined."""
        thread, self._thread = self._thread, None
        if thread is None or self._uvicorn is None:
            return
        self._uvicorn.should_exit = True
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            # The loop may close between the check and the call.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stopping.set)
        thread.join(timeout_s)
        if thread.is_alive():
            raise RuntimeError("the scripted server did not stop in time")

    def serve_forever(self) -> None:
        """Serve in the current thread until interrupted (for the command line)."""
        sock = self._bind()
        self._uvicorn = uvicorn.Server(self._config())
        asyncio.run(self._serve(sock))

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.to_thread(self.stop)

    def _bind(self) -> socket.socket:
        # Binding here (not in uvicorn) tells us the port before the thread starts.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self._port))
        except OSError:
            sock.close()
            raise
        self._port = sock.getsockname()[1]
        return sock

    def _config(self) -> uvicorn.Config:
        # log_config=None leaves the host process's logging alone; ws="none" avoids importing
        # websockets (deprecation warnings); the graceful timeout bounds shutdown.
        return uvicorn.Config(
            self.app,
            log_config=None,
            access_log=False,
            lifespan="off",
            ws="none",
            timeout_graceful_shutdown=2,
        )

    async def _serve(self, sock: socket.socket) -> None:
        assert self._uvicorn is not None
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        try:
            await self._uvicorn.serve(sockets=[sock])
        finally:
            sock.close()

    # -- HTTP ---------------------------------------------------------------------------

    def _next_reply(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            self._requests.append(body)
            item = self._script.popleft() if self._script else self.default
        return item(body) if callable(item) else item

    async def _models(self, request: Request) -> Response:
        model = {"id": self.model, "object": "model", "created": 0, "owned_by": "healtrace"}
        return JSONResponse({"object": "list", "data": [model]})

    async def _chat(self, request: Request) -> Response | _TimedBody:
        try:
            body = await request.json()
        except ClientDisconnect:
            return Response(status_code=204)
        except ValueError:
            return JSONResponse(_error_body("the body is not JSON", 400), status_code=400)
        if not isinstance(body, dict):
            return JSONResponse(_error_body("the body is not a JSON object", 400), status_code=400)
        reply = self._next_reply(body)
        if isinstance(reply, Hang):
            if await self._hang(request, reply.seconds):
                return Response(status_code=204)  # nobody is listening any more
            default = self.default
            reply = default(body) if callable(default) else default
        if isinstance(reply, HttpError):
            after = reply.retry_after_s
            headers = {} if after is None else {"retry-after": f"{after:g}"}
            error = _error_body(reply.message, reply.status)
            return JSONResponse(error, status_code=reply.status, headers=headers)
        if isinstance(reply, Hang):
            return JSONResponse(_error_body("hung again", 504), status_code=504)

        stream = bool(body.get("stream"))
        options = body.get("stream_options")
        include_usage = stream and isinstance(options, dict) and bool(options.get("include_usage"))
        messages = body.get("messages")
        prompt_tokens = (
            sum(len(split_tokens(_message_text(m))) for m in messages if isinstance(m, dict))
            if isinstance(messages, list)
            else 0
        )
        model = body.get("model")
        completion = _Completion(
            model if isinstance(model, str) else self.model,
            include_usage=include_usage,
            prompt_tokens=prompt_tokens,
        )

        if isinstance(reply, Garbage):
            if stream:
                parts = [_Part(_sse(reply.data), token=False), _Part(b"data: [DONE]\n\n", False)]
                return self._timed(parts, "text/event-stream")
            return Response(reply.data, media_type="application/json")
        if stream:
            parts = completion.stream_parts(reply)
            return self._timed(parts, "text/event-stream", cut=isinstance(reply, CutStream))
        data = _json(completion.body(reply)).encode()
        if isinstance(reply, CutStream):
            half = [_Part(data[: len(data) // 2], token=False)]
            return self._timed(half, "application/json", cut=True)
        return Response(data, media_type="application/json")

    def _timed(self, parts: Sequence[_Part], media_type: str, *, cut: bool = False) -> _TimedBody:
        return _TimedBody(
            parts,
            media_type=media_type,
            first_token_s=self.first_token_ms / 1000.0,
            token_interval_s=self.token_interval_ms / 1000.0,
            cut=cut,
        )

    async def _hang(self, request: Request, seconds: float) -> bool:
        """Wait ``seconds``, the client's disconnect or server stop; True if the client left."""
        assert self._stopping is not None

        async def disconnected() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass

        left = asyncio.ensure_future(disconnected())
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({left, stopping}, timeout=seconds, return_when="FIRST_COMPLETED")
        finally:
            for waiter in (left, stopping):
                waiter.cancel()
            await asyncio.gather(left, stopping, return_exceptions=True)
        return left.done() and not left.cancelled() and left.exception() is None


def main(argv: Sequence[str] | None = None) -> None:
    """Serve a fixed answer at a fixed token rate, for benchmarks run from another process."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--answer", default=None, help="fixed answer (default: echo the user)")
    parser.add_argument("--first-token-ms", type=float, default=0.0)
    parser.add_argument("--token-interval-ms", type=float, default=0.0)
    parser.add_argument("--model", default="scripted-model")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    server = ScriptedOpenAIServer(
        default=echo_reply if args.answer is None else Answer(args.answer),
        first_token_ms=args.first_token_ms,
        token_interval_ms=args.token_interval_ms,
        model=args.model,
        host=args.host,
        port=args.port,
    )
    server.serve_forever()


if __name__ == "__main__":
    main()
