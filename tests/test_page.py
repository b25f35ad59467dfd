"""The chat page at / is valid and speaks the documented protocol."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[1] / "healtrace" / "api" / "static" / "index.html"


def _script() -> str:
    match = re.search(r"<script>(.*)</script>", PAGE.read_text(), re.DOTALL)
    assert match is not None
    return match.group(1)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_page_script_parses(tmp_path: Path) -> None:
    script = tmp_path / "page.js"
    script.write_text(_script())
    result = subprocess.run(["node", "--check", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_page_uses_the_protocol_and_never_injects_html() -> None:
    js = _script()
    for frame in ('type: "hello"', 'type: "user_message"', 'type: "cancel"'):
        assert frame in js
    for event in ("hello_ok", "token", "tool_call", "tool_result", "answer_done", "error"):
        assert f'case "{event}"' in js
    assert "resume_from_seq" in js
    # Model output is untrusted: it goes into the page as text only.
    assert "innerHTML" not in js and "insertAdjacentHTML" not in js
    html = PAGE.read_text()
    assert 'aria-live="polite"' in html and "zh-CN" in html
