"""``healtrace wechat menu``: the Official Account menu, against the local fake of WeChat."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from typer.testing import CliRunner

from healtrace.api.testing import LiveServer
from healtrace.cli import app
from healtrace.wechat import WechatConfig
from healtrace.wechat.channel import MENU_HELP
from healtrace.wechat.cli import create_menu, menu_buttons
from tests._wechat_fake import FakeWechat

APP_ID = "wx0123456789abcdef"


def _client(fake: FakeWechat) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app()))


async def test_menu_has_a_click_button_for_every_key_the_channel_answers() -> None:
    fake = FakeWechat()
    config = WechatConfig(app_id=APP_ID, app_secret="s3cret", api_base="http://wechat.test")
    async with _client(fake) as client:
        await create_menu(config, menu_buttons("zh-CN"), client)
    assert fake.token_requests[0]["appid"] == APP_ID
    (menu,) = fake.menus
    assert {b["type"] for b in menu["button"]} == {"click"}
    assert [b["key"] for b in menu["button"]] == list(MENU_HELP)
    assert [b["name"] for b in menu["button"]] == ["授权说明", "健康积分"]
    assert "agentid" not in menu


async def test_wecom_menu_names_the_app() -> None:
    fake = FakeWechat()
    config = WechatConfig(
        corp_id="ww0123", agent_id=1000002, app_secret="s3cret", api_base="http://wechat.test"
    )
    async with _client(fake) as client:
        await create_menu(config, menu_buttons("en"), client)
    assert fake.token_requests[0]["corpid"] == "ww0123"
    (menu,) = fake.menus
    assert menu["agentid"] == "1000002"
    assert [b["name"] for b in menu["button"]] == ["Consent", "Rewards"]


async def test_cli_creates_the_menu(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeWechat()
    async with LiveServer(fake.app()) as live:
        monkeypatch.setenv("HEALTRACE_WECHAT__APP_ID", APP_ID)
        monkeypatch.setenv("HEALTRACE_WECHAT__APP_SECRET", "s3cret")
        monkeypatch.setenv("HEALTRACE_WECHAT__API_BASE", live.http)
        # The command runs its own event loop, so it runs in a thread beside the fake's.
        result = await asyncio.to_thread(CliRunner().invoke, app, ["wechat", "menu"])
    assert result.exit_code == 0, result.output
    assert "consent" in result.output and "rewards" in result.output
    assert [b["key"] for b in fake.menus[0]["button"]] == list(MENU_HELP)


def test_cli_prints_the_menu_without_credentials() -> None:
    result = CliRunner().invoke(app, ["wechat", "menu", "--print", "--locale", "en"])
    assert result.exit_code == 0, result.output
    buttons = json.loads(result.output)["button"]
    assert buttons == [
        {"type": "click", "name": "Consent", "key": "consent"},
        {"type": "click", "name": "Rewards", "key": "rewards"},
    ]


def test_cli_names_the_missing_settings() -> None:
    result = CliRunner().invoke(app, ["wechat", "menu"])
    assert result.exit_code == 1
    assert "HEALTRACE_WECHAT__APP_SECRET" in result.output
