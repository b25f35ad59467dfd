"""The embeddable widget in a real browser, on a hospital page served from another origin
with hostile CSS: streamed answers with citations, a photo, the urgent-care banner, the
verified evidence badge, the Chinese UI, a refused origin, and voice through Chromium's fake
microphone (Debian Chromium; Playwright never downloads a browser)."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse

from healtrace.agent.models.testing import DemoModel
from healtrace.api.app import create_app
from healtrace.api.testing import LiveServer
from healtrace.chain.client import FakeRegistry
from healtrace.config import ChainConfig, Settings
from healtrace.speech.asr import ScriptedASR
from healtrace.speech.audio import encode
from healtrace.speech.engines import SpeechEngines
from healtrace.speech.tts import ScriptedTTS
from healtrace.speech.types import SAMPLE_RATE, Audio
from tests._speech import espeak
from tests.test_keys import png

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / "healtrace" / "api" / "static"
QUESTION = "What is a normal blood pressure?"
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Chromium is not installed at /usr/bin/chromium (apt chromium)"
)
playwright_api = pytest.importorskip("playwright.async_api")


@dataclass(frozen=True)
class Hit:
    chunk_id: str
    doc_id: str
    title: str
    section: str
    source_url: str
    source_title: str
    language: str
    text: str


class OneArticle:
    """A knowledge base that always finds the same article."""

    async def asearch(
        self, query: str, *, k: int = 5, filters: dict[str, Any] | None = None
    ) -> Sequence[Hit]:
        return [
            Hit(
                chunk_id="colds-1",
                doc_id="common-cold",
                title="Common cold",
                section="Self-care",
                source_url="https://www.who.int/colds",
                source_title="WHO: the common cold",
                language="en",
                text="Rest, drink fluids and see a doctor if a fever lasts more than three days.",
            )
        ]


def host_page(service: str, key: str, lang: str) -> str:
    return f"""<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8"><title>Hospital</title>
<style>
  * {{ color: red !important; display: block; font-size: 40px !important; }}
  button {{ background: yellow !important; }}
  head, style, script {{ display: none; }}
</style></head>
<body><h1>City Hospital</h1><p>Opening hours 8-17.</p>
<script src="{service}/static/widget.js" data-key="{key}" data-color="#0055aa"
  data-greeting="" data-theme="light"></script>
</body></html>"""


@pytest.fixture
async def servers(settings: Settings) -> AsyncIterator[tuple[LiveServer, LiveServer, str]]:
    """The HealTrace service, the hospital's site (another port: another origin) and a
    publishable key bound to the site's 127.0.0.1 origin only."""
    settings = settings.model_copy(
        update={"chain": ChainConfig(batch_size=1, batch_interval_s=0.05)}
    )
    model = DemoModel(
        tool_rounds=0, token_interval_ms=2, answer="Rest and drink plenty of fluids [1]."
    )
    # Scripted speech engines: the voice test checks the widget's side of the protocol (the
    # real engines are tested in test_voice_browser.py and test_speech_*.py).
    speech = SpeechEngines(
        settings.speech,
        settings.models_dir,
        asr=ScriptedASR(lambda audio: QUESTION),
        tts=ScriptedTTS(seconds_per_char=0.08),
    )
    app = create_app(
        settings, model=model, knowledge=OneArticle(), registry=FakeRegistry(), speech=speech
    )
    requested: list[str] = []
    app.state.requested = requested

    @app.middleware("http")
    async def record(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        requested.append(request.url.path)
        return await call_next(request)

    pages: dict[str, str] = {}
    site = FastAPI()

    @site.get("/{name}")
    async def page(name: str) -> HTMLResponse:
        return HTMLResponse(pages.get(name, "not found"), status_code=200 if name in pages else 404)

    async with LiveServer(app) as service, LiveServer(site) as hospital:
        store = app.state.services.store
        origin = f"http://127.0.0.1:{hospital.port}"
        _kid, key = await store.create_api_key(
            "hospital site", kind="publishable", allowed_origins=[origin]
        )
        pages["en"] = host_page(service.http, key, "en")
        pages["zh"] = host_page(service.http, key, "zh-CN")
        yield service, hospital, key


async def _browser(p: Any, microphone: Path | None = None) -> Any:
    """Chromium; with ``microphone``, a fake one that plays that WAV file in a loop."""
    args = ["--no-sandbox", "--disable-gpu", "--no-first-run"]
    if microphone is not None:
        args += [
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={microphone}",
            "--autoplay-policy=no-user-gesture-required",
        ]
    return await p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=args)


