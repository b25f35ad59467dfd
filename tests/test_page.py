"""The chat page at / and the console at /console are valid and speak the documented protocols."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

STATIC = Path(__file__).resolve().parents[1] / "healtrace" / "api" / "static"
PAGE = STATIC / "index.html"
CONSOLE = STATIC / "console.html"


def _script(page: Path = PAGE) -> str:
    match = re.search(r"<script>(.*?)</script>", page.read_text(), re.DOTALL)
    assert match is not None
    return match.group(1)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
@pytest.mark.parametrize("page", [PAGE, CONSOLE], ids=["chat", "console"])
def test_page_script_parses(tmp_path: Path, page: Path) -> None:
    script = tmp_path / "page.js"
    script.write_text(_script(page))
    result = subprocess.run(["node", "--check", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
@pytest.mark.parametrize("name", ["voice.js", "voice-worklet.js", "consent.js"])
def test_voice_scripts_parse(name: str) -> None:
    result = subprocess.run(["node", "--check", str(STATIC / name)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    text = (STATIC / name).read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in text, sink


def test_chat_page_has_voice_buttons_and_loads_voice_script() -> None:
    html = PAGE.read_text()
    assert 'id="pttBtn"' in html and 'id="handsFreeBtn"' in html
    assert '<script src="/static/voice.js"></script>' in html
    voice = (STATIC / "voice.js").read_text()
    # It speaks the documented voice protocol.
    for frame in ("audio_start", "audio_end", "audio_stop", "playback"):
        assert f'"{frame}"' in voice, frame
    for event in ("speech_started", "transcript", "audio", "audio_done", "barge_in"):
        assert f'case "{event}"' in voice, event


@pytest.mark.parametrize("page", [PAGE, CONSOLE], ids=["chat", "console"])
def test_pages_never_inject_html(page: Path) -> None:
    # Model, patient and clinician text is untrusted: it goes into the page as text only.
    html = page.read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in html, sink
    # Self-contained: the console runs offline, with no CDN.
    assert not re.search(r"""(src|href)=["']https?://""", html)


def test_page_uses_the_protocol_and_never_injects_html() -> None:
    js = _script()
    for frame in ('type: "hello"', 'type: "user_message"', 'type: "cancel"'):
        assert frame in js
    for event in ("hello_ok", "token", "tool_call", "tool_result", "answer_done", "error"):
        assert f'case "{event}"' in js
    assert "resume_from_seq" in js
    assert "innerHTML" not in js and "insertAdjacentHTML" not in js
    html = PAGE.read_text()
    assert 'aria-live="polite"' in html and "zh-CN" in html


def test_page_handles_triage_and_handoff() -> None:
    js = _script()
    for event in ("triage", "handoff", "clinician_message", "turn_held"):
        assert f'case "{event}"' in js
    for frame in ('type: "request_handoff"', 'type: "cancel_handoff"'):
        assert frame in js
    html = PAGE.read_text()
    for element_id in ("handoffBtn", "cancelHandoffBtn", "triageBanner", "triageCall"):
        assert f'id="{element_id}"' in html
    # The emergency banner is announced and the number is a link to call.
    assert re.search(r'id="triageBanner"[^>]*role="alert"', html)
    assert '"tel:"' in js
    assert '"msg clinician"' in js and '"handoff"' in js
    # Every string the page shows exists in both languages.
    tables = re.search(r'"en": \{(.*?)\},\s*"zh-CN": \{(.*?)\},\s*\};', js, re.DOTALL)
    assert tables is not None
    en, zh = tables.groups()
    keys = re.compile(r"(\w+):")
    assert set(keys.findall(en)) == set(keys.findall(zh))
    for key in ("talk", "cancelHandoff", "joined", "back", "emergency", "urgent", "call"):
        assert f"{key}:" in en


def test_console_uses_the_documented_endpoints() -> None:
    js = _script(CONSOLE)
    for path in (
        '"/v1/console/login"',
        '"/v1/console/logout"',
        '"/v1/console/me"',
        '"/v1/console/queue"',
        "`/v1/console/sessions/${",
        "/take`",
        "/handback`",
        "/draft`",
        "/messages`",
        "/v1/console/ws",
    ):
        assert path in js, path
    assert 'credentials: "same-origin"' in js
    assert "draft_id" in js
    for frame in ('type: "watch"', 'type: "ping"'):
        assert frame in js
    for event in (
        "turn_started",
        "triage",
        "token",
        "answer_done",
        "clinician_message",
        "handoff",
        "turn_held",
    ):
        assert f'case "{event}"' in js
    assert '"queue_changed"' in js and "consented_records" in js
    html = CONSOLE.read_text()
    for element_id in (
        "loginForm",
        "username",
        "password",
        "loginBtn",
        "queue",
        "conversation",
        "takeBtn",
        "reply",
        "sendReply",
        "draftBtn",
        "handbackBtn",
        "triageReasons",
        "records",
    ):
        assert f'id="{element_id}"' in html, element_id
    assert re.search(r'id="conversation"[^>]*aria-live="polite"', html)
    assert '"queue-item"' in js and "dataset.sessionId" in js and "dataset.handoffId" in js
    # Both languages have the same strings.
    tables = re.search(r'"en": \{(.*?)\n  \},\n  "zh-CN": \{(.*?)\n  \},\n\};', js, re.DOTALL)
    assert tables is not None
    en, zh = tables.groups()
    keys = re.compile(r"^\s*(\w+):|, (\w+):", re.MULTILINE)

    def names(block: str) -> set[str]:
        return {a or b for a, b in keys.findall(block)}

    assert names(en) == names(zh) and len(names(en)) > 30
