"""The FastAPI application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from healtrace import __version__
from healtrace.agent.citations import KnowledgeSearch
from healtrace.agent.models.base import ModelBackend
from healtrace.api import (
    console,
    evidence,
    images,
    labs,
    openai_compat,
    patients,
    rest,
    rewards,
    speech_api,
    wechat,
    widget,
    ws,
)
from healtrace.api._http import (
    error_response,
    healtrace_error_handler,
    http_error_handler,
    refuse_oversized_uploads,
    request_locale,
)
from healtrace.api._security import SecurityHeaders
from healtrace.api.services import build_services, dev_key_path, ensure_dev_key
from healtrace.chain.client import RegistryChain
from healtrace.config import Settings
from healtrace.errors import HealTraceError
from healtrace.mcp import server as mcp_server
from healtrace.records.fhir_store import FhirStore
from healtrace.records.ledger import ConsentLedger
from healtrace.rewards.minter import TokenMinter
from healtrace.speech.engines import SpeechEngines
from healtrace.tools.core import ToolRegistry

log = logging.getLogger(__name__)
STATIC = files("healtrace.api").joinpath("static")


def create_app(
    settings: Settings | None = None,
    *,
    model: ModelBackend | None = None,
    tools: ToolRegistry | None = None,
    knowledge: KnowledgeSearch | None = None,
    speech: SpeechEngines | None = None,
    registry: RegistryChain | None = None,
    consent_ledger: ConsentLedger | None = None,
    fhir: FhirStore | None = None,
    minter: TokenMinter | None = None,
) -> FastAPI:
    """Build the app. ``model``, ``tools``, ``knowledge``, ``speech``, ``registry`` (the
    evidence chain), ``consent_ledger`` and ``fhir`` replace the configured ones (tests,
    embedding)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await build_services(
            settings,
            model=model,
            tools=tools,
            knowledge=knowledge,
            speech=speech,
            registry=registry,
            consent_ledger=consent_ledger,
            fhir=fhir,
            minter=minter,
        )
        app.state.services = services
        app.state.rewards = services.rewards
        key = await ensure_dev_key(services)
        if key:
            url = f"http://{settings.host}:{settings.port}/#key={key}"
            # Printed once, when the key is created; it is also kept in the data directory.
            print(
                f"\nHealTrace development API key (saved to {dev_key_path(settings)}):\n"
                f"  {key}\nTry the chat page: {url}\n",
                flush=True,
            )
        for problem in services.tools.load_errors:
            log.error("%s", problem)
        try:
            async with mcp_server.McpHttp(services).run() as app.state.mcp:
                yield
        finally:
            await services.aclose()

    app = FastAPI(
        title="HealTrace",
        version=__version__,
        summary="Conversational medical assistant service with verifiable evidence",
        lifespan=lifespan,
    )
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.resolved_origins,
        allow_methods=["GET", "POST"],
        allow_headers=["Authorization", "X-API-Key", "Content-Type", "Accept-Language"],
    )
    app.add_middleware(SecurityHeaders)
    app.add_exception_handler(HealTraceError, healtrace_error_handler)
    # FastAPI's own 400s (a body that is not UTF-8) in HealTrace's error shape.
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.middleware("http")(refuse_oversized_uploads)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        return error_response(
            "invalid_event", request_locale(request), status=422, detail=detail[:300]
        )

    app.include_router(rest.router)
    app.include_router(ws.router)
    app.include_router(console.router)
    app.include_router(labs.router)
    app.include_router(speech_api.router)
    app.include_router(images.router)
    app.include_router(evidence.router)
    app.include_router(patients.router)
    app.include_router(rewards.router)
    app.include_router(widget.router)
    app.include_router(wechat.router)
    app.include_router(openai_compat.router)
    # MCP clients: HealTrace's tools over streamable HTTP (healtrace.mcp.server).
    app.router.routes.append(Route("/mcp", mcp_server.McpHttpEndpoint()))
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(STATIC.joinpath("index.html").read_text(encoding="utf-8"))

    return app
