"""Settings: one object, read at the edge (CLI, app factory) and passed down.

Every setting has a working embedded default. Environment variables use the
``HEALTRACE_`` prefix; nested values (the model backend list) are JSON. A ``.env``
file in the working directory is read too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from healtrace.knowledge.config import KnowledgeConfig
from healtrace.mcp.config import McpServerConfig
from healtrace.records.config import RecordsConfig
from healtrace.records.fhir_config import FhirConfig
from healtrace.rewards.config import RewardsConfig
from healtrace.tenants import TenantConfig
from healtrace.wechat.config import WechatConfig

Locale = Literal["en", "zh-CN"]


def default_home() -> Path:
    """Where models and other caches live unless ``HEALTRACE_HOME`` says otherwise."""
    return Path.home() / ".cache" / "healtrace"


class OpenAIBackendConfig(BaseModel):
    """Any OpenAI-compatible chat endpoint: vLLM, DeepSeek, xAI Grok, a llama.cpp server."""

    kind: Literal["openai"] = "openai"
    name: str = "openai"
    base_url: str = "http://127.0.0.1:8001/v1"
    api_key: SecretStr = SecretStr("not-needed")
    model: str = "default"
    #: Whether the server understands the ``tools`` parameter (vLLM needs its tool-parser flags).
    native_tools: bool = True
    timeout_s: float = 60.0
    max_retries: int = 3
    backoff_base_s: float = 0.5
    backoff_max_s: float = 8.0
    temperature: float = 0.7
    top_p: float = 0.8
    max_tokens: int = 1024


class LocalBackendConfig(BaseModel):
    """In-process llama.cpp model (the embedded default)."""

    kind: Literal["local"] = "local"
    name: str = "local"
    #: A catalogue name (``qwen2.5-coder-0.5b``, ``smollm2-135m``) or a path to a GGUF file.
    model: str = "qwen2.5-coder-0.5b"
    n_ctx: int = 4096
    #: One thread is steadier on a busy 2-core machine; raise it on bigger hosts.
    n_threads: int = 2
    # Small models loop under greedy decoding; these keep them on track.
    temperature: float = 0.7
    top_p: float = 0.8
    repeat_penalty: float = 1.1
    max_tokens: int = 512
    seed: int = -1
    #: Answer from tool results given inside the question rather than as tool messages:
    #: small models shown their own call and its result tend to repeat the call.
    fold_tool_results: bool = True


class ScriptedBackendConfig(BaseModel):
    """The package's scripted demo model: no setup, calls every tool once, then answers."""

    kind: Literal["scripted"] = "scripted"
    name: str = "scripted"
    #: Delay before the first token and between tokens, to imitate a real backend.
    first_token_ms: float = 0.0
    token_interval_ms: float = 0.0
    #: How many tool-call rounds the demo model makes before answering (-1: one per tool).
    tool_rounds: int = -1
    answer: str = "This is the HealTrace demo model answering offline."


BackendConfig = Annotated[
    OpenAIBackendConfig | LocalBackendConfig | ScriptedBackendConfig,
    Field(discriminator="kind"),
]


class SafetyConfig(BaseModel):
    """Red-flag triage, output checks and human handoff (``HEALTRACE_SAFETY__*``)."""

    #: Region whose emergency number patients are given (``CN`` → 120, ``US`` → 911,
    #: ``GB`` → 999 …); empty: from the session's locale.
    region: str = ""
    #: Per-tenant regions, e.g. ``{"hk-clinic": "HK"}``; override ``region``.
    tenant_regions: dict[str, str] = Field(default_factory=dict)
    #: Triage at or above this level puts the session in the clinicians' queue.
    handoff_level: Literal["emergency", "urgent", "never"] = "emergency"
    #: Ask the model for a second opinion on every message; it can only raise the level.
    second_opinion: bool = False
    second_opinion_timeout_s: float = 4.0
    #: Check answers after generation (doctor claims, diagnoses, dosing, disclaimers).
    output_checks: bool = True
    #: How long a clinician's console login lasts.
    console_session_hours: float = 12.0


