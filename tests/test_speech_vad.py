"""Streaming VAD on the real Silero model: endpointing and echo-proof barge-in."""

from __future__ import annotations

import subprocess
from functools import cache
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import pytest

from healtrace.speech.vad import (
    BargeInDetector,
    Endpointer,
    SileroVAD,
    SpeechEnd,
    SpeechStart,
    VADEvent,
)

SR = 16_000
FRAME = 320  # 20 ms
Samples = npt.NDArray[np.float32]


@cache
def espeak(text: str, tmp: Path = Path("/tmp")) -> Samples:
    """espeak-ng speech at 16 kHz with leading/trailing silence trimmed."""
    out = tmp / f"healtrace-vad-{abs(hash(text))}.wav"
    subprocess.run(["/usr/bin/espeak-ng", "-v", "en-us", "-w", str(out), text], check=True)
    chunks = []
    with av.open(str(out)) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SR)
        for frame in container.decode(audio=0):
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
        chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    out.unlink()
    samples = np.concatenate(chunks).astype(np.float32)
    loud = np.nonzero(np.abs(samples) > 1e-3)[0]
    return samples[loud[0] : loud[-1] + 1]


def silence(seconds: float) -> Samples:
    return np.zeros(int(seconds * SR), dtype=np.float32)


def feed_all(endpointer: Endpointer, samples: Samples, size: int) -> list[VADEvent]:
    events: list[VADEvent] = []
    for i in range(0, len(samples), size):
        events += endpointer.feed(samples[i : i + size])
    return events


SENTENCE = "The patient has a fever and a cough."


def test_silence_gives_no_events() -> None:
    endpointer = Endpointer(SileroVAD())
    assert feed_all(endpointer, silence(3.0), FRAME) == []
    assert endpointer.flush() == []


def test_one_utterance_with_pre_roll() -> None:
    speech = espeak(SENTENCE)
    stream = np.concatenate([silence(1.0), speech, silence(1.0)])
    endpointer = Endpointer(SileroVAD(), pre_roll_ms=300, post_roll_ms=200)
    events = feed_all(endpointer, stream, FRAME)
    assert [type(e) for e in events] == [SpeechStart, SpeechEnd]
    start, end = events
    assert isinstance(start, SpeechStart) and isinstance(end, SpeechEnd)
    speech_end = 1.0 + len(speech) / SR
    assert abs(start.t - 1.0) <= 0.15
    assert abs(end.t - speech_end) <= 0.15
    # The audio covers the speech: it starts about pre-roll before it and ends after it.
    assert abs(end.start - (1.0 - 0.3)) <= 0.15
    audio_end = end.start + end.audio.duration_s
    assert speech_end - 0.05 <= audio_end <= speech_end + 0.2 + 0.15
    assert not end.forced


def test_two_utterances() -> None:
    first = espeak(SENTENCE)
    second = espeak("Take the tablets twice a day.")
    stream = np.concatenate([silence(1.0), first, silence(1.2), second, silence(1.0)])
    events = feed_all(Endpointer(SileroVAD()), stream, FRAME)
    assert [type(e) for e in events] == [SpeechStart, SpeechEnd, SpeechStart, SpeechEnd]


def test_pausing_marks_the_silence_that_may_end_an_utterance() -> None:
    endpointer = Endpointer(SileroVAD(), end_of_speech_ms=600)
    feed_all(endpointer, np.concatenate([silence(0.5), espeak(SENTENCE)]), FRAME)
    assert endpointer.in_speech and not endpointer.pausing
    feed_all(endpointer, silence(0.3), FRAME)
    assert endpointer.in_speech and endpointer.pausing
    events = feed_all(endpointer, silence(0.5), FRAME)
    assert [type(e) for e in events] == [SpeechEnd]
    assert not endpointer.in_speech and not endpointer.pausing


def test_low_white_noise_is_not_speech() -> None:
    rng = np.random.default_rng(7)
    noise = (rng.standard_normal(3 * SR) * 0.01).astype(np.float32)  # about -40 dBFS
    assert feed_all(Endpointer(SileroVAD()), noise, FRAME) == []


