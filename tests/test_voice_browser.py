"""The chat page's voice buttons in a real browser: Chromium's fake microphone plays a spoken
question, the page streams it over the WebSocket, Whisper (tiny.en) hears it, and the
answer comes back as text and as speech the page plays.

Uses Debian's Chromium (``apt install chromium``) with ``--use-file-for-fake-audio-capture``;
Playwright never downloads a browser here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from healtrace.agent.memory import ChatStore
from healtrace.agent.models.testing import DemoModel
from healtrace.api.app import create_app
from healtrace.api.testing import LiveServer
from healtrace.config import Settings, SpeechConfig
from healtrace.speech.asr import WhisperASR
from healtrace.speech.audio import encode
from healtrace.speech.engines import SpeechEngines
from healtrace.speech.tts import ScriptedTTS
from healtrace.speech.types import SAMPLE_RATE, Audio
from healtrace.speech.whisper_models import resolve_whisper_model
from healtrace.storage import Database
from tests._speech import espeak

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Chromium is not installed at /usr/bin/chromium (apt chromium)"
)
playwright_api = pytest.importorskip("playwright.async_api")
async_playwright = playwright_api.async_playwright
expect = playwright_api.expect

QUESTION = "What is a normal blood pressure?"
ANSWER = "A normal blood pressure is below 120 over 80. Measure it at rest."


def _question_wav(tmp: Path) -> Path:
    """The question with silence around it, as 16-bit PCM WAV (what Chromium's fake mic reads)."""
    speech = espeak(QUESTION, "en-us", tmp)
    pad = np.zeros(int(0.4 * SAMPLE_RATE), dtype=np.float32)
    tail = np.zeros(int(8 * SAMPLE_RATE), dtype=np.float32)
    padded = Audio(np.concatenate([pad, speech.samples, tail]), SAMPLE_RATE)
    out = tmp / "question.wav"
    out.write_bytes(encode(padded, "wav"))
    return out


async def test_push_to_talk_in_the_browser(settings: Settings, tmp_path: Path) -> None:
    settings = settings.model_copy(
        update={"speech": SpeechConfig(voice_format="opus", partial_interval_ms=0)}
    )
    db = Database(settings.resolved_database_url)
    await db.migrate()
    key = (await ChatStore(db).create_api_key("browser"))[1]
    await db.dispose()
    asr = WhisperASR(resolve_whisper_model("tiny.en", settings.models_dir), threads=2, name="t")
    engines = SpeechEngines(settings.speech, settings.models_dir, asr=asr, tts=ScriptedTTS())
    model = DemoModel(tool_rounds=0, token_interval_ms=5, answer=ANSWER)
    wav = _question_wav(tmp_path)
    expect.set_options(timeout=30_000)
    async with LiveServer(create_app(settings, model=model, speech=engines)) as live:
        settings.allowed_origins = [live.http]
        async with async_playwright() as p:
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
                    "--use-fake-ui-for-media-stream",
                    "--use-fake-device-for-media-stream",
                    f"--use-file-for-fake-audio-capture={wav}",
                    "--autoplay-policy=no-user-gesture-required",
                ],
            )
            try:
                context = await browser.new_context(locale="en-US")
                await context.grant_permissions(["microphone"], origin=live.http)
                page = await context.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                frames_out: list[Any] = []
                page.on("websocket", lambda ws: ws.on("framesent", lambda f: frames_out.append(f)))
                await page.goto(f"{live.http}/#key={key}")
                await expect(page.locator("#status")).to_have_text("online")
                await expect(page.locator("#pttBtn")).to_have_text("Hold to talk")

                # Hold the button while the fake microphone plays the question.
                button = page.locator("#pttBtn")
                await button.hover()
                await page.mouse.down()
                await expect(page.locator("#voiceState")).to_have_text("Listening…")
                await page.wait_for_timeout(3200)
                await page.mouse.up()

                user = page.locator("#log .msg.user")
                await expect(user).to_have_count(1)
                await expect(user).to_contain_text("blood pressure")
                await expect(page.locator("#log .msg.assistant")).to_contain_text(ANSWER)
                # The answer is spoken: the page reports playback to the server.
                await expect(page.locator("#voiceState")).to_have_attribute(
                    "data-state", "idle", timeout=30_000
                )
                sent = [f for f in frames_out if isinstance(f, str)]
                assert any('"playback"' in f and '"started"' in f for f in sent)
                assert any(isinstance(f, bytes) and f[:1] == b"\x00" for f in frames_out)
                assert errors == []

                # Switching language relabels the voice buttons.
                await page.select_option("#lang", "zh-CN")
                await expect(page.locator("#pttBtn")).to_have_text("按住说话")
                await expect(page.locator("#handsFreeBtn")).to_have_text("免提对话")
            finally:
                await browser.close()
