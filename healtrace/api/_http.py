"""HTTP helpers shared by the REST and WebSocket endpoints: locale, keys, origins, errors."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.responses import JSONResponse

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


async def require_key(
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> str:
    """The caller's API key id (``Authorization: Bearer KEY`` or ``X-API-Key: KEY``)."""
    token = bearer_token(authorization, x_api_key)
    if not token:
        raise AuthError("no API key", code="auth_required")
    key_id = await services_of(request).store.verify_api_key(token)
    if key_id is None:
        raise AuthError("invalid API key", code="auth_invalid")
    return key_id


KeyId = Annotated[str, Depends(require_key)]


def origin_allowed(origin: str | None, allowed: list[str]) -> bool:
    """Browsers always send Origin; other clients may not, and the API key guards them."""
    if origin is None:
        return True
    return "*" in allowed or origin.rstrip("/") in allowed


STATUS_FOR_CODE = {
    "auth_required": 401,
    "auth_invalid": 401,
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
    return error_response(exc.code, locale, message=exc.message(locale))


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
