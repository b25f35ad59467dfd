"""One variant of the comparison, run in its own process; writes its measurements as JSON.

    python benchmarks/compare/variants.py {direct,langgraph,healtrace,healtrace-ws} \
        --base-url URL --json OUT [--workloads plain,retrieval,three_tools] [--turns 40]
        [--sessions 100 --rounds 2] [--model M --max-tokens N --no-tools]

Per turn: time to the first answer token, total time, CPU time (this process; for the
WebSocket variant plus the server process's, from /proc), and the turn's peak Python
allocation (tracemalloc, in a separate pass after the timed one so tracing does not slow
the timed turns; not measured for the WebSocket variant, whose work is in the server).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from workloads import (
    CONCURRENT,
    MAX_TOKENS,
    MODEL,
    TEMPERATURE,
    TOP_P,
    WORKLOADS,
    FixedKnowledge,
    Workload,
    call_tool_directly,
    registry,
)

from healtrace.agent.models.base import ToolCall
from healtrace.config import Settings
from healtrace.prompts import load_prompt
from healtrace.tools.core import ToolContext

HERE = Path(__file__).resolve().parent
SYSTEM = load_prompt("system", "en")


@dataclass
class TurnOut:
    ttft_ms: float
    total_ms: float
    answer: str
    tool_calls: list[str]


@dataclass
class Options:
    base_url: str
    model: str
    max_tokens: int
    temperature: float
    tools: bool


def _plain_settings() -> Settings:
    return Settings(_env_file=None)  # type: ignore[call-arg]


class Variant:
    """A way of running a turn. ``prepare`` (untimed) makes what one turn needs."""

    name = ""

    def __init__(self, options: Options) -> None:
        self.o = options

    async def setup(self) -> None:
        return None

    async def prepare(self) -> Any:
        return None

    async def turn(self, workload: Workload, prepared: Any) -> TurnOut:
        raise NotImplementedError

    async def finish(self, prepared: Any) -> None:
        return None

    def server_cpu_s(self) -> float:
        return 0.0

    def peak_rss_mib(self) -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    async def close(self) -> None:
        return None


class Direct(Variant):
    """The floor: the openai SDK streaming call, tool functions called directly."""

    name = "direct"

    async def setup(self) -> None:
        from openai import AsyncOpenAI

        self.client = AsyncOpenAI(base_url=self.o.base_url, api_key="not-needed", max_retries=0)
        self.specs = [t.spec.to_openai() for t in registry()] if self.o.tools else []
        self.settings = _plain_settings()
        self.knowledge = FixedKnowledge()

    async def turn(self, workload: Workload, prepared: Any) -> TurnOut:
        import openai

        ctx = ToolContext(
            session_id="direct", locale="en", settings=self.settings, knowledge=self.knowledge
        )
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": workload.question},
        ]
        start = time.perf_counter()
        first: float | None = None
        answer: list[str] = []
        made: list[str] = []
        while True:
            stream = await self.client.chat.completions.create(
                model=self.o.model,
                messages=messages,  # type: ignore[arg-type]
                tools=self.specs or openai.omit,  # type: ignore[arg-type]
                stream=True,
                temperature=self.o.temperature,
                top_p=TOP_P,
                max_tokens=self.o.max_tokens,
            )
            text: list[str] = []
            partial: dict[int, dict[str, Any]] = {}
            async for chunk in stream:
                if not chunk.choices:
                    continue
                delta = chunk.choices[0].delta
                if delta.content:
                    if first is None:
                        first = time.perf_counter()
                    text.append(delta.content)
                for fragment in delta.tool_calls or ():
                    p = partial.setdefault(fragment.index, {"id": "", "name": "", "args": []})
                    if fragment.id:
                        p["id"] = fragment.id
                    if fragment.function is not None:
                        if fragment.function.name:
                            p["name"] = fragment.function.name
                        if fragment.function.arguments:
                            p["args"].append(fragment.function.arguments)
            answer += text
            if not partial:
                break
            calls = [
                ToolCall(p["id"], p["name"], "".join(p["args"]) or "{}")
                for _, p in sorted(partial.items())
            ]
            messages.append(
                {
                    "role": "assistant",
                    "content": "".join(text) or None,
                    "tool_calls": [
                        {
                            "id": c.id,
                            "type": "function",
                            "function": {"name": c.name, "arguments": c.arguments},
                        }
                        for c in calls
                    ],
                }
            )
            results = await asyncio.gather(*(call_tool_directly(c, ctx) for c in calls))
            for call, result in zip(calls, results, strict=True):
                messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
            made += [c.name for c in calls]
        done = time.perf_counter()
        assert first is not None, "no answer token"
        return TurnOut((first - start) * 1000, (done - start) * 1000, "".join(answer), made)

    async def close(self) -> None:
        await self.client.close()


class LangGraph(Variant):
    """``create_react_agent`` over ``ChatOpenAI``, HealTrace's tools through the bridge."""

    name = "langgraph"

    async def setup(self) -> None:
        import warnings

        from langchain_openai import ChatOpenAI

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # create_react_agent's move notice
            from langgraph.prebuilt import create_react_agent

        from healtrace.tools.bridges import to_langchain_tools

        settings = _plain_settings()
        knowledge = FixedKnowledge()

        def context() -> ToolContext:
            return ToolContext(
                session_id="langgraph", locale="en", settings=settings, knowledge=knowledge
            )

        tools = to_langchain_tools(registry(), context) if self.o.tools else []
        llm = ChatOpenAI(
            model=self.o.model,
            base_url=self.o.base_url,
            api_key="not-needed",  # type: ignore[arg-type]
            streaming=True,
            temperature=self.o.temperature,
            top_p=TOP_P,
            max_tokens=self.o.max_tokens,  # type: ignore[call-arg]
            max_retries=0,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.agent = create_react_agent(llm, tools, prompt=SYSTEM)

    async def turn(self, workload: Workload, prepared: Any) -> TurnOut:
        from langchain_core.messages import AIMessageChunk, ToolMessage

        start = time.perf_counter()
        first: float | None = None
        answer: list[str] = []
        made: list[str] = []
        inputs = {"messages": [{"role": "user", "content": workload.question}]}
        async for message, _meta in self.agent.astream(inputs, stream_mode="messages"):
            if isinstance(message, AIMessageChunk):
                text = message.content if isinstance(message.content, str) else ""
                if text:
                    if first is None:
                        first = time.perf_counter()
                    answer.append(text)
            elif isinstance(message, ToolMessage):
                made.append(str(message.name))
        done = time.perf_counter()
        assert first is not None, "no answer token"
        return TurnOut((first - start) * 1000, (done - start) * 1000, "".join(answer), made)


class HealTrace(Variant):
    """``Orchestrator.run_turn`` in this process, assembled as the service assembles it."""

    name = "healtrace"

    async def setup(self) -> None:
        from healtrace_side import bench_settings

        from healtrace.api.services import build_services

        self.tmp = tempfile.TemporaryDirectory()
        settings = bench_settings(
            self.o.base_url,
            Path(self.tmp.name),
            model=self.o.model,
            max_tokens=self.o.max_tokens,
            temperature=self.o.temperature,
        )
        tools = registry() if self.o.tools else registry().where(lambda t: False)
        self.services = await build_services(settings, tools=tools, knowledge=FixedKnowledge())
        self.key = await self.services.store.ensure_named_key("bench")

    async def prepare(self) -> Any:
        session = await self.services.store.create_session(self.key, locale="en")
        return session.id

    async def turn(self, workload: Workload, prepared: Any) -> TurnOut:
        from healtrace.agent.events import AnswerDone, ErrorEvent, Token, ToolCallEvent
        from healtrace.agent.orchestrator import UserTurn

        start = time.perf_counter()
        first: float | None = None
        answer = ""
        made: list[str] = []
        turn = UserTurn(prepared, workload.question, "en")
        async for event in self.services.orchestrator.run_turn(turn):
            if isinstance(event, Token) and first is None:
                first = time.perf_counter()
            elif isinstance(event, ToolCallEvent):
                made.append(event.name)
            elif isinstance(event, AnswerDone):
                answer = event.text
            elif isinstance(event, ErrorEvent):
                raise RuntimeError(f"turn failed: {event.code}")
        done = time.perf_counter()
        assert first is not None, "no answer token"
        return TurnOut((first - start) * 1000, (done - start) * 1000, answer, made)

    async def close(self) -> None:
        await self.services.aclose()
        self.tmp.cleanup()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _proc_hwm_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


class HealTraceWs(Variant):
    """The same service as its own process (uvicorn), this process a WebSocket client."""

    name = "healtrace-ws"

    async def setup(self) -> None:
        self.tmp = tempfile.TemporaryDirectory()
        self.port = _free_port()
        data = Path(self.tmp.name)
        command = [
            sys.executable,
            str(HERE / "healtrace_side.py"),
            "--base-url",
            self.o.base_url,
            "--port",
            str(self.port),
            "--data-dir",
            str(data),
            "--model",
            self.o.model,
            "--max-tokens",
            str(self.o.max_tokens),
            "--temperature",
            str(self.o.temperature),
        ]
        if not self.o.tools:
            command.append("--no-tools")
        # Started once, before anything is timed; a plain Popen keeps the pid at hand.
        self.proc = subprocess.Popen(  # noqa: ASYNC220
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        key_file = data / "dev-api-key"
        for _ in range(600):
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"the HealTrace server exited: {err}")
            if key_file.exists() and key_file.read_text().strip():
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                        break
                except OSError:
                    pass
            await asyncio.sleep(0.05)
        else:
            raise TimeoutError("the HealTrace server did not start")
        self.key = key_file.read_text().strip()
        self.url = f"ws://127.0.0.1:{self.port}/v1/ws/chat"

    async def prepare(self) -> Any:
        import websockets

        ws = await websockets.connect(self.url, max_queue=None, open_timeout=60)
        await ws.send(json.dumps({"type": "hello", "api_key": self.key}))
        ok = json.loads(await ws.recv())
        assert ok["type"] == "hello_ok", ok
        return ws

    async def turn(self, workload: Workload, prepared: Any) -> TurnOut:
        ws = prepared
        start = time.perf_counter()
        first: float | None = None
        made: list[str] = []
        await ws.send(json.dumps({"type": "user_message", "text": workload.question}))
        while True:
            frame = json.loads(await ws.recv())
            kind = frame["type"]
            if kind == "token" and first is None:
                first = time.perf_counter()
            elif kind == "tool_call":
                made.append(frame["name"])
            elif kind == "answer_done":
                answer = frame["text"]
                break
            elif kind == "error":
                raise RuntimeError(f"turn failed: {frame}")
        done = time.perf_counter()
        assert first is not None, "no answer token"
        return TurnOut((first - start) * 1000, (done - start) * 1000, answer, made)

    async def finish(self, prepared: Any) -> None:
        await prepared.close()

    def server_cpu_s(self) -> float:
        return _proc_cpu_s(self.proc.pid)

    def peak_rss_mib(self) -> float:
        return _proc_hwm_mib(self.proc.pid)

    async def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)
        self.tmp.cleanup()