def test_odd_chunk_sizes_match_20ms_frames() -> None:
    stream = np.concatenate([silence(0.8), espeak(SENTENCE), silence(1.0)])
    reference = feed_all(Endpointer(SileroVAD()), stream, FRAME)
    odd = feed_all(Endpointer(SileroVAD()), stream, 777)
    assert [type(e) for e in odd] == [type(e) for e in reference]
    assert [e.t for e in odd] == [e.t for e in reference]
    assert isinstance(odd[1], SpeechEnd) and isinstance(reference[1], SpeechEnd)
    assert np.array_equal(odd[1].audio.samples, reference[1].audio.samples)


def test_long_utterance_is_cut_and_flush_closes() -> None:
    speech = espeak("one two three four five six seven eight nine ten eleven twelve")
    endpointer = Endpointer(SileroVAD(), max_utterance_s=1.0)
    events = feed_all(endpointer, np.concatenate([silence(0.5), speech]), FRAME)
    ends = [e for e in events if isinstance(e, SpeechEnd)]
    assert ends and ends[0].forced and ends[0].audio.duration_s <= 1.0 + 0.3 + 0.05
    tail = endpointer.flush()
    assert all(isinstance(e, SpeechEnd) and e.forced for e in tail)


def test_vad_state_streams_like_one_pass() -> None:
    """Chunk-by-chunk probabilities equal faster-whisper's whole-file run (same model)."""
    from faster_whisper.vad import get_vad_model  # type: ignore[import-untyped]

    stream = np.concatenate([silence(0.5), espeak(SENTENCE), silence(0.5)])
    stream = stream[: len(stream) - len(stream) % 512]
    whole = get_vad_model()(stream.copy()).reshape(-1)
    vad = SileroVAD()
    streamed = [vad.probability(stream[i : i + 512]) for i in range(0, len(stream), 512)]
    np.testing.assert_allclose(streamed, whole, atol=1e-4)


# --- barge-in ---------------------------------------------------------------------------

ASSISTANT = (
    "The patient has a fever and a cough. She also reports chest pain and shortness of "
    "breath since yesterday. Please drink plenty of fluids."
)
USER = "Wait, wait, I need to ask about my medication."
ECHO_GAIN = 0.1  # -20 dB


def feed_frames(detector: BargeInDetector, samples: Samples, playback: bool) -> list[int]:
    """Sample offsets of the frames on which barge-in fired."""
    return [
        i for i in range(0, len(samples), FRAME) if detector.feed(samples[i : i + FRAME], playback)
    ]


def test_echo_never_triggers_barge_in() -> None:
    echo = espeak(ASSISTANT) * ECHO_GAIN
    detector = BargeInDetector(SileroVAD(), min_speech_ms=240, echo_margin_db=9.0)
    assert feed_frames(detector, np.concatenate([silence(0.3), echo, echo]), True) == []
    assert detector.echo_db is not None


def test_user_over_playback_triggers_quickly() -> None:
    echo = espeak(ASSISTANT) * ECHO_GAIN
    user = espeak(USER)
    detector = BargeInDetector(SileroVAD(), min_speech_ms=240, echo_margin_db=9.0)
    assert feed_frames(detector, echo[: 2 * SR], True) == []
    mixed = echo[2 * SR : 2 * SR + len(user)] + user
    fired = feed_frames(detector, mixed, True)
    assert len(fired) == 1
    assert fired[0] / SR <= 0.240 + 0.100
    # Latched: more speech does not fire again until reset.
    assert feed_frames(detector, user, True) == []


def test_speech_without_playback_triggers() -> None:
    detector = BargeInDetector(SileroVAD(), min_speech_ms=240, echo_margin_db=9.0)
    fired = feed_frames(detector, np.concatenate([silence(0.5), espeak(USER)]), False)
    assert len(fired) == 1
    assert 0.5 + 0.24 <= fired[0] / SR + FRAME / SR <= 0.5 + 0.24 + 0.15


@pytest.mark.parametrize("playback", [True, False])
def test_silence_never_triggers(playback: bool) -> None:
    detector = BargeInDetector(SileroVAD(), min_speech_ms=240, echo_margin_db=9.0)
    assert feed_frames(detector, silence(2.0), playback) == []
