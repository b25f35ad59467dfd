"""Fallback across configured backends, and the factory that builds them from settings."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence

from healtrace.agent.models.base import ModelBackend, ModelDelta, ModelRequest
from healtrace.config import (
    BackendConfig,
    LocalBackendConfig,
    OpenAIBackendConfig,
    ScriptedBackendConfig,
    Settings,
)
from healtrace.errors import BackendUnavailable, ConfigurationError

log = logging.getLogger(__name__)


class FallbackBackend:
    """Tries each backend in order; moves on only if one fails before it produced anything.

    Once a backend has streamed output to the user, switching to another would splice two
    answers together, so a later failure is raised instead.
    """

    def __init__(self, backends: Sequence[ModelBackend]) -> None:
        if not backends:
            raise ConfigurationError("HEALTRACE_LLM_BACKENDS must list at least one backend")
        self._backends = list(backends)
        self._last_used: ModelBackend = self._backends[0]

    @property
    def name(self) -> str:
        return "+".join(b.name for b in self._backends)

    @property
    def model_id(self) -> str:
        return self._last_used.model_id

    @property
    def native_tools(self) -> bool:
        return self._backends[0].native_tools

    @property
    def backends(self) -> list[ModelBackend]:
        return list(self._backends)

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelDelta]:
        last_error: BackendUnavailable | None = None
        for backend in self._backends:
            produced = False
            try:
                self._last_used = backend
                async for delta in backend.stream(request):
                    produced = True
                    yield delta
                return
            except BackendUnavailable as exc:
                if produced:
                    raise
                log.warning("backend %s unavailable (%s); trying the next one", backend.name, exc)
                last_error = exc
        assert last_error is not None
        raise last_error

    async def load(self) -> None:
        """Load in-process models now, so the first answer does not wait and a missing model
        file stops start-up with a clear message instead of failing the first turn."""
        for backend in self._backends:
            load = getattr(backend, "load", None)
            if load is not None:
                await load()

    async def aclose(self) -> None:
        for backend in self._backends:
            await backend.aclose()


def build_backend(config: BackendConfig, settings: Settings) -> ModelBackend:
    """One backend from its configuration. Heavy imports happen only for the kind asked for."""
    if isinstance(config, OpenAIBackendConfig):
        from healtrace.agent.models.openai_backend import OpenAIBackend

        return OpenAIBackend(config)
    if isinstance(config, LocalBackendConfig):
        from healtrace.agent.models.local import LocalBackend

        return LocalBackend(config, models_dir=settings.models_dir)
    if isinstance(config, ScriptedBackendConfig):
        from healtrace.agent.models.testing import DemoModel

        return DemoModel(
            first_token_ms=config.first_token_ms,
            token_interval_ms=config.token_interval_ms,
            tool_rounds=config.tool_rounds,
            name=config.name,
            answer=config.answer,
        )
    raise ConfigurationError(f"unknown backend kind in HEALTRACE_LLM_BACKENDS: {config!r}")


def build_router(settings: Settings) -> FallbackBackend:
    return FallbackBackend([build_backend(c, settings) for c in settings.llm_backends])
