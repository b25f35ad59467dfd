"""Live sessions: per-session event numbering, replay for reconnecting clients, and the
turn tasks that run independently of any one connection.

A turn keeps running if the client's connection drops; the client reconnects and resumes
from the last sequence number it saw. Only an explicit cancel stops a turn early.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from healtrace.agent.events import AnswerDone, ErrorEvent, Event, TurnHeld
from healtrace.agent.memory import ChatStore
from healtrace.agent.orchestrator import Orchestrator, UserTurn
from healtrace.errors import InputError, localized

log = logging.getLogger(__name__)

#: After a restart, numbering jumps this far past the last persisted number, so numbers a
#: killed process handed out (but could not persist) are never reused.
RESTART_SEQ_GAP = 100_000


@dataclass
class _SessionLog:
    next_seq: int
    #: The persisted sequence number at load: a client that saw exactly this missed nothing.
    loaded_at: int
    buffer: collections.deque[Event]
    subscribers: set[asyncio.Queue[Event | None]] = field(default_factory=set)


class EventHub:
    """Numbers and fans out events per session, keeping a bounded buffer for replay.

    In-process; a Redis-backed hub with the same methods carries events across workers.
    """

    def __init__(
        self, store: ChatStore, *, buffer_events: int = 4096, max_sessions: int = 2000
    ) -> None:
        self.store = store
        self.buffer_events = buffer_events
        self.max_sessions = max_sessions
        self._logs: collections.OrderedDict[str, _SessionLog] = collections.OrderedDict()
        self._lock = asyncio.Lock()
        #: Set by the turn runner: a session with a running turn is never forgotten.
        self._busy: Callable[[str], bool] = lambda _session_id: False

    async def _log(self, session_id: str) -> _SessionLog:
        existing = self._logs.get(session_id)
        if existing is not None:
            self._logs.move_to_end(session_id)
            return existing
        async with self._lock:
            if session_id not in self._logs:
                info = await self.store.get_session(session_id)
                start = info.last_seq + RESTART_SEQ_GAP if info.last_seq else 1
                self._logs[session_id] = _SessionLog(
                    next_seq=start,
                    loaded_at=info.last_seq,
                    buffer=collections.deque(maxlen=self.buffer_events),
                )
                self._evict(keep=session_id)
            return self._logs[session_id]

    def _evict(self, keep: str) -> None:
        """Forget the least recently used idle sessions beyond ``max_sessions``.

        A client resuming a forgotten session is told to reload (``resume_gap``), exactly
        as after a restart; numbering continues from the stored last number.
        """
        excess = len(self._logs) - self.max_sessions
        for session_id in list(self._logs):
            if excess <= 0:
                break
            log_ = self._logs[session_id]
            if session_id != keep and not log_.subscribers and not self._busy(session_id):
                del self._logs[session_id]
                excess -= 1

    async def publish(self, event: Event) -> Event:
        log_ = await self._log(event.session_id)
        stamped = event.model_copy(update={"seq": log_.next_seq})
        log_.next_seq += 1
        log_.buffer.append(stamped)
        for queue in log_.subscribers:
            queue.put_nowait(stamped)
        if isinstance(stamped, AnswerDone | ErrorEvent | TurnHeld):
            await self.store.set_last_seq(stamped.session_id, stamped.seq)
        return stamped

    def is_live(self, session_id: str) -> bool:
        """Whether this process holds the session's events (someone follows it, or did
        recently)."""
        return session_id in self._logs

    async def last_seq(self, session_id: str) -> int:
        return (await self._log(session_id)).next_seq - 1

    async def subscribe(self, session_id: str, *, after_seq: int | None = None) -> Subscription:
        """Events after ``after_seq`` (replayed from the buffer), then live ones.

        ``subscription.complete`` is False when some requested events are no longer
        buffered (the client should reload the conversation over REST).
        """
        log_ = await self._log(session_id)
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        complete = True
        if after_seq is not None:
            oldest = log_.buffer[0].seq if log_.buffer else log_.next_seq
            if after_seq < oldest - 1 and after_seq != log_.loaded_at:
                complete = False
            for event in log_.buffer:
                if event.seq > after_seq:
                    queue.put_nowait(event)
        log_.subscribers.add(queue)
        return Subscription(log_, queue, complete)

    def close(self) -> None:
        for log_ in self._logs.values():
            for queue in log_.subscribers:
                queue.put_nowait(None)


class Subscription:
    """A client's view of one session's events; ``aclose()`` unsubscribes."""

    def __init__(
        self, log_: _SessionLog, queue: asyncio.Queue[Event | None], complete: bool
    ) -> None:
        self._log = log_
        self._queue = queue
        self.complete = complete

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        item = await self._queue.get()
        if item is None:
            raise StopAsyncIteration
        return item

    async def aclose(self) -> None:
        self._log.subscribers.discard(self._queue)


@dataclass
class _RunningTurn:
    turn: UserTurn
    task: asyncio.Task[None]
    cancel: asyncio.Event


class TurnRunner:
    """Starts turns as owned tasks, one at a time per session, and cancels them on request."""

    def __init__(self, orchestrator: Orchestrator, hub: EventHub) -> None:
        self.orchestrator = orchestrator
        self.hub = hub
        self._running: dict[str, _RunningTurn] = {}
        hub._busy = self.is_running
        self._tasks: set[asyncio.Task[None]] = set()

    def is_running(self, session_id: str) -> bool:
        return session_id in self._running

    def start(self, turn: UserTurn) -> asyncio.Task[None]:
        if turn.session_id in self._running:
            raise InputError("a turn is already running", code="turn_in_progress")
        cancel = asyncio.Event()
        task = asyncio.get_running_loop().create_task(self._run(turn, cancel))
        self._running[turn.session_id] = _RunningTurn(turn, task, cancel)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda _t: self._release(turn))
        return task

    def _release(self, turn: UserTurn) -> None:
        running = self._running.get(turn.session_id)
        if running is not None and running.turn.turn_id == turn.turn_id:
            del self._running[turn.session_id]

    async def _run(self, turn: UserTurn, cancel: asyncio.Event) -> None:
        try:
            async for event in self.orchestrator.run_turn(turn, cancel=cancel):
                if isinstance(event, AnswerDone | ErrorEvent | TurnHeld):
                    # The session is free for the next message as soon as the client can
                    # see that this one ended.
                    self._release(turn)
                await self.hub.publish(event)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("turn %s crashed", turn.turn_id)
            await self.hub.publish(
                ErrorEvent(
                    session_id=turn.session_id,
                    turn_id=turn.turn_id,
                    code="internal_error",
                    message=localized("internal_error", turn.locale),
                    retryable=True,
                )
            )

    def cancel(self, session_id: str) -> bool:
        running = self._running.get(session_id)
        if running is None:
            return False
        running.cancel.set()
        return True

    async def aclose(self) -> None:
        """Stop every turn (server shutdown): cancel, then wait for each to record its end."""
        for running in list(self._running.values()):
            running.cancel.set()
        tasks = list(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=5)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
