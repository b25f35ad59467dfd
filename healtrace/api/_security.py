"""Security headers on every HTTP response (plain ASGI: no buffering, streams untouched).

API answers may carry health data: never cached, never sniffed. The chat page and the
console get a content security policy that lets them reach only this service (their
scripts and styles are inline, so those two directives allow inline; nothing else does).
The widget's script is fetched by hospitals' pages from other origins, so static files
are marked cross-origin readable.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_COMMON: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"permissions-policy", b"camera=(self), microphone=(self), geolocation=(), payment=()"),
)
_PAGE_CSP = (
    b"default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    b"img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; "
    b"worker-src 'self' blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    b"form-action 'self'"
)
_API_CSP = b"default-src 'none'; frame-ancestors 'none'"


def _extra(path: str, https: bool) -> list[tuple[bytes, bytes]]:
    out = list(_COMMON)
    if path.startswith("/static/"):
        out.append((b"cross-origin-resource-policy", b"cross-origin"))
    elif path in ("/", "/console"):
        out.append((b"content-security-policy", _PAGE_CSP))
        out.append((b"cache-control", b"no-store"))
    else:
        out.append((b"content-security-policy", _API_CSP))
        out.append((b"cache-control", b"no-store"))
    if https:
        out.append((b"strict-transport-security", b"max-age=31536000; includeSubDomains"))
    return out


class SecurityHeaders:
    """Adds the headers above unless the route set its own value."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = _extra(scope.get("path", ""), scope.get("scheme") == "https")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend((k, v) for k, v in extra if k not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
