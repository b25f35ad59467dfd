"""Speech in and out: audio decoding, ASR and TTS (issue #6)."""
