"""Per-tenant settings: each tenant's own knowledge collection, the starter pack, the locale."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import websockets
from pydantic import ValidationError

from healtrace.agent.memory import ChatStore
from healtrace.agent.models.base import ModelRequest
from healtrace.agent.models.testing import ScriptedModel, Step, text_step
from healtrace.api.app import create_app
from healtrace.api.testing import LiveServer
from healtrace.config import Settings
from healtrace.knowledge import KnowledgeBase, KnowledgeConfig, ingest
from healtrace.storage import Database
from healtrace.tenants import TenantConfig, fuse_hits
from healtrace.tools import ToolContext
from healtrace.tools.builtin import search_knowledge
from tests.test_api import hello, until

QUESTION = "What are the visiting hours on the ward?"

#: One visiting-hours document per collection: a tenant must only ever see its own.
DOCS = {
    "aurora-docs": (
        "aurora-visiting",
        "Aurora Hospital visiting hours",
        "Visiting hours on every Aurora ward are 9am to 8pm. Two visitors per bed.",
    ),
    "birch-docs": (
        "birch-visiting",
        "Birch Clinic visiting hours",
        "Visiting hours at Birch Clinic are 2pm to 4pm on weekdays only.",
    ),
    "starter": (
        "hospital-visits",
        "Visiting someone in hospital",
        "Check the ward's visiting hours before you go, and wash your hands on the ward.",
    ),
}

TENANTS = {
    "aurora": TenantConfig(knowledge_collection="aurora-docs", display_name="Aurora Hospital"),
    "birch": TenantConfig(
        knowledge_collection="birch-docs", include_starter_pack=False, default_locale="zh-CN"
    ),
}


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KnowledgeBase]:
    root = tmp_path_factory.mktemp("tenants")
    with KnowledgeBase.open(KnowledgeConfig(embedder="fake"), root / "kb") as base:
        for collection, (doc_id, title, body) in DOCS.items():
            folder = root / collection
            folder.mkdir()
            (folder / f"{doc_id}.md").write_text(
                f"---\nid: {doc_id}\nlang: en\ntitle: {title}\n---\n\n# {title}\n\n"
                f"## Visiting hours\n{body}\n"
            )
            report = ingest(base, folder, collection)
            assert report.collection == collection and base.count(collection) >= 1
        yield base


@pytest.fixture
def tenant_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"tenants": TENANTS})


async def _key(settings: Settings, tenant: str) -> str:
    db = Database(settings.resolved_database_url)
    await db.migrate()
    try:
        return (await ChatStore(db).create_api_key(tenant, tenant_id=tenant))[1]
    finally:
        await db.dispose()


def _cite_first() -> Step:
    def answer(request: ModelRequest) -> Step:
        assert "[1] " in request.messages[-1].content
        return text_step("Here are the visiting hours [1].")

    return answer  # type: ignore[return-value]


def _excerpt_titles(request: ModelRequest) -> list[str]:
    """The titles of the numbered excerpts the model was given with the question."""
    return re.findall(r"^\[\d+\] (.+?)(?: — .*)?$", request.messages[-1].content, re.MULTILINE)


async def _ask(settings: Settings, kb: KnowledgeBase, tenant: str) -> tuple[list[str], list[str]]:
    """Ask QUESTION with a key of ``tenant``: (excerpt titles shown, cited doc ids)."""
    key = await _key(settings, tenant)
    model = ScriptedModel([_cite_first()])
    async with LiveServer(create_app(settings, model=model, knowledge=kb)) as live:
        async with websockets.connect(live.ws) as ws:
            await hello(ws, key, locale="en")
            await ws.send(json.dumps({"type": "user_message", "text": QUESTION}))
            frames = await until(ws, "answer_done", "error")
    assert frames[-1]["type"] == "answer_done", frames[-1]
    model.assert_used_up()
    cited = [f["doc_id"] for f in frames if f["type"] == "citation"]
    return _excerpt_titles(model.requests[0]), cited


async def test_a_tenant_cites_its_own_documents_and_the_starter_pack(
    tenant_settings: Settings, kb: KnowledgeBase
) -> None:
    titles, cited = await _ask(tenant_settings, kb, "aurora")
    assert cited == ["aurora-visiting"]
    # The tenant's collection and the starter pack, fused; never the other tenant's.
    assert titles[0] == "Aurora Hospital visiting hours"
    assert "Visiting someone in hospital" in titles
    assert "Birch Clinic visiting hours" not in titles


async def test_a_tenant_without_the_starter_pack_sees_only_its_collection(
    tenant_settings: Settings, kb: KnowledgeBase
) -> None:
    titles, cited = await _ask(tenant_settings, kb, "birch")
    assert cited == ["birch-visiting"]
    assert set(titles) == {"Birch Clinic visiting hours"}


async def test_tenants_without_settings_read_the_default_collection(
    tenant_settings: Settings, kb: KnowledgeBase
) -> None:
    titles, cited = await _ask(tenant_settings, kb, "default")
    assert cited == ["hospital-visits"]
    assert set(titles) == {"Visiting someone in hospital"}


async def test_search_knowledge_tool_searches_the_turns_tenant(
    tenant_settings: Settings, kb: KnowledgeBase
) -> None:
    args = search_knowledge.params_model(query="visiting hours", k=4)
    seen = {}
    for tenant in ("aurora", "birch", None):
        ctx = ToolContext(
            session_id="s", locale="en", settings=tenant_settings, tenant_id=tenant, knowledge=kb
        )
        out = await search_knowledge.call(ctx, args)
        seen[tenant] = {s.doc_id for s in ctx.citations.sources}
        assert out.startswith("[1] ")
    assert seen == {
        "aurora": {"aurora-visiting", "hospital-visits"},
        "birch": {"birch-visiting"},
        None: {"hospital-visits"},
    }


async def test_tenant_default_locale_applies_to_new_sessions(
    tenant_settings: Settings, kb: KnowledgeBase
) -> None:
    birch, aurora = await _key(tenant_settings, "birch"), await _key(tenant_settings, "aurora")
    app = create_app(tenant_settings, model=ScriptedModel([]), knowledge=kb)
    async with LiveServer(app) as live:
        async with websockets.connect(live.ws) as ws:
            assert (await hello(ws, birch))["locale"] == "zh-CN"
        async with websockets.connect(live.ws) as ws:
            assert (await hello(ws, birch, locale="en"))["locale"] == "en"  # the client's wins
        async with websockets.connect(live.ws) as ws:
            assert (await hello(ws, aurora))["locale"] == "en"  # HEALTRACE_DEFAULT_LOCALE
        async with httpx.AsyncClient(base_url=live.http, timeout=10) as http:
            auth = {"Authorization": f"Bearer {birch}"}
            r = await http.post("/v1/sessions", headers=auth)
            assert r.status_code == 201 and r.json()["locale"] == "zh-CN"
            r = await http.post("/v1/sessions", json={"locale": "en"}, headers=auth)
            assert r.json()["locale"] == "en"
            r = await http.post("/v1/sessions", headers={**auth, "Accept-Language": "en-GB"})
            assert r.json()["locale"] == "en"


def test_settings_parse_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    tenants = {
        "aurora": {"knowledge_collection": "aurora-docs", "display_name": "Aurora Hospital"},
        "birch": {"include_starter_pack": False, "default_locale": "zh-CN"},
    }
    monkeypatch.setenv("HEALTRACE_TENANTS", json.dumps(tenants))
    parsed = Settings().tenants
    assert parsed == {
        "aurora": TenantConfig(knowledge_collection="aurora-docs", display_name="Aurora Hospital"),
        "birch": TenantConfig(include_starter_pack=False, default_locale="zh-CN"),
    }
    monkeypatch.setenv("HEALTRACE_TENANTS", '{"aurora": {"default_locale": "fr"}}')
    with pytest.raises(ValidationError, match="default_locale"):
        Settings()


@dataclass(frozen=True)
class _Hit:
    chunk_id: str
    doc_id: str = ""
    title: str = ""
    section: str = ""
    source_url: str = ""
    source_title: str = ""
    language: str = "en"
    text: str = ""


def test_fusion_ranks_by_reciprocal_rank_and_counts_a_shared_chunk_once() -> None:
    own = [_Hit("a1"), _Hit("a2"), _Hit("both", title="own copy")]
    shared = [_Hit("s1"), _Hit("both", title="shared copy"), _Hit("s3")]
    fused = fuse_hits([own, shared], k=4)
    # "both" is found by both lists, so it leads; equal ranks keep the lists' order.
    assert [h.chunk_id for h in fused] == ["both", "a1", "s1", "a2"]
    assert fused[0].title == "own copy"  # the first list's copy of a shared chunk
    assert fuse_hits([own, []], k=2) == own[:2]
    assert fuse_hits([own, shared], k=4) == fused


def test_readme_documents_the_tenants_setting() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "| `HEALTRACE_TENANTS` |" in readme
    block = re.search(r"HEALTRACE_TENANTS='(\{.*?\})'", readme, re.DOTALL)
    assert block is not None
    parsed = json.loads(block.group(1))
    assert all(TenantConfig.model_validate(v) for v in parsed.values())