def _question_wav(tmp: Path) -> Path:
    """The question with silence around it: the fake microphone loops it every few seconds,
    and hands-free mode hears the silence after it as the end of the utterance."""
    speech = espeak(QUESTION, "en-us", tmp)
    pad = np.zeros(int(0.4 * SAMPLE_RATE), dtype=np.float32)
    tail = np.zeros(int(1.6 * SAMPLE_RATE), dtype=np.float32)
    out = tmp / "question.wav"
    out.write_bytes(encode(Audio(np.concatenate([pad, speech.samples, tail]), SAMPLE_RATE), "wav"))
    return out


async def _until(page: Any, done: Callable[[], bool], what: str) -> None:
    """Poll until ``done()`` (what the page sent or received), giving up after 30 s."""
    for _ in range(600):
        if done():
            return
        await page.wait_for_timeout(50)
    raise AssertionError(f"timed out waiting for {what}")


async def test_widget_chats_from_another_origin(
    servers: tuple[LiveServer, LiveServer, str], tmp_path: Path
) -> None:
    service, hospital, _key = servers
    expect = playwright_api.expect
    expect.set_options(timeout=20_000)
    async with playwright_api.async_playwright() as p:
        browser = await _browser(p)
        try:
            page = await browser.new_page(locale="en-US", viewport={"width": 1100, "height": 800})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(f"http://127.0.0.1:{hospital.port}/en")
            launcher = page.get_by_role("button", name="Open the health assistant chat")
            await launcher.click()
            dialog = page.get_by_role("dialog", name="Health assistant")
            await expect(dialog).to_be_visible()
            box = page.get_by_role("textbox", name="Your message")
            await expect(box).to_be_focused()
            await expect(page.locator("healtrace-chat .status")).to_have_text("Connected")
            await box.fill("I have a cold, what should I do?")
            await box.press("Enter")

            answer = page.locator("healtrace-chat .msg.assistant").last
            await expect(answer).to_contain_text("Rest and drink plenty of fluids")
            cite = answer.get_by_role("button", name="Source 1")
            await expect(cite).to_have_text("[1]")
            await cite.click()
            source = answer.locator("details.sources li a")
            await expect(source).to_be_visible()
            await expect(source).to_have_text("WHO: the common cold — Self-care")
            assert await source.get_attribute("href") == "https://www.who.int/colds"

            badge = answer.locator("a.evidence")
            await expect(badge).to_have_class("evidence verified")
            await expect(badge).to_have_text("verified")
            href = await badge.get_attribute("href")
            assert href and href.startswith(f"{service.http}/v1/evidence/0x")

            # The page's `* { color: red !important }` does not reach into the widget.
            color = await answer.evaluate("e => getComputedStyle(e).color")
            assert color != "rgb(255, 0, 0)"
            size = await answer.evaluate("e => getComputedStyle(e).fontSize")
            assert size == "15px"

            # A photo: uploaded to /v1/images across origins, then sent with the message.
            await page.locator("healtrace-chat input[type=file]").set_input_files(
                {"name": "rash.png", "mimeType": "image/png", "buffer": png()}
            )
            await expect(page.locator("healtrace-chat .msg.user").last).to_contain_text("rash.png")
            await expect(page.locator("healtrace-chat .msg.assistant")).to_have_count(3)
            await expect(page.locator("healtrace-chat a.evidence.verified")).to_have_count(2)

            # Red flags: the urgent-care banner with a tel: link.
            await box.fill("I have crushing chest pain and I am sweating")
            await box.press("Enter")
            banner = page.get_by_role("alert")
            await expect(banner).to_be_visible()
            call = banner.get_by_role("link")
            assert (await call.get_attribute("href") or "").startswith("tel:")
            await expect(page.locator("healtrace-chat a.evidence.verified")).to_have_count(3)

            shot = tmp_path / "widget.png"
            await page.screenshot(path=str(shot))
            artifacts = ROOT / "test-artifacts"
            artifacts.mkdir(exist_ok=True)
            shutil.copyfile(shot, artifacts / "widget.png")

            # Esc closes the panel and gives focus back to the launcher.
            await box.press("Escape")
            await expect(dialog).to_be_hidden()
            await expect(launcher).to_be_focused()
            assert errors == []
        finally:
            await browser.close()
    async with httpx.AsyncClient() as http:
        assert (await http.get(href)).status_code == 200


