from __future__ import annotations

import asyncio
import json
import sys
import textwrap
from pathlib import Path
from typing import Annotated, Literal

import pytest
from pydantic import Field

from healtrace.config import Settings
from healtrace.errors import ToolInfraError
from healtrace.tools import ToolContext, ToolRegistry, ToolRetry, load_tools, tool
from healtrace.tools.builtin import body_mass_index


@tool(timeout_s=0.05)
async def slow(ctx: ToolContext, seconds: float) -> str:
    """Sleep for a while.

    Args:
        seconds: How long to sleep.
    """
    await asyncio.sleep(seconds)
    return "done"


@tool
async def broken() -> str:
    """Always fails with a bug."""
    raise ZeroDivisionError


@tool
async def picky(
    kind: Literal["a", "b"],
    count: Annotated[int, Field(ge=1, le=3)] = 1,
) -> dict[str, object]:
    """Pick something.

    Args:
        kind: Which kind to pick,
            either a or b.
        count: How many.

    Returns:
        The choice.
    """
    if kind == "b":
        raise ToolRetry("b is out of stock; pick a")
    return {"kind": kind, "count": count}


@pytest.fixture
def ctx(settings: Settings) -> ToolContext:
    return ToolContext(session_id="s", locale="en", settings=settings)


def test_schema_comes_from_signature_and_docstring() -> None:
    spec = picky.spec
    assert spec.description == "Pick something."
    props = spec.parameters["properties"]
    assert props["kind"]["enum"] == ["a", "b"]
    assert props["kind"]["description"] == "Which kind to pick, either a or b."
    assert props["count"]["maximum"] == 3
    assert spec.parameters["required"] == ["kind"]
    assert spec.parameters["additionalProperties"] is False
    # The run context is not part of the schema.
    assert list(slow.spec.parameters["properties"]) == ["seconds"]
    assert slow.takes_context and not picky.takes_context


def test_a_tool_needs_a_docstring_and_async() -> None:
    async def undocumented(x: int) -> int:
        return x

    with pytest.raises(TypeError, match="docstring"):
        tool(undocumented)

    def sync(x: int) -> int:
        """Sync."""
        return x

    with pytest.raises(TypeError, match="async"):
        tool(sync)  # type: ignore[arg-type]


async def test_registry_returns_model_mistakes_as_results(ctx: ToolContext) -> None:
    reg = ToolRegistry([picky, slow])
    unknown = await reg.run("1", "nope", "{}", ctx)
    assert (
        not unknown.ok and "Unknown tool 'nope'" in unknown.content and "picky" in unknown.content
    )
    bad_json = await reg.run("2", "picky", "{kind: a", ctx)
    assert not bad_json.ok and "not valid JSON" in bad_json.content
    not_object = await reg.run("3", "picky", "[1]", ctx)
    assert not not_object.ok and "JSON object" in not_object.content
    invalid = await reg.run("4", "picky", json.dumps({"kind": "c", "count": 9}), ctx)
    assert not invalid.ok and "kind" in invalid.content and "count" in invalid.content
    extra = await reg.run("5", "picky", json.dumps({"kind": "a", "zzz": 1}), ctx)
    assert not extra.ok and "zzz" in extra.content
    retry = await reg.run("6", "picky", json.dumps({"kind": "b"}), ctx)
    assert not retry.ok and retry.content == "b is out of stock; pick a"
    good = await reg.run("7", "picky", json.dumps({"kind": "a", "count": 2}), ctx)
    assert good.ok and json.loads(good.content) == {"kind": "a", "count": 2}


async def test_infrastructure_failures_raise(ctx: ToolContext) -> None:
    reg = ToolRegistry([slow, broken])
    with pytest.raises(ToolInfraError) as timeout:
        await reg.run("1", "slow", '{"seconds": 5}', ctx)
    assert timeout.value.params == {"tool": "slow"}
    with pytest.raises(ToolInfraError, match="ZeroDivisionError"):
        await reg.run("2", "broken", "{}", ctx)


async def test_bmi_tool(ctx: ToolContext, settings: Settings) -> None:
    reg = ToolRegistry([body_mass_index])
    out = await reg.run("1", "body_mass_index", '{"weight": 70, "height": 175}', ctx)
    assert out.ok
    assert out.data.bmi == 22.9 and out.data.category_who == "normal"
    # 25.5 is overweight by WHO (>= 25) and by the Chinese cut-off (>= 24).
    imperial = await reg.run(
        "2",
        "body_mass_index",
        '{"weight": 172, "height": 68, "unit_system": "imperial"}',
        ctx,
    )
    assert imperial.data.bmi == 26.2 and imperial.data.category_who == "overweight"
    # 24.5: normal by WHO, overweight by the Chinese adult criteria; zh labels follow China.
    zh = ToolContext(session_id="s", locale="zh-CN", settings=settings)
    out = await reg.run("3", "body_mass_index", '{"weight": 75, "height": 175}', zh)
    assert out.data.category_who == "normal" and out.data.category_china == "overweight"
    assert out.data.label == "超重" and "BMI" in out.data.caveat
    metres = await reg.run("4", "body_mass_index", '{"weight": 70, "height": 1.75}', ctx)
    assert not metres.ok and "centimetres" in metres.content


def test_builtin_tools_load_through_the_entry_point(settings: Settings) -> None:
    reg = load_tools(settings)
    assert "body_mass_index" in reg
    assert reg.get("body_mass_index").source == "builtin"  # type: ignore[union-attr]
    assert reg.load_errors == []


def _install_fake_dist(root: Path, name: str, entry: str, module_src: str | None) -> None:
    dist = root / f"{name}-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[healtrace.tools]\n{name} = {entry}\n")
    if module_src is not None:
        module = entry.split(":")[0]
        (root / f"{module}.py").write_text(textwrap.dedent(module_src))


def test_broken_plugins_are_reported_and_skipped(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    _install_fake_dist(site, "missingmod", "ht_missing_module:TOOLS", None)
    _install_fake_dist(site, "notatool", "ht_not_a_tool:TOOLS", "TOOLS = [42]\n")
    _install_fake_dist(
        site,
        "goodplugin",
        "ht_good_plugin:echo",
        '''
        from healtrace.tools import tool

        @tool
        async def echo(text: str) -> str:
            """Echo the text back."""
            return text
        ''',
    )
    monkeypatch.syspath_prepend(str(site))
    for mod in ("ht_missing_module", "ht_not_a_tool", "ht_good_plugin"):
        sys.modules.pop(mod, None)
    reg = load_tools(settings)
    assert "echo" in reg and reg.get("echo").source == "plugin:goodplugin"  # type: ignore[union-attr]
    assert "body_mass_index" in reg
    assert len(reg.load_errors) == 2
    assert any("missingmod" in e for e in reg.load_errors)
    assert any("notatool" in e and "not a healtrace Tool" in e for e in reg.load_errors)
