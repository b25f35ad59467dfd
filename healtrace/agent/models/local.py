"""In-process llama.cpp chat model: the embedded default backend.

llama.cpp generates synchronously, so every call into it runs on one worker thread owned by
the backend; tokens cross to the event loop through an :class:`asyncio.Queue`. One thread
also means one generation at a time: concurrent turns queue up on an :class:`asyncio.Lock`.
A consumer that stops iterating sets a :class:`threading.Event` that the worker checks
between tokens and llama.cpp's abort callback checks inside a long prompt evaluation, so an
abandoned answer stops within a token.

Prompts are rendered from the GGUF's own chat template (``tokenizer.chat_template``) with a
sandboxed Jinja environment that behaves like Hugging Face's, instead of llama-cpp-python's
chat handlers, so that templates which take ``tools`` (Qwen2.5) get them natively. Such a
template asks for ``<tool_call>{json}</tool_call>``; Qwen2.5-Coder-0.5B mostly answers with
the bare or fenced JSON instead. :class:`~healtrace.agent._textcalls.TextCallSplitter`
turns any of these into :class:`~healtrace.agent.models.base.ToolCallDelta` items. Templates
without tools (SmolLM2) get tool traffic flattened into text, and the orchestrator parses
calls itself.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
from collections.abc import AsyncGenerator, Callable, Generator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import jinja2

from healtrace.agent._textcalls import (
    TextCallSplitter,
    fold_tool_results,
    has_pending_tool_results,
)
from healtrace.agent.models._chat_template import CHATML, ChatTemplate, template_messages
from healtrace.agent.models.base import (
    ChatMessage,
    Finish,
    ModelDelta,
    ModelRequest,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from healtrace.agent.models.catalog import CATALOG, resolve_model_path
from healtrace.config import LocalBackendConfig
from healtrace.errors import BackendResponseError, BackendUnavailable, HealTraceError

if TYPE_CHECKING:
    from llama_cpp import Llama

log = logging.getLogger(__name__)

StopReason = Literal["stop", "length"]


@dataclass
class _WhitespaceTrim:
    """Drops leading whitespace and holds trailing whitespace back until more text follows."""

    _started: bool = False
    _held: str = ""

    def feed(self, text: str) -> str:
        if not self._started:
            text = text.lstrip()
            if not text:
                return ""
            self._started = True
        text = self._held + text
        out = text.rstrip()
        self._held = text[len(out) :]
        return out


@dataclass(frozen=True, slots=True)
class _Loaded:
    llm: Llama
    template: ChatTemplate
    filename: str
    #: llama.cpp's abort callback; held here so ctypes does not free it while in use.
    abort_hook: object = None


@dataclass(frozen=True, slots=True)
class _Done:
    reason: StopReason
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class _Failed:
    error: HealTraceError


class _End:
    """The worker has returned; nothing more will arrive."""


_Item = str | _Done | _Failed | _End


@dataclass
class _Job:
    prompt: str
    max_tokens: int
    temperature: float
    seed: int
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[_Item]
    #: Set by the consumer when it stops listening; the worker checks it between tokens.
    stop: threading.Event = field(default_factory=threading.Event)

    def emit(self, item: _Item) -> None:
        """Called from the worker thread: hand ``item`` to the event loop."""
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:
            # The loop has closed (shutdown mid-answer): nobody is listening any more.
            self.stop.set()


def open_llama(path: Path, config: LocalBackendConfig) -> Llama:
    """Load ``path`` with llama-cpp-python (imported only now: it is an optional extra)."""
    try:
        from llama_cpp import Llama
    except ImportError as exc:
        raise BackendUnavailable(
            "llama-cpp-python is not installed: install the wheel built with portable CPU "
            "flags (see DESIGN.md), or configure another backend in HEALTRACE_LLM_BACKENDS"
        ) from exc
    _route_llama_logs()
    return Llama(
        model_path=str(path),
        n_ctx=config.n_ctx,
        n_threads=config.n_threads,
        n_threads_batch=config.n_threads,
        verbose=False,
    )


class LocalBackend:
    """A GGUF model run in-process with llama-cpp-python.

    The model loads on first use, or up front with :meth:`load` (do that at start-up: it also
    settles :attr:`native_tools`, which until then comes from the catalogue). Use one
    instance from one event loop. ``open_model`` replaces :func:`open_llama` (tests pass
    a scripted stand-in for ``llama_cpp.Llama``).
    """

    def __init__(
        self,
        config: LocalBackendConfig,
        *,
        models_dir: Path,
        open_model: Callable[[Path, LocalBackendConfig], Llama] | None = None,
    ) -> None:
        self._config = config
        self._models_dir = models_dir
        self._open = open_model or open_llama
        self._lock = asyncio.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._loading: Future[_Loaded] | None = None
        self._loaded: _Loaded | None = None
        self._running: _Job | None = None
        entry = CATALOG.get(config.model)
        self._filename = entry.filename if entry is not None else Path(config.model).name
        self._declared_tools = entry.template_tools if entry is not None else False

    @property
    def name(self) -> str:
        return self._config.name

    @property
    def model_id(self) -> str:
        return f"local:{Path(self._filename).stem.lower()}"

    @property
    def native_tools(self) -> bool:
        if self._loaded is not None:
            return self._loaded.template.supports_tools
        return self._declared_tools

    async def load(self) -> None:
        """Load the model now (in the worker thread) instead of on the first request.

        Raises :class:`~healtrace.errors.ConfigurationError` if the model file is missing: a
        fallback to another backend must not hide that (and could send patient text to a
        remote server nobody meant to use).
        """
        await self._ensure_loaded()

    async def _ensure_loaded(self) -> _Loaded:
        if self._loaded is not None:
            return self._loaded
        if self._loading is None:
            self._loading = self._pool().submit(self._load_sync)
        loading = self._loading
        try:
            # Shielded: a caller that gives up must not cancel a load others wait for.
            loaded = await asyncio.shield(asyncio.wrap_future(loading))
        except HealTraceError:
            if self._loading is loading:
                self._loading = None  # let the next request try again
            raise
        if self._loading is not loading:
            raise BackendUnavailable("the local model was closed while it was loading")
        self._loaded = loaded
        return loaded

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama")
        return self._executor

    def _load_sync(self) -> _Loaded:
        path = resolve_model_path(self._config.model, self._models_dir)
        try:
            llm = self._open(path, self._config)
        except (ValueError, RuntimeError) as exc:
            raise BackendUnavailable(f"llama.cpp could not load {path}: {exc}") from exc
        metadata: dict[str, str] = llm.metadata
        source = metadata.get("tokenizer.chat_template")
        if not source:
            log.warning("%s has no chat template; using ChatML", path.name)
            source = CHATML
        try:
            template = ChatTemplate(
                source,
                bos_token=_token_text(llm, metadata.get("tokenizer.ggml.bos_token_id")),
                eos_token=_token_text(llm, metadata.get("tokenizer.ggml.eos_token_id")),
            )
        except jinja2.TemplateError as exc:
            llm.close()
            raise BackendUnavailable(f"the chat template of {path.name} is invalid: {exc}") from exc
        log.info(
            "loaded %s (template tools: %s, end of turn %r)",
            path.name,
            template.supports_tools,
            template.end_of_turn,
        )
        hook = _install_abort_hook(llm, self._abort_requested)
        return _Loaded(llm=llm, template=template, filename=path.name, abort_hook=hook)

    def _abort_requested(self) -> bool:
        # Called by llama.cpp from its compute threads during decode.
        job = self._running
        return job is not None and job.stop.is_set()

    async def stream(self, request: ModelRequest) -> AsyncGenerator[ModelDelta, None]:
        """Stream one answer. Close the generator (or cancel its consumer) to stop early."""
        async with self._lock:
            loaded = await self._ensure_loaded()
            native = loaded.template.supports_tools
            messages: Sequence[ChatMessage] = request.messages
            answering = has_pending_tool_results(request.messages)
            if answering and self._config.fold_tool_results:
                messages, native = fold_tool_results(request.messages), False
            tools = [t.to_openai() for t in request.tools] if native and not answering else []
            try:
                prompt = loaded.template.render(
                    template_messages(messages, native_tools=native), tools=tools
                )
            except jinja2.TemplateError as exc:
                raise BackendResponseError(
                    f"the chat template of {loaded.filename} rejected the conversation: {exc}"
                ) from exc
            job = _Job(
                prompt=prompt,
                max_tokens=request.max_tokens or self._config.max_tokens,
                temperature=(
                    request.temperature
                    if request.temperature is not None
                    else self._config.temperature
                ),
                # llama-cpp-python derives an unseeded completion's seed from the model's
                # fixed one, so "random" (-1) would repeat the same sample every time.
                seed=self._config.seed if self._config.seed >= 0 else secrets.randbits(31),
                loop=asyncio.get_running_loop(),
                queue=asyncio.Queue(),
            )
            worker = asyncio.wrap_future(self._pool().submit(self._generate, loaded, job))
            try:
                deltas = self._deltas(job.queue, loaded, splitter=bool(tools))
                async with aclosing(deltas):
                    async for delta in deltas:
                        yield delta
                await worker
            finally:
                job.stop.set()
                # llama.cpp state is not safe to share: hold the lock until the worker has
                # noticed the stop (it checks between tokens).
                await _settle(worker)

    async def _deltas(
        self, queue: asyncio.Queue[_Item], loaded: _Loaded, *, splitter: bool
    ) -> AsyncGenerator[ModelDelta, None]:
        calls_splitter = TextCallSplitter() if splitter else None
        trim = _WhitespaceTrim()
        while True:
            item = await queue.get()
            if isinstance(item, str):
                shown = trim.feed(calls_splitter.feed(item) if calls_splitter else item)
                if shown:
                    yield TextDelta(shown)
            elif isinstance(item, _Failed):
                raise item.error
            elif isinstance(item, _Done):
                calls: list[ToolCall] = []
                if calls_splitter is not None:
                    rest = calls_splitter.finish()
                    calls = rest.calls
                    shown = trim.feed(rest.text)
                    if shown:
                        yield TextDelta(shown)
                for call in calls:
                    yield ToolCallDelta(call)
                yield Finish(
                    reason="tool_calls" if calls else item.reason,
                    usage=Usage(item.prompt_tokens, item.completion_tokens),
                    model=loaded.filename,
                )
            else:
                return

    def _generate(self, loaded: _Loaded, job: _Job) -> None:
        """Worker thread: run one completion, posting text pieces, then _Done or _Failed."""
        self._running = job
        try:
            if job.stop.is_set():
                return
            llm = loaded.llm
            tokens = llm.tokenize(job.prompt.encode("utf-8"), add_bos=True, special=True)
            bos = llm.token_bos()
            if len(tokens) > 1 and tokens[0] == tokens[1] == bos:
                tokens = tokens[1:]  # the template wrote BOS itself
            n_ctx = self._config.n_ctx
            if len(tokens) >= n_ctx:
                # Another backend (a server with a longer context) may still take it.
                raise BackendUnavailable(
                    f"the prompt is {len(tokens)} tokens, more than the local model's "
                    f"n_ctx {n_ctx}: raise n_ctx of the local backend in "
                    "HEALTRACE_LLM_BACKENDS or lower HEALTRACE_CONTEXT_TOKENS"
                )
            chunks = llm.create_completion(
                tokens,
                max_tokens=min(job.max_tokens, n_ctx - len(tokens)),
                temperature=job.temperature,
                top_p=self._config.top_p,
                repeat_penalty=self._config.repeat_penalty,
                stop=[end] if (end := loaded.template.end_of_turn) else [],
                seed=job.seed,
                stream=True,
            )
            if not isinstance(chunks, Generator):
                raise BackendResponseError("llama-cpp-python did not stream the completion")
            reason: StopReason = "length"
            pieces: list[str] = []
            try:
                for chunk in chunks:
                    if job.stop.is_set():
                        return
                    choice = chunk["choices"][0]
                    if choice["text"]:
                        pieces.append(choice["text"])
                        job.emit(choice["text"])
                    if choice["finish_reason"] == "stop":
                        reason = "stop"
            finally:
                chunks.close()
            text = "".join(pieces)
            completion = (
                len(llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)) if text else 0
            )
            job.emit(_Done(reason, len(tokens), completion))
        except HealTraceError as exc:
            job.emit(_Failed(exc))
        except (RuntimeError, ValueError) as exc:
            # llama-cpp-python raises these for decode failures and bad parameters; a decode
            # we aborted on purpose (the consumer left) ends the same way and is no failure.
            if not job.stop.is_set():
                error = BackendUnavailable(f"llama.cpp failed while generating: {exc}")
                job.emit(_Failed(error))
        finally:
            self._running = None
            job.emit(_End())

    async def aclose(self) -> None:
        """Free the model and stop the worker thread. A later request loads it again."""
        async with self._lock:
            executor, self._executor = self._executor, None
            loading, self._loading = self._loading, None
            loaded, self._loaded = self._loaded, None
            if executor is None:
                return
            if loaded is None and loading is not None:
                await _settle(asyncio.wrap_future(loading))
                if not loading.cancelled() and loading.exception() is None:
                    loaded = loading.result()
            loop = asyncio.get_running_loop()
            if loaded is not None:
                await loop.run_in_executor(executor, loaded.llm.close)
            # Joined off the event loop; the thread is idle by now (we hold the lock).
            await loop.run_in_executor(None, executor.shutdown)


async def _settle(future: asyncio.Future[Any]) -> None:
    """Wait for ``future`` to finish without raising what it raised."""
    await asyncio.wait([future])
    if not future.cancelled():
        future.exception()  # retrieved, so asyncio does not log it as never retrieved


_llama_log_hook: object = None


def _route_llama_logs() -> None:
    """Send llama.cpp's own log lines to Python logging instead of raw stderr.

    llama-cpp-python prints some of them to stderr even with ``verbose=False`` (for example
    on every aborted decode); routed, they obey the service's log configuration.
    """
    global _llama_log_hook
    if _llama_log_hook is not None:
        return
    import ctypes

    import llama_cpp

    levels = {2: logging.WARNING, 3: logging.ERROR}
    llama_log = logging.getLogger("llama_cpp")

    def forward(level: int, text: bytes, _data: ctypes.c_void_p) -> None:
        line = text.decode("utf-8", errors="replace").rstrip()
        if line:
            llama_log.log(levels.get(level, logging.DEBUG), "%s", line)

    _llama_log_hook = llama_cpp.llama_log_callback(forward)
    llama_cpp.llama_log_set(_llama_log_hook, ctypes.c_void_p(0))


def _install_abort_hook(llm: Llama, should_abort: Callable[[], bool]) -> object:
    """Let a stop request interrupt ``llama_decode`` itself, not only wait for a token.

    A long prompt is evaluated in one decode call, which takes seconds on a small CPU (about
    65 prompt tokens/s for the 0.5B model on 2 cores); without this, a cancelled turn would
    hold the model until that finished. llama-cpp-python has no public hook, so this reaches
    its context handle; anything without one (a stand-in in tests) is left alone.
    """
    ctx = getattr(getattr(llm, "_ctx", None), "ctx", None)
    if ctx is None:
        return None
    import llama_cpp

    hook = llama_cpp.ggml_abort_callback(lambda _data: should_abort())
    llama_cpp.llama_set_abort_callback(ctx, hook, None)
    return hook


def _token_text(llm: Llama, token_id: str | None) -> str:
    if token_id is None or int(token_id) < 0:
        return ""
    text: bytes = llm.detokenize([int(token_id)], special=True)
    return text.decode("utf-8", errors="replace")
