"""Logging set-up: one handler, and nothing a patient typed or a secret in what it writes.

The code logs ids, codes and counts, never message text. This is the second line: a
filter on the handler redacts what looks like personal data or a credential in any record
(also third-party ones), and drops the payloads that protocol libraries print at debug
level (WebSocket frames, HTTP bodies).
"""

from __future__ import annotations

import logging
import re
import sys
from typing import IO

from pydantic import BaseModel, SecretStr

from healtrace.config import Settings

#: Loggers of libraries that print request or frame payloads at debug level.
_PAYLOAD_LOGGERS = ("httpcore", "httpcore2", "httpx", "httpx2", "hpack", "openai._base_client")

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Credentials first, so their digits are not half-matched as phone numbers.
    (re.compile(r"\b(?:ht|sk|pk)[_-][A-Za-z0-9_-]{12,}"), "[key]"),
    (re.compile(r"(?i)\b(bearer)(\s+)\S+"), r"\1\2[secret]"),
    (re.compile(r"(?i)\b(token|secret|api[_-]?key|password)(\s*[=:]\s*)\S+"), r"\1\2[secret]"),
    (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), "[email]"),
    # PRC resident identity numbers (18 characters) and mobile numbers.
    (re.compile(r"(?<!\d)\d{17}[\dXx](?!\d)"), "[id-number]"),
    (re.compile(r"(?<!\d)(?:\+?86[- ]?)?1[3-9]\d{9}(?!\d)"), "[phone]"),
    # Any other long run of digits (phone numbers elsewhere, card and record numbers).
    (re.compile(r"(?<![\w.:/-])\+?\d(?: ?\d){10,}(?![\w.:/-])"), "[number]"),
)


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with personal data and credentials replaced by placeholders."""
    for secret in secrets:
        text = text.replace(secret, "[secret]")
    for pattern, placeholder in _PATTERNS:
        text = pattern.sub(placeholder, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites each record's message through :func:`redact`; frame dumps lose their body."""

    def __init__(self, secrets: tuple[str, ...] = ()) -> None:
        super().__init__()
        #: Exact values to blank out (configured credentials), longest first.
        self.secrets = tuple(sorted({s for s in secrets if len(s) >= 8}, key=len, reverse=True))

    def filter(self, record: logging.LogRecord) -> bool:
        # websockets (through uvicorn) logs every frame as "> %s" / "< %s" at debug level.
        if record.levelno <= logging.DEBUG and record.msg in ("> %s", "< %s") and record.args:
            frame = str(record.args[0] if isinstance(record.args, tuple) else record.args)
            record.msg = f"{record.msg[0]} %s [payload not logged]"
            record.args = (frame.split(" ", 1)[0],)
            return True
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        cleaned = redact(message, self.secrets)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def settings_secrets(settings: Settings) -> tuple[str, ...]:
    """Every credential in ``settings`` (SecretStr values, at any depth)."""
    found: list[str] = []

    def walk(value: object) -> None:
        if isinstance(value, SecretStr):
            found.append(value.get_secret_value())
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name))
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)

    walk(settings)
    return tuple(found)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record is emitted (so a CLI runner that
    swaps and closes stderr leaves no handler pointing at a closed stream)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, _value: IO[str]) -> None:
        pass


def configure_logging(
    level: str, *, stream: IO[str] | None = None, settings: Settings | None = None
) -> None:
    """Log at ``level`` to ``stream`` (stderr) through one redacting handler that also
    blanks out every credential of ``settings``. Calling it again replaces that handler;
    handlers others installed (a test runner's) stay."""
    handler: logging.Handler = logging.StreamHandler(stream) if stream else _StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(settings_secrets(settings) if settings else ()))
    handler._healtrace = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_healtrace", False):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in _PAYLOAD_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.INFO, root.level))