VARIANTS: dict[str, type[Variant]] = {
    v.name: v for v in (Direct, LangGraph, HealTrace, HealTraceWs)
}


@dataclass
class Measured:
    ttft_ms: list[float] = field(default_factory=list)
    total_ms: list[float] = field(default_factory=list)
    #: CPU seconds of the measured turns (client + server), divided by the turns, in ms.
    cpu_ms_per_turn: float = 0.0
    #: Peak traced allocation during a turn, KiB (empty when not measured).
    mem_kib: list[float] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)
    tool_calls: list[list[str]] = field(default_factory=list)
    wall_s: float = 0.0


def _record(out: Measured, turn: TurnOut) -> None:
    out.ttft_ms.append(turn.ttft_ms)
    out.total_ms.append(turn.total_ms)
    if turn.answer not in out.answers:
        out.answers.append(turn.answer)
    if turn.tool_calls not in out.tool_calls:
        out.tool_calls.append(turn.tool_calls)


async def sequential(v: Variant, w: Workload, turns: int, warmup: int, mem_turns: int) -> Measured:
    out = Measured()
    for _ in range(warmup):
        prepared = await v.prepare()
        await v.turn(w, prepared)
        await v.finish(prepared)
    cpu = 0.0
    began = time.perf_counter()
    for _ in range(turns):
        prepared = await v.prepare()
        cpu0, server0 = time.process_time(), v.server_cpu_s()
        turn = await v.turn(w, prepared)
        cpu += time.process_time() - cpu0 + v.server_cpu_s() - server0
        await v.finish(prepared)
        _record(out, turn)
    out.wall_s = time.perf_counter() - began
    out.cpu_ms_per_turn = cpu / turns * 1000
    if mem_turns and not isinstance(v, HealTraceWs):
        tracemalloc.start()
        try:
            for _ in range(mem_turns):
                prepared = await v.prepare()
                tracemalloc.reset_peak()
                base = tracemalloc.get_traced_memory()[0]
                await v.turn(w, prepared)
                out.mem_kib.append((tracemalloc.get_traced_memory()[1] - base) / 1024)
                await v.finish(prepared)
        finally:
            tracemalloc.stop()
    return out


