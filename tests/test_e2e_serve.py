"""`healtrace serve` as `make serve` runs it, with the real local model, and a real client.

No fake anywhere: the service process loads the bundled Qwen2.5 0.5B GGUF through
llama.cpp, and the `websockets` client talks the documented protocol.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from healtrace.agent.models.catalog import CATALOG
from healtrace.config import Settings

pytestmark = [pytest.mark.e2e]

QUESTION = "What is a normal resting heart rate?"


def _model_present() -> bool:
    entry = CATALOG["qwen2.5-coder-0.5b"]
    return (Settings().models_dir / entry.filename).exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


LOCAL = [{"kind": "local", "max_tokens": 64}]  # the default model, short answers


class Service:
    def __init__(
        self,
        data_dir: Path,
        port: int,
        backends: list[dict[str, object]] = LOCAL,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("HEALTRACE_") or k == "HEALTRACE_HOME"
        }
        env.update(
            HEALTRACE_DATA_DIR=str(data_dir),
            HEALTRACE_PORT=str(port),
            HEALTRACE_LLM_BACKENDS=json.dumps(backends),
            # The embedded chain node gets a port of its own, so runs never collide.
            HEALTRACE_CHAIN__ANVIL_PORT=str(_free_port()),
        )
        env.update(extra_env or {})
        self.port = port
        self.data_dir = data_dir
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "healtrace", "serve"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def wait_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read() if self.proc.stdout else ""
                raise AssertionError(f"the service exited:\n{out}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("the service did not become ready")
            time.sleep(0.2)

    def stop(self) -> str:
        self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return out or ""


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "data"


async def _ask(port: int, key: str, text: str, session: str | None = None) -> list[dict]:  # type: ignore[type-arg]
    hello: dict[str, object] = {"type": "hello", "api_key": key}
    if session:
        hello["session_id"] = session
    async with websockets.connect(f"ws://127.0.0.1:{port}/v1/ws/chat") as ws:
        await ws.send(json.dumps(hello))
        ok = json.loads(await ws.recv())
        assert ok["type"] == "hello_ok", ok
        await ws.send(json.dumps({"type": "user_message", "text": text}))
        frames = [ok]
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 120))
            frames.append(frame)
            if frame["type"] == "answer_done" or (
                frame["type"] == "error" and frame.get("turn_id")
            ):
                return frames


@pytest.mark.local_model
@pytest.mark.skipif(not _model_present(), reason="run `make models` first")
async def test_serve_answers_with_the_local_model_and_survives_a_restart(data_dir: Path) -> None:
    port = _free_port()
    service = Service(data_dir, port)
    try:
        await asyncio.to_thread(service.wait_ready)
        key = (data_dir / "dev-api-key").read_text().strip()
        frames = await _ask(port, key, QUESTION)
    finally:
        first_log = service.stop()
    assert "development API key" in first_log
    session = frames[0]["session_id"]
    types = [f["type"] for f in frames[1:]]
    assert types[0] == "turn_started" and types[-1] == "answer_done", types
    tokens = [f["text"] for f in frames if f["type"] == "token"]
    assert len(tokens) >= 5
    done = frames[-1]
    assert done["text"].strip() and "".join(tokens) == done["text"]
    assert done["model"].startswith("local:")

    # Restart on the same database: the conversation continues with its history.
    service = Service(data_dir, port)
    try:
        await asyncio.to_thread(service.wait_ready)
        frames2 = await _ask(port, key, "And for a trained athlete?", session=session)
        async with httpx.AsyncClient() as http:
            messages = (
                await http.get(
                    f"http://127.0.0.1:{port}/v1/sessions/{session}/messages",
                    headers={"Authorization": f"Bearer {key}"},
                )
            ).json()
    finally:
        second_log = service.stop()
    assert "development API key" not in second_log  # printed once, on creation
    assert frames2[0]["session_id"] == session
    assert frames2[-1]["type"] == "answer_done" and frames2[-1]["text"].strip()
    assert frames2[1]["seq"] > frames[-1]["seq"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[0]["content"] == QUESTION
    assert messages[1]["content"] == done["text"]


async def test_a_killed_server_loses_nothing_accepted(data_dir: Path) -> None:
    port = _free_port()
    words = " ".join(f"word{i}" for i in range(200))
    slow = [{"kind": "scripted", "token_interval_ms": 50, "tool_rounds": 0, "answer": words}]
    service = Service(data_dir, port, slow)
    try:
        await asyncio.to_thread(service.wait_ready)
        key = (data_dir / "dev-api-key").read_text().strip()
        async with websockets.connect(f"ws://127.0.0.1:{port}/v1/ws/chat") as ws:
            await ws.send(json.dumps({"type": "hello", "api_key": key}))
            session = json.loads(await ws.recv())["session_id"]
            await ws.send(json.dumps({"type": "user_message", "text": "please explain"}))
            seen = []
            while len(seen) < 25:  # about 1.2 s of streaming: at least two flushes
                frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if frame["type"] == "token":
                    seen.append(frame["text"])
            service.proc.kill()  # SIGKILL: no shutdown handlers run
            service.proc.communicate(timeout=10)
    finally:
        if service.proc.poll() is None:
            service.stop()
    service = Service(data_dir, port, slow)
    try:
        await asyncio.to_thread(service.wait_ready)
        async with httpx.AsyncClient() as http:
            messages = (
                await http.get(
                    f"http://127.0.0.1:{port}/v1/sessions/{session}/messages",
                    headers={"Authorization": f"Bearer {key}"},
                )
            ).json()
    finally:
        service.stop()
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[0]["content"] == "please explain"
    partial = messages[1]
    assert partial["status"] == "interrupted"
    # Written at most 0.5 s before the kill: a prefix of what the client saw, not empty.
    assert partial["content"] and "".join(seen).startswith(partial["content"])
