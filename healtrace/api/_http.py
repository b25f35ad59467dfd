"""HTTP helpers shared by the REST and WebSocket endpoints: locale, keys, origins, errors."""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import Depends, Header, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from healtrace.agent.memory import KeyInfo
from healtrace.api.ratelimit import RateLimited, limiter_of
from healtrace.api.services import Services
from healtrace.errors import AuthError, HealTraceError, localized


def pick_locale(accept_language: str | None, default: str = "en") -> str:
    """``zh-CN`` if the client prefers any Chinese, ``en`` if it prefers English, else default."""
    if not accept_language:
        return default
    best: tuple[float, str] | None = None
    for part in accept_language.split(","):
        lang, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        tag = lang.strip().lower()
        locale = "zh-CN" if tag.startswith("zh") else "en" if tag.startswith("en") else None
        if locale and (best is None or quality > best[0]):
            best = (quality, locale)
    return best[1] if best else default


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def request_locale(request: Request) -> str:
    return pick_locale(
        request.headers.get("accept-language"), services_of(request).settings.default_locale
    )


def bearer_token(authorization: str | None, x_api_key: str | None) -> str | None:
    if x_api_key:
        return x_api_key.strip()
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


#: What a publishable (website) key may do over REST besides the chat WebSocket: upload a
#: photo and read back a conversation whose id it knows. Listing sessions is not among them:
#: every visitor of a site shares the key, so a list would show them each other's chats.
PUBLISHABLE_ROUTES = frozenset(
    {
        ("POST", "/v1/images"),
        ("GET", "/v1/sessions/{session_id}"),
        ("GET", "/v1/sessions/{session_id}/messages"),
    }
)
_END_USER = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def same_origin(origin: str | None, host: str | None) -> bool:
    """The page was served by this service (the widget's iframe, the chat page)."""
    if not origin or not host:
        return False
    return origin.partition("://")[2].rstrip("/").lower() == host.strip().lower()


def key_origin_ok(key: KeyInfo, origin: str | None, host: str | None, allowed: list[str]) -> bool:
    """Whether ``key`` may be used from a page on ``origin``. A publishable key needs one of
    its own origins (exact match) or this service's own pages; it is refused without an
    Origin, since it lives in browsers. A secret key keeps the global rule."""
    if key.kind == "secret":
        return origin_allowed(origin, allowed)
    if origin is None:
        return False
    return origin in key.allowed_origins or same_origin(origin, host)


def end_user_of(value: str | None, client_host: str | None) -> str | None:
    """The widget's anonymous visitor id, else the client's address (for per-user limits)."""
    if value and _END_USER.match(value):
        return value
    return f"ip:{client_host}" if client_host else None


