"""The WeChat channel over real sockets, against a local fake of WeChat's message API."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest
import xmltodict
from sqlalchemy import select
from wechatpy.crypto import WeChatCrypto
from wechatpy.enterprise.crypto import WeChatCrypto as WeComCrypto

from healtrace.agent.memory import ChatStore
from healtrace.agent.models.testing import DemoModel
from healtrace.api.app import create_app
from healtrace.api.testing import LiveServer
from healtrace.config import ChainConfig, Settings
from healtrace.rewards.config import RewardsConfig
from healtrace.speech.asr import ScriptedASR
from healtrace.speech.audio import encode
from healtrace.speech.engines import SpeechEngines
from healtrace.speech.types import Audio
from healtrace.storage import Database
from healtrace.wechat import WechatConfig, signature, split_text
from healtrace.wechat.models import WechatUser
from tests._wechat_fake import FakeWechat

TOKEN = "healtrace-test-token"
AES_KEY = base64.b64encode(bytes(range(32))).decode().rstrip("=")
APP_ID = "wx0123456789abcdef"
ACCOUNT = "gh_healtrace"
OPENID = "oUser-0001"
CALLBACK = "/v1/wechat/callback"


@dataclass
class Env:
    http: httpx.AsyncClient
    fake: FakeWechat
    model: DemoModel
    settings: Settings


def wechat_settings(settings: Settings, base: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "enabled": True,
        "token": TOKEN,
        "app_id": APP_ID,
        "app_secret": "app-secret",
        "api_base": base,
        # Generous: the box is shared; the slow-answer test sets its own short window.
        "passive_timeout_s": 3.0,
        **overrides,
    }
    config = WechatConfig.model_validate(values)
    # The channel needs no chain; its embedded node would only slow each app's start and stop.
    return settings.model_copy(
        update={
            "wechat": config,
            "chain": ChainConfig(enabled=False),
            "rewards": RewardsConfig(enabled=False),
        }
    )


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeWechat, LiveServer]]:
    fake = FakeWechat()
    async with LiveServer(fake.app()) as live:
        yield fake, live


@pytest.fixture
def start(settings: Settings, fake: tuple[FakeWechat, LiveServer]) -> Callable[..., Any]:
    """``async with start(model=…, **wechat_overrides) as env`` runs HealTrace."""
    fake_api, fake_live = fake

    def factory(
        model: DemoModel | None = None, speech: SpeechEngines | None = None, **overrides: Any
    ) -> Any:
        model = model or DemoModel(tool_rounds=0)
        cfg = wechat_settings(settings, fake_live.http, **overrides)

        class _Ctx:
            async def __aenter__(self) -> Env:
                self.live = LiveServer(create_app(cfg, model=model, speech=speech))
                await self.live.__aenter__()
                self.http = httpx.AsyncClient(base_url=self.live.http, timeout=10)
                return Env(self.http, fake_api, model, cfg)

            async def __aexit__(self, *exc: object) -> None:
                await self.http.aclose()
                await self.live.__aexit__(*exc)

        return _Ctx()

    return factory


def signed(**extra: str) -> dict[str, str]:
    timestamp, nonce = str(int(time.time())), "nonce123"
    expected = hashlib.sha1("".join(sorted([TOKEN, timestamp, nonce])).encode()).hexdigest()
    return {"timestamp": timestamp, "nonce": nonce, "signature": expected, **extra}


def message_xml(msg_type: str = "text", msg_id: str = "1001", **fields: str) -> str:
    body = "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in fields.items())
    return (
        f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName>"
        f"<FromUserName><![CDATA[{OPENID}]]></FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime>"
        f"<MsgType><![CDATA[{msg_type}]]></MsgType>{body}"
        + (f"<MsgId>{msg_id}</MsgId>" if msg_id else "")
        + "</xml>"
    )


def reply_content(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    reply = xmltodict.parse(response.text)["xml"]
    assert reply["ToUserName"] == OPENID and reply["FromUserName"] == ACCOUNT
    assert reply["MsgType"] == "text"
    return str(reply["Content"])


async def post(env: Env, xml: str | bytes, **params: str) -> httpx.Response:
    data = xml.encode() if isinstance(xml, str) else xml
    return await env.http.post(CALLBACK, params=signed(**params), content=data)


async def eventually(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def stored_messages(settings: Settings) -> list[tuple[str, str]]:
    db = Database(settings.resolved_database_url)
    try:
        store = ChatStore(db)
        session_ids = await db.run(lambda s: list(s.scalars(select(WechatUser.session_id))))
        out: list[tuple[str, str]] = []
        for sid in session_ids:
            out += [(m.role, m.content) for m in await store.messages(sid)]
        return out
    finally:
        await db.dispose()


# --- signatures and URL verification ---------------------------------------------------


def test_signature_known_answer() -> None:
    # WeChat's own documentation example: sha1 over the sorted strings.
    parts = ("token", "1409659813", "1372623149")
    expected = hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()
    assert signature(*parts) == expected
    assert signature("b", "a", "c") == hashlib.sha1(b"abc").hexdigest()


async def test_url_verification(start: Callable[..., Any]) -> None:
    async with start() as env:
        ok = await env.http.get(CALLBACK, params=signed(echostr="echo-4242"))
        assert ok.status_code == 200 and ok.text == "echo-4242"
        forged = await env.http.get(CALLBACK, params={**signed(echostr="x"), "signature": "0" * 40})
        assert forged.status_code == 403
        assert forged.json()["error"]["code"] == "wechat_signature_invalid"


async def test_wecom_url_verification_decrypts_echostr(start: Callable[..., Any]) -> None:
    corp = "ww0123456789"
    async with start(corp_id=corp, agent_id=1000002, encoding_aes_key=AES_KEY) as env:
        crypto = WeComCrypto(TOKEN, AES_KEY, corp)
        envelope = xmltodict.parse(crypto.encrypt_message("plain-echo", "n1", "1700000000"))["xml"]
        params = {
            "msg_signature": envelope["MsgSignature"],
            "timestamp": "1700000000",
            "nonce": "n1",
            "echostr": envelope["Encrypt"],
        }
        ok = await env.http.get(CALLBACK, params=params)
        assert ok.status_code == 200 and ok.text == "plain-echo"
        bad = await env.http.get(CALLBACK, params={**params, "msg_signature": "f" * 40})
        assert bad.status_code == 403


async def test_disabled_channel_is_404(settings: Settings) -> None:
    async with LiveServer(create_app(settings, model=DemoModel(tool_rounds=0))) as live:
        async with httpx.AsyncClient(base_url=live.http) as http:
            response = await http.get(CALLBACK, params=signed(echostr="x"))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "wechat_disabled"


# --- messages ---------------------------------------------------------------------------


async def test_text_is_answered_passively(start: Callable[..., Any]) -> None:
    async with start() as env:
        response = await post(env, message_xml(Content="头痛怎么办"))
        answer = reply_content(response)
        assert env.model.answer in answer
        stored = await stored_messages(env.settings)
        assert stored == [("user", "头痛怎么办"), ("assistant", answer)]
        # The same user keeps one session.
        reply_content(await post(env, message_xml(Content="again", msg_id="1002")))
        assert len(await stored_messages(env.settings)) == 4
    assert env.fake.sent == []


async def test_forged_signature_is_403(start: Callable[..., Any]) -> None:
    async with start() as env:
        response = await env.http.post(
            CALLBACK,
            params={**signed(), "signature": "a" * 40},
            content=message_xml(Content="hi").encode(),
        )
        assert response.status_code == 403
        missing = await env.http.post(CALLBACK, content=message_xml(Content="hi").encode())
        assert missing.status_code == 403
    assert env.model.requests == []


async def test_aes_round_trip(start: Callable[..., Any]) -> None:
    async with start(encoding_aes_key=AES_KEY) as env:
        crypto = WeChatCrypto(TOKEN, AES_KEY, APP_ID)
        timestamp, nonce = str(int(time.time())), "aesnonce"
        envelope = crypto.encrypt_message(message_xml(Content="加密的问题"), nonce, timestamp)
        fields = xmltodict.parse(envelope)["xml"]
        params = {
            "timestamp": timestamp,
            "nonce": nonce,
            "signature": hashlib.sha1(
                "".join(sorted([TOKEN, timestamp, nonce])).encode()
            ).hexdigest(),
            "msg_signature": fields["MsgSignature"],
            "encrypt_type": "aes",
            "openid": OPENID,
        }
        body = (
            f"<xml><ToUserName>{ACCOUNT}</ToUserName><Encrypt>{fields['Encrypt']}</Encrypt></xml>"
        )
        response = await env.http.post(CALLBACK, params=params, content=body.encode())
        assert response.status_code == 200, response.text
        reply = xmltodict.parse(response.text)["xml"]
        assert set(reply) == {"Encrypt", "MsgSignature", "TimeStamp", "Nonce"}
        # The reply decrypts with wechatpy, and its msg_signature is what WeChat checks.
        expected_sig = hashlib.sha1(
            "".join(sorted([TOKEN, reply["TimeStamp"], reply["Nonce"], reply["Encrypt"]])).encode()
        ).hexdigest()
        assert reply["MsgSignature"] == expected_sig
        inner = crypto.decrypt_message(
            response.text, reply["MsgSignature"], reply["TimeStamp"], reply["Nonce"]
        )
        content = xmltodict.parse(inner)["xml"]
        assert content["ToUserName"] == OPENID and env.model.answer in content["Content"]
        assert ("user", "加密的问题") in await stored_messages(env.settings)
        forged = await env.http.post(
            CALLBACK, params={**params, "msg_signature": "0" * 40}, content=body.encode()
        )
        assert forged.status_code == 403


async def test_retries_start_one_turn(start: Callable[..., Any]) -> None:
    model = DemoModel(tool_rounds=0, first_token_ms=100)
    async with start(model=model) as env:
        xml = message_xml(Content="发烧三天", msg_id="777")
        replies = await asyncio.gather(*(post(env, xml) for _ in range(3)))
        texts = [r.text for r in replies]
        assert all(r.status_code == 200 for r in replies)
        assert any(model.answer in t for t in texts)
        assert all(model.answer in t or t == "success" for t in texts)
        # A retry after the answer went out gets the same answer again, not a new turn.
        later = await post(env, xml)
        assert model.answer in reply_content(later)
        assert len(model.requests) == 1
        assert [r for r, _ in await stored_messages(env.settings)] == ["user", "assistant"]


async def test_slow_answer_is_pushed(start: Callable[..., Any]) -> None:
    model = DemoModel(tool_rounds=0, first_token_ms=1500)
    async with start(model=model, passive_timeout_s=0.3) as env:
        env.fake.refuse_next_send = 40001  # the first token is "expired": refresh and resend
        xml = message_xml(Content="慢一点的回答", msg_id="888")
        response = await post(env, xml)
        # "success" at once: the answer (1.5 s away) was not waited for.
        assert response.text == "success"
        # WeChat's retry while the answer is still coming: no second turn, no second push.
        assert (await post(env, xml)).text == "success"
        await eventually(lambda: len(env.fake.sent) >= 1)
        await asyncio.sleep(0.2)
        assert len(env.fake.sent) == 1
        sent = env.fake.sent[0]
        assert sent["touser"] == OPENID and sent["msgtype"] == "text"
        assert model.answer in sent["text"]["content"]
        assert len(model.requests) == 1
        assert env.fake.token_requests[0] == {
            "grant_type": "client_credential",
            "appid": APP_ID,
            "secret": "app-secret",
        }
        assert len(env.fake.tokens_issued) == 2


async def test_a_push_that_fails_is_retried_until_it_goes_through(
    start: Callable[..., Any],
) -> None:
    model = DemoModel(tool_rounds=0, first_token_ms=600)
    async with start(model=model, passive_timeout_s=0.2, push_retry_base_s=0.05) as env:
        env.fake.busy_sends = 2  # WeChat says "system busy" twice
        assert (await post(env, message_xml(Content="忙的时候", msg_id="4242"))).text == "success"
        await eventually(lambda: len(env.fake.sent) >= 1)
        assert env.fake.busy_sends == 0 and len(env.fake.sent) == 1
        assert model.answer in env.fake.sent[0]["text"]["content"]


async def test_long_answer_is_split(start: Callable[..., Any]) -> None:
    sentence = "这是一个关于健康的很长的句子，用来测试分段发送。"
    answer = sentence * 120  # ~8.6 kB of UTF-8
    model = DemoModel(tool_rounds=0, answer=answer)
    async with start(model=model, passive_timeout_s=0.3) as env:
        response = await post(env, message_xml(Content="讲长一点", msg_id="999"))
        assert response.text == "success"
        await eventually(lambda: len(env.fake.sent) >= 4)
        await asyncio.sleep(0.1)
        parts = [m["text"]["content"] for m in env.fake.sent]
        assert len(parts) >= 4
        assert all(len(p.encode()) <= 2048 for p in parts)
        assert all(p.endswith("。") for p in parts[:-1])
        assert "".join(parts).startswith(answer)
        # The raw JSON carries Chinese as UTF-8, not \u escapes (they would break the limit).
        assert "这是".encode() in env.fake.sent[0]["raw"]


def test_split_text_on_sentences() -> None:
    assert split_text("short", 100) == ["short"]
    parts = split_text("One two. Three four! Five six? " * 10, 40)
    assert all(len(p.encode()) <= 40 for p in parts)
    assert all(p[-1] in ".!?" for p in parts)
    # A sentence longer than a message is cut between characters, never inside one.
    parts = split_text("长" * 100, 32)
    assert all(len(p.encode()) <= 32 for p in parts) and "".join(parts) == "长" * 100


# --- hostile and odd input --------------------------------------------------------------

BOMB = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(
        f'<!ENTITY lol{i} "' + (f"&lol{i - 1};" if i > 1 else "&lol;") * 10 + '">'
        for i in range(1, 10)
    )
    + "]><xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName>"
    "<MsgType>text</MsgType><Content>&lol9;</Content><MsgId>5</MsgId></xml>"
)
XXE = (
    '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    "<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><MsgType>text</MsgType>"
    "<Content>&xxe;</Content><MsgId>6</MsgId></xml>"
)


@pytest.mark.parametrize(
    "payload",
    [
        b"<xml><Content>unclosed",
        b"not xml at all",
        b"<other><MsgType>text</MsgType></other>",
        b"<xml><MsgType>text</MsgType></xml>",
        BOMB.encode(),
        XXE.encode(),
        b"\xff\xfe\x00garbage",
    ],
    ids=["unclosed", "text", "wrong-root", "no-sender", "billion-laughs", "xxe", "binary"],
)
async def test_bad_xml_is_refused_and_server_keeps_serving(
    start: Callable[..., Any], payload: bytes
) -> None:
    async with start() as env:
        began = time.monotonic()
        response = await post(env, payload)
        assert response.status_code == 400 and time.monotonic() - began < 2
        assert response.json()["error"]["code"] == "wechat_xml_invalid"
        assert "root:" not in response.text
        assert env.model.answer in reply_content(await post(env, message_xml(Content="ok")))
        assert len(env.model.requests) == 1


async def test_huge_payload_is_413(start: Callable[..., Any]) -> None:
    async with start(max_body_bytes=4096) as env:
        big = message_xml(Content="x" * 10_000)
        response = await post(env, big)
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "wechat_body_too_large"

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(10):
                yield b"<xml>" + b"y" * 1000

        streamed = await env.http.post(CALLBACK, params=signed(), content=chunks())
        assert streamed.status_code == 413
        assert env.model.answer in reply_content(await post(env, message_xml(Content="ok")))


async def test_unknown_types_and_events(start: Callable[..., Any]) -> None:
    async with start() as env:
        location = message_xml("location", Location_X="23.1", Location_Y="113.3")
        assert "location" in reply_content(await post(env, location))
        assert "文字" in reply_content(await post(env, message_xml("video", msg_id="2")))
        welcome = message_xml("event", msg_id="", Event="subscribe")
        assert "HealTrace" in reply_content(await post(env, welcome))
        consent = message_xml("event", msg_id="", Event="CLICK", EventKey="consent")
        assert "授权" in reply_content(await post(env, consent))
        rewards = message_xml("event", msg_id="", Event="CLICK", EventKey="REWARDS")
        assert "积分" in reply_content(await post(env, rewards))
        gone = message_xml("event", msg_id="", Event="unsubscribe")
        assert (await post(env, gone)).text == "success"
    assert env.model.requests == []


async def test_voice_with_recognition_is_the_turn_text(start: Callable[..., Any]) -> None:
    async with start() as env:
        xml = message_xml(
            "voice", msg_id="3001", MediaId="m-voice", Format="amr", Recognition="我咳嗽两周了"
        )
        assert env.model.answer in reply_content(await post(env, xml))
        assert ("user", "我咳嗽两周了") in await stored_messages(env.settings)
    assert env.fake.media_requests == []


async def test_voice_without_recognition_runs_asr(
    start: Callable[..., Any], settings: Settings
) -> None:
    t = np.arange(16000, dtype=np.float32) / 16000
    wav = encode(Audio((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000), "wav")
    asr = ScriptedASR(["喉咙痛"])
    speech = SpeechEngines(settings.speech, settings.data_dir, asr=asr)
    async with start(speech=speech) as env:
        env.fake.media["m-voice-2"] = wav
        xml = message_xml("voice", msg_id="3002", MediaId="m-voice-2", Format="amr")
        assert env.model.answer in reply_content(await post(env, xml))
        assert env.fake.media_requests == ["m-voice-2"]
        assert asr.calls and asr.calls[0][1] == "zh"
        assert ("user", "喉咙痛") in await stored_messages(env.settings)
        # A media id WeChat does not know: a polite reply, no turn.
        missing = message_xml("voice", msg_id="3003", MediaId="nope", Format="amr")
        assert "重新发送" in reply_content(await post(env, missing))
        assert len(env.model.requests) == 1


async def test_image_is_analysed_and_attached(start: Callable[..., Any]) -> None:
    import io

    from PIL import Image

    pixels = (np.random.default_rng(0).random((160, 160, 3)) * 255).astype("uint8")
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    async with start(passive_timeout_s=4.5) as env:
        env.fake.media["m-photo"] = buf.getvalue()
        xml = message_xml("image", msg_id="4001", MediaId="m-photo", PicUrl="http://x/y")
        response = await post(env, xml)
        assert response.status_code == 200
        await eventually(lambda: len(env.model.requests) == 1)
        assert env.fake.media_requests == ["m-photo"]
        assert ("user", "请帮我看看这张图片。") in await stored_messages(env.settings)
        stored = list((env.settings.data_dir / "images").rglob("*"))
        assert stored, "the photo was stored like an upload"


async def test_wecom_message_encrypted_both_ways_and_pushed(start: Callable[..., Any]) -> None:
    corp = "ww0123456789"
    model = DemoModel(tool_rounds=0, first_token_ms=1200)
    async with start(
        model=model,
        corp_id=corp,
        agent_id=1000002,
        encoding_aes_key=AES_KEY,
        passive_timeout_s=0.3,
    ) as env:
        crypto = WeComCrypto(TOKEN, AES_KEY, corp)
        timestamp, nonce = str(int(time.time())), "wecom-n"

        async def deliver(xml: str) -> httpx.Response:
            envelope = xmltodict.parse(crypto.encrypt_message(xml, nonce, timestamp))["xml"]
            body = f"<xml><ToUserName>{corp}</ToUserName><Encrypt>{envelope['Encrypt']}</Encrypt>"
            body += "<AgentID>1000002</AgentID></xml>"
            params = {"msg_signature": envelope["MsgSignature"], "timestamp": timestamp}
            return await env.http.post(
                CALLBACK, params={**params, "nonce": nonce}, content=body.encode()
            )

        # A fixed reply (no model) comes back encrypted for the corp.
        reply = await deliver(message_xml("event", msg_id="", Event="subscribe"))
        fields = xmltodict.parse(reply.text)["xml"]
        inner = crypto.decrypt_message(
            reply.text, fields["MsgSignature"], fields["TimeStamp"], fields["Nonce"]
        )
        assert "HealTrace" in xmltodict.parse(inner)["xml"]["Content"]
        # A slow answer is pushed through WeCom's own send API, with the AgentId.
        slow = await deliver(message_xml(Content="企业微信的问题", msg_id="5001"))
        assert slow.text == "success"
        await eventually(lambda: len(env.fake.sent) == 1)
        sent = env.fake.sent[0]
        assert sent["touser"] == OPENID and sent["agentid"] == 1000002
        assert model.answer in sent["text"]["content"]
        assert env.fake.token_requests == [{"corpid": corp, "corpsecret": "app-secret"}]
        # The plain Official Account signature is no way in for a corp.
        plain = await post(env, message_xml(Content="plain"))
        assert plain.status_code in (400, 403)


async def test_messages_in_a_row_wait_their_turn(start: Callable[..., Any]) -> None:
    model = DemoModel(tool_rounds=0, first_token_ms=100)
    async with start(model=model) as env:
        first, second = await asyncio.gather(
            post(env, message_xml(Content="第一句", msg_id="6001")),
            post(env, message_xml(Content="第二句", msg_id="6002")),
        )
        assert model.answer in reply_content(first)
        assert model.answer in reply_content(second)
        assert len(model.requests) == 2
        roles = [r for r, _ in await stored_messages(env.settings)]
        assert roles == ["user", "assistant", "user", "assistant"]


def test_wechatpy_parser_refuses_entities_too() -> None:
    # wechatpy parses with xmltodict, which (as installed) refuses entity declarations; the
    # endpoint refuses any DTD before that, so it does not depend on this.
    from wechatpy import parse_message

    for payload in (BOMB, XXE):
        with pytest.raises(ValueError, match="entities are disabled"):
            parse_message(payload)
