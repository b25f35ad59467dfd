"""The agent: one conversational turn, its events, memory and live sessions.

Members are imported on first use: ``healtrace.tools`` (which plugins import first) needs
``healtrace.agent.models`` while the orchestrator here needs ``healtrace.tools``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from healtrace._lazy import lazy_getattr as _lazy_getattr

if TYPE_CHECKING:
    from healtrace.agent.events import (
        AnswerDone,
        ErrorEvent,
        Event,
        Reasoning,
        Token,
        ToolCallEvent,
        ToolResultEvent,
        TurnStarted,
        parse_event,
    )
    from healtrace.agent.memory import ChatStore, MessageRecord, SessionInfo
    from healtrace.agent.orchestrator import Orchestrator, UserTurn
    from healtrace.agent.sessions import EventHub, Subscription, TurnRunner

_WHERE = {
    "AnswerDone": "events",
    "ErrorEvent": "events",
    "Event": "events",
    "Reasoning": "events",
    "Token": "events",
    "ToolCallEvent": "events",
    "ToolResultEvent": "events",
    "TurnStarted": "events",
    "parse_event": "events",
    "ChatStore": "memory",
    "MessageRecord": "memory",
    "SessionInfo": "memory",
    "Orchestrator": "orchestrator",
    "UserTurn": "orchestrator",
    "EventHub": "sessions",
    "Subscription": "sessions",
    "TurnRunner": "sessions",
}

__all__ = [
    "AnswerDone",
    "ChatStore",
    "ErrorEvent",
    "Event",
    "EventHub",
    "MessageRecord",
    "Orchestrator",
    "Reasoning",
    "SessionInfo",
    "Subscription",
    "Token",
    "ToolCallEvent",
    "ToolResultEvent",
    "TurnRunner",
    "TurnStarted",
    "UserTurn",
    "parse_event",
]


__getattr__ = _lazy_getattr(__name__, _WHERE, globals())
