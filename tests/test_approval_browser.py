"""A tool that needs the patient's approval, end to end in a real browser: the chat page
shows what would run, nothing runs until the patient clicks Approve, and then exactly the
approved call runs (Debian Chromium; Playwright never downloads a browser)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from healtrace.agent.memory import ChatStore
from healtrace.agent.models.base import ModelRequest
from healtrace.agent.models.testing import ScriptedModel, Step, call_step, text_step
from healtrace.api.app import create_app
from healtrace.api.testing import LiveServer
from healtrace.config import Settings
from healtrace.storage import Database
from healtrace.tools import ToolContext, ToolRegistry, tool

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Chromium is not installed at /usr/bin/chromium (apt chromium)"
)
playwright_api = pytest.importorskip("playwright.async_api")

ARGS = {"department": "dermatology", "day": "2026-12-10"}
bookings: list[dict[str, str]] = []


@tool(needs_approval=True)
async def book_visit(ctx: ToolContext, department: str, day: str) -> dict[str, str]:
    """Book a clinic visit for the patient.

    Args:
        department: Clinic department.
        day: ISO date of the visit.
    """
    bookings.append({"department": department, "day": day})
    return {"confirmation": f"{department}-{day}"}


async def test_the_patient_approves_a_booking_in_the_chat_page(settings: Settings) -> None:
    bookings.clear()
    db = Database(settings.resolved_database_url)
    await db.migrate()
    key = (await ChatStore(db).create_api_key("browser"))[1]
    await db.dispose()

    def after_approval(request: ModelRequest) -> Step:
        assert (
            request.messages[-1].role == "tool" and "confirmation" in request.messages[-1].content
        )
        return text_step("Your dermatology visit on 10 December is booked.")

    model = ScriptedModel(
        [
            call_step("book_visit", ARGS),
            text_step("I can book that once you approve."),
            call_step("book_visit", ARGS, call_id="call_2"),
            after_approval,
        ]
    )
    app = create_app(settings, model=model, tools=ToolRegistry([book_visit]))
    expect = playwright_api.expect
    expect.set_options(timeout=20_000)
    async with LiveServer(app) as live:
        settings.allowed_origins = [live.http]
        async with playwright_api.async_playwright() as p:
            browser = await p.chromium.launch(
                executable_path=str(CHROMIUM),
                headless=True,
                args=[
                    "--no-sandbox",
                    "--disable-gpu",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                ],
            )
            try:
                page = await (await browser.new_context(locale="en-US")).new_page()
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                sent: list[Any] = []
                page.on("websocket", lambda ws: ws.on("framesent", lambda f: sent.append(f)))
                await page.goto(f"{live.http}/#key={key}")
                await expect(page.locator("#status")).to_have_text("online")
                await page.fill("#text", "Book me a dermatology visit on 10 December")
                await page.click("#sendBtn")
                card = page.locator("#log .approval")
                await expect(card).to_have_count(1)
                await expect(card).to_contain_text("book_visit")
                await expect(card).to_contain_text("dermatology")
                await expect(page.locator("#log .msg.assistant")).to_contain_text(
                    "once you approve"
                )
                assert bookings == []

                await card.locator("button.approve").click()
                await expect(page.locator("#log .msg.assistant").last).to_contain_text("is booked")
                await expect(card.locator("button.approve")).to_be_disabled()
                assert bookings == [ARGS]
                frames = [json.loads(f) for f in sent if isinstance(f, str)]
                approving = [f for f in frames if f.get("approvals")]
                assert len(approving) == 1 and len(approving[0]["approvals"][0]) == 24
                assert errors == []
            finally:
                await browser.close()
    model.assert_used_up()
