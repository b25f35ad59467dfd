"""Terminal chat: streams answers from a running server or from an in-process orchestrator."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator

from healtrace.agent.events import Event, parse_event
from healtrace.config import Settings

PROMPT = "you> "
APPROVE = "/approve"


def _render(event: Event, pending: list[str] | None = None) -> None:
    out = sys.stdout
    if event.type == "approval_required":
        args = json.dumps(event.arguments, ensure_ascii=False)
        out.write(f"\n  [{event.message} {event.name} {args} — type {APPROVE} to approve]\n")
        if pending is not None:
            pending.append(event.approval_id)
    elif event.type == "token":
        out.write(event.text)
    elif event.type == "tool_call":
        out.write(f"\n  [tool {event.name} {json.dumps(event.arguments, ensure_ascii=False)}]\n")
    elif event.type == "tool_result":
        out.write(f"  [{'ok' if event.ok else 'error'}: {event.content[:200]}]\n")
    elif event.type == "answer_done":
        suffix = " (stopped)" if event.finish_reason == "cancelled" else ""
        out.write(f"{suffix}\n  — {event.model}\n")
    elif event.type == "error":
        out.write(f"\n! {event.message}\n")
    out.flush()


def _approving(question: str, pending: list[str], locale: str) -> tuple[str, list[str]]:
    """``/approve`` approves the calls the last answer asked about (sent as a message)."""
    if question.strip() != APPROVE or not pending:
        return question, []
    approved = list(pending)
    pending.clear()
    return ("我同意。" if locale.startswith("zh") else "I approve."), approved


async def _questions(first: str | None) -> AsyncIterator[str]:
    if first is not None:
        yield first
        return
    while True:
        try:
            line = await asyncio.to_thread(input, PROMPT)
        except EOFError:
            return
        if line.strip() in ("/quit", "/exit"):
            return
        if line.strip():
            yield line


async def chat_over_websocket(
    url: str, key: str, message: str | None, session: str | None, locale: str
) -> int:
    import websockets

    async with websockets.connect(url, max_size=None) as ws:
        hello: dict[str, object] = {"type": "hello", "api_key": key, "locale": locale}
        if session:
            hello["session_id"] = session
        await ws.send(json.dumps(hello))
        reply = json.loads(await ws.recv())
        if reply.get("type") != "hello_ok":
            sys.stderr.write(f"{reply.get('message', reply)}\n")
            return 2
        sys.stderr.write(f"session {reply['session_id']}\n")
        pending: list[str] = []
        async for question in _questions(message):
            text, approvals = _approving(question, pending, locale)
            frame: dict[str, object] = {"type": "user_message", "text": text}
            if approvals:
                frame["approvals"] = approvals
            await ws.send(json.dumps(frame))
            while True:
                data = json.loads(await ws.recv())
                if data.get("type") in ("hello_ok", "pong"):
                    continue
                event = parse_event(json.dumps(data))
                _render(event, pending)
                if event.type == "answer_done" or (event.type == "error" and event.turn_id):
                    break
                if event.type == "error" and message is not None:
                    return 1
    return 0


async def chat_in_process(
    settings: Settings, message: str | None, session: str | None, locale: str
) -> int:
    from healtrace.agent.orchestrator import UserTurn
    from healtrace.api.services import build_services

    services = await build_services(settings)
    try:
        if session is None:
            key_id = await services.store.ensure_named_key("cli")
            info = await services.store.create_session(key_id, locale=locale)
            session = info.id
            sys.stderr.write(f"session {session}\n")
        failed = False
        pending: list[str] = []
        async for question in _questions(message):
            text, approvals = _approving(question, pending, locale)
            turn = UserTurn(
                session_id=session, text=text, locale=locale, approvals=frozenset(approvals)
            )
            async for event in services.orchestrator.run_turn(turn):
                _render(event, pending)
                failed = event.type == "error"
        return 1 if failed else 0
    finally:
        await services.aclose()
