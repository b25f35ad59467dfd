"""The patient page and the clinician console in a real browser, against the real service.

A patient asks for a person, a nurse takes the conversation over in the console, they talk
live, the nurse drafts a reply with the assistant and hands the conversation back; an
emergency message shows the patient the triage banner with the number to call.

Uses Debian's Chromium (``apt install chromium``); Playwright never downloads a browser here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from healtrace.agent.memory import ChatStore
from healtrace.agent.models.testing import DemoModel
from healtrace.api.app import create_app
from healtrace.api.testing import LiveServer
from healtrace.config import Settings
from healtrace.storage import Database

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Chromium is not installed at /usr/bin/chromium (apt chromium)"
)
playwright_api = pytest.importorskip(
    "playwright.async_api", reason="playwright is not installed (pip install playwright)"
)
async_playwright = playwright_api.async_playwright
expect = playwright_api.expect

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ANSWER = "Rest, drink water and tell us if anything gets worse."
PASSWORD = "correct horse battery staple"
DESKTOP = {"width": 1280, "height": 800}
MOBILE = {"width": 390, "height": 844}


async def _accounts(settings: Settings) -> str:
    """An API key for the patient page and the nurse's console account."""
    from healtrace.handoff import ClinicianStore

    db = Database(settings.resolved_database_url)
    await db.migrate()
    try:
        key = (await ChatStore(db).create_api_key("browser"))[1]
        await ClinicianStore(db).create(
            tenant_id="default",
            username="nurse.li",
            display_name="Nurse Li",
            role="nurse",
            password=PASSWORD,
        )
        return key
    finally:
        await db.dispose()


async def _say(page: Any, text: str) -> None:
    await page.fill("#text", text)
    await page.press("#text", "Enter")


