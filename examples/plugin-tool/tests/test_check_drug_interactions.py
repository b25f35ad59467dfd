"""The tool as HealTrace uses it: through the registry, as the model would call it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from importlib.metadata import entry_points
from typing import Any

import pytest
from healtrace.agent.events import Event, ToolCallEvent, ToolResultEvent
from healtrace.agent.memory import ChatStore
from healtrace.agent.models.base import ModelRequest
from healtrace.agent.models.testing import ScriptedModel, Step, call_step, text_step
from healtrace.agent.orchestrator import Orchestrator, UserTurn
from healtrace.config import Settings
from healtrace.storage import Database
from healtrace.tools import ToolContext, ToolRegistry, ToolRetry

from healtrace_drug_interactions import NOT_PROOF_OF_SAFETY, TOOLS, check_drug_interactions


@pytest.fixture
def registry() -> ToolRegistry:
    return ToolRegistry([check_drug_interactions])


async def check(
    registry: ToolRegistry, settings: Settings, medications: list[str], locale: str = "en"
) -> tuple[bool, Any]:
    """Run the tool the way the orchestrator does; the parsed result, or the retry text."""
    ctx = ToolContext(session_id="s1", locale=locale, settings=settings)
    outcome = await registry.run(
        "call_1", "check_drug_interactions", json.dumps({"medications": medications}), ctx
    )
    return outcome.ok, json.loads(outcome.content) if outcome.ok else outcome.content


def pairs(report: dict[str, Any]) -> dict[frozenset[str], str]:
    return {frozenset(i["generics"]): i["severity"] for i in report["interactions"]}


# --- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("chinese", "generic"),
    [
        ("华法林", "warfarin"),
        ("阿司匹林", "aspirin"),
        ("布洛芬", "ibuprofen"),
        ("辛伐他汀", "simvastatin"),
        ("克拉霉素", "clarithromycin"),
        ("西地那非", "sildenafil"),
        ("硝酸甘油", "nitroglycerin"),
        ("氯吡格雷", "clopidogrel"),
        ("奥美拉唑", "omeprazole"),
        ("二甲双胍", "metformin"),
        ("舍曲林", "sertraline"),
        ("曲马多", "tramadol"),
        ("螺内酯", "spironolactone"),
        ("赖诺普利", "lisinopril"),
        ("甲氨蝶呤", "methotrexate"),
        ("甲氧苄啶", "trimethoprim/sulfamethoxazole"),
        ("复方新诺明", "trimethoprim/sulfamethoxazole"),
        ("阿司匹林肠溶片", "aspirin"),
        ("二甲双胍 0.5g", "metformin"),
    ],
)
async def test_chinese_names_map_to_the_generic(
    registry: ToolRegistry, settings: Settings, chinese: str, generic: str
) -> None:
    ok, report = await check(registry, settings, [chinese, "paracetamol"])
    assert ok, report
    assert report["recognised"][0] == {"given": chinese, "generic": generic, "name": generic}
    assert report["unrecognised"] == []


@pytest.mark.parametrize(
    ("written", "generic"),
    [
        ("Coumadin", "warfarin"),
        ("ADVIL", "ibuprofen"),
        ("  nurofen ", "ibuprofen"),
        ("Viagra", "sildenafil"),
        ("Plavix", "clopidogrel"),
        ("Prilosec", "omeprazole"),
        ("Zocor", "simvastatin"),
        ("Bactrim", "trimethoprim/sulfamethoxazole"),
        ("Trimethoprim-Sulfamethoxazole", "trimethoprim/sulfamethoxazole"),
        ("co trimoxazole", "trimethoprim/sulfamethoxazole"),
        ("Warfarin  5 mg", "warfarin"),
        ("acetylsalicylic acid", "aspirin"),
        ("Aspirin 81mg tablets", "aspirin"),
        ("Ｗａｒｆａｒｉｎ", "warfarin"),  # full-width letters from a Chinese keyboard
    ],
)
async def test_brand_names_case_spacing_and_strengths(
    registry: ToolRegistry, settings: Settings, written: str, generic: str
) -> None:
    ok, report = await check(registry, settings, [written, "paracetamol"])
    assert ok, report
    assert report["recognised"][0]["generic"] == generic
    assert report["recognised"][0]["given"] == written.strip()


# --- interactions --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("medications", "severity"),
    [
        (["simvastatin", "clarithromycin"], "contraindicated"),
        (["sildenafil", "nitroglycerin"], "contraindicated"),
        (["warfarin", "aspirin"], "major"),
        (["clopidogrel", "omeprazole"], "major"),
        (["spironolactone", "lisinopril"], "moderate"),
        (["levothyroxine", "calcium carbonate"], "moderate"),
    ],
)
async def test_each_severity(
    registry: ToolRegistry, settings: Settings, medications: list[str], severity: str
) -> None:
    ok, report = await check(registry, settings, medications)
    assert ok, report
    [found] = report["interactions"]
    assert found["severity"] == severity
    assert set(found["generics"]) == set(medications)
    assert found["mechanism"] and found["advice"] and found["source"]


async def test_order_does_not_matter(registry: ToolRegistry, settings: Settings) -> None:
    meds = ["warfarin", "aspirin", "simvastatin", "clarithromycin"]
    _, forward = await check(registry, settings, meds)
    _, backward = await check(registry, settings, list(reversed(meds)))
    expected = {
        frozenset({"warfarin", "aspirin"}): "major",
        frozenset({"warfarin", "clarithromycin"}): "major",
        frozenset({"simvastatin", "clarithromycin"}): "contraindicated",
    }
    assert pairs(forward) == pairs(backward) == expected
    assert forward["pairs_checked"] == backward["pairs_checked"] == 6
    # Most severe first, whatever order the names came in.
    assert forward["interactions"][0]["severity"] == "contraindicated"
    assert backward["interactions"][0]["severity"] == "contraindicated"


async def test_unknown_names_are_listed_and_the_rest_is_checked(
    registry: ToolRegistry, settings: Settings
) -> None:
    ok, report = await check(registry, settings, ["warfarin", "Zzyzxamine", "aspirin", "维生素X"])
    assert ok, report
    assert report["unrecognised"] == ["Zzyzxamine", "维生素X"]
    assert [m["generic"] for m in report["recognised"]] == ["warfarin", "aspirin"]
    assert pairs(report) == {frozenset({"warfarin", "aspirin"}): "major"}


async def test_no_listed_interaction_is_not_called_safe(
    registry: ToolRegistry, settings: Settings
) -> None:
    ok, report = await check(registry, settings, ["metformin", "paracetamol"])
    assert ok, report
    assert report["interactions"] == []
    assert report["note"] == NOT_PROOF_OF_SAFETY["en"]
    assert "does not mean the combination is safe" in report["note"]


@pytest.mark.parametrize(
    "medications",
    [
        ["Zzyzxamine", "Flurbleton"],  # nothing recognised
        ["warfarin", "Flurbleton"],  # only one
        ["warfarin", "Coumadin"],  # one medicine under two names
    ],
)
async def test_fewer_than_two_recognised_asks_the_model_to_retry(
    registry: ToolRegistry, settings: Settings, medications: list[str]
) -> None:
    ok, message = await check(registry, settings, medications)
    assert not ok
    assert "At least two different recognised medicines" in message
    assert "Flurbleton" in message or "Coumadin" in message
    ctx = ToolContext(session_id="s1", locale="en", settings=settings)
    with pytest.raises(ToolRetry):
        await check_drug_interactions.fn(ctx, medications)


@pytest.mark.parametrize("medications", [["warfarin"], [f"drug{i}" for i in range(11)], ["", "x"]])
async def test_argument_limits_are_checked_before_the_call(
    registry: ToolRegistry, settings: Settings, medications: list[str]
) -> None:
    ok, message = await check(registry, settings, medications)
    assert not ok and message.startswith("Invalid arguments: medications")


# --- language ------------------------------------------------------------------------------


@pytest.mark.parametrize("locale", ["zh-CN", "zh"])
async def test_advice_in_chinese_for_chinese_sessions(
    registry: ToolRegistry, settings: Settings, locale: str
) -> None:
    ok, report = await check(registry, settings, ["Warfarin", "aspirin"], locale=locale)
    assert ok, report
    assert report["language"] == "zh-CN"
    [found] = report["interactions"]
    assert found["drugs"] == ["华法林", "阿司匹林"]
    assert "出血" in found["mechanism"] and "华法林" in found["advice"]
    assert report["note"] == NOT_PROOF_OF_SAFETY["zh-CN"]
    assert [m["name"] for m in report["recognised"]] == ["华法林", "阿司匹林"]


async def test_advice_in_english_for_other_sessions(
    registry: ToolRegistry, settings: Settings
) -> None:
    ok, report = await check(registry, settings, ["华法林", "阿司匹林"], locale="en")
    assert ok, report
    [found] = report["interactions"]
    assert found["drugs"] == ["warfarin", "aspirin"]
    assert "bleeding" in found["mechanism"]
    assert not any("\u4e00" <= ch <= "\u9fff" for ch in found["advice"])


# --- what HealTrace and the model see --------------------------------------------------------


def test_the_schema_the_model_sees() -> None:
    spec = check_drug_interactions.spec
    assert spec.name == "check_drug_interactions"
    assert spec.description.startswith("Check a list of medicines for well-known")
    assert "Args:" not in spec.description
    assert spec.parameters == {
        "type": "object",
        "additionalProperties": False,
        "required": ["medications"],
        "properties": {
            "medications": {
                "type": "array",
                "title": "Medications",
                "items": {"type": "string", "minLength": 1, "maxLength": 80},
                "minItems": 2,
                "maxItems": 10,
                "examples": [["warfarin", "aspirin"]],
                "description": (
                    "The medicines to check, 2 to 10, one name per item, as the user wrote "
                    'them (e.g. "warfarin", "Advil", "阿司匹林").'
                ),
            }
        },
    }


def test_metadata() -> None:
    t = check_drug_interactions
    assert t.timeout_s == 5
    assert t.permissions == ()  # no network, no records, no images
    assert not t.needs_consent and not t.needs_approval
    assert t.locales == ("en", "zh-CN")
    assert t.serves("zh-CN") and t.serves("en-GB") and not t.serves("fr")


def test_the_entry_point_names_the_tools() -> None:
    [ep] = [ep for ep in entry_points(group="healtrace.tools") if ep.name == "drug_interactions"]
    assert ep.value == "healtrace_drug_interactions:TOOLS"
    assert ep.load() is TOOLS == [check_drug_interactions]


# --- in a turn -----------------------------------------------------------------------------


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[ChatStore]:
    db = Database(settings.resolved_database_url)
    await db.migrate()
    try:
        yield ChatStore(db)
    finally:
        await db.dispose()


async def test_the_orchestrator_runs_it_in_a_turn(settings: Settings, store: ChatStore) -> None:
    key = await store.ensure_named_key("test")
    session = await store.create_session(key, locale="zh-CN")

    def answer(request: ModelRequest) -> Step:
        result = request.messages[-1]
        assert result.role == "tool" and result.name == "check_drug_interactions"
        assert json.loads(result.content)["interactions"][0]["severity"] == "major"
        return text_step("华法林和阿司匹林合用会增加出血风险，请先咨询医生。")

    model = ScriptedModel(
        [call_step("check_drug_interactions", {"medications": ["华法林", "阿司匹林"]}), answer]
    )
    orch = Orchestrator(model=model, tools=ToolRegistry(TOOLS), store=store, settings=settings)
    turn = UserTurn(session.id, "华法林和阿司匹林能一起吃吗？", "zh-CN")
    events: list[Event] = [e async for e in orch.run_turn(turn)]
    assert model.requests[0].tools[0].name == "check_drug_interactions"
    call = next(e for e in events if isinstance(e, ToolCallEvent))
    assert call.arguments == {"medications": ["华法林", "阿司匹林"]}
    result = next(e for e in events if isinstance(e, ToolResultEvent))
    assert result.ok and "华法林" in result.content
    assert events[-1].type == "answer_done"
    model.assert_used_up()
