"""Profile HealTrace's in-process turn (pyinstrument) against the scripted server.

Starts ``scripted_server.py``, assembles HealTrace as ``variants.py`` does, runs a few
warm-up turns, then profiles ``--turns`` turns of one workload and prints the CPU time
per turn (this process, all threads) and pyinstrument's call tree (CPU samples, awaits
not counted as time).

    python benchmarks/compare/profile_turn.py [--workload retrieval] [--turns 40]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path

from pyinstrument import Profiler
from variants import HealTrace, Options
from workloads import MAX_TOKENS, MODEL, TEMPERATURE, WORKLOADS

HERE = Path(__file__).resolve().parent


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def profile(base_url: str, workload: str, turns: int, interval_s: float) -> str:
    variant = HealTrace(Options(base_url, MODEL, MAX_TOKENS, TEMPERATURE, tools=True))
    await variant.setup()
    try:
        w = WORKLOADS[workload]
        for _ in range(5):
            await variant.turn(w, await variant.prepare())
        sessions = [await variant.prepare() for _ in range(turns)]
        profiler = Profiler(interval=interval_s, async_mode="disabled")
        cpu = time.process_time()
        profiler.start()
        for session in sessions:
            await variant.turn(w, session)
        profiler.stop()
        per_turn = (time.process_time() - cpu) / turns * 1000
    finally:
        await variant.close()
    tree = profiler.output_text(unicode=False, color=False, show_all=False)
    return f"CPU per turn (profiler running): {per_turn:.1f} ms over {turns} turns\n{tree}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="retrieval", choices=sorted(WORKLOADS))
    parser.add_argument("--turns", type=int, default=40)
    parser.add_argument("--interval-ms", type=float, default=1.0)
    args = parser.parse_args()
    port = _port()
    server = subprocess.Popen(
        [sys.executable, str(HERE / "scripted_server.py"), "--port", str(port)],
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.05)
        out = asyncio.run(
            profile(
                f"http://127.0.0.1:{port}/v1", args.workload, args.turns, args.interval_ms / 1000
            )
        )
    finally:
        server.terminate()
        server.wait(timeout=10)
    print(out)


if __name__ == "__main__":
    main()
