"""A real uvicorn server on a free loopback port, for tests and benchmarks."""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn


class LiveServer:
    """Runs ``app`` in the current event loop: ``async with LiveServer(app) as live: ...``."""

    def __init__(self, app: Any, *, ws_max_size: int = 1 << 20, host: str = "127.0.0.1") -> None:
        config = uvicorn.Config(
            app,
            host=host,
            port=0,
            log_level="warning",
            ws_max_size=ws_max_size,
            lifespan="on",
        )
        self.server = uvicorn.Server(config)
        self.task: asyncio.Task[None] | None = None
        self.host = host
        self.port = 0

    async def __aenter__(self) -> LiveServer:
        self.task = asyncio.get_running_loop().create_task(self.server.serve())
        while not self.server.started:
            if self.task.done():
                self.task.result()
                raise RuntimeError("the server stopped during start-up")
            await asyncio.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        assert self.task is not None
        await self.task

    @property
    def http(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://{self.host}:{self.port}/v1/ws/chat"