async def concurrent(v: Variant, w: Workload, sessions: int, rounds: int) -> Measured:
    out = Measured()
    cpu = 0.0
    for _ in range(rounds):
        prepared = list(await asyncio.gather(*(v.prepare() for _ in range(sessions))))
        cpu0, server0 = time.process_time(), v.server_cpu_s()
        began = time.perf_counter()
        turns = await asyncio.gather(*(v.turn(w, p) for p in prepared))
        out.wall_s += time.perf_counter() - began
        cpu += time.process_time() - cpu0 + v.server_cpu_s() - server0
        await asyncio.gather(*(v.finish(p) for p in prepared))
        for turn in turns:
            _record(out, turn)
    out.cpu_ms_per_turn = cpu / (sessions * rounds) * 1000
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    options = Options(
        base_url=args.base_url,
        model=args.model,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        tools=not args.no_tools,
    )
    started = time.perf_counter()
    variant = VARIANTS[args.variant](options)
    await variant.setup()
    setup_s = time.perf_counter() - started
    results: dict[str, Any] = {}
    try:
        for name in args.workloads.split(","):
            w = WORKLOADS[name]
            measured = await sequential(variant, w, args.turns, args.warmup, args.mem_turns)
            results[name] = asdict(measured)
            middle = sorted(measured.ttft_ms)[len(measured.ttft_ms) // 2]
            print(f"{variant.name} {name}: TTFT p50 {middle:.1f} ms", file=sys.stderr, flush=True)
        if args.sessions:
            c = await concurrent(variant, CONCURRENT, args.sessions, args.rounds)
            results["concurrent"] = asdict(c)
        rss = variant.peak_rss_mib()
    finally:
        await variant.close()
    return {
        "variant": variant.name,
        "setup_s": setup_s,
        "peak_rss_mib": rss,
        "workloads": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variant", choices=sorted(VARIANTS))
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--turns", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--mem-turns", type=int, default=5)
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model", default=MODEL)
    parser.add_argument("--max-tokens", type=int, default=MAX_TOKENS)
    parser.add_argument("--temperature", type=float, default=TEMPERATURE)
    parser.add_argument("--no-tools", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    args.json.write_text(json.dumps(result), encoding="utf-8")


if __name__ == "__main__":
    main()