class SpeechConfig(BaseModel):
    """Speech in and out (``HEALTRACE_SPEECH__*``): engines, limits, voice turn timing."""

    #: ``local``: faster-whisper in process; ``openai``: an OpenAI-compatible
    #: ``/v1/audio/transcriptions`` server (vLLM serving Whisper, OpenAI).
    asr_backend: Literal["local", "openai"] = "local"
    #: Local Whisper model: ``base`` (multilingual, the default), ``tiny.en`` (English, for
    #: fast CI), or a directory holding a CTranslate2 Whisper model.
    asr_model: str = "base"
    asr_threads: int = 2
    asr_compute_type: str = "int8"
    asr_beam_size: int = 1
    #: Languages whose transcription gets a medical-vocabulary prompt. Measured here: it
    #: lowers Whisper base's Mandarin character error rate (0.83 → 0.56) but hurts English,
    #: which Whisper already hears well.
    asr_prompt_languages: list[str] = Field(default_factory=lambda: ["zh"])
    #: Remote ASR server and model (``asr_backend=openai``).
    asr_url: str = "http://127.0.0.1:8002/v1"
    asr_api_key: SecretStr = SecretStr("not-needed")
    asr_remote_model: str = "whisper-1"
    #: ``local``: piper (en) and espeak-ng pinyin (zh); ``openai``: ``/v1/audio/speech``.
    tts_backend: Literal["local", "openai"] = "local"
    tts_url: str = "http://127.0.0.1:8003/v1"
    tts_api_key: SecretStr = SecretStr("not-needed")
    tts_remote_model: str = "tts-1"
    tts_voice_en: str = ""
    tts_voice_zh: str = ""
    timeout_s: float = 60.0
    #: Largest upload (25 MB, as OpenAI's API) and longest recording accepted.
    max_audio_bytes: int = 25 * 1024 * 1024
    max_audio_seconds: float = 600.0
    max_speech_chars: int = 4096
    #: Format of ``audio`` events in voice turns.
    voice_format: Literal["wav", "mp3", "opus", "pcm"] = "opus"
    #: Silero speech probability that counts as speech.
    vad_threshold: float = 0.5
    #: Silence that ends an utterance.
    end_of_speech_ms: int = 600
    #: How often a partial transcript is produced while the user speaks (0: never).
    partial_interval_ms: int = 1200
    #: Speech needed while the assistant talks before it counts as barge-in.
    barge_in_ms: int = 240
    #: Frames captured during playback must be this much louder than the echo level.
    echo_margin_db: float = 9.0


class VisionConfig(BaseModel):
    """Image intake and analysis (``HEALTRACE_VISION__*``)."""

    #: Largest upload and largest image (pixels) accepted; DICOM files may be larger.
    max_image_bytes: int = 15 * 1024 * 1024
    max_pixels: int = 40_000_000
    max_dicom_bytes: int = 100 * 1024 * 1024
    #: An OpenAI-compatible vision-language model (e.g. vLLM serving Qwen2.5-VL): base URL
    #: of its ``/v1`` API. Empty: no VLM; the embedded analysis (quality, tongue features,
    #: OCR, DICOM metadata) answers alone and says so.
    vlm_url: str = ""
    vlm_api_key: SecretStr = SecretStr("not-needed")
    vlm_model: str = "Qwen/Qwen2.5-VL-7B-Instruct"
    vlm_timeout_s: float = 60.0
    vlm_max_tokens: int = 400


class ChainConfig(BaseModel):
    """Evidence anchoring on an EVM chain (``HEALTRACE_CHAIN__*``).

    With ``rpc_url`` empty the service starts its own anvil node (npm ``@foundry-rs/anvil``)
    on ``anvil_port`` with a state file in the data directory, deploys the registry once and
    anchors with anvil's first development account. Production sets ``rpc_url``,
    ``private_key`` (an account holding the registry's ANCHORER role) and
    ``registry_address``.
    """

    #: Write an evidence record with every answer. Off: answers carry no evidence hash.
    enabled: bool = True
    #: Anchor the records on chain from this process. Off: records are kept (their receipts
    #: stay pending) until a process with anchoring on sends them.
    anchoring: bool = True
    #: Any EVM JSON-RPC endpoint; empty: the embedded anvil node.
    rpc_url: str = ""
    #: The chain id the node must report (0: accept what it reports).
    chain_id: int = 0
    #: Hex private key that signs anchoring transactions (never logged). Empty with the
    #: embedded node: anvil's first well-known development key.
    private_key: SecretStr = SecretStr("")
    #: The deployed EvidenceRegistry; empty: deploy it once and remember the address in
    #: ``DATA_DIR/chain.json``.
    registry_address: str = ""
    #: The deployed HealthToken (rewards) and ConsentRegistry (records); empty: deployed
    #: once and remembered like the registry.
    token_address: str = ""
    consent_address: str = ""
    #: RPC URL printed in receipts for verifiers (empty: ``rpc_url`` or the anvil URL).
    public_rpc_url: str = ""
    #: The embedded node: its executable (empty: ``anvil`` on PATH, then ./node_modules/.bin),
    #: port, and state file (empty: ``DATA_DIR/chain/anvil-state.json``).
    anvil_path: str = ""
    anvil_port: int = 8545
    anvil_state: str = ""
    #: A batch is anchored when this many records wait …
    batch_size: int = 512
    #: … or when the oldest waiting record is this old.
    batch_interval_s: float = 10.0
    #: Most records in one batch (one transaction).
    max_batch: int = 10_000
    #: Retries when the node is unreachable: exponential backoff between these bounds.
    retry_base_s: float = 1.0
    retry_max_s: float = 30.0
    #: Time limit of one RPC request, and of waiting for a transaction to be mined.
    rpc_timeout_s: float = 10.0
    receipt_timeout_s: float = 120.0