async def test_widget_speaks_chinese_and_refuses_a_foreign_origin(
    servers: tuple[LiveServer, LiveServer, str],
) -> None:
    service, hospital, key = servers
    expect = playwright_api.expect
    expect.set_options(timeout=20_000)
    async with playwright_api.async_playwright() as p:
        browser = await _browser(p)
        try:
            page = await browser.new_page(locale="en-US")
            await page.goto(f"http://127.0.0.1:{hospital.port}/zh")
            await page.get_by_role("button", name="打开健康助手对话").click()
            await expect(page.get_by_role("dialog", name="健康助手")).to_be_visible()
            await expect(page.get_by_role("button", name="发送")).to_be_visible()
            await expect(page.locator("healtrace-chat .status")).to_have_text("已连接")
            # This browser has no microphone for the page: pressing "hold to talk" says so.
            await page.get_by_role("button", name="按住说话").hover()
            await page.mouse.down()
            await page.mouse.up()
            await expect(page.locator("healtrace-chat .msg.error")).to_contain_text("麦克风")
            # The switch turns the UI to English.
            await page.get_by_role("combobox", name="语言").select_option("en")
            await expect(page.get_by_role("button", name="Send")).to_be_visible()

            # The same page from another origin (localhost is not 127.0.0.1): refused, and said so.
            page = await browser.new_page(locale="zh-CN")
            await page.goto(f"http://localhost:{hospital.port}/zh")
            await page.get_by_role("button", name="打开健康助手对话").click()
            error = page.locator("healtrace-chat .msg.error")
            await expect(error).to_contain_text("此密钥不能在本网站使用")
            await expect(page.get_by_role("button", name="发送")).to_be_disabled()
        finally:
            await browser.close()

    # At the HTTP level too: a REST call and a WebSocket hello from the wrong origin.
    async with httpx.AsyncClient(base_url=service.http) as http:
        wrong = {"Origin": f"http://localhost:{hospital.port}"}
        r = await http.get("/widget/config", params={"key": key}, headers=wrong)
        assert r.status_code == 403 and r.json()["error"]["code"] == "key_origin_forbidden"
        r = await http.post(
            "/v1/images",
            params={"key": key},
            files={"file": ("x.png", png(), "image/png")},
            headers=wrong,
        )
        assert r.status_code == 403 and r.json()["error"]["code"] == "key_origin_forbidden"
        frame = await http.get("/widget/frame", params={"key": key, "locale": "zh-CN"})
        assert frame.status_code == 200
        csp = frame.headers["content-security-policy"]
        assert f"frame-ancestors http://127.0.0.1:{hospital.port};" in csp
        assert 'data-mode="inline"' in frame.text and 'data-locale="zh-CN"' in frame.text
    import websockets

    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        async with websockets.connect(service.ws, origin=wrong["Origin"]):  # type: ignore[arg-type]
            pass
    assert refused.value.response.status_code == 403


