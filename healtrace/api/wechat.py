"""The WeChat Official Account / WeCom callback: ``GET`` and ``POST /v1/wechat/callback``.

``GET`` is WeChat's URL check (echo ``echostr`` once the signature matches; WeCom sends it
encrypted). ``POST`` carries one message as XML, plaintext or AES-encrypted ("safe mode",
always for WeCom): signatures are checked first (403), the body is size-limited (413) and
parsed without DTDs or entities (400), and the answer is the passive XML reply, encrypted
when the request was, or ``success`` when it will be pushed (see
:mod:`healtrace.wechat.channel`).

The message API client is :class:`~healtrace.wechat.api.HttpWechatApi` unless an embedder
sets ``app.state.wechat_api`` (a :class:`~healtrace.wechat.api.WechatApi`) before start-up.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import PlainTextResponse, Response

from healtrace.api._http import error_response, error_responses, services_of
from healtrace.errors import ConfigurationError
from healtrace.wechat._xml import XmlError, parse_xml, text_reply
from healtrace.wechat.api import HttpWechatApi, WechatApi
from healtrace.wechat.channel import Inbound, WechatChannel
from healtrace.wechat.config import WechatConfig
from healtrace.wechat.crypto import MessageCrypto, SignatureError, signature_ok

__all__ = ["router"]


@dataclass
class _Endpoint:
    config: WechatConfig
    channel: WechatChannel
    crypto: MessageCrypto | None


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    services = app.state.services
    config: WechatConfig = services.settings.wechat
    if not config.enabled:
        app.state.wechat = None
        yield
        return
    if not config.token:
        raise ConfigurationError("set HEALTRACE_WECHAT__TOKEN (the Token configured in WeChat)")
    crypto = None
    if config.encoding_aes_key.get_secret_value():
        try:
            crypto = MessageCrypto(config)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from exc
    elif config.corp_mode:
        raise ConfigurationError(
            "WeCom callbacks are encrypted: set HEALTRACE_WECHAT__ENCODING_AES_KEY"
        )
    api: WechatApi = getattr(app.state, "wechat_api", None) or HttpWechatApi(config)
    channel = WechatChannel(services, api, config)
    app.state.wechat = _Endpoint(config, channel, crypto)
    try:
        yield
    finally:
        await channel.aclose()


router = APIRouter(tags=["wechat"], lifespan=_lifespan)


def _endpoint(request: Request) -> _Endpoint | None:
    endpoint: _Endpoint | None = getattr(request.app.state, "wechat", None)
    return endpoint


def _locale(request: Request) -> str:
    endpoint = _endpoint(request)
    return endpoint.config.locale if endpoint else services_of(request).settings.default_locale


def _refuse(request: Request, code: str, status: int) -> Response:
    return error_response(code, _locale(request), status=status)


#: 403 a bad signature; 404 the channel is off; 422 malformed query parameters.
_CALLBACK_ERRORS = (403, 404, 422)


@router.get(
    "/v1/wechat/callback",
    response_model=None,
    responses={
        200: {"description": "The echoed echostr", "content": {"text/plain": {}}},
        **error_responses(*_CALLBACK_ERRORS),
    },
)
async def verify_url(
    request: Request,
    timestamp: str = "",
    nonce: str = "",
    echostr: str = "",
    signature: str | None = None,
    msg_signature: str | None = None,
) -> Response:
    """WeChat's check that this URL belongs to the account: echo ``echostr``."""
    endpoint = _endpoint(request)
    if endpoint is None:
        return _refuse(request, "wechat_disabled", 404)
    if endpoint.config.corp_mode:
        assert endpoint.crypto is not None
        try:
            plain = endpoint.crypto.decrypt(msg_signature, timestamp, nonce, echostr)
        except SignatureError:
            return _refuse(request, "wechat_signature_invalid", 403)
        return PlainTextResponse(plain)
    if not signature_ok(signature, endpoint.config.token, timestamp, nonce):
        return _refuse(request, "wechat_signature_invalid", 403)
    return PlainTextResponse(echostr)


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None once it is over ``limit`` bytes (declared or streamed)."""
    try:
        declared = int(request.headers.get("content-length") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            return None
    return bytes(body)


@router.post(
    "/v1/wechat/callback",
    response_model=None,
    responses={
        200: {
            "description": "The passive reply, or ``success`` when the answer is pushed later",
            "content": {"application/xml": {}, "text/plain": {}},
        },
        # 400 malformed XML, a DTD or a missing Encrypt; 413 over max_body_bytes.
        **error_responses(*_CALLBACK_ERRORS, 400, 413),
    },
    openapi_extra={"requestBody": {"content": {"application/xml": {"schema": {"type": "string"}}}}},
)
async def receive(
    request: Request,
    timestamp: str = "",
    nonce: str = "",
    signature: str | None = None,
    msg_signature: str | None = None,
    encrypt_type: str = "",
) -> Response:
    """One message or event from WeChat; the passive reply or ``success``."""
    endpoint = _endpoint(request)
    if endpoint is None:
        return _refuse(request, "wechat_disabled", 404)
    config = endpoint.config
    # Official Accounts sign every callback with ``signature``; WeCom only signs the
    # ciphertext (``msg_signature``, checked when decrypting).
    if not config.corp_mode and not signature_ok(signature, config.token, timestamp, nonce):
        return _refuse(request, "wechat_signature_invalid", 403)
    body = await _read_body(request, config.max_body_bytes)
    if body is None:
        return _refuse(request, "wechat_body_too_large", 413)
    encrypted = config.corp_mode or encrypt_type.lower() == "aes"
    try:
        fields = parse_xml(body)
        if encrypted:
            if endpoint.crypto is None or "Encrypt" not in fields:
                return _refuse(request, "wechat_xml_invalid", 400)
            plain = endpoint.crypto.decrypt(msg_signature, timestamp, nonce, fields["Encrypt"])
            fields = parse_xml(plain.encode("utf-8"))
    except SignatureError:
        return _refuse(request, "wechat_signature_invalid", 403)
    except XmlError:
        return _refuse(request, "wechat_xml_invalid", 400)
    msg = Inbound.of(fields)
    if not msg.from_user or not msg.msg_type:
        return _refuse(request, "wechat_xml_invalid", 400)
    reply = await endpoint.channel.handle(msg)
    if reply is None:
        return PlainTextResponse("success")
    xml = text_reply(to_user=msg.from_user, from_user=msg.to_user, content=reply)
    if encrypted:
        assert endpoint.crypto is not None
        xml = endpoint.crypto.encrypt(xml, nonce=nonce or None)
    return Response(xml, media_type="application/xml")
