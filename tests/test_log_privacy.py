"""What the real service writes to its logs, at debug level, holds no secret and no patient
data: API keys (valid, wrong, another tenant's), backend API keys, WeChat secrets, and the
names, phone numbers and ID numbers patients type are scanned for in everything the
process printed."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import websockets

from tests.test_e2e_serve import Service, _free_port

# Synthetic PHI a patient might type, in both languages.
PHI = [
    "Wang Xiaoming",
    "王小明",
    "13912345678",
    "110101199003071234",
    "wang.xiaoming@example.com",
    "MRN-448812",
]
BACKEND_KEY = "sk-live-4f9a1c2b3d4e5f60718293a4b5c6d7e8"
WECHAT_SECRET = "wxsecret-7d6c5b4a39281706f5e4d3c2b1a09f8e"
WECHAT_TOKEN = "wxtoken9c8b7a6f5e4d"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
WRONG_KEY = "ht_sk_this-is-not-a-real-key-0123456789abcdef"


def _create_key(env: dict[str, str], name: str, tenant: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "healtrace", "keys", "create", name, "--tenant", tenant],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return out.stdout.strip().splitlines()[-1]


async def _chat(port: int, key: str, text: str, locale: str) -> list[dict[str, object]]:
    async with websockets.connect(f"ws://127.0.0.1:{port}/v1/ws/chat") as ws:
        await ws.send(json.dumps({"type": "hello", "api_key": key, "locale": locale}))
        hello = json.loads(await ws.recv())
        assert hello["type"] == "hello_ok", hello
        await ws.send(json.dumps({"type": "user_message", "text": text}))
        frames: list[dict[str, object]] = []
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 60))
            frames.append(frame)
            if frame["type"] == "answer_done" or (
                frame["type"] == "error" and frame.get("turn_id")
            ):
                return frames


async def test_logs_hold_no_secrets_and_no_patient_data(tmp_path: Path) -> None:
    data = tmp_path / "data"
    closed = _free_port()  # nothing listens here: the first backend always fails
    backends = [
        {
            "kind": "openai",
            "name": "remote",
            "base_url": f"http://127.0.0.1:{closed}/v1",
            "api_key": BACKEND_KEY,
            "max_retries": 0,
            "timeout_s": 2,
        },
        {"kind": "scripted", "tool_rounds": 1},
    ]
    extra = {
        "HEALTRACE_LOG_LEVEL": "debug",
        "HEALTRACE_DEV_KEY": "false",
        "HEALTRACE_CHAIN__ENABLED": "false",
        "HEALTRACE_KNOWLEDGE__ENABLED": "false",
        "HEALTRACE_WECHAT__ENABLED": "true",
        "HEALTRACE_WECHAT__APP_ID": "wx0123456789abcdef",
        "HEALTRACE_WECHAT__APP_SECRET": WECHAT_SECRET,
        "HEALTRACE_WECHAT__TOKEN": WECHAT_TOKEN,
        "HEALTRACE_WECHAT__ENCODING_AES_KEY": AES_KEY,
    }
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("HEALTRACE_") or k == "HEALTRACE_HOME"
    }
    env.update(HEALTRACE_DATA_DIR=str(data), **extra)
    key = _create_key(env, "north-app", "north")
    other = _create_key(env, "south-app", "south")
    port = _free_port()
    service = Service(data, port, backends=backends, extra_env=extra)
    try:
        service.wait_ready()
        en = (
            f"My name is {PHI[0]}, phone {PHI[2]}, email {PHI[4]}, record {PHI[5]}. I have a cough."
        )
        zh = f"我叫{PHI[1]}，身份证号{PHI[3]}，电话{PHI[2]}，头痛三天了。"
        frames = await _chat(port, key, en, "en")
        assert frames[-1]["type"] == "answer_done", frames[-1]
        frames = await _chat(port, other, zh, "zh-CN")
        assert frames[-1]["type"] == "answer_done", frames[-1]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            auth = {"Authorization": f"Bearer {key}"}
            r = await http.post(
                "/v1/chat/completions",
                headers=auth,
                json={"model": "healtrace", "messages": [{"role": "user", "content": en}]},
            )
            assert r.status_code == 200, r.text
            s = await http.post("/v1/sessions", headers=auth, json={})
            assert s.status_code in (200, 201), s.text
            sid = s.json()["session_id"] if "session_id" in s.json() else s.json()["id"]
            m = await http.post(f"/v1/sessions/{sid}/messages", headers=auth, json={"text": zh})
            assert m.status_code == 200, m.text
            # Refused requests are logged too: the wrong key must not be.
            bad = await http.post(
                "/v1/sessions", headers={"Authorization": f"Bearer {WRONG_KEY}"}, json={}
            )
            assert bad.status_code == 401
            # Another tenant's session: refused, and nothing of it logged.
            assert (
                await http.get(f"/v1/sessions/{sid}", headers={"Authorization": f"Bearer {other}"})
            ).status_code in (403, 404)
            # A forged WeChat callback carrying PHI.
            w = await http.post(
                "/v1/wechat/callback?signature=0&timestamp=1&nonce=2&msg_signature=0",
                content=f"<xml><Content>{PHI[1]} {PHI[3]}</Content></xml>".encode(),
            )
            assert w.status_code in (400, 401, 403)
    finally:
        out = service.stop()
    # The run did log at debug level, WebSocket frames included (without their payload).
    assert "DEBUG " in out and "[payload not logged]" in out, out[-2000:]
    secrets = [key, other, WRONG_KEY, BACKEND_KEY, WECHAT_SECRET, WECHAT_TOKEN, AES_KEY]
    # Also the parts people grep for: a key's secret half on its own.
    secrets += [part for k in (key, other) for part in k.split("_") if len(part) >= 16]
    leaked = [s for s in secrets + PHI if s in out]
    lines = [line for line in out.splitlines() if any(s in line for s in leaked)]
    assert leaked == [], f"found in the logs: {leaked}\n" + "\n".join(lines[:20])
