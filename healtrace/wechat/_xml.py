"""Reading callback XML safely and writing passive replies.

WeChat never sends a DTD, so any ``<!DOCTYPE``/``<!ENTITY`` is refused before parsing; the
parser (xmltodict on expat, wechatpy's own) is also told to refuse entity declarations, so
neither a billion-laughs bomb nor an external entity is ever expanded.
"""

from __future__ import annotations

import re
import time
from typing import Any
from xml.parsers.expat import ExpatError

import xmltodict

__all__ = ["XmlError", "parse_xml", "text_reply"]

_DTD = re.compile(rb"<!\s*(DOCTYPE|ENTITY|ELEMENT|ATTLIST)", re.IGNORECASE)


class XmlError(ValueError):
    """Not a WeChat XML document we accept."""


def parse_xml(data: bytes) -> dict[str, str]:
    """The ``<xml>`` element's text children (nested ones are dropped)."""
    if _DTD.search(data):
        raise XmlError("document type declarations are refused")
    try:
        doc: Any = xmltodict.parse(data, disable_entities=True)
    except (ExpatError, ValueError) as exc:
        raise XmlError(f"not well-formed: {exc}") from exc
    root = doc.get("xml") if isinstance(doc, dict) else None
    if not isinstance(root, dict):
        raise XmlError("the root element is not <xml>")
    return {k: v for k, v in root.items() if isinstance(k, str) and isinstance(v, str)}


def _cdata(value: str) -> str:
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def text_reply(*, to_user: str, from_user: str, content: str) -> str:
    """A passive text reply (to the sender, from the account)."""
    return (
        f"<xml><ToUserName>{_cdata(to_user)}</ToUserName>"
        f"<FromUserName>{_cdata(from_user)}</FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime>"
        f"<MsgType><![CDATA[text]]></MsgType><Content>{_cdata(content)}</Content></xml>"
    )
