"""Frames a WebSocket client sends, and the server's connection-level replies.

Agent events (``turn_started``, ``token``, …) are defined in ``healtrace.agent.events``;
this module holds only what belongs to the connection itself. See docs/protocol.md.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

PROTOCOL_VERSION = 1

# Close codes (4000-4999 are free for applications; RFC 6455 §7.4.2).
CLOSE_AUTH = 4401
CLOSE_ORIGIN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_HELLO_TIMEOUT = 4408
CLOSE_SHUTDOWN = 1001


class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Hello(_Frame):
    type: Literal["hello"]
    api_key: str | None = Field(default=None, max_length=200)
    #: Continue this conversation; omit to start a new one.
    session_id: str | None = Field(default=None, max_length=64)
    locale: Literal["en", "zh-CN"] | None = None
    #: Replay every event after this sequence number before going live.
    resume_from_seq: int | None = Field(default=None, ge=0)
    #: An anonymous id of the person using a website widget (rate limits per end user).
    end_user: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")


class UserMessage(_Frame):
    type: Literal["user_message"]
    #: May be empty ("") when ``image_ids`` are given.
    text: str
    #: The client's own id for this message, echoed in ``turn_started``.
    client_message_id: str | None = Field(default=None, max_length=64)
    #: Images to look at with this message (ids returned by ``POST /v1/images``).
    image_ids: list[Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]] = Field(
        default_factory=list, max_length=4
    )
    #: Tool calls the patient approves (``approval_id`` of ``approval_required`` events).
    approvals: list[Annotated[str, Field(pattern=r"^[0-9a-f]{24}$")]] = Field(
        default_factory=list, max_length=8
    )


class Cancel(_Frame):
    type: Literal["cancel"]


class Resume(_Frame):
    type: Literal["resume"]
    after_seq: int = Field(ge=0)


class Ping(_Frame):
    type: Literal["ping"]


class RequestHandoff(_Frame):
    """The patient asks for a person (the page's button; typed requests are recognised too)."""

    type: Literal["request_handoff"]


class CancelHandoff(_Frame):
    """The patient no longer wants to wait for a person."""

    type: Literal["cancel_handoff"]


class AudioStart(_Frame):
    """Voice input begins: binary frames that follow carry audio (docs/protocol.md#voice).

    Each binary frame is one flags byte (bit 0 set: captured while the client was playing
    the assistant's audio) followed by little-endian signed 16-bit mono PCM at
    ``sample_rate``, ideally 20 ms per frame.
    """

    type: Literal["audio_start"]
    format: Literal["pcm_s16le"] = "pcm_s16le"
    sample_rate: int = 16000
    #: ``hands_free``: the server finds the end of each utterance (VAD) and the user may
    #: talk over the answer; ``push_to_talk``: the utterance ends with ``audio_end``.
    mode: Literal["hands_free", "push_to_talk"] = "hands_free"
    #: Speak the answers (``audio`` events) as well as streaming their text.
    speak: bool = True
    #: Format of ``audio`` events; default from settings (HEALTRACE_SPEECH__VOICE_FORMAT).
    reply_format: Literal["wav", "mp3", "opus", "pcm"] | None = None
    #: Let Whisper detect the language instead of using the session's locale.
    detect_language: bool = False


class AudioEnd(_Frame):
    """Push-to-talk released: the utterance is complete."""

    type: Literal["audio_end"]


class AudioStop(_Frame):
    """Leave voice mode: drop any utterance in progress and stop speaking."""

    type: Literal["audio_stop"]


class Playback(_Frame):
    """The client's player: ``ended`` once the last ``audio`` chunk of a turn has played."""

    type: Literal["playback"]
    state: Literal["started", "ended"]
    turn_id: str = Field(max_length=64)
    #: Milliseconds of the turn's audio played so far.
    played_ms: int | None = Field(default=None, ge=0)


ClientFrame = Annotated[
    Hello
    | UserMessage
    | Cancel
    | Resume
    | Ping
    | RequestHandoff
    | CancelHandoff
    | AudioStart
    | AudioEnd
    | AudioStop
    | Playback,
    Field(discriminator="type"),
]
CLIENT_FRAME: TypeAdapter[ClientFrame] = TypeAdapter(ClientFrame)
CLIENT_TYPES = (
    "hello",
    "user_message",
    "cancel",
    "resume",
    "ping",
    "request_handoff",
    "cancel_handoff",
    "audio_start",
    "audio_end",
    "audio_stop",
    "playback",
)


class HelloOk(BaseModel):
    type: Literal["hello_ok"] = "hello_ok"
    protocol: int = PROTOCOL_VERSION
    session_id: str
    locale: str
    last_seq: int
    #: False when events asked for by ``resume_from_seq`` are gone: reload over REST.
    resumed: bool = True


class Pong(BaseModel):
    type: Literal["pong"] = "pong"


# --- voice (connection-level: not numbered, not replayed) -------------------------------


class VoiceReady(BaseModel):
    """``audio_start`` accepted; binary audio frames may follow."""

    type: Literal["voice_ready"] = "voice_ready"
    mode: str
    sample_rate: int
    reply_format: str | None
    language: str | None
    asr: str
    tts: str | None


class SpeechStarted(BaseModel):
    type: Literal["speech_started"] = "speech_started"
    utterance_id: str


class TranscriptEvent(BaseModel):
    """What was heard: partial while the user speaks, then final (which starts the turn)."""

    type: Literal["transcript"] = "transcript"
    utterance_id: str
    text: str
    final: bool
    language: str | None = None
    duration_ms: int = 0
    model: str = ""
    #: Time the ASR engine took for this transcript.
    asr_ms: int = 0


class AudioChunk(BaseModel):
    """Speech for one sentence of the answer, a complete file in ``format``, base64."""

    type: Literal["audio"] = "audio"
    turn_id: str
    index: int
    format: str
    sample_rate: int
    duration_ms: int
    text: str
    data: str
    #: Time spent synthesising and encoding this sentence.
    synth_ms: int = 0


class AudioDone(BaseModel):
    """All of a turn's speech was sent."""

    type: Literal["audio_done"] = "audio_done"
    turn_id: str
    chunks: int
    duration_ms: int


class BargeIn(BaseModel):
    """The user spoke over the answer: playback and the answer stopped here."""

    type: Literal["barge_in"] = "barge_in"
    turn_id: str
    #: The sentences the patient had heard in full, and the one cut off.
    spoken_text: str
    cut_text: str
    played_ms: int
