"""Settings of the WeChat Official Account / WeCom channel (``HEALTRACE_WECHAT__<FIELD>``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SecretStr

__all__ = ["WechatConfig"]


class WechatConfig(BaseModel):
    """One WeChat Official Account, or one WeCom (企业微信) app when ``corp_id`` is set."""

    #: Serve ``/v1/wechat/callback`` (off: 404 ``wechat_disabled``).
    enabled: bool = False
    #: The Token configured on the WeChat side; every callback is signed with it.
    token: str = ""
    #: The 43-character EncodingAESKey for safe (encrypted) mode; empty: plaintext only.
    encoding_aes_key: SecretStr = SecretStr("")
    #: The Official Account's AppID (also what encrypted messages are bound to).
    app_id: str = ""
    #: AppSecret (WeCom: the app's Secret), for the access token of the message API.
    app_secret: SecretStr = SecretStr("")
    #: WeCom: the CorpID. Set, the channel speaks WeCom (msg_signature, /cgi-bin/gettoken).
    corp_id: str = ""
    #: WeCom: the app's AgentId, sent with every pushed message.
    agent_id: int = 0
    #: Where the message API lives (WeCom: ``https://qyapi.weixin.qq.com``); tests point it
    #: at a local fake.
    api_base: str = "https://api.weixin.qq.com"
    #: How long a callback waits for the answer before replying ``success`` and pushing the
    #: answer through the customer-service API instead (WeChat gives up after 5 s).
    passive_timeout_s: float = Field(default=4.5, gt=0, le=4.9)
    #: Largest text per message in UTF-8 bytes; longer answers are split on sentence ends.
    max_text_bytes: int = Field(default=2048, ge=64)
    #: Largest callback body accepted (413 above it).
    max_body_bytes: int = Field(default=65536, ge=1024)
    #: Which HealTrace tenant the account belongs to (its sessions and images are filed there).
    tenant: str = Field(default="default", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    #: The language replies are in.
    locale: Literal["zh-CN", "en"] = "zh-CN"
    #: Timeout of one call to the message API.
    api_timeout_s: float = Field(default=10.0, gt=0)
    #: A pushed message that fails is sent again this many times, waiting
    #: ``push_retry_base_s`` doubling between tries (the answer is stored either way).
    push_retries: int = Field(default=3, ge=0, le=10)
    push_retry_base_s: float = Field(default=1.0, ge=0)

    @property
    def corp_mode(self) -> bool:
        return bool(self.corp_id)

    @property
    def receiver_id(self) -> str:
        """What encrypted payloads are bound to: the CorpID for WeCom, else the AppID."""
        return self.corp_id or self.app_id
