"""LangChain and LlamaIndex tools bridged into HealTrace, and HealTrace tools exported."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import pytest
from langchain_core.messages import ToolMessage
from langchain_core.messages.tool import tool_call
from langchain_core.tools import BaseTool, StructuredTool, ToolException
from langchain_core.tools import tool as lc_tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from llama_index.core.tools import FunctionTool, ToolMetadata, ToolOutput
from llama_index.core.tools.types import AsyncBaseTool
from pydantic import BaseModel, Field, field_validator

from healtrace.agent.events import ToolResultEvent
from healtrace.agent.memory import ChatStore
from healtrace.agent.models.base import ModelRequest
from healtrace.agent.models.testing import ScriptedModel, Step, call_step, text_step
from healtrace.agent.orchestrator import Orchestrator, UserTurn
from healtrace.config import Settings
from healtrace.errors import ConfigurationError, ToolInfraError
from healtrace.storage import Database
from healtrace.tools import ToolContext, ToolRegistry, tool
from healtrace.tools.bridges import (
    from_langchain,
    from_llamaindex,
    to_langchain,
    to_langchain_tools,
)
from healtrace.tools.builtin import body_mass_index


@lc_tool(parse_docstring=True)
def creatinine_clearance(
    age: Annotated[int, Field(ge=18, le=120)],
    weight_kg: Annotated[float, Field(gt=0, le=400)],
    serum_creatinine_mg_dl: Annotated[float, Field(gt=0, le=20)],
    sex: Literal["male", "female"],
) -> float:
    """Estimate creatinine clearance in mL/min with the Cockcroft-Gault equation.

    Args:
        age: Age in years.
        weight_kg: Body weight in kilograms.
        serum_creatinine_mg_dl: Serum creatinine in mg/dL.
        sex: Sex at birth; the female estimate is 85% of the male one.
    """
    clearance = (140 - age) * weight_kg / (72 * serum_creatinine_mg_dl)
    return round(clearance * (0.85 if sex == "female" else 1.0), 1)


class IdealBodyWeightArgs(BaseModel):
    height_cm: float = Field(gt=0, le=300, description="Standing height in centimetres.")
    sex: Literal["male", "female"] = Field(description="Sex at birth.")

    @field_validator("height_cm")
    @classmethod
    def _at_least_five_feet(cls, value: float) -> float:
        if value < 152.4:
            raise ValueError("the Devine formula applies from 152.4 cm (5 ft)")
        return value


class IdealBodyWeight(BaseTool):
    """A sync-only subclass: ainvoke runs ``_run`` in a worker thread."""

    name: str = "ideal body weight (Devine)"
    description: str = "Ideal body weight in kg by the Devine formula, for adults 5 ft or taller."
    args_schema: type[BaseModel] = IdealBodyWeightArgs

    def _run(self, height_cm: float, sex: str) -> str:
        inches_over_five_feet = height_cm / 2.54 - 60
        base = 50.0 if sex == "male" else 45.5
        return f"{base + 2.3 * inches_over_five_feet:.1f} kg"


@lc_tool
def reference_range(assay: str) -> str:
    """Look up the adult reference range of a lab assay."""
    if assay != "potassium":
        raise ToolException(f"No reference range for {assay!r}; try the assay's common name.")
    return "3.5-5.0 mmol/L"


@pytest.fixture
def ctx(settings: Settings) -> ToolContext:
    return ToolContext(session_id="s1", locale="en", settings=settings)


def _cg_args(**overrides: Any) -> str:
    args: dict[str, Any] = {"age": 60, "weight_kg": 72, "serum_creatinine_mg_dl": 1.0}
    return json.dumps({**args, "sex": "male", **overrides})


async def test_langchain_function_tool_runs_through_the_registry(ctx: ToolContext) -> None:
    bridged = from_langchain(creatinine_clearance, permissions=("network",), timeout_s=3)
    assert (bridged.name, bridged.source, bridged.permissions) == (
        "creatinine_clearance",
        "langchain",
        ("network",),
    )
    assert bridged.description.startswith("Estimate creatinine clearance")
    params = bridged.spec.parameters
    assert set(params["properties"]) == {"age", "weight_kg", "serum_creatinine_mg_dl", "sex"}
    assert set(params["required"]) == set(params["properties"])
    assert params["properties"]["sex"]["enum"] == ["male", "female"]
    assert params["properties"]["age"]["description"] == "Age in years."
    assert params["properties"]["weight_kg"]["exclusiveMinimum"] == 0

    registry = ToolRegistry([bridged])
    male = await registry.run("c1", "creatinine_clearance", _cg_args(), ctx)
    # (140 - 60) * 72 / (72 * 1.0) = 80; the female estimate is 85% of that.
    assert male.ok and float(male.content) == 80.0
    female = await registry.run("c2", "creatinine_clearance", _cg_args(sex="female"), ctx)
    assert female.ok and float(female.content) == 68.0

    wrong_type = await registry.run("c3", "creatinine_clearance", _cg_args(age="sixty"), ctx)
    assert not wrong_type.ok
    assert wrong_type.content.startswith("Invalid arguments: age:")
    missing = await registry.run("c4", "creatinine_clearance", '{"age": 60}', ctx)
    assert not missing.ok and "weight_kg" in missing.content and "sex" in missing.content
    zero = await registry.run("c5", "creatinine_clearance", _cg_args(weight_kg=0), ctx)
    assert not zero.ok and "weight_kg" in zero.content


async def test_langchain_base_tool_subclass(ctx: ToolContext) -> None:
    bridged = from_langchain(IdealBodyWeight())
    # Spaces and brackets are not allowed in OpenAI function names.
    assert bridged.name == "ideal_body_weight_Devine"
    params = bridged.spec.parameters
    assert set(params["properties"]) == {"height_cm", "sex"}
    assert set(params["required"]) == {"height_cm", "sex"}

    registry = ToolRegistry([bridged])
    out = await registry.run("c1", bridged.name, '{"height_cm": 180, "sex": "male"}', ctx)
    # 180 cm = 70.87 in; 50 + 2.3 * 10.87 = 75.0 kg.
    assert out.ok and out.content == "75.0 kg"
    # The JSON schema cannot say "at least 152.4 cm"; LangChain's validation of the args
    # model says it, and the model reads it.
    short = await registry.run("c2", bridged.name, '{"height_cm": 150, "sex": "female"}', ctx)
    assert not short.ok
    assert short.content.startswith("Invalid arguments: height_cm:")
    assert "152.4 cm" in short.content


@pytest.mark.parametrize("handled", [False, True], ids=["raised", "handled-by-the-tool"])
async def test_tool_exception_goes_back_to_the_model(ctx: ToolContext, handled: bool) -> None:
    lookup = reference_range.model_copy(update={"handle_tool_error": handled})
    registry = ToolRegistry([from_langchain(lookup)])
    found = await registry.run("c1", "reference_range", '{"assay": "potassium"}', ctx)
    assert found.ok and found.content == "3.5-5.0 mmol/L"
    missing = await registry.run("c2", "reference_range", '{"assay": "K+"}', ctx)
    assert not missing.ok
    assert missing.content == "No reference range for 'K+'; try the assay's common name."


async def test_names_are_checked(ctx: ToolContext) -> None:
    with pytest.raises(TypeError, match="letters, digits"):
        from_langchain(creatinine_clearance, name="creatinine clearance")
    unnamed = StructuredTool.from_function(lambda: "x", name="???", description="Nothing.")
    with pytest.raises(TypeError, match="no usable name"):
        from_langchain(unnamed)
    long = StructuredTool.from_function(lambda: "x", name="a" * 80, description="Long.")
    assert from_langchain(long).name == "a" * 64
    assert from_langchain(creatinine_clearance, name="crcl").name == "crcl"


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[ChatStore]:
    db = Database(settings.resolved_database_url)
    await db.migrate()
    try:
        yield ChatStore(db)
    finally:
        await db.dispose()


async def test_orchestrator_calls_a_bridged_langchain_tool(
    store: ChatStore, settings: Settings
) -> None:
    key = await store.ensure_named_key("test")
    sid = (await store.create_session(key, locale="en")).id
    seen: list[str] = []

    def answer(request: ModelRequest) -> Step:
        result = request.messages[-1]
        assert result.role == "tool" and result.tool_call_id == "call_1"
        seen.append(result.content)
        return text_step("Estimated creatinine clearance is 80 mL/min.")

    args = {"age": 60, "weight_kg": 72, "serum_creatinine_mg_dl": 1.0, "sex": "male"}
    model = ScriptedModel([call_step("creatinine_clearance", args), answer])
    orch = Orchestrator(
        model=model,
        tools=ToolRegistry([from_langchain(creatinine_clearance)]),
        store=store,
        settings=settings,
    )
    events = [e async for e in orch.run_turn(UserTurn(sid, "CrCl, 60 y, 72 kg, 1.0?", "en"))]
    offered = model.requests[0].tools
    assert [t.name for t in offered] == ["creatinine_clearance"]
    assert offered[0].parameters["required"] == list(args)
    result = next(e for e in events if isinstance(e, ToolResultEvent))
    assert result.ok and result.name == "creatinine_clearance" and result.content == "80.0"
    assert seen == ["80.0"]
    assert events[-1].type == "answer_done"
    model.assert_used_up()


def qtc_bazett(qt_ms: float, heart_rate_bpm: float) -> int:
    """QT interval corrected for heart rate (Bazett): QT / sqrt(RR in seconds).

    Args:
        qt_ms: Measured QT interval in milliseconds.
        heart_rate_bpm: Heart rate in beats per minute.
    """
    rr_s = 60.0 / heart_rate_bpm
    return round(qt_ms / math.sqrt(rr_s))


async def mean_arterial_pressure(systolic: int, diastolic: int) -> dict[str, Any]:
    """Mean arterial pressure from a blood-pressure reading: DBP + (SBP - DBP) / 3."""
    return {"map_mmhg": round(diastolic + (systolic - diastolic) / 3), "unit": "mmHg"}


async def test_llamaindex_function_tools(ctx: ToolContext) -> None:
    sync_tool = from_llamaindex(FunctionTool.from_defaults(fn=qtc_bazett))
    async_tool = from_llamaindex(FunctionTool.from_defaults(async_fn=mean_arterial_pressure))
    assert (sync_tool.name, sync_tool.source) == ("qtc_bazett", "llamaindex")
    assert "Bazett" in sync_tool.description
    assert sync_tool.spec.parameters["required"] == ["qt_ms", "heart_rate_bpm"]
    assert set(async_tool.spec.parameters["properties"]) == {"systolic", "diastolic"}

    registry = ToolRegistry([sync_tool, async_tool])
    # HR 75 -> RR 0.8 s; 400 / sqrt(0.8) = 447.2.
    qtc = await registry.run("c1", "qtc_bazett", '{"qt_ms": 400, "heart_rate_bpm": 75}', ctx)
    assert qtc.ok and qtc.content == "447" and qtc.data == 447
    bp = await registry.run(
        "c2", "mean_arterial_pressure", '{"systolic": 120, "diastolic": 80}', ctx
    )
    assert bp.ok and json.loads(bp.content) == {"map_mmhg": 93, "unit": "mmHg"}
    bad = await registry.run("c3", "mean_arterial_pressure", '{"systolic": "high"}', ctx)
    assert not bad.ok and "systolic" in bad.content and "diastolic" in bad.content


class _DrugLookup(AsyncBaseTool):
    """A LlamaIndex tool that reports a miss as an error output, as LlamaIndex tools do."""

    @property
    def metadata(self) -> ToolMetadata:
        return ToolMetadata(name="drug_lookup", description="Look up a drug by its name.")

    def call(self, input: Any) -> ToolOutput:
        raise NotImplementedError

    async def acall(self, input: Any) -> ToolOutput:
        if input == "metformin":
            return ToolOutput(
                tool_name="drug_lookup", content="Biguanide.", raw_input={"input": input}
            )
        return ToolOutput(
            tool_name="drug_lookup",
            content=f"No drug named {input!r}; check the spelling.",
            raw_input={"input": input},
            is_error=True,
        )


async def test_llamaindex_errors_and_positional_input(ctx: ToolContext) -> None:
    bridged = from_llamaindex(_DrugLookup())
    # No fn_schema: LlamaIndex's one-string "input" parameter, passed positionally.
    assert bridged.spec.parameters["required"] == ["input"]
    registry = ToolRegistry([bridged])
    found = await registry.run("c1", "drug_lookup", '{"input": "metformin"}', ctx)
    assert found.ok and found.content == "Biguanide."
    missing = await registry.run("c2", "drug_lookup", '{"input": "metforman"}', ctx)
    assert not missing.ok and missing.content == "No drug named 'metforman'; check the spelling."


def test_a_missing_llamaindex_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llama_index.core.tools", None)
    with pytest.raises(ConfigurationError, match=r"pip install 'healtrace\[bridges\]'"):
        from_llamaindex(object())  # type: ignore[arg-type]


def test_importing_the_bridges_loads_neither_library() -> None:
    code = (
        "import sys, healtrace.tools.bridges; "
        "print([m for m in sys.modules if m.startswith(('langchain', 'llama_index'))])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _without_titles(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _without_titles(v) for k, v in schema.items() if k != "title"}
    if isinstance(schema, list):
        return [_without_titles(v) for v in schema]
    return schema


async def test_exported_tool_matches_the_healtrace_tool(ctx: ToolContext) -> None:
    exported = to_langchain(body_mass_index, ctx)
    registry = ToolRegistry([body_mass_index])
    args = {"weight": 70, "height": 175}
    native = await registry.run("c1", "body_mass_index", json.dumps(args), ctx)
    assert native.ok
    assert await exported.ainvoke(args) == native.content
    assert json.loads(native.content)["bmi"] == 22.9

    spec = convert_to_openai_tool(exported)["function"]
    assert spec["name"] == body_mass_index.spec.name
    assert spec["description"] == body_mass_index.spec.description
    assert spec["parameters"] == _without_titles(body_mass_index.spec.parameters)
    assert spec["parameters"]["additionalProperties"] is False
    assert exported.metadata == {
        "healtrace": {
            "source": "builtin",
            "permissions": [],
            "needs_consent": False,
            "needs_approval": False,
        }
    }

    # As a LangGraph tool node calls it: a ToolMessage, the Python value as its artifact.
    message = await exported.ainvoke(tool_call(name="body_mass_index", args=args, id="t1"))
    assert isinstance(message, ToolMessage)
    assert message.status == "success" and message.content == native.content
    assert message.artifact == native.data


async def test_exported_tool_returns_retry_messages(ctx: ToolContext) -> None:
    exported = to_langchain(body_mass_index, ctx)
    registry = ToolRegistry([body_mass_index])
    for args in (
        {"weight": 70},
        {"weight": 70, "height": 175, "bmi": 1},
        {"weight": 70, "height": 10},
    ):
        native = await registry.run("c1", "body_mass_index", json.dumps(args), ctx)
        assert not native.ok
        assert await exported.ainvoke(args) == native.content
    message = await exported.ainvoke(tool_call(name="body_mass_index", args={}, id="t2"))
    assert isinstance(message, ToolMessage) and message.status == "error"
    assert "weight" in message.text and "height" in message.text


@tool
async def wait_forever() -> str:
    """Never finishes."""
    await asyncio.Event().wait()
    return ""


async def test_exported_tools_take_a_context_factory_and_the_registry_timeout(
    settings: Settings,
) -> None:
    made: list[str] = []

    def context() -> ToolContext:
        made.append("ctx")
        return ToolContext(session_id="s2", locale="zh-CN", settings=settings)

    registry = ToolRegistry([body_mass_index, wait_forever], default_timeout_s=0.01)
    bmi, stuck = to_langchain_tools(registry, context)
    assert [bmi.name, stuck.name] == ["body_mass_index", "wait_forever"]
    out = json.loads(await bmi.ainvoke({"weight": 70, "height": 175}))
    assert out["label"] == "正常体重" and made == ["ctx"]
    # A tool that hangs is an infrastructure failure, not something the model can fix.
    with pytest.raises(ToolInfraError, match="timed out"):
        await stuck.ainvoke({})


async def test_round_trip_through_langchain(ctx: ToolContext) -> None:
    back = from_langchain(to_langchain(body_mass_index, ctx))
    assert back.spec.parameters == _without_titles(body_mass_index.spec.parameters)
    native, bridged = ToolRegistry([body_mass_index]), ToolRegistry([back])
    for args in ('{"weight": 70, "height": 175}', '{"weight": 70, "height": 10}'):
        want = await native.run("c1", "body_mass_index", args, ctx)
        got = await bridged.run("c1", "body_mass_index", args, ctx)
        assert (got.ok, got.content) == (want.ok, want.content)
