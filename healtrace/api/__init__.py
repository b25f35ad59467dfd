"""HTTP and WebSocket API.

``create_app`` loads lazily, so modules under ``healtrace.api`` (error codes, the MCP
server's use of them) do not pull in the whole app.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from healtrace._lazy import lazy_getattr as _lazy_getattr

if TYPE_CHECKING:
    from healtrace.api.app import create_app

__all__ = ["create_app"]

__getattr__ = _lazy_getattr(__name__, {"create_app": "app"}, globals())
