"""Server-added latency per turn, over the real WebSocket, against a fixed-rate backend.

The service runs as its own process (``healtrace serve``) with the scripted backend set to
a fixed first-token delay and token interval. For each workload (0, 1 and 3 tool calls per
turn) a client sends questions and times the first ``token`` event. The backend's own
first-token time is measured in this process by streaming the same scripted backend
directly; the server's added latency is

    added = time-to-first-token over the WebSocket - (model calls in the turn) x backend TTFT

so it covers everything HealTrace does: frame parsing, storing the question, loading the
history, building the prompt, running tools, storing tool traffic and event fan-out.

    python benchmarks/agent_overhead.py [--turns 60] [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import websockets
from _report import pct, write_block

from healtrace.agent.models.base import ModelRequest, TextDelta, ToolCallDelta
from healtrace.agent.models.testing import DemoModel
from healtrace.tools.builtin import body_mass_index

FIRST_TOKEN_MS = 40.0
TOKEN_INTERVAL_MS = 2.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def backend_ttft(samples: int) -> list[float]:
    """The scripted backend's own first-token time, streamed directly."""
    model = DemoModel(first_token_ms=FIRST_TOKEN_MS, token_interval_ms=TOKEN_INTERVAL_MS)
    request = ModelRequest(messages=())
    out = []
    for _ in range(samples):
        start = time.perf_counter()
        async for delta in model.stream(request):
            if isinstance(delta, TextDelta | ToolCallDelta):
                out.append((time.perf_counter() - start) * 1000)
                break
    return out


@dataclass
class Result:
    tool_calls: int
    ttft: list[float]
    added: list[float]
    total: list[float]


class Server:
    def __init__(self, tool_rounds: int, home: Path) -> None:
        self.port = free_port()
        data = home / f"data-{tool_rounds}"
        backend = {
            "kind": "scripted",
            "first_token_ms": FIRST_TOKEN_MS,
            "token_interval_ms": TOKEN_INTERVAL_MS,
            "tool_rounds": tool_rounds,
        }
        env = {
            **os.environ,
            "HEALTRACE_DATA_DIR": str(data),
            "HEALTRACE_PORT": str(self.port),
            "HEALTRACE_LLM_BACKENDS": json.dumps([backend]),
            "HEALTRACE_LOG_LEVEL": "warning",
            # The agent loop alone; retrieval has its own benchmark (retrieval.py).
            "HEALTRACE_KNOWLEDGE__ENABLED": "false",
        }
        self.data = data
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "healtrace", "serve"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    async def key(self) -> str:
        path = self.data / "dev-api-key"
        for _ in range(300):
            if path.exists() and path.read_text().strip():
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                        return path.read_text().strip()
                except OSError:
                    pass
            if self.proc.poll() is not None:
                raise RuntimeError(self.proc.stderr.read().decode() if self.proc.stderr else "")
            await asyncio.sleep(0.1)
        raise TimeoutError("server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=15)


async def run_workload(tool_calls: int, turns: int, floor_ms: float, home: Path) -> Result:
    server = Server(tool_calls, home)
    try:
        key = await server.key()
        url = f"ws://127.0.0.1:{server.port}/v1/ws/chat"
        ttft: list[float] = []
        total: list[float] = []
        turns_per_session = 5
        for start in range(0, turns + 3, turns_per_session):
            async with websockets.connect(url) as ws:
                await ws.send(json.dumps({"type": "hello", "api_key": key}))
                json.loads(await ws.recv())
                for i in range(start, min(start + turns_per_session, turns + 3)):
                    sent = time.perf_counter()
                    first: float | None = None
                    await ws.send(json.dumps({"type": "user_message", "text": f"BMI {i}?"}))
                    while True:
                        frame = json.loads(await ws.recv())
                        if frame["type"] == "token" and first is None:
                            first = time.perf_counter()
                        if frame["type"] in ("answer_done", "error"):
                            assert frame["type"] == "answer_done", frame
                            assert frame["tool_calls"] == tool_calls, frame
                            break
                    done = time.perf_counter()
                    if i >= 3:  # the first turns warm up imports and caches
                        assert first is not None
                        ttft.append((first - sent) * 1000)
                        total.append((done - sent) * 1000)
        added = [t - (tool_calls + 1) * floor_ms for t in ttft]
        return Result(tool_calls, ttft, added, total)
    finally:
        server.stop()


def table(results: list[Result], floor: list[float], turns: int) -> str:
    lines = [
        f"Scripted backend: first token after {FIRST_TOKEN_MS:.0f} ms, then one token every "
        f"{TOKEN_INTERVAL_MS:.0f} ms; backend's own first-token time measured directly: "
        f"p50 {pct(floor, 50):.2f} ms. {turns} turns per row, server in its own process "
        f"(SQLite), client over a real WebSocket on loopback. Machine: {os.cpu_count()} cores.",
        "",
        "| tool calls per turn | TTFT p50 (ms) | TTFT p95 (ms) | added p50 (ms) "
        "| added p95 (ms) | turn total p50 (ms) |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.tool_calls} | {pct(r.ttft, 50):.1f} | {pct(r.ttft, 95):.1f} | "
            f"{pct(r.added, 50):.2f} | {pct(r.added, 95):.2f} | {pct(r.total, 50):.1f} |"
        )
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=60)
    parser.add_argument("--write", type=Path, help="update the table in this Markdown file")
    args = parser.parse_args()
    assert body_mass_index.name == "body_mass_index"  # the tool the workloads call
    floor = await backend_ttft(args.turns)
    floor_ms = statistics.median(floor)
    results = []
    with tempfile.TemporaryDirectory() as home:
        for calls in (0, 1, 3):
            results.append(await run_workload(calls, args.turns, floor_ms, Path(home)))
            r = results[-1]
            print(
                f"{calls} tool calls: TTFT p50 {pct(r.ttft, 50):.1f} ms, "
                f"added p50 {pct(r.added, 50):.2f} ms p95 {pct(r.added, 95):.2f} ms",
                flush=True,
            )
    body = table(results, floor, args.turns)
    print(body)
    if args.write:
        write_block(args.write, "agent_overhead", body)


if __name__ == "__main__":
    asyncio.run(main())
