"""The WeChat Official Account / WeCom bot channel (issue #10): callback signatures and
safe-mode AES (wechatpy), safe XML, the message API client, dedupe and the 5-second rule.

Names load lazily: :mod:`healtrace.config` imports ``healtrace.wechat.config``, and the
channel imports the settings back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from healtrace._lazy import lazy_getattr as _lazy_getattr

if TYPE_CHECKING:
    from healtrace.wechat._split import split_text
    from healtrace.wechat._xml import XmlError, parse_xml, text_reply
    from healtrace.wechat.api import HttpWechatApi, WechatApi, WechatApiError
    from healtrace.wechat.channel import Inbound, WechatChannel
    from healtrace.wechat.config import WechatConfig
    from healtrace.wechat.crypto import MessageCrypto, SignatureError, signature, signature_ok
    from healtrace.wechat.models import WechatMessage, WechatUser
    from healtrace.wechat.store import WechatStore

_WHERE = {
    "HttpWechatApi": "api",
    "Inbound": "channel",
    "MessageCrypto": "crypto",
    "SignatureError": "crypto",
    "WechatApi": "api",
    "WechatApiError": "api",
    "WechatChannel": "channel",
    "WechatConfig": "config",
    "WechatMessage": "models",
    "WechatStore": "store",
    "WechatUser": "models",
    "XmlError": "_xml",
    "parse_xml": "_xml",
    "signature": "crypto",
    "signature_ok": "crypto",
    "split_text": "_split",
    "text_reply": "_xml",
}

__all__ = [
    "HttpWechatApi",
    "Inbound",
    "MessageCrypto",
    "SignatureError",
    "WechatApi",
    "WechatApiError",
    "WechatChannel",
    "WechatConfig",
    "WechatMessage",
    "WechatStore",
    "WechatUser",
    "XmlError",
    "parse_xml",
    "signature",
    "signature_ok",
    "split_text",
    "text_reply",
]

__getattr__ = _lazy_getattr(__name__, _WHERE, globals())
