"""``healtrace wechat …``: set up the Official Account (or WeCom app) side of the channel."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import httpx
import typer

from healtrace.wechat.api import HttpWechatApi, WechatApiError
from healtrace.wechat.config import WechatConfig

__all__ = ["create_menu", "menu_buttons", "wechat_app"]

wechat_app = typer.Typer(no_args_is_help=True, help="The WeChat Official Account / WeCom channel")

#: Labels of the menu keys the channel explains (``channel.MENU_HELP``). WeChat allows
#: 16 bytes per top-level button name.
MENU_LABELS = {
    "consent": {"en": "Consent", "zh-CN": "授权说明"},
    "rewards": {"en": "Rewards", "zh-CN": "健康积分"},
}


def menu_buttons(locale: str) -> list[dict[str, str]]:
    """One CLICK button per key the channel answers, labelled in ``locale``."""
    from healtrace.wechat.channel import MENU_HELP  # the channel pulls in speech and vision

    return [{"type": "click", "name": MENU_LABELS[key][locale], "key": key} for key in MENU_HELP]


async def create_menu(
    config: WechatConfig, buttons: list[dict[str, str]], client: httpx.AsyncClient | None = None
) -> None:
    """Create the account's menu through the message API ``config`` points at."""
    api = HttpWechatApi(config, client)
    try:
        await api.create_menu(buttons)
    finally:
        await api.aclose()


@wechat_app.command("menu")
def menu(
    locale: Annotated[
        str | None, typer.Option(help="en or zh-CN (default: HEALTRACE_WECHAT__LOCALE)")
    ] = None,
    show: Annotated[
        bool, typer.Option("--print", help="Print the menu's JSON instead of creating it")
    ] = False,
) -> None:
    """Create the menu: CLICK buttons whose keys the channel explains (consent, rewards).

    This replaces the account's whole custom menu. Needs HEALTRACE_WECHAT__APP_ID and
    HEALTRACE_WECHAT__APP_SECRET (WeCom: CORP_ID, AGENT_ID and the app's secret).
    """
    from healtrace.config import Settings

    config = Settings().wechat
    chosen = locale or config.locale
    if chosen not in ("en", "zh-CN"):
        typer.echo(f"--locale must be en or zh-CN, not {chosen!r}", err=True)
        raise typer.Exit(2)
    buttons = menu_buttons(chosen)
    payload: dict[str, Any] = {"button": buttons}
    if show:
        typer.echo(json.dumps(payload, ensure_ascii=False, indent=2))
        return
    if not config.app_secret.get_secret_value() or not (config.app_id or config.corp_id):
        typer.echo(
            "Set HEALTRACE_WECHAT__APP_ID and HEALTRACE_WECHAT__APP_SECRET (WeCom: "
            "HEALTRACE_WECHAT__CORP_ID, HEALTRACE_WECHAT__AGENT_ID and the app's secret).",
            err=True,
        )
        raise typer.Exit(1)
    try:
        asyncio.run(create_menu(config, buttons))
    except WechatApiError as exc:
        typer.echo(f"WeChat refused the menu: {exc}", err=True)
        raise typer.Exit(1) from exc
    names = ", ".join(f"{b['name']} ({b['key']})" for b in buttons)
    typer.echo(f"Menu created: {names}")
