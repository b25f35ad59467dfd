"""HTTP and WebSocket API."""

from healtrace.api.app import create_app

__all__ = ["create_app"]
