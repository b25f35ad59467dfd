"""The WeChat message API the channel needs: push a text, fetch a media file (and, for
``healtrace wechat menu``, create the account's menu).

:class:`WechatApi` is the interface; :class:`HttpWechatApi` speaks to WeChat (or WeCom) over
an injectable ``httpx.AsyncClient``. The access token is cached until shortly before it
expires and fetched again when WeChat says it is invalid or expired (40001, 42001, 40014).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import httpx

from healtrace.errors import HealTraceError
from healtrace.wechat.config import WechatConfig

__all__ = ["HttpWechatApi", "WechatApi", "WechatApiError"]

#: Token invalid / expired / malformed: fetch a new one and try once more.
_STALE_TOKEN = {40001, 40014, 42001}
#: Refresh this long before WeChat's stated expiry.
_MARGIN_S = 300.0


class WechatApiError(HealTraceError):
    """The WeChat API could not be reached or refused a call."""

    code = "wechat_api_error"


class WechatApi(Protocol):
    async def send_text(self, user_id: str, text: str) -> None:
        """Push one text message to ``user_id`` (an openid, or a WeCom userid)."""
        ...

    async def get_media(self, media_id: str) -> bytes:
        """The bytes of a media file the user sent (voice, image)."""
        ...

    async def aclose(self) -> None: ...


class HttpWechatApi:
    """The Official Account API (``/cgi-bin/token``, ``/cgi-bin/message/custom/send``) or, in
    corp mode, WeCom's (``/cgi-bin/gettoken``, ``/cgi-bin/message/send``)."""

    def __init__(self, config: WechatConfig, client: httpx.AsyncClient | None = None) -> None:
        self.config = config
        self._owns_client = client is None
        self.client = client or httpx.AsyncClient(timeout=config.api_timeout_s)
        self.base = config.api_base.rstrip("/")
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()

    async def aclose(self) -> None:
        if self._owns_client:
            await self.client.aclose()

    async def _fetch_token(self) -> tuple[str, float]:
        secret = self.config.app_secret.get_secret_value()
        if self.config.corp_mode:
            path = "/cgi-bin/gettoken"
            params = {"corpid": self.config.corp_id, "corpsecret": secret}
        else:
            path = "/cgi-bin/token"
            params = {
                "grant_type": "client_credential",
                "appid": self.config.app_id,
                "secret": secret,
            }
        body = await self._json("GET", path, params=params)
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise WechatApiError(f"no access token: errcode {body.get('errcode')}")
        expires_in = float(body.get("expires_in") or 7200)
        return token, time.monotonic() + max(expires_in - _MARGIN_S, expires_in / 2)

    async def access_token(self, *, stale: str | None = None) -> str:
        """The cached token; a new one when it expired or when ``stale`` (the token WeChat
        just refused) is still the cached one."""
        async with self._lock:
            expired = time.monotonic() >= self._expires_at
            if self._token is None or expired or self._token == stale:
                self._token, self._expires_at = await self._fetch_token()
            return self._token

    async def _json(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        try:
            response = await self.client.request(method, self.base + path, **kw)
        except httpx.HTTPError as exc:
            raise WechatApiError(f"{path}: {type(exc).__name__}") from exc
        if response.status_code != 200:
            raise WechatApiError(f"{path}: HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError as exc:
            raise WechatApiError(f"{path}: not JSON") from exc
        if not isinstance(body, dict):
            raise WechatApiError(f"{path}: not a JSON object")
        return body

    async def _call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """One authorised call, again with a new token if WeChat says the old one is stale."""
        token = await self.access_token()
        for attempt in range(2):
            params = {**kw.pop("params", {}), "access_token": token}
            try:
                response = await self.client.request(method, self.base + path, params=params, **kw)
            except httpx.HTTPError as exc:
                raise WechatApiError(f"{path}: {type(exc).__name__}") from exc
            kw["params"] = {k: v for k, v in params.items() if k != "access_token"}
            if response.status_code != 200:
                raise WechatApiError(f"{path}: HTTP {response.status_code}")
            code = _errcode(response)
            if code in _STALE_TOKEN and attempt == 0:
                token = await self.access_token(stale=token)
                continue
            if code:
                raise WechatApiError(f"{path}: errcode {code}")
            return response
        raise WechatApiError(f"{path}: the access token was refused twice")

    async def send_text(self, user_id: str, text: str) -> None:
        payload: dict[str, Any] = {"touser": user_id, "msgtype": "text", "text": {"content": text}}
        if self.config.corp_mode:
            payload["agentid"] = self.config.agent_id
            path = "/cgi-bin/message/send"
        else:
            path = "/cgi-bin/message/custom/send"
        # WeChat wants the Chinese as is, not \u escapes (they count against the limit).
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        await self._call("POST", path, content=body, headers={"Content-Type": "application/json"})

    async def get_media(self, media_id: str) -> bytes:
        response = await self._call("GET", "/cgi-bin/media/get", params={"media_id": media_id})
        return response.content

    async def create_menu(self, buttons: Sequence[Mapping[str, Any]]) -> None:
        """Replace the account's custom menu (in corp mode, the WeCom app's) with ``buttons``,
        each as WeChat spells it: ``{"type": "click", "name": "…", "key": "…"}``."""
        params: dict[str, Any] = {"agentid": self.config.agent_id} if self.config.corp_mode else {}
        body = json.dumps({"button": list(buttons)}, ensure_ascii=False).encode("utf-8")
        await self._call(
            "POST",
            "/cgi-bin/menu/create",
            params=params,
            content=body,
            headers={"Content-Type": "application/json"},
        )


def _errcode(response: httpx.Response) -> int:
    """WeChat's ``errcode`` (0 when the body is a file or says ok)."""
    kind = response.headers.get("content-type", "")
    if "json" not in kind and "text/plain" not in kind:
        return 0
    try:
        body = response.json()
    except ValueError:
        return 0
    if isinstance(body, dict):
        try:
            return int(body.get("errcode") or 0)
        except (TypeError, ValueError):
            return -1
    return 0
