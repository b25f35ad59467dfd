"""The service over real sockets: WebSocket protocol, REST, auth, origins and bad input."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from healtrace.agent.memory import ChatStore
from healtrace.agent.models.testing import DemoModel, ScriptedModel, Step, text_step
from healtrace.api.app import create_app
from healtrace.api.testing import LiveServer
from healtrace.config import Settings
from healtrace.storage import Database


async def _make_key(settings: Settings) -> str:
    db = Database(settings.resolved_database_url)
    await db.migrate()
    try:
        return (await ChatStore(db).create_api_key("test"))[1]
    finally:
        await db.dispose()


@pytest.fixture
async def key(settings: Settings) -> str:
    return await _make_key(settings)


@pytest.fixture
async def server(settings: Settings, key: str) -> AsyncIterator[LiveServer]:
    model = DemoModel(token_interval_ms=1)
    async with LiveServer(create_app(settings, model=model)) as live:
        yield live


async def recv(ws: ClientConnection, wait_s: float = 10) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), wait_s))  # type: ignore[no-any-return]


async def until(ws: ClientConnection, *types: str) -> list[dict[str, Any]]:
    """Every frame up to and including the first one whose type is in ``types``."""
    frames = []
    while True:
        frame = await recv(ws)
        frames.append(frame)
        if frame["type"] in types:
            return frames


async def hello(ws: ClientConnection, key: str, **extra: Any) -> dict[str, Any]:
    await ws.send(json.dumps({"type": "hello", "api_key": key, **extra}))
    return await recv(ws)


async def test_chat_over_websocket(server: LiveServer, key: str) -> None:
    async with websockets.connect(server.ws) as ws:
        ok = await hello(ws, key)
        assert ok["type"] == "hello_ok" and ok["protocol"] == 1 and ok["last_seq"] == 0
        await ws.send(json.dumps({"type": "user_message", "text": "hi", "client_message_id": "m1"}))
        frames = await until(ws, "answer_done")
    types = [f["type"] for f in frames]
    # The demo model calls each built-in tool once (BMI, labs), then answers.
    assert types[:6] == ["turn_started", "triage", *["tool_call", "tool_result"] * 2]
    assert set(types[6:-1]) == {"token"} and types[-1] == "answer_done"
    assert frames[0]["client_message_id"] == "m1"
    seqs = [f["seq"] for f in frames]
    assert seqs == list(range(1, len(frames) + 1))
    assert "".join(f["text"] for f in frames if f["type"] == "token") == frames[-1]["text"]


async def test_resume_after_reconnect(server: LiveServer, key: str) -> None:
    async with websockets.connect(server.ws) as ws:
        ok = await hello(ws, key)
        session = ok["session_id"]
        await ws.send(json.dumps({"type": "user_message", "text": "hi"}))
        first = [await recv(ws) for _ in range(3)]
    # The turn goes on without the client; reconnecting replays what was missed.
    async with websockets.connect(server.ws) as ws:
        ok = await hello(ws, key, session_id=session, resume_from_seq=first[-1]["seq"])
        assert ok["resumed"] is True
        rest = await until(ws, "answer_done")
    seqs = [f["seq"] for f in first + rest]
    assert seqs == list(range(1, len(seqs) + 1))
    async with httpx.AsyncClient(base_url=server.http) as http:
        messages = (
            await http.get(
                f"/v1/sessions/{session}/messages", headers={"Authorization": f"Bearer {key}"}
            )
        ).json()
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[1]["content"] == rest[-1]["text"]


async def test_cancel_over_websocket(settings: Settings, key: str) -> None:
    model = ScriptedModel([Step(deltas=[f"w{i} " for i in range(2000)], delay_s=0.005)])
    async with LiveServer(create_app(settings, model=model)) as live:
        async with websockets.connect(live.ws) as ws:
            await hello(ws, key)
            await ws.send(json.dumps({"type": "user_message", "text": "long"}))
            await until(ws, "token")
            await ws.send(json.dumps({"type": "cancel"}))
            frames = await until(ws, "answer_done")
            assert frames[-1]["finish_reason"] == "cancelled"
            await ws.send(json.dumps({"type": "cancel"}))
            assert (await recv(ws))["code"] == "no_turn_running"


async def test_one_turn_at_a_time(settings: Settings, key: str) -> None:
    model = ScriptedModel([Step(deltas=["slow "] * 50, delay_s=0.01)])
    async with LiveServer(create_app(settings, model=model)) as live:
        async with websockets.connect(live.ws) as ws:
            await hello(ws, key)
            await ws.send(json.dumps({"type": "user_message", "text": "one"}))
            await until(ws, "turn_started")
            await ws.send(json.dumps({"type": "user_message", "text": "two"}))
            frames = await until(ws, "error")
            assert frames[-1]["code"] == "turn_in_progress"
            await until(ws, "answer_done")


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json at all", "invalid_json"),
        ("[1, 2]", "invalid_json"),
        (json.dumps({"type": "launch_missiles"}), "unknown_event_type"),
        (json.dumps({"type": "user_message"}), "invalid_event"),
        (json.dumps({"type": "user_message", "text": 5}), "invalid_event"),
        (json.dumps({"type": "user_message", "text": "x", "evil": 1}), "invalid_event"),
        (json.dumps({"type": "user_message", "text": "   "}), "empty_message"),
        (json.dumps({"type": "user_message", "text": "x" * 8001}), "message_too_long"),
        (json.dumps({"type": "user_message", "text": "x" * 70000}), "frame_too_large"),
        (b"\xff\xfe binary", "invalid_json"),
    ],
)
async def test_bad_frames_get_error_events(
    server: LiveServer, key: str, frame: str | bytes, code: str
) -> None:
    async with websockets.connect(server.ws, max_size=None) as ws:
        await hello(ws, key)
        await ws.send(frame)
        error = await recv(ws)
        assert error["type"] == "error" and error["code"] == code and error["message"]
        # The connection is still usable.
        await ws.send(json.dumps({"type": "ping"}))
        assert (await recv(ws))["type"] == "pong"


async def test_error_messages_follow_locale(server: LiveServer, key: str) -> None:
    async with websockets.connect(server.ws) as ws:
        ok = await hello(ws, key, locale="zh-CN")
        assert ok["locale"] == "zh-CN"
        await ws.send("{")
        error = await recv(ws)
        assert error["code"] == "invalid_json" and "JSON" in error["message"]
        assert "消息" in error["message"]


async def test_oversized_protocol_frame_closes_with_1009(server: LiveServer, key: str) -> None:
    async with websockets.connect(server.ws, max_size=None) as ws:
        await hello(ws, key)
        await ws.send("x" * (2 << 20))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await recv(ws)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    # ... and the server keeps serving.
    async with websockets.connect(server.ws) as ws:
        assert (await hello(ws, key))["type"] == "hello_ok"


@pytest.mark.parametrize(
    ("api_key", "code"), [(None, "auth_required"), ("ht_wrong", "auth_invalid")]
)
async def test_missing_or_wrong_key_closes_4401(
    server: LiveServer, api_key: str | None, code: str
) -> None:
    async with websockets.connect(server.ws) as ws:
        await ws.send(json.dumps({"type": "hello", "api_key": api_key}))
        error = await recv(ws)
        assert error["code"] == code
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await recv(ws)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


async def test_messages_before_hello_are_refused(server: LiveServer, key: str) -> None:
    async with websockets.connect(server.ws) as ws:
        await ws.send(json.dumps({"type": "user_message", "text": "hi"}))
        assert (await recv(ws))["code"] == "hello_required"
        assert (await hello(ws, key))["type"] == "hello_ok"


async def test_hello_timeout(server: LiveServer) -> None:
    async with websockets.connect(server.ws) as ws:
        assert (await recv(ws))["code"] == "hello_required"
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await recv(ws)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4408


async def test_key_in_handshake_header(server: LiveServer, key: str) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    async with websockets.connect(server.ws, additional_headers=headers) as ws:
        await ws.send(json.dumps({"type": "hello"}))
        assert (await recv(ws))["type"] == "hello_ok"


async def test_foreign_origin_is_refused(settings: Settings, key: str) -> None:
    settings.allowed_origins = ["https://hospital.example"]
    async with LiveServer(create_app(settings, model=DemoModel())) as live:
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(live.ws, origin="https://evil.example"):  # type: ignore[arg-type]
                pass
        assert refused.value.response.status_code == 403
        for origin in ("https://hospital.example", None):
            async with websockets.connect(live.ws, origin=origin) as ws:  # type: ignore[arg-type]
                assert (await hello(ws, key))["type"] == "hello_ok"


def test_default_origins_are_the_service_itself() -> None:
    assert Settings(port=8000).resolved_origins == [
        "http://127.0.0.1:8000",
        "http://localhost:8000",
    ]
    assert Settings(host="chat.example.org", port=443).resolved_origins == [
        "http://chat.example.org:443"
    ]


async def test_other_keys_cannot_see_a_session(
    server: LiveServer, key: str, settings: Settings
) -> None:
    other = await _make_key(settings)
    async with websockets.connect(server.ws) as ws:
        session = (await hello(ws, key))["session_id"]
    async with websockets.connect(server.ws) as ws:
        await ws.send(json.dumps({"type": "hello", "api_key": other, "session_id": session}))
        assert (await recv(ws))["code"] == "session_not_found"
    async with httpx.AsyncClient(base_url=server.http) as http:
        r = await http.get(f"/v1/sessions/{session}", headers={"X-API-Key": other})
        assert r.status_code == 404 and r.json()["error"]["code"] == "session_not_found"


async def test_rest_flow(server: LiveServer, key: str) -> None:
    auth = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=server.http, timeout=10) as http:
        assert (await http.get("/healthz")).json()["status"] == "ok"
        ready = (await http.get("/readyz")).json()
        assert ready["status"] == "ready"
        assert ready["tools"] == [
            "analyze_image",
            "body_mass_index",
            "interpret_labs",
            "lookup_records",
            "reward",
        ]
        r = await http.post("/v1/sessions", json={"locale": "zh-CN"}, headers=auth)
        assert r.status_code == 201
        sid = r.json()["id"]
        r = await http.post(f"/v1/sessions/{sid}/messages", json={"text": "BMI?"}, headers=auth)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["tool_calls"][0]["name"] == "body_mass_index" and body["text"]
        listed = (await http.get("/v1/sessions", headers=auth)).json()
        assert [s["id"] for s in listed] == [sid] and listed[0]["title"] == "BMI?"
        plain = (await http.get(f"/v1/sessions/{sid}/messages", headers=auth)).json()
        assert [m["role"] for m in plain] == ["user", "assistant"]
        full = (
            await http.get(f"/v1/sessions/{sid}/messages?include_tools=true", headers=auth)
        ).json()
        # The demo model calls each built-in tool once, one per round, then answers.
        assert [m["role"] for m in full] == ["user", *["assistant", "tool"] * 2, "assistant"]
        spec = (await http.get("/openapi.json")).json()
        assert "/v1/sessions/{session_id}/messages" in spec["paths"]
        page = await http.get("/")
        assert page.status_code == 200 and "/v1/ws/chat" in page.text


async def test_rest_errors(server: LiveServer, key: str) -> None:
    auth = {"Authorization": f"Bearer {key}", "Accept-Language": "zh-CN,zh;q=0.9"}
    async with httpx.AsyncClient(base_url=server.http, timeout=10) as http:
        r = await http.get("/v1/sessions")
        assert r.status_code == 401 and r.json()["error"]["code"] == "auth_required"
        r = await http.get("/v1/sessions", headers={"Authorization": "Bearer ht_nope"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "auth_invalid"
        sid = (await http.post("/v1/sessions", headers=auth)).json()["id"]
        r = await http.post(f"/v1/sessions/{sid}/messages", json={"text": "x" * 9000}, headers=auth)
        assert r.status_code == 413 and "过长" in r.json()["error"]["message"]
        r = await http.post(
            f"/v1/sessions/{sid}/messages",
            content=b"{not json",
            headers={**auth, "Content-Type": "application/json"},
        )
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_event"
        r = await http.post("/v1/sessions/nope/messages", json={"text": "hi"}, headers=auth)
        assert r.status_code == 404


async def test_model_failure_over_rest_is_503(settings: Settings, key: str) -> None:
    from healtrace.errors import BackendUnavailable

    model = ScriptedModel([Step(raises=BackendUnavailable("down")), text_step("back again")])
    async with LiveServer(create_app(settings, model=model)) as live:
        auth = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=live.http, timeout=10) as http:
            sid = (await http.post("/v1/sessions", headers=auth)).json()["id"]
            r = await http.post(f"/v1/sessions/{sid}/messages", json={"text": "q"}, headers=auth)
            assert r.status_code == 503 and r.json()["error"]["code"] == "model_unavailable"
            r = await http.post(f"/v1/sessions/{sid}/messages", json={"text": "q"}, headers=auth)
            assert r.status_code == 200 and r.json()["text"] == "back again"


async def test_conversation_survives_a_restart(settings: Settings, key: str) -> None:
    async with LiveServer(create_app(settings, model=DemoModel())) as live:
        async with websockets.connect(live.ws) as ws:
            session = (await hello(ws, key))["session_id"]
            await ws.send(json.dumps({"type": "user_message", "text": "first question"}))
            first = await until(ws, "answer_done")
    last_seq = first[-1]["seq"]
    model = DemoModel()
    async with LiveServer(create_app(settings, model=model)) as live:
        async with websockets.connect(live.ws) as ws:
            ok = await hello(ws, key, session_id=session, resume_from_seq=last_seq)
            assert ok["resumed"] is True and ok["last_seq"] > last_seq
            await ws.send(json.dumps({"type": "user_message", "text": "second question"}))
            second = await until(ws, "answer_done")
    assert second[0]["seq"] > last_seq
    sent = [m.content for m in model.requests[0].messages]
    assert "first question" in sent and sent[-1] == "second question"
