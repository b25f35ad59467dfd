"""HealTrace against the direct openai SDK call and a LangGraph ReAct agent, same workloads.

Starts the scripted OpenAI-compatible server (``scripted_server.py``, its own process,
fixed token rate), then runs each variant in its own process (``variants.py``): the direct
SDK call (the floor), LangGraph's ``create_react_agent`` with the same tools, HealTrace's
orchestrator in-process, and HealTrace over its WebSocket (server in another process).
Then the plain question again against the bundled llama.cpp model behind a small
OpenAI-compatible server (``llama_server.py``), a few turns per variant.

    python benchmarks/compare/run.py [--quick] [--turns 20] [--no-llama] \
        [--write BENCHMARKS.md] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from _report import pct, write_block  # noqa: E402
from workloads import (  # noqa: E402
    CONCURRENT,
    FIRST_TOKEN_MS,
    TOKEN_INTERVAL_MS,
    WORKLOADS,
)

VARIANTS = ("direct", "langgraph", "healtrace", "healtrace-ws")
LABELS = {
    "direct": "direct openai SDK",
    "langgraph": "LangGraph ReAct agent",
    "healtrace": "HealTrace in-process",
    "healtrace-ws": "HealTrace over WebSocket",
}
LLAMA_MAX_TOKENS = 32


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


class Process:
    """A helper server as a child process, up once its port accepts connections."""

    def __init__(self, command: list[str], port: int, timeout_s: float = 120.0) -> None:
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"{command[1]} exited: {err}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(f"{command[1]} did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def run_variant(variant: str, base_url: str, extra: list[str], out_dir: Path) -> dict[str, Any]:
    out = out_dir / f"{variant}-{len(list(out_dir.iterdir()))}.json"
    command = [
        sys.executable,
        str(HERE / "variants.py"),
        variant,
        "--base-url",
        base_url,
        "--json",
        str(out),
        *extra,
    ]
    print("running", " ".join(command[1:]), file=sys.stderr, flush=True)
    subprocess.run(command, check=True)
    result: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return result


def _ms(value: float) -> str:
    return f"{value:.1f}"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b > 0 else "—"


def _rows(results: dict[str, dict[str, Any]], workload: str, label: str) -> list[str]:
    direct = results["direct"]["workloads"][workload]
    graph = results["langgraph"]["workloads"][workload]
    lines = []
    for variant in VARIANTS:
        m = results[variant]["workloads"][workload]
        ttft50, ttft95 = pct(m["ttft_ms"], 50), pct(m["ttft_ms"], 95)
        total50, total95 = pct(m["total_ms"], 50), pct(m["total_ms"], 95)
        mem = f"{pct(m['mem_kib'], 50):.0f}" if m["mem_kib"] else "—"
        if variant == "direct":
            added = "—"
        else:
            added = (
                f"{ttft50 - pct(direct['ttft_ms'], 50):+.1f} / "
                f"{ttft95 - pct(direct['ttft_ms'], 95):+.1f}"
            )
        if variant.startswith("healtrace"):
            vs_graph = (
                f"{_ratio(total50, pct(graph['total_ms'], 50))} · "
                f"{_ratio(m['cpu_ms_per_turn'], graph['cpu_ms_per_turn'])}"
            )
            vs_direct = (
                f"{_ratio(total50, pct(direct['total_ms'], 50))} · "
                f"{_ratio(m['cpu_ms_per_turn'], direct['cpu_ms_per_turn'])}"
            )
        else:
            vs_graph = vs_direct = "—"
        lines.append(
            f"| {label} | {LABELS[variant]} | {_ms(ttft50)} | {_ms(ttft95)} | {_ms(total50)} | "
            f"{_ms(total95)} | {m['cpu_ms_per_turn']:.1f} | {mem} | {added} | {vs_graph} | "
            f"{vs_direct} |"
        )
    return lines


HEADER = (
    "| workload | variant | TTFT p50 (ms) | TTFT p95 (ms) | total p50 (ms) | total p95 (ms) "
    "| CPU per turn (ms) | peak alloc per turn (KiB) | TTFT over direct p50 / p95 (ms) "
    "| HealTrace ÷ LangGraph (total p50 · CPU) | HealTrace ÷ direct (total p50 · CPU) |"
)
RULE = "|---|---|---|---|---|---|---|---|---|---|---|"


def _targets(results: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    direct = results["direct"]["workloads"]
    for variant in ("healtrace", "healtrace-ws"):
        w = results[variant]["workloads"]
        one = pct(w["retrieval"]["ttft_ms"], 50) - pct(direct["retrieval"]["ttft_ms"], 50)
        one_total = pct(w["retrieval"]["total_ms"], 50) - pct(direct["retrieval"]["total_ms"], 50)
        ratios = [
            pct(w[name]["total_ms"], 50)
            / pct(results["langgraph"]["workloads"][name]["total_ms"], 50)
            for name in w
        ]
        line = (
            f"- {LABELS[variant]}: one tool call adds {one:+.1f} ms p50 to the first token "
            f"({one_total:+.1f} ms to the whole turn) over the direct call (target ≤ 10 ms: "
            f"{'met' if one <= 10 else 'not met'}); total-time ratio to LangGraph "
            f"{min(ratios):.2f}-{max(ratios):.2f} over the workloads (target < 1.0: "
            f"{'met' if max(ratios) < 1 else 'not met'})"
        )
        if "concurrent" in w:
            added95 = pct(w["concurrent"]["ttft_ms"], 95) - pct(direct["concurrent"]["ttft_ms"], 95)
            line += (
                f"; {len(w['concurrent']['ttft_ms'])} concurrent turns: p95 added "
                f"{added95:+.1f} ms (target ≤ 50 ms: {'met' if added95 <= 50 else 'not met'})"
            )
        lines.append(line + ".")
    return lines


def report(
    scripted: dict[str, dict[str, Any]],
    llama: dict[str, dict[str, Any]] | None,
    args: argparse.Namespace,
    loads: tuple[str, str],
) -> str:
    sessions = args.sessions
    lines = [
        f"Scripted OpenAI-compatible server in its own process: first token after "
        f"{FIRST_TOKEN_MS:.0f} ms, then one token every {TOKEN_INTERVAL_MS:.0f} ms (tool-call "
        f"argument fragments count as tokens). Each variant ran in its own process: "
        f"{args.turns} timed turns per workload after {args.warmup} warm-up turns, each turn "
        f"a new conversation; then {sessions} sessions at once, {args.rounds} round(s). "
        f"Machine: {os.cpu_count()} cores shared by the client, the HealTrace server (WebSocket "
        f"rows) and the scripted server; load average {loads[0]} at the start and "
        f"{loads[1]} at the end.",
        "",
        HEADER,
        RULE,
    ]
    for name, workload in WORKLOADS.items():
        lines += _rows(scripted, name, workload.label)
    if sessions:
        lines += _rows(scripted, "concurrent", f"{sessions} sessions at once ({CONCURRENT.name})")
    lines += ["", *_targets(scripted), ""]
    lines += [
        "| variant | start-up (s) | peak RSS (MiB) |",
        "|---|---|---|",
    ]
    for variant in VARIANTS:
        r = scripted[variant]
        lines.append(f"| {LABELS[variant]} | {r['setup_s']:.2f} | {r['peak_rss_mib']:.0f} |")
    if llama is not None:
        lines += [
            "",
            f"Local llama.cpp model (Qwen2.5-Coder 0.5B Q4_K_M, 1 thread) behind "
            f"`llama_server.py`: the plain question, no tools offered, temperature 0, at most "
            f"{LLAMA_MAX_TOKENS} tokens; {args.llama_turns} timed turns per variant after one "
            f"warm-up (the warm-up evaluates the system prompt; later turns reuse llama.cpp's "
            f"prompt cache).",
            "",
            HEADER,
            RULE,
            *_rows(llama, "plain", "plain question, llama.cpp"),
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sample counts (tests)")
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--mem-turns", type=int, default=3)
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--llama-turns", type=int, default=2)
    parser.add_argument("--no-llama", action="store_true")
    parser.add_argument("--write", type=Path, help="update the table in this Markdown file")
    parser.add_argument("--json", type=Path, help="write every measurement here")
    args = parser.parse_args()
    if args.quick:
        args.turns, args.warmup, args.mem_turns = 2, 1, 1
        args.sessions, args.rounds, args.llama_turns = 5, 1, 1
    loads = [loadavg()]
    common = [
        "--turns",
        str(args.turns),
        "--warmup",
        str(args.warmup),
        "--mem-turns",
        str(args.mem_turns),
        "--sessions",
        str(args.sessions),
        "--rounds",
        str(args.rounds),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = Path(tmp)
        port = free_port()
        server = Process(
            [sys.executable, str(HERE / "scripted_server.py"), "--port", str(port)], port
        )
        try:
            base = f"http://127.0.0.1:{port}/v1"
            scripted = {v: run_variant(v, base, common, out_dir) for v in VARIANTS}
        finally:
            server.stop()
        llama = None
        if not args.no_llama:
            port = free_port()
            server = Process(
                [
                    sys.executable,
                    str(HERE / "llama_server.py"),
                    "--port",
                    str(port),
                    "--threads",
                    "1",
                ],
                port,
            )
            extra = [
                "--workloads",
                "plain",
                "--turns",
                str(args.llama_turns),
                "--warmup",
                "1",
                "--mem-turns",
                "0",
                "--sessions",
                "0",
                "--no-tools",
                "--model",
                "local",
                "--max-tokens",
                str(LLAMA_MAX_TOKENS),
            ]
            try:
                base = f"http://127.0.0.1:{port}/v1"
                llama = {v: run_variant(v, base, extra, out_dir) for v in VARIANTS}
            finally:
                server.stop()
    loads.append(loadavg())
    body = report(scripted, llama, args, (loads[0], loads[1]))
    print(body)
    if args.json:
        args.json.write_text(
            json.dumps({"scripted": scripted, "llama": llama}, indent=1), encoding="utf-8"
        )
    if args.write:
        write_block(args.write, "compare", body)


if __name__ == "__main__":
    main()
