"""The orchestrator with the real bundled model: the tool loop works end to end."""

from __future__ import annotations

from pathlib import Path

import pytest

from healtrace.agent.events import AnswerDone, Event, ToolResultEvent
from healtrace.agent.models.catalog import CATALOG
from healtrace.agent.orchestrator import UserTurn
from healtrace.api.services import build_services
from healtrace.config import LocalBackendConfig, Settings
from healtrace.knowledge.config import KnowledgeConfig

pytestmark = pytest.mark.local_model


def _present() -> bool:
    return (Settings().models_dir / CATALOG["qwen2.5-coder-0.5b"].filename).exists()


@pytest.mark.skipif(not _present(), reason="run `make models` first")
@pytest.mark.parametrize(
    ("question", "locale"),
    [
        ("Calculate my BMI: I weigh 70 kg and I am 175 cm tall.", "en"),
        ("我体重70公斤，身高175厘米，帮我算一下BMI。", "zh-CN"),
    ],
)
async def test_qwen_calls_the_bmi_tool_and_answers_from_it(
    tmp_path: Path, question: str, locale: str
) -> None:
    outcomes: list[list[Event]] = []
    # Sampling is random; fixed seeds make each attempt repeatable, and several seeds keep
    # the test about the tool loop rather than one lucky sample.
    for seed in (11, 12, 13, 14):
        settings = Settings(
            data_dir=tmp_path / f"data-{seed}",
            llm_backends=[LocalBackendConfig(max_tokens=120, seed=seed)],
            dev_key=False,
            knowledge=KnowledgeConfig(enabled=False),  # the tool loop, not retrieval
        )
        services = await build_services(settings)
        try:
            key = await services.store.ensure_named_key("test")
            sid = (await services.store.create_session(key, locale=locale)).id
            turn = UserTurn(session_id=sid, text=question, locale=locale)
            events = [e async for e in services.orchestrator.run_turn(turn)]
        finally:
            await services.aclose()
        outcomes.append(events)
        results = [e for e in events if isinstance(e, ToolResultEvent)]
        done = events[-1]
        if results and results[0].ok and isinstance(done, AnswerDone) and "22.9" in done.text:
            break
    else:
        summary = [[e.type for e in ev if e.type != "token"] for ev in outcomes]
        raise AssertionError(f"no attempt called the tool and used its result: {summary}")
    assert results[0].name == "body_mass_index"
    assert '"bmi":22.9' in results[0].content
