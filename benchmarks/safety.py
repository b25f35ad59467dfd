"""What the safety steps cost a turn: triage per message, and the output guard per answer.

Triage runs on every message before the model is called, so its latency adds directly to
time-to-first-token; the guard runs on every streamed token. Both are timed in-process on
the shipped triage cases and on hostile inputs (8,000-character messages, red-flag spam,
emoji only), and the triage set's quality figures are printed beside them.

    python benchmarks/safety.py [--repeat 5] [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from _report import pct, write_block

from healtrace.agent.models.testing import split_tokens
from healtrace.safety.evaluation import evaluate, load_cases
from healtrace.safety.output import OutputGuard
from healtrace.safety.triage import Triager
from healtrace.safety.types import Level

ANSWER_EN = (
    "A normal resting heart rate for adults is usually between 60 and 100 beats per minute [1]. "
    "Well-trained athletes can be lower. If your heart rate is often above 100 at rest, or you "
    "feel dizzy or short of breath, it is worth seeing a doctor. You have several options: "
    "keep a diary of readings, cut down on caffeine, and take regular exercise. "
) * 4
ANSWER_ZH = (
    "成年人的静息心率通常在每分钟 60 到 100 次之间[1]。经常锻炼的人可能更低。"
    "如果静息时心率经常超过 100，或者出现头晕、气短，建议就医。您可以记录每天的心率，"
    "减少咖啡因摄入，并坚持规律运动。"
) * 4


def time_triage(triager: Triager, items: list[tuple[str, str]], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        for text, locale in items:
            start = time.perf_counter()
            triager.assess(text, locale)
            out.append((time.perf_counter() - start) * 1000)
    return out


def time_guard(answer: str, locale: str, repeat: int) -> tuple[list[float], int, float]:
    """Milliseconds per whole answer, tokens per answer, mean characters held per token."""
    tokens = split_tokens(answer)
    totals = []
    held_sum = 0.0
    for _ in range(repeat):
        guard = OutputGuard(locale=locale, knowledge_used=True, triage_level=Level.SELF_CARE)
        given = released = 0
        start = time.perf_counter()
        for token in tokens:
            given += len(token)
            released += len(guard.feed(token))
            held_sum += given - released
        guard.finish(cited=True)
        totals.append((time.perf_counter() - start) * 1000)
    return totals, len(tokens), held_sum / (repeat * len(tokens))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()

    start = time.perf_counter()
    triager = Triager()
    load_ms = (time.perf_counter() - start) * 1000
    cases = load_cases()
    report = evaluate(triager, cases)
    overall = report.all

    ordinary = [(c.text, c.locale) for c in cases]
    long_en = ("I have had a mild cough and a runny nose for a few days. " * 140)[:8000]
    long_zh = ("这几天有点咳嗽流鼻涕，没有发烧，精神还可以。" * 400)[:8000]
    spam = ("chest pain " * 700)[:8000]
    emoji = "🤒😷🤧" * 50
    rows = [
        ("shipped cases (456 messages)", time_triage(triager, ordinary, args.repeat)),
        ("8,000 characters, English", time_triage(triager, [(long_en, "en")], 20)),
        ("8,000 characters, Chinese", time_triage(triager, [(long_zh, "zh-CN")], 20)),
        ("8,000 characters of red-flag spam", time_triage(triager, [(spam, "en")], 20)),
        ("150 emoji", time_triage(triager, [(emoji, "en")], 50)),
    ]
    lines = [
        f"Rules loaded and compiled in {load_ms:.0f} ms at start-up. "
        f"Machine: {os.cpu_count()} cores, one thread.",
        "",
        "| triage input | p50 (ms) | p95 (ms) | max (ms) |",
        "|---|---|---|---|",
    ]
    for name, values in rows:
        lines.append(
            f"| {name} | {pct(values, 50):.3f} | {pct(values, 95):.3f} | {max(values):.3f} |"
        )
    lines += [
        "",
        "| output guard on a streamed answer | tokens | ms per answer (p50) | "
        "µs per token | characters held per token (mean) |",
        "|---|---|---|---|---|",
    ]
    for name, answer, locale in (
        ("English, 4 paragraphs", ANSWER_EN, "en"),
        ("Chinese, 4 paragraphs", ANSWER_ZH, "zh-CN"),
    ):
        totals, n_tokens, held = time_guard(answer, locale, args.repeat * 4)
        p50 = pct(totals, 50)
        lines.append(
            f"| {name} | {n_tokens} | {p50:.2f} | {p50 * 1000 / n_tokens:.1f} | {held:.1f} |"
        )

    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    lines += [
        "",
        "Triage quality on the shipped set (`healtrace eval triage`):",
        "",
        "| split | cases | emergency sensitivity | specificity | red-flag sensitivity | "
        "exact level |",
        "|---|---|---|---|---|---|",
    ]
    for name, split in (("all", overall), ("dev", report.dev), ("held-out", report.held_out)):
        lines.append(
            f"| {name} | {split.cases} | {fmt(split.emergency_sensitivity)} | "
            f"{fmt(split.specificity)} | {fmt(split.red_flag_sensitivity)} | "
            f"{fmt(split.exact_accuracy)} |"
        )
    body = "\n".join(lines)
    print(body)
    if args.write:
        write_block(args.write, "safety", body)


if __name__ == "__main__":
    main()