async def test_handoff_in_the_browser(settings: Settings, tmp_path: Path) -> None:
    settings.safety.region = "CN"
    key = await _accounts(settings)
    model = DemoModel(tool_rounds=0, token_interval_ms=2, answer=ANSWER)
    expect.set_options(timeout=15_000)
    async with LiveServer(create_app(settings, model=model)) as live:
        # The browser sends Origin: the page's own address, which must be allowed.
        settings.allowed_origins = [live.http]
        async with async_playwright() as p:
            browser = await p.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
            )
            try:
                patient_ctx = await browser.new_context(locale="en-US", viewport=DESKTOP)
                nurse_ctx = await browser.new_context(locale="en-US", viewport=DESKTOP)
                patient = await patient_ctx.new_page()
                nurse = await nurse_ctx.new_page()
                errors: list[str] = []
                for page in (patient, nurse):
                    page.on("pageerror", lambda exc: errors.append(str(exc)))

                # The patient asks for a person in words; the page shows the queue line.
                await patient.goto(f"{live.http}/#key={key}")
                await expect(patient.locator("#status")).to_have_text("online")
                await _say(patient, "I want to talk to a nurse")
                await expect(patient.locator("#log .msg.user")).to_have_text(
                    ["I want to talk to a nurse"]
                )
                await expect(patient.locator("#log .handoff")).to_have_count(1)
                await expect(patient.locator("#cancelHandoffBtn")).to_be_visible()
                await expect(patient.locator("#handoffBtn")).to_be_hidden()

                # The nurse signs in and finds the conversation in the queue.
                await nurse.goto(f"{live.http}/console")
                await nurse.fill("#username", "nurse.li")
                await nurse.fill("#password", PASSWORD)
                await nurse.click("#loginBtn")
                item = nurse.locator("#queue .queue-item")
                await expect(item).to_have_count(1)
                await expect(item).to_contain_text("I want to talk to a nurse")
                assert await item.get_attribute("data-handoff-id")
                session_id = await item.get_attribute("data-session-id")
                await item.click()
                conversation = nurse.locator("#conversation")
                await expect(conversation.locator(".msg.user")).to_contain_text(
                    ["I want to talk to a nurse"]
                )
                await expect(nurse.locator("#records")).to_contain_text("None shared")
                await expect(nurse.locator("#handbackBtn")).to_be_hidden()

                # Take over: the patient is told who joined.
                await nurse.click("#takeBtn")
                await expect(nurse.locator("#takeBtn")).to_be_hidden()
                await expect(nurse.locator("#handbackBtn")).to_be_visible()
                await expect(patient.locator("#log .handoff").last).to_contain_text("Nurse Li")
                await expect(patient.locator("#handoffState")).to_contain_text("Nurse Li")
                await expect(patient.locator("#cancelHandoffBtn")).to_be_hidden()
                await expect(item).to_contain_text("you")

                # The nurse's reply reaches the patient live, labelled with the nurse's name.
                hello = "Hello, this is Nurse Li. How can I help?"
                await nurse.fill("#reply", hello)
                await nurse.click("#sendReply")
                clinician = patient.locator("#log .msg.clinician")
                await expect(clinician).to_have_count(1)
                await expect(clinician).to_contain_text(hello)
                await expect(clinician.locator(".author")).to_have_text("Nurse Li")
                await expect(conversation.locator(".msg.clinician")).to_have_count(1)
                await expect(nurse.locator("#reply")).to_have_value("")

                # While the nurse has the conversation the assistant does not answer.
                answers = await patient.locator("#log .msg.assistant").count()
                await _say(patient, "thank you")
                await expect(conversation.locator(".msg.user").last).to_have_text(
                    re.compile("thank you")
                )
                await expect(patient.locator("#log .meta").last).to_contain_text("care team")
                await expect(patient.locator("#cancelBtn")).to_be_disabled()
                assert await patient.locator("#log .msg.assistant").count() == answers

                # A draft from the assistant lands in the reply box for the nurse to edit.
                await nurse.click("#draftBtn")
                await expect(nurse.locator("#reply")).to_have_value(re.compile(r"\S"))
                await nurse.fill("#reply", (await nurse.input_value("#reply")) + " — Nurse Li")
                await nurse.click("#sendReply")
                await expect(clinician).to_have_count(2)
                await expect(clinician.last).to_contain_text("— Nurse Li")

                # Hand back: the patient is back with the assistant, which answers again.
                await nurse.click("#handbackBtn")
                await expect(patient.locator("#log .handoff")).to_have_count(3)
                await expect(patient.locator("#log .handoff").last).to_contain_text(
                    re.compile("assistant", re.IGNORECASE)
                )
                await expect(patient.locator("#handoffBtn")).to_be_visible()
                await expect(item).to_have_count(0)
                await _say(patient, "What should I eat today?")
                await expect(patient.locator("#log .msg.assistant")).to_have_count(answers + 1)
                await expect(patient.locator("#log .msg.assistant").last).to_have_text(ANSWER)
                # The nurse still watches the conversation and sees the answer arrive.
                await expect(conversation.locator(".msg.assistant").last).to_contain_text(ANSWER)

                # The page's own button asks for a person too, and the patient can cancel.
                await patient.click("#handoffBtn")
                await expect(item).to_have_count(1)
                await expect(item).to_have_attribute("data-session-id", session_id or "")
                await patient.click("#cancelHandoffBtn")
                await expect(item).to_have_count(0)
                await expect(patient.locator("#handoffBtn")).to_be_visible()

                # An emergency: the banner with the number to call, and the queue escalates.
                other_ctx = await browser.new_context(locale="en-US", viewport=MOBILE)
                other = await other_ctx.new_page()
                other.on("pageerror", lambda exc: errors.append(str(exc)))
                await other.goto(f"{live.http}/#key={key}")
                await expect(other.locator("#status")).to_have_text("online")
                await _say(other, "crushing chest pain and sweating")
                banner = other.locator("#triageBanner")
                await expect(banner).to_be_visible()
                await expect(banner).to_have_attribute("role", "alert")
                await expect(banner).to_contain_text("120")
                await expect(other.locator("#triageCall")).to_have_attribute("href", "tel:120")
                await expect(item).to_have_count(1)
                await expect(item.locator(".badge.level-emergency")).to_have_count(1)
                await item.click()
                await expect(nurse.locator("#triageReasons li").first).to_contain_text(
                    re.compile(r"\w")
                )
                await expect(
                    nurse.locator("#triageReasons .badge.level-emergency")
                ).not_to_have_count(0)

                for name, page in (("patient", patient), ("console", nurse)):
                    await page.screenshot(path=str(tmp_path / f"{name}-desktop.png"))
                    await page.set_viewport_size(MOBILE)
                    await page.screenshot(path=str(tmp_path / f"{name}-mobile.png"))
                await other.screenshot(path=str(tmp_path / "emergency-mobile.png"))
                # The page speaks Chinese too.
                await other.select_option("#lang", "zh-CN")
                await expect(other.locator("#triageCall")).to_have_text("拨打 120")
                await expect(other.locator("#cancelHandoffBtn")).to_have_text("取消转人工")
                await expect(nurse.locator("#lang")).to_have_value("en")
                await nurse.select_option("#lang", "zh-CN")
                await expect(nurse.locator("#takeBtn")).to_have_text("接管")
                assert errors == []
                for ctx in (patient_ctx, nurse_ctx, other_ctx):
                    await ctx.close()
            finally:
                await browser.close()
