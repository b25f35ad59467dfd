"""The redacting log handler: personal data and credentials never reach a log line."""

from __future__ import annotations

import io
import logging

import pytest
from pydantic import SecretStr

from healtrace.config import OpenAIBackendConfig, Settings
from healtrace.logs import configure_logging, redact, settings_secrets


@pytest.mark.parametrize(
    ("text", "gone", "kept"),
    [
        ("call 13912345678 now", "13912345678", "call [phone] now"),
        ("tel +86 13912345678", "13912345678", "[phone]"),
        ("身份证110101199003071234号", "110101199003071234", "[id-number]"),
        ("mail wang.x@example.com.cn today", "wang.x@", "[email]"),
        ("key ht_sk_AbCdEfGh12345678_xyz used", "AbCdEfGh", "[key]"),
        ("Authorization: Bearer abc.def.ghi", "abc.def.ghi", "Bearer [secret]"),
        ("password=hunter2hunter2", "hunter2", "password=[secret]"),
        ("card 4111 1111 1111 1111", "4111 1111", "[number]"),
    ],
)
def test_redact(text: str, gone: str, kept: str) -> None:
    out = redact(text)
    assert gone not in out and kept in out


@pytest.mark.parametrize(
    "text",
    [
        "answer cut off at 2026-12-06 21:45:58",
        "anchored root 0x" + "ab" * 32 + " in block 1234567",
        "listening on 127.0.0.1:8000, 42 sessions, 1024 tokens, first token after 35 ms",
        "session 6b55a541fa9a49728546b8bd12345678 resumed",
    ],
)
def test_redact_leaves_operational_detail_alone(text: str) -> None:
    assert redact(text) == text


def test_the_handler_redacts_records_frames_and_configured_secrets() -> None:
    settings = Settings(
        llm_backends=[OpenAIBackendConfig(api_key=SecretStr("vllm-cluster-key-123"))]
    )
    assert "vllm-cluster-key-123" in settings_secrets(settings)
    stream = io.StringIO()
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    # A logger of its own: earlier tests' servers set (or disable) uvicorn's loggers. The
    # filter keys on the frame-dump format, whichever logger writes it.
    frames = logging.getLogger("healtrace.test.frames")
    frames_level = frames.level
    frames.setLevel(logging.DEBUG)
    try:
        configure_logging("debug", stream=stream, settings=settings)
        log = logging.getLogger("healtrace.test")
        log.warning("backend rejected key %s for patient %s", "vllm-cluster-key-123", "13912345678")
        # What websockets logs (through uvicorn) for every frame at debug level.
        frames.debug("> %s", 'TEXT \'{"text":"我叫王小明"}\' [30 bytes]')
        logging.getLogger("httpcore").debug("send_request_body %s", "王小明")
    finally:
        frames.setLevel(frames_level)
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in before[0]:
            root.addHandler(handler)
        root.setLevel(before[1])
    out = stream.getvalue()
    assert "vllm-cluster-key-123" not in out and "13912345678" not in out
    assert "backend rejected key [secret] for patient [phone]" in out
    assert "王小明" not in out and "> TEXT [payload not logged]" in out


def test_configuring_twice_keeps_one_handler_and_others_handlers() -> None:
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    other = logging.NullHandler()
    root.addHandler(other)
    try:
        configure_logging("info")
        configure_logging("warning")
        ours = [h for h in root.handlers if getattr(h, "_healtrace", False)]
        assert len(ours) == 1 and other in root.handlers
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in before[0]:
            root.addHandler(handler)
        root.setLevel(before[1])
