"""Publishable (website) keys: bound to origins on the WebSocket and REST, only for chatting,
rate limited per key and per end user; and the CLI that makes them."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from PIL import Image
from typer.testing import CliRunner

from healtrace.agent.memory import ChatStore
from healtrace.agent.models.testing import DemoModel
from healtrace.api.app import create_app
from healtrace.api.ratelimit import RateLimiter, TokenBuckets
from healtrace.api.testing import LiveServer
from healtrace.config import Settings
from healtrace.storage import Database
from tests.test_api import hello, recv, until

SITE = "https://hospital.example"
OTHER_SITE = "https://clinic.example"
EVIL = "https://evil.example"


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 120, 110)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
async def live(settings: Settings) -> AsyncIterator[LiveServer]:
    settings.rate_limit_per_user_per_min = 3
    app = create_app(settings, model=DemoModel(tool_rounds=0, answer="Drink water."))
    async with LiveServer(app) as server:
        yield server


def _store(live: LiveServer) -> ChatStore:
    store: ChatStore = live.server.config.app.state.services.store
    return store


async def _keys(live: LiveServer) -> tuple[str, str, str]:
    """A publishable key for SITE, one for OTHER_SITE, and a secret key."""
    store = _store(live)
    site = (await store.create_api_key("site", kind="publishable", allowed_origins=[SITE]))[1]
    other = (
        await store.create_api_key("other", kind="publishable", allowed_origins=[OTHER_SITE + "/"])
    )[1]
    secret = (await store.create_api_key("server"))[1]
    return site, other, secret


async def test_store_keeps_kind_and_origins(store: ChatStore) -> None:
    kid, key = await store.create_api_key(
        "widget", tenant_id="h1", kind="publishable", allowed_origins=["HTTPS://Hospital.example/"]
    )
    found = await store.lookup_api_key(key)
    assert found is not None and found.id == kid and found.kind == "publishable"
    assert found.allowed_origins == (SITE,) and found.tenant_id == "h1"
    assert key.startswith("ht_pk_")
    assert await store.publishable_origins() == {SITE}
    secret = await store.lookup_api_key((await store.create_api_key("server"))[1])
    assert secret is not None and secret.kind == "secret" and secret.allowed_origins == ()
    await store.revoke_api_key(kid)
    assert await store.lookup_api_key(key) is None
    assert await store.publishable_origins() == frozenset()
    for bad in ([], ["hospital.example"], ["https://hospital.example/chat"]):
        with pytest.raises(ValueError):
            await store.create_api_key("x", kind="publishable", allowed_origins=bad)
    with pytest.raises(ValueError):
        await store.create_api_key("x", allowed_origins=[SITE])


async def test_websocket_hello_needs_the_keys_own_origin(
    live: LiveServer, settings: Settings
) -> None:
    site, _other, secret = await _keys(live)
    async with websockets.connect(live.ws, origin=SITE) as ws:  # type: ignore[arg-type]
        ok = await hello(ws, site, end_user="visitor-1")
        assert ok["type"] == "hello_ok"
    # An origin no key names is refused at the handshake, as before.
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        async with websockets.connect(live.ws, origin=EVIL):  # type: ignore[arg-type]
            pass
    assert refused.value.response.status_code == 403
    # Another key's origin, the wrong key kind, or no Origin at all: refused at hello.
    for origin, key in ((OTHER_SITE, site), (SITE, secret), (None, site)):
        async with websockets.connect(live.ws, origin=origin) as ws:  # type: ignore[arg-type]
            error = await hello(ws, key)
            assert error["type"] == "error" and error["code"] == "key_origin_forbidden"
            with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
                await recv(ws)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
    # The secret key still works from servers (no Origin) and the configured origins.
    settings.allowed_origins = [live.http]
    for origin in (None, live.http):
        async with websockets.connect(live.ws, origin=origin) as ws:  # type: ignore[arg-type]
            assert (await hello(ws, secret))["type"] == "hello_ok"


async def test_rest_binds_publishable_keys_to_origins_and_to_chatting(live: LiveServer) -> None:
    site, _other, secret = await _keys(live)
    async with httpx.AsyncClient(base_url=live.http) as http:

        def upload(origin: str | None, key: str = site, **params: Any) -> Any:
            headers = {"Origin": origin} if origin else {}
            files = {"file": ("x.png", png(), "image/png")}
            return http.post(
                "/v1/images", params={"key": key, **params}, files=files, headers=headers
            )

        ok = await upload(SITE, end_user="v1")
        assert ok.status_code == 200, ok.text
        assert ok.headers["access-control-allow-origin"] == SITE
        for origin in (EVIL, OTHER_SITE, None):
            refused = await upload(origin)
            assert refused.status_code == 403
            assert refused.json()["error"]["code"] == "key_origin_forbidden"
            assert "access-control-allow-origin" not in refused.headers
        # A secret key is never taken from a URL (it would end up in logs).
        assert (await upload(None, key=secret)).json()["error"]["code"] == "auth_invalid"

        # Reading a conversation it knows the id of: allowed; anything else: not.
        async with websockets.connect(live.ws, origin=SITE) as ws:  # type: ignore[arg-type]
            session = (await hello(ws, site))["session_id"]
            await ws.send(json.dumps({"type": "user_message", "text": "hi"}))
            await until(ws, "answer_done")
        site_headers = {"Origin": SITE, "Authorization": f"Bearer {site}"}
        read = await http.get(f"/v1/sessions/{session}/messages", headers=site_headers)
        assert read.status_code == 200 and [m["role"] for m in read.json()] == [
            "user",
            "assistant",
        ]
        assert read.headers["access-control-allow-origin"] == SITE
        for method, path, body in (
            ("GET", "/v1/sessions", None),
            ("POST", "/v1/sessions", {}),
            ("POST", f"/v1/sessions/{session}/messages", {"text": "hi"}),
            ("POST", "/v1/labs/interpret", {"text": "Glucose 5.1 mmol/L"}),
            ("POST", "/v1/patients", {"fhir_patient_id": "p1"}),
            ("GET", "/v1/rewards/balance", None),
        ):
            r = await http.request(method, path, json=body, headers=site_headers)
            assert r.status_code == 403, (path, r.text)
            assert r.json()["error"]["code"] == "key_scope_forbidden"
            # The key's own page can read why.
            assert r.headers["access-control-allow-origin"] == SITE
        # Secret keys are unaffected.
        listed = await http.get("/v1/sessions", headers={"Authorization": f"Bearer {secret}"})
        assert listed.status_code == 200


async def test_rate_limits_per_end_user_then_per_key(settings: Settings) -> None:
    settings.rate_limit_per_user_per_min = 2
    settings.rate_limit_per_key_per_min = 3
    app = create_app(settings, model=DemoModel(tool_rounds=0, answer="Drink water."))
    async with LiveServer(app) as live:
        site, _other, secret = await _keys(live)

        async def say(ws: Any, text: str) -> dict[str, Any]:
            await ws.send(json.dumps({"type": "user_message", "text": text}))
            return (await until(ws, "answer_done", "error"))[-1]

        async with websockets.connect(live.ws, origin=SITE) as ws:  # type: ignore[arg-type]
            await hello(ws, site, end_user="alice")
            assert (await say(ws, "one"))["type"] == "answer_done"
            assert (await say(ws, "two"))["type"] == "answer_done"
            limited = await say(ws, "three")
            assert limited["code"] == "rate_limited" and limited["retryable"] is True
            assert limited["seq"] == 0 and "30" in limited["message"]
        async with websockets.connect(live.ws, origin=SITE) as ws:  # type: ignore[arg-type]
            await hello(ws, site, end_user="bob", locale="zh-CN")
            assert (await say(ws, "one"))["type"] == "answer_done"  # the key's third
            limited = await say(ws, "two")  # bob has tokens left; the key has none
            assert limited["code"] == "rate_limited" and "秒" in limited["message"]
        async with httpx.AsyncClient(base_url=live.http) as http:
            r = await http.post(
                "/v1/images",
                params={"key": site, "end_user": "carol"},
                files={"file": ("x.png", png(), "image/png")},
                headers={"Origin": SITE},
            )
            assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
            assert int(r.headers["retry-after"]) >= 1
            assert r.headers["access-control-allow-origin"] == SITE
        # Secret keys (servers) are not limited by these settings.
        async with websockets.connect(live.ws) as ws:
            await hello(ws, secret)
            for text in ("a", "b", "c", "d"):
                assert (await say(ws, text))["type"] == "answer_done"


def test_token_buckets_refill_with_the_clock() -> None:
    now = [0.0]
    buckets = TokenBuckets(2, clock=lambda: now[0])
    assert buckets.wait_s("k") == 0
    buckets.take("k")
    buckets.take("k")
    assert buckets.wait_s("k") == pytest.approx(30.0)
    now[0] = 15.0
    assert buckets.wait_s("k") == pytest.approx(15.0)
    now[0] = 30.0
    assert buckets.wait_s("k") == 0
    limiter = RateLimiter(0, 0, clock=lambda: now[0])
    assert all(limiter.check("k", "u") == 0 for _ in range(1000))


def test_cli_creates_publishable_keys(tmp_path: Path) -> None:
    from healtrace.cli import app

    runner = CliRunner()
    made = runner.invoke(
        app,
        [
            "keys",
            "create",
            "site widget",
            "--tenant",
            "h1",
            "--publishable",
            "--origin",
            SITE,
            "--origin",
            "http://localhost:8080",
        ],
    )
    assert made.exit_code == 0, made.output
    key = made.output.strip().splitlines()[-1]
    assert key.startswith("ht_pk_")

    async def lookup() -> Any:
        db = Database(Settings().resolved_database_url)
        try:
            return await ChatStore(db).lookup_api_key(key)
        finally:
            await db.dispose()

    import asyncio

    found = asyncio.run(lookup())
    assert found.kind == "publishable" and found.tenant_id == "h1"
    assert found.allowed_origins == (SITE, "http://localhost:8080")
    for args in (["--publishable"], ["--origin", SITE], ["--publishable", "--origin", "nope"]):
        refused = runner.invoke(app, ["keys", "create", "bad", *args])
        assert refused.exit_code == 2, refused.output
