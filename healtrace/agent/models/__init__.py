"""Chat model backends behind one interface, and the fallback across them."""

from healtrace.agent.models.base import (
    ChatMessage,
    Finish,
    ModelBackend,
    ModelDelta,
    ModelRequest,
    ReasoningDelta,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
    Usage,
)
from healtrace.agent.models.router import FallbackBackend, build_backend, build_router
from healtrace.agent.models.testing import DemoModel, ScriptedModel, Step

__all__ = [
    "ChatMessage",
    "DemoModel",
    "FallbackBackend",
    "Finish",
    "ModelBackend",
    "ModelDelta",
    "ModelRequest",
    "ReasoningDelta",
    "ScriptedModel",
    "Step",
    "TextDelta",
    "ToolCall",
    "ToolCallDelta",
    "ToolSpec",
    "Usage",
    "build_backend",
    "build_router",
]