def _default_backends() -> list[BackendConfig]:
    return [LocalBackendConfig()]


class Settings(BaseSettings):
    """All HealTrace settings. See the README's settings table."""

    model_config = SettingsConfigDict(
        env_prefix="HEALTRACE_",
        env_file=".env",
        env_file_encoding="utf-8",
        env_nested_delimiter="__",
        extra="ignore",
    )

    home: Path = Field(default_factory=default_home)
    data_dir: Path = Path("data")
    database_url: str = ""

    host: str = "127.0.0.1"
    port: int = 8000
    #: Browser origins allowed on the WebSocket handshake and CORS; empty: the service's own.
    allowed_origins: list[str] = Field(default_factory=list)
    #: Create and print a development API key on first start when no key exists.
    dev_key: bool = True

    #: Model backends tried in order; the next one is used when one is unavailable.
    llm_backends: list[BackendConfig] = Field(default_factory=lambda: _default_backends())
    default_locale: Locale = "en"

    knowledge: KnowledgeConfig = Field(default_factory=KnowledgeConfig)
    safety: SafetyConfig = Field(default_factory=SafetyConfig)
    speech: SpeechConfig = Field(default_factory=SpeechConfig)
    vision: VisionConfig = Field(default_factory=VisionConfig)
    chain: ChainConfig = Field(default_factory=ChainConfig)
    records: RecordsConfig = Field(default_factory=RecordsConfig)
    fhir: FhirConfig = Field(default_factory=FhirConfig)
    rewards: RewardsConfig = Field(default_factory=RewardsConfig)
    wechat: WechatConfig = Field(default_factory=WechatConfig)
    #: Per-tenant settings by tenant id (a key's tenant): its own knowledge collection,
    #: default locale, name. See :class:`healtrace.tenants.TenantConfig`.
    tenants: dict[str, TenantConfig] = Field(default_factory=dict)
    #: Knowledge-base excerpts retrieved for every question and given to the model (0: none).
    retrieval_k: int = 3
    max_tool_rounds: int = 4
    tool_timeout_s: float = 20.0
    #: Tools (by name) no tenant is offered, e.g. a plugin's tool that should stay off.
    tools_disabled: list[str] = Field(default_factory=list)
    #: External MCP servers whose tools are mounted, as JSON: a list of
    #: ``{"name", "transport": "stdio"|"http", "command"|"url", ...}``
    #: (see :class:`healtrace.mcp.config.McpServerConfig`).
    mcp_servers: list[McpServerConfig] = Field(default_factory=list)
    #: Tokens of history (estimated) sent to the model; older turns are summarised away.
    context_tokens: int = 3072
    #: Stream the model's reasoning to clients as ``reasoning`` events (never mixed into answers).
    stream_reasoning: bool = False

    max_message_chars: int = 8000
    max_frame_bytes: int = 65536
    hello_timeout_s: float = 10.0
    #: Events kept per session for clients that reconnect and resume.
    replay_buffer_events: int = 4096
    #: Messages and requests a publishable (website) key may make per minute, all its users
    #: together (a token bucket; bursts up to this many). 0: no limit.
    rate_limit_per_key_per_min: int = Field(default=600, ge=0)
    #: The same per end user of a publishable key (the widget's anonymous ``end_user`` id,
    #: else the client's address). 0: no limit.
    rate_limit_per_user_per_min: int = Field(default=20, ge=0)
    log_level: str = "info"

    @field_validator("llm_backends")
    @classmethod
    def _at_least_one_backend(cls, value: list[BackendConfig]) -> list[BackendConfig]:
        if not value:
            raise ValueError("HEALTRACE_LLM_BACKENDS needs at least one backend")
        return value

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'healtrace.db').resolve()}"

    @property
    def resolved_origins(self) -> list[str]:
        if self.allowed_origins:
            return self.allowed_origins
        hosts = (
            {self.host, "127.0.0.1", "localhost"}
            if self.host
            in (
                "127.0.0.1",
                "localhost",
                "0.0.0.0",
            )
            else {self.host}
        )
        return sorted(f"http://{h}:{self.port}" for h in hosts if h != "0.0.0.0")
