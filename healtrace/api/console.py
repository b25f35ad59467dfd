"""The clinician console: the page at ``/console``, its REST API and its live WebSocket.

Documented in docs/console.md. Clinicians sign in with a user name and password; the
login lives in an ``HttpOnly``, ``SameSite=Strict`` cookie, and every request is scoped
to the clinician's tenant.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Cookie, Depends, Request, Response, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from healtrace.agent.memory import MessageRecord
from healtrace.agent.sessions import Subscription
from healtrace.api._http import error_responses, origin_allowed, pick_locale, services_of
from healtrace.api.protocol import CLOSE_AUTH, CLOSE_ORIGIN
from healtrace.api.services import Services
from healtrace.errors import AuthError, NotFoundError, localized
from healtrace.handoff import ClinicianInfo
from healtrace.storage.models import iso_utc

log = logging.getLogger(__name__)
router = APIRouter(tags=["console"])
COOKIE = "ht_console"


class LoginIn(BaseModel):
    username: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=200)
    tenant: str = Field(default="default", min_length=1, max_length=64)


class ReplyIn(BaseModel):
    text: str = Field(min_length=1)
    draft_id: str | None = Field(default=None, max_length=64)


async def current_clinician(
    request: Request, ht_console: Annotated[str | None, Cookie()] = None
) -> ClinicianInfo:
    services = services_of(request)
    # The cookie is SameSite=Strict already; a foreign Origin is refused as well.
    if not origin_allowed(request.headers.get("origin"), services.settings.resolved_origins):
        raise AuthError("foreign origin", code="console_login_required")
    return await services.clinicians.authenticate(ht_console)


Me = Annotated[ClinicianInfo, Depends(current_clinician)]


#: What console routes answer besides success (sign-in, handoff state, validation).
_ERRORS = error_responses(400, 401, 403, 404, 409, 422)


@router.get("/console", include_in_schema=False)
async def console_page() -> HTMLResponse:
    from healtrace.api.app import STATIC

    return HTMLResponse(STATIC.joinpath("console.html").read_text(encoding="utf-8"))


@router.post("/v1/console/login", responses=_ERRORS)
async def login(request: Request, response: Response, body: LoginIn) -> dict[str, Any]:
    services = services_of(request)
    clinician, token = await services.clinicians.login(
        body.username, body.password, tenant_id=body.tenant
    )
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(services.settings.safety.console_session_hours * 3600),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return {"clinician": clinician.to_dict()}


@router.post("/v1/console/logout", responses=_ERRORS)
async def logout(
    request: Request, response: Response, ht_console: Annotated[str | None, Cookie()] = None
) -> dict[str, bool]:
    if ht_console:
        await services_of(request).clinicians.logout(ht_console)
    response.delete_cookie(COOKIE, path="/")
    return {"ok": True}


@router.get("/v1/console/me", responses=_ERRORS)
async def me(clinician: Me) -> dict[str, Any]:
    return {"clinician": clinician.to_dict()}


@router.get("/v1/console/queue", responses=_ERRORS)
async def queue(request: Request, clinician: Me) -> dict[str, Any]:
    handoffs = await services_of(request).handoffs.queue(clinician.tenant_id)
    return {"handoffs": [h.to_dict() for h in handoffs]}


async def _session_for(services: Services, session_id: str, clinician: ClinicianInfo) -> Any:
    session = await services.store.get_session(session_id)
    if session.tenant_id != clinician.tenant_id:
        # Another tenant's session does not exist as far as this clinician can tell.
        raise NotFoundError("no such session", code="session_not_found")
    return session


def _message_out(m: MessageRecord) -> dict[str, Any]:
    return {
        "id": m.id,
        "role": m.role,
        "content": m.content,
        "author": m.author,
        "status": m.status,
        "created_at": iso_utc(m.created_at),
        "safety": m.safety,
        "citations": list(m.citations),
    }


@router.get("/v1/console/sessions/{session_id}", responses=_ERRORS)
async def session_detail(request: Request, clinician: Me, session_id: str) -> dict[str, Any]:
    services = services_of(request)
    session = await _session_for(services, session_id, clinician)
    handoff = await services.handoffs.current(session_id)
    messages = [
        _message_out(m) for m in await services.store.messages(session_id) if not m.is_tool_traffic
    ]
    return {
        "session": {
            "id": session.id,
            "title": session.title,
            "locale": session.locale,
            "created_at": iso_utc(session.created_at),
            "updated_at": iso_utc(session.updated_at),
        },
        "handoff": handoff.to_dict() if handoff else None,
        "messages": messages,
        # Records the patient has granted this tenant access to (the records part fills
        # this in; without grants there is nothing to show).
        "consented_records": [],
    }


@router.post("/v1/console/handoffs/{handoff_id}/take", responses=_ERRORS)
async def take(request: Request, clinician: Me, handoff_id: str) -> dict[str, Any]:
    info = await services_of(request).handoffs.take(handoff_id, clinician)
    return {"handoff": info.to_dict()}


@router.post("/v1/console/handoffs/{handoff_id}/handback", responses=_ERRORS)
async def handback(request: Request, clinician: Me, handoff_id: str) -> dict[str, Any]:
    info = await services_of(request).handoffs.handback(handoff_id, clinician)
    return {"handoff": info.to_dict()}


@router.post("/v1/console/sessions/{session_id}/messages", responses=_ERRORS)
async def reply(request: Request, clinician: Me, session_id: str, body: ReplyIn) -> dict[str, Any]:
    services = services_of(request)
    await _session_for(services, session_id, clinician)
    message = await services.handoffs.send(
        session_id,
        clinician,
        body.text,
        draft_id=body.draft_id,
        max_chars=services.settings.max_message_chars,
    )
    return {"message": _message_out(message)}


@router.post("/v1/console/sessions/{session_id}/draft", responses=_ERRORS)
async def draft(request: Request, clinician: Me, session_id: str) -> dict[str, str]:
    services = services_of(request)
    await _session_for(services, session_id, clinician)
    draft_id, text = await services.handoffs.draft(session_id, clinician)
    return {"draft_id": draft_id, "text": text}


@router.get("/v1/console/audit", responses=_ERRORS)
async def audit(request: Request, clinician: Me, session_id: str | None = None) -> dict[str, Any]:
    services = services_of(request)
    if session_id is not None:
        await _session_for(services, session_id, clinician)
    entries = await services.audit.entries(tenant_id=clinician.tenant_id, session_id=session_id)
    check = await services.audit.verify()
    return {"entries": [e.to_dict() for e in entries], "chain_ok": check.ok}


# --- live updates -------------------------------------------------------------------------


class _ConsoleSocket:
    def __init__(self, ws: WebSocket, services: Services, clinician: ClinicianInfo) -> None:
        self.ws = ws
        self.services = services
        self.clinician = clinician
        self._send_lock = asyncio.Lock()
        self._watch: asyncio.Task[None] | None = None
        self.locale = pick_locale(
            ws.headers.get("accept-language"), services.settings.default_locale
        )

    async def send(self, payload: str) -> None:
        async with self._send_lock:
            await self.ws.send_text(payload)

    async def error(self, code: str, **params: Any) -> None:
        message = localized(code, self.locale, **params)
        await self.send(json.dumps({"type": "error", "code": code, "message": message}))

    async def pump_queue(self, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
        while (item := await queue.get()) is not None:
            await self.send(json.dumps(item, ensure_ascii=False))

    async def follow(self, stream: Subscription) -> None:
        try:
            async for event in stream:
                if event.type == "reasoning":
                    continue
                await self.send(event.to_json())
        finally:
            await stream.aclose()

    async def watch(self, session_id: str) -> None:
        try:
            await _session_for(self.services, session_id, self.clinician)
        except NotFoundError:
            await self.error("session_not_found")
            return
        await self.unwatch()
        stream = await self.services.hub.subscribe(session_id)
        self._watch = asyncio.get_running_loop().create_task(self.follow(stream))

    async def unwatch(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
            self._watch = None

    async def serve(self) -> None:
        while True:
            raw = await self.ws.receive_text()
            if len(raw) > 4096:
                await self.error("frame_too_large", size=len(raw), limit=4096)
                continue
            try:
                frame = json.loads(raw)
            except json.JSONDecodeError:
                await self.error("invalid_json")
                continue
            kind = frame.get("type") if isinstance(frame, dict) else None
            if kind == "watch" and isinstance(frame.get("session_id"), str):
                await self.watch(frame["session_id"][:64])
            elif kind == "unwatch":
                await self.unwatch()
            elif kind == "ping":
                await self.send(json.dumps({"type": "pong"}))
            else:
                await self.error("unknown_event_type", event_type=str(kind)[:40])


@router.websocket("/v1/console/ws")
async def console_socket(ws: WebSocket) -> None:
    services: Services = ws.app.state.services
    origin = ws.headers.get("origin")
    if origin is not None and not origin_allowed(origin, services.settings.resolved_origins):
        await ws.close(CLOSE_ORIGIN)
        return
    try:
        clinician = await services.clinicians.authenticate(ws.cookies.get(COOKIE))
    except AuthError:
        await ws.close(CLOSE_AUTH)
        return
    await ws.accept()
    conn = _ConsoleSocket(ws, services, clinician)
    queue = services.handoffs.feed.subscribe(clinician.tenant_id)
    pump = asyncio.get_running_loop().create_task(conn.pump_queue(queue))
    try:
        await conn.serve()
    except WebSocketDisconnect:
        pass
    finally:
        services.handoffs.feed.unsubscribe(clinician.tenant_id, queue)
        pump.cancel()
        await conn.unwatch()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pump
