"""Speed of the bundled local models through HealTrace's LocalBackend.

For each catalogue model: load time, time to first token for a short medical question, and
decode speed (tokens per second after the first), at 1 and 2 threads.

    python benchmarks/local_model.py [--runs 3] [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

from _report import write_block

from healtrace.agent.models.base import ChatMessage, Finish, ModelRequest, TextDelta
from healtrace.agent.models.catalog import CATALOG
from healtrace.agent.models.local import LocalBackend
from healtrace.config import LocalBackendConfig, Settings
from healtrace.prompts import load_prompt

QUESTION = "What is a normal resting heart rate for adults?"
MAX_TOKENS = 96


async def measure(name: str, threads: int, runs: int) -> dict[str, float]:
    config = LocalBackendConfig(model=name, n_threads=threads, max_tokens=MAX_TOKENS, seed=1)
    backend = LocalBackend(config, models_dir=Settings().models_dir)
    start = time.perf_counter()
    await backend.load()
    load_s = time.perf_counter() - start
    request = ModelRequest(
        messages=(
            ChatMessage(role="system", content=load_prompt("system", "en")),
            ChatMessage(role="user", content=QUESTION),
        )
    )
    ttfts, rates = [], []
    try:
        for _ in range(runs):
            start = time.perf_counter()
            first: float | None = None
            tokens = 0
            async for delta in backend.stream(request):
                if isinstance(delta, TextDelta) and first is None:
                    first = time.perf_counter()
                if isinstance(delta, Finish):
                    tokens = delta.usage.completion_tokens
            end = time.perf_counter()
            assert first is not None
            ttfts.append((first - start) * 1000)
            if tokens > 1:
                rates.append((tokens - 1) / (end - first))
    finally:
        await backend.aclose()
    return {
        "load_s": load_s,
        "cold_ms": ttfts[0],
        "ttft_ms": statistics.median(ttfts[1:] or ttfts),
        "tok_s": statistics.median(rates) if rates else 0.0,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    lines = [
        f"Question: “{QUESTION}” with the English system prompt; up to {MAX_TOKENS} tokens; "
        f"{args.runs} runs per row. Cold: the first run evaluates the whole prompt; warm: the "
        "median of later runs, where llama.cpp reuses the cached prompt prefix (as a "
        "conversation's stable system prompt is).",
        "",
        "| model | threads | load (s) | first token, cold (ms) | first token, warm (ms) "
        "| decode (tokens/s) |",
        "|---|---|---|---|---|---|",
    ]
    for name in sorted(CATALOG):
        for threads in (1, 2):
            r = await measure(name, threads, args.runs)
            row = (
                f"| {name} | {threads} | {r['load_s']:.2f} | {r['cold_ms']:.0f} "
                f"| {r['ttft_ms']:.0f} | {r['tok_s']:.1f} |"
            )
            print(row, flush=True)
            lines.append(row)
    body = "\n".join(lines)
    print(body)
    if args.write:
        write_block(args.write, "local_model", body)


if __name__ == "__main__":
    asyncio.run(main())
