"""The README and the protocol document stay true to the code."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel

from healtrace.agent.events import EVENT_ADAPTER
from healtrace.api.protocol import (
    CLIENT_TYPES,
    AudioChunk,
    AudioDone,
    BargeIn,
    SpeechStarted,
    TranscriptEvent,
    VoiceReady,
)
from healtrace.config import Settings
from healtrace.errors import MESSAGES

ROOT = Path(__file__).resolve().parents[1]


def test_readme_opens_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", readme, re.DOTALL)
    assert block is not None
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    assert commands == ["make serve", "make test"]


def test_readme_lists_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"^\| `HEALTRACE_([A-Z_]+)` \|", readme, re.MULTILINE))
    expected = set()
    for name, field in Settings.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            # A nested group: HEALTRACE_<GROUP>__<FIELD> for each of its fields.
            expected |= {f"{name.upper()}__{sub.upper()}" for sub in kind.model_fields}
        else:
            expected.add(name.upper())
    assert documented == expected


def test_protocol_doc_covers_every_frame_event_and_error() -> None:
    doc = (ROOT / "docs" / "protocol.md").read_text()
    for kind in CLIENT_TYPES:
        assert f"`{kind}`" in doc, kind
    schema = EVENT_ADAPTER.json_schema()
    event_types = {
        s["properties"]["type"]["const"]
        for s in schema["$defs"].values()
        if "type" in s.get("properties", {})
    }
    for kind in event_types:
        assert f"`{kind}`" in doc, kind
    for code in MESSAGES:
        assert f"`{code}`" in doc, code
    voice = (VoiceReady, SpeechStarted, TranscriptEvent, AudioChunk, AudioDone, BargeIn)
    for model in voice:
        kind = model.model_fields["type"].default
        assert f"`{kind}`" in doc, kind
