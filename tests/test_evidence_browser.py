"""The chat page's evidence badge in a real browser: an answer shows "evidence recorded",
then, once its batch is anchored, a "verified" link to a receipt that verifies (Debian
Chromium; Playwright never downloads a browser)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from healtrace.agent.memory import ChatStore
from healtrace.agent.models.testing import DemoModel
from healtrace.api.app import create_app
from healtrace.api.testing import LiveServer
from healtrace.chain.client import FakeRegistry
from healtrace.chain.receipt import parse_receipt, verify_offline
from healtrace.config import ChainConfig, Settings
from healtrace.storage import Database

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Chromium is not installed at /usr/bin/chromium (apt chromium)"
)
playwright_api = pytest.importorskip("playwright.async_api")


@pytest.mark.parametrize(("locale", "verified"), [("en-US", "verified"), ("zh-CN", "已上链")])
async def test_answer_gets_a_verified_badge_linking_its_receipt(
    settings: Settings, locale: str, verified: str
) -> None:
    settings = settings.model_copy(
        update={"chain": ChainConfig(batch_size=1, batch_interval_s=0.05)}
    )
    db = Database(settings.resolved_database_url)
    await db.migrate()
    key = (await ChatStore(db).create_api_key("browser"))[1]
    await db.dispose()
    model = DemoModel(tool_rounds=0, token_interval_ms=2, answer="Rest and drink water.")
    expect = playwright_api.expect
    expect.set_options(timeout=20_000)
    app = create_app(settings, model=model, registry=FakeRegistry())
    async with LiveServer(app) as live:
        settings.allowed_origins = [live.http]
        async with playwright_api.async_playwright() as p:
            browser = await p.chromium.launch(
                executable_path=str(CHROMIUM),
                headless=True,
                args=["--no-sandbox", "--disable-gpu", "--no-first-run"],
            )
            try:
                page = await browser.new_page(locale=locale)
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                await page.goto(f"{live.http}/#key={key}")
                await page.fill("#text", "I have a cold")
                await page.press("#text", "Enter")
                badge = page.locator("#log a.evidence")
                await expect(badge).to_have_class("evidence verified")
                await expect(badge).to_contain_text(verified)
                href = await badge.get_attribute("href")
                assert errors == []
            finally:
                await browser.close()
        assert href and href.startswith("/v1/evidence/0x")
        async with httpx.AsyncClient(base_url=live.http) as http:
            body = (await http.get(href)).json()
        body.pop("rpc_url")
        assert verify_offline(parse_receipt(body)).ok
