"""The chat page's record-access panel in a real browser: a patient grants the assistant
access to their lab results, sees the grant, revokes it, and sees both in their access log
(Debian Chromium; Playwright never downloads a browser)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from healtrace.agent.models.testing import DemoModel
from healtrace.api.app import create_app
from healtrace.api.testing import LiveServer
from healtrace.config import Settings
from healtrace.records.ledger import FakeConsentLedger

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Chromium is not installed at /usr/bin/chromium (apt chromium)"
)
playwright_api = pytest.importorskip("playwright.async_api")


@pytest.mark.parametrize(
    ("locale", "grant", "revoke"), [("en-US", "Grant access", "Revoke"), ("zh-CN", "授权", "撤销")]
)
async def test_patient_grants_and_revokes_from_the_chat_page(
    settings: Settings, tmp_path: Path, locale: str, grant: str, revoke: str
) -> None:
    ledger = FakeConsentLedger()
    app = create_app(settings, model=DemoModel(tool_rounds=0), consent_ledger=ledger)
    expect = playwright_api.expect
    expect.set_options(timeout=20_000)
    async with LiveServer(app) as live:
        settings.allowed_origins = [live.http]
        services = app.state.services
        _kid, tenant_key = await services.store.create_api_key("backend", tenant_id="clinic")
        async with httpx.AsyncClient(base_url=live.http) as http:
            made = (
                await http.post(
                    "/v1/patients",
                    json={"fhir_patient_id": "pat-a"},
                    headers={"Authorization": f"Bearer {tenant_key}"},
                )
            ).json()
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
                await page.goto(f"{live.http}/#key={made['api_key']}")
                panel = page.locator("#consentPanel")
                await expect(panel).to_be_visible()
                await page.click("#consentTitle")
                await page.click("#consentGrant")
                item = page.locator("#consentList li[data-status=active]")
                await expect(item).to_have_count(1)
                await expect(page.locator("#consentGrant")).to_have_text(grant)
                await item.get_by_role("button", name=revoke).click()
                await expect(page.locator("#consentList li[data-status=revoked]")).to_have_count(1)
                await expect(page.locator("#consentLog li")).to_have_count(2)
                await page.screenshot(path=str(tmp_path / f"consent-{locale}.png"))
                assert errors == []
            finally:
                await browser.close()
        assert ledger.transactions == 2  # one grant, one revocation, both signed by her key
        log = await services.audit.for_patient("clinic", made["patient_id"])
        assert [e.action for e in log] == ["consent_revoked", "consent_granted"]


async def test_the_panel_stays_hidden_for_an_organisation_key(settings: Settings) -> None:
    app = create_app(settings, model=DemoModel(tool_rounds=0), consent_ledger=FakeConsentLedger())
    async with LiveServer(app) as live:
        settings.allowed_origins = [live.http]
        _kid, key = await app.state.services.store.create_api_key("backend")
        async with playwright_api.async_playwright() as p:
            browser = await p.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox", "--disable-gpu"]
            )
            try:
                page = await browser.new_page()
                await page.goto(f"{live.http}/#key={key}")
                await playwright_api.expect(page.locator("#status")).to_have_text("online")
                assert await page.locator("#consentPanel").is_hidden()
            finally:
                await browser.close()
