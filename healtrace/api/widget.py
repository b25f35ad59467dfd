"""The embeddable chat widget's server side: the iframe page and the widget's key check.

The widget itself is ``static/widget.js`` (see docs/widget.md). A site pastes its
``<script>`` tag, or frames ``/widget/frame?key=…``; either way the page talks to the chat
WebSocket with a publishable key, which the service accepts only from that key's origins.
"""

from __future__ import annotations

import html
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse

from healtrace.api._http import error_response, key_origin_ok, request_locale, services_of

router = APIRouter(tags=["widget"], include_in_schema=False)

#: ``data-*`` attributes of the widget a frame URL may set (``?locale=zh-CN&theme=dark``).
FRAME_OPTIONS = ("locale", "color", "greeting", "avatar", "theme")

_FRAME = """<!doctype html>
<html lang="{lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>HealTrace</title>
<style>html, body {{ margin: 0; height: 100%; }}</style>
</head>
<body>
<script src="/static/widget.js" data-mode="inline"{attrs}></script>
</body>
</html>
"""


@router.get("/widget/frame", response_class=HTMLResponse)
async def widget_frame(
    request: Request, key: Annotated[str, Query(max_length=200)] = ""
) -> HTMLResponse:
    """A page holding only the chat, for ``<iframe src="…/widget/frame?key=…">``. Browsers
    let only the key's own origins frame it (``Content-Security-Policy: frame-ancestors``)."""
    found = await services_of(request).store.lookup_api_key(key) if key else None
    ancestors = (
        " ".join(found.allowed_origins)
        if found is not None and found.kind == "publishable"
        else "'none'"
    )
    options = {"key": key} | {
        name: request.query_params[name] for name in FRAME_OPTIONS if name in request.query_params
    }
    # Everything from the URL goes into quoted attributes, escaped.
    attrs = "".join(
        f' data-{name}="{html.escape(value[:300], quote=True)}"' for name, value in options.items()
    )
    lang = "zh-CN" if options.get("locale", "").lower().startswith("zh") else "en"
    return HTMLResponse(
        _FRAME.format(lang=lang, attrs=attrs),
        headers={
            "Content-Security-Policy": (
                f"frame-ancestors {ancestors}; default-src 'self'; "
                "img-src 'self' https: data: blob:; style-src 'self' 'unsafe-inline'; "
                "connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'"
            ),
            "Cache-Control": "no-store",
        },
    )


@router.get("/widget/config")
async def widget_config(
    request: Request, key: Annotated[str, Query(max_length=200)] = ""
) -> JSONResponse:
    """Whether the calling page may use ``key``: the widget asks before it connects, since a
    refused WebSocket handshake tells a page nothing. Any page may ask (the answer carries
    ``Access-Control-Allow-Origin: *``); it reveals only what the key's own page may know."""
    services = services_of(request)
    locale = request_locale(request)
    cors = {"Access-Control-Allow-Origin": "*", "Cache-Control": "no-store"}
    found = await services.store.lookup_api_key(key) if key else None
    if found is None:
        response = error_response("auth_invalid" if key else "auth_required", locale)
    elif found.kind != "publishable":
        # A secret key pasted into a page is a mistake worth naming.
        response = error_response("key_scope_forbidden", locale)
    elif not key_origin_ok(found, request.headers.get("origin"), request.headers.get("host"), []):
        response = error_response("key_origin_forbidden", locale)
    else:
        body: dict[str, Any] = {"ok": True, "protocol": 1, "ws": "/v1/ws/chat"}
        response = JSONResponse(body)
    response.headers.update(cors)
    return response
