"""The chat page's Photo button in a real browser: a tongue photo is uploaded, analysed, and
discussed in the conversation (Debian Chromium; Playwright never downloads a browser)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from healtrace.agent.memory import ChatStore
from healtrace.agent.models.testing import DemoModel
from healtrace.api.app import create_app
from healtrace.api.testing import LiveServer
from healtrace.config import Settings
from healtrace.storage import Database
from tests.test_vision_tongue import make_tongue

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Chromium is not installed at /usr/bin/chromium (apt chromium)"
)
playwright_api = pytest.importorskip("playwright.async_api")
ANSWER = "The photo shows a red tongue; this is traditional inspection, not a diagnosis."


async def test_photo_button_uploads_and_discusses_the_image(
    settings: Settings, tmp_path: Path
) -> None:
    db = Database(settings.resolved_database_url)
    await db.migrate()
    key = (await ChatStore(db).create_api_key("browser"))[1]
    await db.dispose()
    photo = tmp_path / "tongue.jpg"
    buf = io.BytesIO()
    Image.fromarray(make_tongue("red", coating="yellow", coverage=0.4)).save(buf, format="JPEG")
    photo.write_bytes(buf.getvalue())
    model = DemoModel(tool_rounds=0, token_interval_ms=2, answer=ANSWER)
    expect = playwright_api.expect
    expect.set_options(timeout=20_000)
    async with LiveServer(create_app(settings, model=model)) as live:
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
                ],
            )
            try:
                page = await browser.new_page(locale="en-US")
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                await page.goto(f"{live.http}/#key={key}")
                await expect(page.locator("#status")).to_have_text("online")
                await expect(page.locator("#photoBtn")).to_have_text("Photo")
                await page.fill("#text", "What does my tongue show?")
                await page.set_input_files("#photoInput", str(photo))
                await expect(page.locator("#log .msg.user")).to_contain_text(
                    ["What does my tongue show? 📷 tongue.jpg"]
                )
                await expect(page.locator("#log .meta").first).to_contain_text(
                    "No image model is configured"
                )
                await expect(page.locator("#log .tool").first).to_contain_text("analyze_image")
                await expect(page.locator("#log .msg.assistant")).to_contain_text("red tongue")
                assert errors == []
                question = model.requests[-1].messages[-1].content
                assert "yellow" in question  # the coating the analysis measured
            finally:
                await browser.close()
