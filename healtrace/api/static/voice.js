"use strict";
// Voice on the demo page: push-to-talk and hands-free over the chat WebSocket.
// Frames: one flags byte (1 = captured while our audio was playing) + s16le PCM at the
// AudioContext's rate; the server resamples, finds the end of speech and answers with
// transcript and audio events. See docs/protocol.md#voice.
window.htVoice = (() => {
  let ctx = null, mic = null, node = null, mode = null, sending = false;
  let playEnd = 0, sources = [], turnAudio = null, pending = null;
  // What the voice part is doing, shown next to the buttons: idle, listening, speaking.
  function state(key) {
    const el = $("voiceState");
    el.dataset.state = key;
    el.textContent = key === "idle" ? "" : T[locale]["voice_" + key];
  }

  async function ensureMic() {
    if (node) return;
    ctx = new AudioContext();
    await ctx.audioWorklet.addModule("/static/voice-worklet.js");
    mic = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
    });
    node = new AudioWorkletNode(ctx, "pcm-capture");
    node.port.onmessage = (e) => {
      if (!sending || !ws || ws.readyState !== WebSocket.OPEN) return;
      const pcm = new Uint8Array(e.data);
      const frame = new Uint8Array(pcm.length + 1);
      frame[0] = playing() ? 1 : 0;
      frame.set(pcm, 1);
      ws.send(frame);
    };
    ctx.createMediaStreamSource(mic).connect(node);
  }
  const playing = () => ctx && ctx.currentTime < playEnd;

  function start(newMode) {
    mode = newMode;
    send({ type: "audio_start", mode, sample_rate: ctx.sampleRate, reply_format: "opus" });
  }
  function stopAll() {
    for (const s of sources) { try { s.stop(); } catch (e) { /* already ended */ } }
    sources = []; playEnd = 0;
  }
  async function play(ev) {
    const bytes = Uint8Array.from(atob(ev.data), (c) => c.charCodeAt(0));
    const buf = await ctx.decodeAudioData(bytes.buffer);
    const src = ctx.createBufferSource();
    src.buffer = buf; src.connect(ctx.destination);
    const at = Math.max(ctx.currentTime + 0.02, playEnd);
    src.start(at); playEnd = at + buf.duration; sources.push(src);
    if (ev.index === 0) send({ type: "playback", state: "started", turn_id: ev.turn_id });
    state("speaking");
    src.onended = () => {
      sources = sources.filter((s) => s !== src);
      if (!sources.length && turnAudio && turnAudio.done) {
        send({ type: "playback", state: "ended", turn_id: turnAudio.id }); turnAudio = null;
        state(mode === "hands_free" ? "listening" : "idle");
      }
    };
  }

  async function handsFree(button) {
    await ensureMic();
    if (mode === "hands_free") {
      send({ type: "audio_stop" }); sending = false; mode = null; stopAll();
      button.setAttribute("aria-pressed", "false"); state("idle"); return;
    }
    start("hands_free"); sending = true; button.setAttribute("aria-pressed", "true");
    state("listening");
  }
  async function pttDown() {
    await ensureMic();
    if (mode !== "push_to_talk") start("push_to_talk");
    stopAll(); sending = true; state("listening");
  }
  function pttUp() {
    if (!sending || mode !== "push_to_talk") return;
    sending = false; send({ type: "audio_end" }); state("idle");
  }

  function onEvent(ev) {
    switch (ev.type) {
      case "speech_started":
        pending = add("msg user pending", "…"); break;
      case "transcript":
        if (!pending) pending = add("msg user pending", "");
        pending.textContent = ev.text;
        if (ev.final) { sentHere.add(ev.utterance_id); pending.classList.remove("pending"); pending = null; }
        break;
      case "audio":
        if (!turnAudio || turnAudio.id !== ev.turn_id) turnAudio = { id: ev.turn_id, done: false };
        play(ev); break;
      case "audio_done":
        if (turnAudio && turnAudio.id === ev.turn_id) turnAudio.done = true;
        if (!sources.length) send({ type: "playback", state: "ended", turn_id: ev.turn_id });
        break;
      case "barge_in":
        stopAll(); turnAudio = null; state("listening"); break;
    }
  }
  return { handsFree, pttDown, pttUp, onEvent };
})();
