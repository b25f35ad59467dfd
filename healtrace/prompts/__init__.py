"""System and tool prompts, stored as files in zh-CN and en.

``PROMPT_VERSION`` is a short hash of every prompt file, recorded with each answer so an
evidence record says exactly which prompts produced it.
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib.resources import files

LOCALES = ("en", "zh-CN")


def prompt_locale(locale: str) -> str:
    return "zh-CN" if locale.lower().startswith("zh") else "en"


@cache
def load_prompt(name: str, locale: str) -> str:
    """The prompt ``name`` in the locale closest to ``locale``."""
    path = files(__package__).joinpath(f"{name}.{prompt_locale(locale)}.md")
    return path.read_text(encoding="utf-8").strip()


def _version() -> str:
    digest = hashlib.sha256()
    for entry in sorted(files(__package__).iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".md"):
            digest.update(entry.name.encode())
            digest.update(entry.read_bytes())
    return digest.hexdigest()[:12]


PROMPT_VERSION = _version()

__all__ = ["LOCALES", "PROMPT_VERSION", "load_prompt", "prompt_locale"]