async def require_key(
    request: Request,
    response: Response,
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> str:
    """The caller's API key id (``Authorization: Bearer KEY`` or ``X-API-Key: KEY``).

    A publishable key may also come as ``?key=`` (with ``&end_user=``): the widget sends only
    requests browsers do not preflight, since the static CORS layer refuses preflights from
    origins it was not configured with. It must come from one of its origins
    (``key_origin_forbidden``), only to :data:`PUBLISHABLE_ROUTES` (``key_scope_forbidden``),
    within its rate limits (``rate_limited``); its origin then gets CORS headers."""
    token = bearer_token(authorization, x_api_key)
    from_query = False
    if not token:
        token = request.query_params.get("key")
        from_query = token is not None
    if not token:
        raise AuthError("no API key", code="auth_required")
    key = await services_of(request).store.lookup_api_key(token)
    if key is None or (from_query and key.kind != "publishable"):
        # A secret key in a URL would end up in logs and histories: refused like a bad key.
        raise AuthError("invalid API key", code="auth_invalid")
    if key.kind == "secret":
        return key.id
    origin = request.headers.get("origin")
    if not key_origin_ok(key, origin, request.headers.get("host"), []):
        raise AuthError("origin not allowed for this key", code="key_origin_forbidden")
    assert origin is not None
    # The page is the key's own: let it read the answer, errors included.
    request.state.cors_origin = origin
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Vary"] = "Origin"
    route = request.scope.get("route")
    if (request.method, getattr(route, "path", request.url.path)) not in PUBLISHABLE_ROUTES:
        raise AuthError("publishable keys may only chat", code="key_scope_forbidden")
    client = request.client.host if request.client else None
    wait = limiter_of(request.app).check(
        key.id, end_user_of(request.query_params.get("end_user"), client)
    )
    if wait:
        raise RateLimited(retry_after=wait)
    return key.id


KeyId = Annotated[str, Depends(require_key)]


def origin_allowed(origin: str | None, allowed: list[str]) -> bool:
    """Browsers always send Origin; other clients may not, and the API key guards them."""
    if origin is None:
        return True
    return "*" in allowed or origin.rstrip("/") in allowed


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorOut(BaseModel):
    """HealTrace's error shape: a stable ``code`` and a message in the caller's language."""

    error: ErrorBody


#: What any route behind :data:`KeyId` may answer besides its own errors: 401 (no or bad
#: key), 403 (a publishable key off its origins or routes), 422 (invalid parameters) and
#: 429 (a publishable key's rate limit).
KEY_ERRORS = (401, 403, 422, 429)


def error_responses(
    *statuses: int, model: type[BaseModel] = ErrorOut
) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each status documented with the error shape ``model``."""
    return {s: {"model": model, "description": HTTPStatus(s).phrase} for s in sorted(statuses)}


def _inline_refs(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline_refs(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline_refs(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline_refs(v, defs) for v in node]
    return node


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra=`` documenting the JSON body of a route that reads the body itself
    (to bound its size first): the model's schema with its definitions inlined."""
    schema = model.model_json_schema()
    inlined = _inline_refs(schema, schema.get("$defs", {}))
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": inlined}}}}


STATUS_FOR_CODE = {
    "auth_required": 401,
    "auth_invalid": 401,
    "key_origin_forbidden": 403,
    "key_scope_forbidden": 403,
    "rate_limited": 429,
    "login_failed": 401,
    "console_login_required": 401,
    "handoff_not_found": 404,
    "handoff_not_waiting": 409,
    "handoff_not_yours": 409,
    "no_handoff_waiting": 409,
    "draft_failed": 503,
    "labs_no_results": 422,
    "labs_input_too_large": 413,
    "labs_not_an_image": 415,
    "labs_no_results_in_image": 422,
    "audio_empty": 400,
    "audio_corrupt": 400,
    "audio_unsupported_format": 415,
    "audio_too_large": 413,
    "audio_too_long": 413,
    "audio_silent": 422,
    "audio_sample_rate_unsupported": 400,
    "speech_text_empty": 400,
    "speech_text_too_long": 413,
    "speech_unavailable": 503,
    "image_empty": 400,
    "image_unsupported_format": 415,
    "image_too_large": 413,
    "image_too_many_pixels": 413,
    "image_corrupt": 400,
    "dicom_no_pixels": 422,
    "image_not_found": 404,
    "patient_key_required": 403,
    "tenant_key_required": 403,
    "patient_not_found": 404,
    "patient_exists": 409,
    "patient_has_wallet": 409,
    "consent_not_found": 404,
    "consent_signature_invalid": 403,
    "consent_signature_replayed": 409,
    "consent_signature_expired": 410,
    "consent_rejected": 409,
    "evidence_not_found": 404,
    "evidence_pending": 409,
    "evidence_hash_invalid": 400,
    "chain_unavailable": 503,
    "session_not_found": 404,
    "turn_in_progress": 409,
    "message_too_long": 413,
    "model_unavailable": 503,
    "model_error": 502,
    "tool_failed": 502,
    "too_many_tool_rounds": 502,
}


def error_response(
    code: str,
    locale: str,
    *,
    status: int | None = None,
    message: str | None = None,
    **params: Any,
) -> JSONResponse:
    text = message if message is not None else localized(code, locale, **params)
    return JSONResponse(
        {"error": {"code": code, "message": text}},
        status_code=status or STATUS_FOR_CODE.get(code, 400),
        headers={"WWW-Authenticate": "Bearer"} if code.startswith("auth_") else None,
    )


async def healtrace_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HealTraceError)
    locale = request_locale(request)
    response = error_response(exc.code, locale, message=exc.message(locale))
    # A publishable key's page (see require_key) may read why its request failed.
    cors_origin = getattr(request.state, "cors_origin", None)
    if cors_origin:
        response.headers["Access-Control-Allow-Origin"] = cors_origin
        response.headers["Vary"] = "Origin"
    if exc.code == "rate_limited":
        response.headers["Retry-After"] = str(exc.params.get("retry_after", 1))
    return response


async def http_error_handler(request: Request, exc: Exception) -> Response:
    """FastAPI's own HTTP errors in HealTrace's shape where they are the client's fault: a
    body FastAPI cannot read (not UTF-8, say) is a 400 ``invalid_json``, not
    ``{"detail": …}``. Other statuses keep FastAPI's answer."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400:
        return error_response("invalid_json", request_locale(request), status=400)
    return await http_exception_handler(request, exc)


def _upload_limit(request: Request) -> tuple[str, int] | None:
    settings = services_of(request).settings
    path = request.url.path
    if path == "/v1/audio/transcriptions":
        return "audio_too_large", settings.speech.max_audio_bytes
    if path == "/v1/images":
        vision = settings.vision
        return "image_too_large", max(vision.max_image_bytes, vision.max_dicom_bytes)
    return None


async def refuse_oversized_uploads(request: Request, call_next: Any) -> Any:
    """Refuse an upload by its Content-Length before its form is spooled to disk; the
    endpoints check the file's own size again while reading it."""
    limit = _upload_limit(request)
    if limit is not None:
        code, max_bytes = limit
        try:
            length = int(request.headers.get("content-length") or 0)
        except ValueError:
            length = 0
        if length > max_bytes + 65536:  # multipart framing adds a little
            return error_response(code, request_locale(request), size=length, limit=max_bytes)
    return await call_next(request)
