"""The comparison benchmark (benchmarks/compare) end to end in its quickest mode.

No timing is asserted: the test checks that the direct call, the LangGraph agent and
HealTrace (in-process and over the WebSocket) got the same answers after the same tool
calls, and that the report has every row.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMPARE = ROOT / "benchmarks" / "compare"
sys.path.insert(0, str(COMPARE))

pytest.importorskip("langgraph")
pytest.importorskip("langchain_openai")

from workloads import CONCURRENT, WORKLOADS  # noqa: E402

VARIANTS = ("direct", "langgraph", "healtrace", "healtrace-ws")


def _model_answers(variant: str, answers: list[str]) -> list[str]:
    """What the model said. HealTrace's output guard may append its notes to an answer (no
    source from the knowledge base, "not a doctor"); the model's text comes first."""
    if not variant.startswith("healtrace"):
        return answers
    known = [w.answer for w in WORKLOADS.values()]
    return [next((k for k in known if a.startswith(k)), a) for a in answers]


@pytest.mark.e2e
def test_quick_run_gives_every_variant_the_same_turns(tmp_path: Path) -> None:
    report = tmp_path / "BENCHMARKS.md"
    report.write_text("# Benchmarks\n\n<!-- compare:begin -->\nold\n<!-- compare:end -->\n")
    results = tmp_path / "results.json"
    subprocess.run(
        [
            sys.executable,
            str(COMPARE / "run.py"),
            "--quick",
            "--no-llama",
            "--write",
            str(report),
            "--json",
            str(results),
        ],
        check=True,
        cwd=tmp_path,
        timeout=600,
    )
    scripted = json.loads(results.read_text())["scripted"]
    assert set(scripted) == set(VARIANTS)
    for name, workload in WORKLOADS.items():
        for variant in VARIANTS:
            measured = scripted[variant]["workloads"][name]
            assert _model_answers(variant, measured["answers"]) == [workload.answer], (
                variant,
                name,
            )
            assert measured["tool_calls"] == [[c.name for c in workload.calls]], (variant, name)
            assert len(measured["ttft_ms"]) == 2
    for variant in VARIANTS:
        concurrent = scripted[variant]["workloads"]["concurrent"]
        assert _model_answers(variant, concurrent["answers"]) == [CONCURRENT.answer], variant
        assert len(concurrent["ttft_ms"]) == 5

    text = report.read_text()
    assert "old" not in text and text.count("<!-- compare:begin -->") == 1
    labels = [w.label for w in WORKLOADS.values()] + ["5 sessions at once"]
    for label in labels:
        for variant in (
            "direct openai SDK",
            "LangGraph ReAct agent",
            "HealTrace in-process",
            "HealTrace over WebSocket",
        ):
            assert any(
                line.startswith(f"| {label}") and f"| {variant} |" in line
                for line in text.splitlines()
            ), (label, variant)
    assert text.count("(target ≤ 10 ms:") == 2
