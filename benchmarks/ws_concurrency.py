"""WebSocket concurrency: many chat sessions at once against one worker.

The service runs as its own process (``healtrace serve``, SQLite, evidence on) with the
scripted backend (first token after 40 ms, then a token every 2 ms). The client opens N
WebSocket sessions, then every session sends one question at the same moment; it records
each session's time to first token and to ``answer_done``. Added latency is time to first
token minus the backend's own first-token time. Memory per connection is the server's
resident memory growth while the N sessions are open and idle, divided by N.

    python benchmarks/ws_concurrency.py [--sessions 1000] [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import websockets
from _report import pct, write_block
from agent_overhead import FIRST_TOKEN_MS, TOKEN_INTERVAL_MS, Server, backend_ttft


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def open_session(url: str, key: str) -> Any:
    ws = await websockets.connect(url, max_queue=None, open_timeout=60)
    await ws.send(json.dumps({"type": "hello", "api_key": key}))
    ok = json.loads(await ws.recv())
    assert ok["type"] == "hello_ok", ok
    return ws


async def ask(ws: Any, start: asyncio.Event) -> tuple[float, float]:
    await start.wait()
    sent = time.perf_counter()
    await ws.send(json.dumps({"type": "user_message", "text": "How much water a day?"}))
    first = None
    while True:
        frame = json.loads(await ws.recv())
        if frame["type"] == "token" and first is None:
            first = time.perf_counter()
        if frame["type"] in ("answer_done", "error"):
            assert frame["type"] == "answer_done", frame
            done = time.perf_counter()
            assert first is not None
            return (first - sent) * 1000, (done - sent) * 1000


async def run(sessions: int) -> str:
    floor = statistics.median(await backend_ttft(50))
    with tempfile.TemporaryDirectory() as home:
        server = Server(0, Path(home))
        try:
            key = await server.key()
            url = f"ws://127.0.0.1:{server.port}/v1/ws/chat"
            # Warm up: imports, caches, the first turn's database work.
            warm = await open_session(url, key)
            for _ in range(3):
                await ask(warm, _set(asyncio.Event()))
            single = [await ask(warm, _set(asyncio.Event())) for _ in range(20)]
            await warm.close()
            before = rss_kib(server.proc.pid)
            opened = time.perf_counter()
            conns: list[Any] = []
            for i in range(0, sessions, 100):
                conns += await asyncio.gather(
                    *(open_session(url, key) for _ in range(min(100, sessions - i)))
                )
            open_s = time.perf_counter() - opened
            await asyncio.sleep(1.0)
            per_conn_kib = (rss_kib(server.proc.pid) - before) / sessions
            start = asyncio.Event()
            tasks = [asyncio.ensure_future(ask(ws, start)) for ws in conns]
            began = time.perf_counter()
            start.set()
            results = await asyncio.gather(*tasks)
            wall = time.perf_counter() - began
            await asyncio.gather(*(ws.close() for ws in conns))
        finally:
            server.stop()
    ttft = [r[0] for r in results]
    total = [r[1] for r in results]
    added = [t - floor for t in ttft]
    single_added = [t - floor for t, _ in single]
    return "\n".join(
        [
            f"Scripted backend (first token {FIRST_TOKEN_MS:.0f} ms, then a token every "
            f"{TOKEN_INTERVAL_MS:.0f} ms; measured floor p50 {floor:.1f} ms); one worker "
            f"process (SQLite, evidence records on); client and server share the 2 cores.",
            "",
            "| sessions | answers/s | TTFT p50 (ms) | added p50 (ms) | added p95 (ms) "
            "| answer p95 (ms) | memory per open session |",
            "|---|---|---|---|---|---|---|",
            f"| 1 (sequential) | {1000 / pct([t for _, t in single], 50):.0f} | "
            f"{pct([t for t, _ in single], 50):.1f} | {pct(single_added, 50):.1f} | "
            f"{pct(single_added, 95):.1f} | {pct([t for _, t in single], 95):.0f} | — |",
            f"| {sessions} at once | {sessions / wall:.0f} | {pct(ttft, 50):.0f} | "
            f"{pct(added, 50):.0f} | {pct(added, 95):.0f} | {pct(total, 95):.0f} | "
            f"{per_conn_kib:.0f} KiB |",
            "",
            f"Opening the {sessions} sessions (WebSocket + hello, each creating a session row) "
            f"took {open_s:.1f} s; all {sessions} questions were sent at the same moment and "
            f"answered in {wall:.1f} s.",
        ]
    )


def _set(event: asyncio.Event) -> asyncio.Event:
    event.set()
    return event


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    body = asyncio.run(run(args.sessions))
    print(body)
    if args.write:
        write_block(args.write, "ws_concurrency", body)


if __name__ == "__main__":
    main()