async def test_widget_talks_push_to_talk_and_hands_free(
    servers: tuple[LiveServer, LiveServer, str], tmp_path: Path
) -> None:
    service, hospital, _key = servers
    site = f"http://127.0.0.1:{hospital.port}"
    wav = _question_wav(tmp_path)
    expect = playwright_api.expect
    expect.set_options(timeout=30_000)
    async with playwright_api.async_playwright() as p:
        browser = await _browser(p, microphone=wav)
        try:
            context = await browser.new_context(locale="en-US")
            await context.grant_permissions(["microphone"], origin=site)
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            sent: list[str | bytes] = []
            events: list[dict[str, Any]] = []

            def watch(ws: Any) -> None:
                ws.on("framesent", lambda f: sent.append(f))
                ws.on("framereceived", lambda f: events.append(json.loads(f)))

            page.on("websocket", watch)
            await page.goto(f"{site}/en")
            await page.get_by_role("button", name="Open the health assistant chat").click()
            await expect(page.locator("healtrace-chat .status")).to_have_text("Connected")
            talk = page.get_by_role("button", name="Hold to talk")
            hands_free = page.get_by_role("button", name="Hands-free")
            state = page.locator("healtrace-chat .voice-state")
            await expect(hands_free).to_have_attribute("aria-pressed", "false")

            def audio_frames() -> int:
                return sum(isinstance(f, bytes) for f in sent)

            def audio_turns() -> list[str]:
                return list(dict.fromkeys(e["turn_id"] for e in events if e["type"] == "audio"))

            def frames(kind: str) -> list[dict[str, Any]]:
                texts = (json.loads(f) for f in sent if isinstance(f, str))
                return [f for f in texts if f["type"] == kind]

            # Push-to-talk: hold the button through one loop of the fake microphone's file.
            await talk.hover()
            await page.mouse.down()
            await expect(state).to_have_text("Listening…")
            await _until(page, lambda: audio_frames() >= 220, "4.4 s of microphone audio")
            await page.mouse.up()
            await expect(state).to_have_attribute("data-state", "speaking")
            await expect(state).to_have_text("Speaking… (talk to interrupt)")
            user = page.locator("healtrace-chat .msg.user")
            await expect(user).to_have_count(1)
            await expect(user).to_have_text(QUESTION)
            answer = page.locator("healtrace-chat .msg.assistant").last
            await expect(answer).to_contain_text("Rest and drink plenty of fluids")
            # The answer was spoken: played to the end, and the service told so.
            await expect(state).to_have_attribute("data-state", "idle")
            await _until(page, lambda: len(frames("playback")) == 2, "playback ended")
            kinds = [e["type"] for e in events]
            for kind in ("voice_ready", "speech_started", "transcript", "audio", "audio_done"):
                assert kind in kinds, kind
            first = audio_turns()[0]
            playback = [(f["state"], f["turn_id"]) for f in frames("playback")]
            assert playback == [("started", first), ("ended", first)]
            assert [f["mode"] for f in frames("audio_start")] == ["push_to_talk"]
            assert len(frames("audio_end")) == 1
            assert all(f[:1] == b"\x00" for f in sent if isinstance(f, bytes))
            # The worklet was asked for at the service, not at the hospital's site (which has
            # none). The service sends this site no CORS headers, so the widget's own copy ran.
            assert "/static/voice-worklet.js" in service.server.config.app.state.requested

            # Hands-free: the service hears the end of the question by itself and answers;
            # the next loop of the question may talk over that answer (barge-in) or follow it.
            await hands_free.click()
            await expect(hands_free).to_have_attribute("aria-pressed", "true")
            await expect(state).to_have_text("Listening…")
            await expect(user.nth(1)).to_have_text(QUESTION)
            # The greeting, the push-to-talk answer, then this one.
            answers = page.locator("healtrace-chat .msg.assistant")
            await expect(answers.nth(2)).to_contain_text("Rest and drink plenty of fluids")
            await _until(page, lambda: len(audio_turns()) >= 2, "the hands-free answer's audio")
            await hands_free.click()
            await expect(hands_free).to_have_attribute("aria-pressed", "false")
            await expect(state).to_have_attribute("data-state", "idle")
            await _until(page, lambda: bool(frames("audio_stop")), "audio_stop")
            modes = [f["mode"] for f in frames("audio_start")]
            assert modes == ["push_to_talk", "hands_free"]

            # The voice buttons follow the language switch.
            await page.get_by_role("combobox", name="Language").select_option("zh-CN")
            await expect(page.get_by_role("button", name="按住说话")).to_be_visible()
            await expect(page.get_by_role("button", name="免提对话")).to_be_visible()
            assert errors == []
        finally:
            await browser.close()


def test_widget_carries_the_capture_worklet() -> None:
    # Its blob: fallback for sites the service sends no CORS headers to.
    widget = (STATIC / "widget.js").read_text(encoding="utf-8")
    assert (STATIC / "voice-worklet.js").read_text(encoding="utf-8") in widget


def test_widget_script_never_parses_html() -> None:
    source = (ROOT / "healtrace" / "api" / "static" / "widget.js").read_text(encoding="utf-8")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in source
