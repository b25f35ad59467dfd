"""A local stand-in for WeChat's message API: tokens, customer-service sends, media, menus."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


@dataclass
class FakeWechat:
    """Records what it got; ``refuse_next_send`` answers the next send with ``errcode``."""

    media: dict[str, bytes] = field(default_factory=dict)
    tokens_issued: list[str] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    media_requests: list[str] = field(default_factory=list)
    #: Each menu created: its JSON body, plus the request's ``agentid`` (WeCom) if any.
    menus: list[dict[str, Any]] = field(default_factory=list)
    refuse_next_send: int = 0
    #: Answer this many sends with WeChat's "system busy" (-1), as its API does under load.
    busy_sends: int = 0

    def _valid(self, request: Request) -> bool:
        return (
            bool(self.tokens_issued)
            and request.query_params.get("access_token") == (self.tokens_issued[-1])
        )

    async def token(self, request: Request) -> Response:
        self.token_requests.append(dict(request.query_params))
        token = f"token-{len(self.tokens_issued) + 1}"
        self.tokens_issued.append(token)
        return JSONResponse({"access_token": token, "expires_in": 7200})

    async def send(self, request: Request) -> Response:
        if self.busy_sends:
            self.busy_sends -= 1
            return JSONResponse({"errcode": -1, "errmsg": "system busy"})
        if self.refuse_next_send:
            code, self.refuse_next_send = self.refuse_next_send, 0
            return JSONResponse({"errcode": code, "errmsg": "invalid credential"})
        if not self._valid(request):
            return JSONResponse({"errcode": 40001, "errmsg": "invalid credential"})
        body = await request.body()
        self.sent.append({"raw": body, **json.loads(body)})
        return JSONResponse({"errcode": 0, "errmsg": "ok"})

    async def get_media(self, request: Request) -> Response:
        if not self._valid(request):
            return JSONResponse({"errcode": 40001, "errmsg": "invalid credential"})
        media_id = request.query_params.get("media_id", "")
        self.media_requests.append(media_id)
        if media_id not in self.media:
            return JSONResponse({"errcode": 40007, "errmsg": "invalid media_id"})
        return Response(self.media[media_id], media_type="audio/amr")

    async def create_menu(self, request: Request) -> Response:
        if not self._valid(request):
            return JSONResponse({"errcode": 40001, "errmsg": "invalid credential"})
        body = json.loads(await request.body())
        buttons = body.get("button") if isinstance(body, dict) else None
        # WeChat's own limits: one to three top-level buttons, names of at most 16 bytes.
        if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
            return JSONResponse({"errcode": 40016, "errmsg": "invalid button size"})
        if any(len(str(b.get("name", "")).encode()) > 16 for b in buttons):
            return JSONResponse({"errcode": 40018, "errmsg": "invalid button name size"})
        agent = request.query_params.get("agentid")
        self.menus.append({**body, **({"agentid": agent} if agent else {})})
        return JSONResponse({"errcode": 0, "errmsg": "ok"})

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/cgi-bin/token", self.token),
                Route("/cgi-bin/gettoken", self.token),
                Route("/cgi-bin/message/custom/send", self.send, methods=["POST"]),
                Route("/cgi-bin/message/send", self.send, methods=["POST"]),
                Route("/cgi-bin/media/get", self.get_media),
                Route("/cgi-bin/menu/create", self.create_menu, methods=["POST"]),
            ]
        )
