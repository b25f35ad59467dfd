// HealTrace chat widget: paste one tag into a page (see docs/widget.md):
//   <script src="https://healtrace.example/static/widget.js" data-key="ht_pk_…"></script>
// It defines <healtrace-chat>, a Web Component whose shadow DOM keeps the host page's styles
// out, and talks to the service it was loaded from (docs/protocol.md). Everything the model
// or a patient wrote is untrusted: it only ever goes into textContent.
(() => {
  "use strict";
  if (window.customElements.get("healtrace-chat")) return;
  const script = document.currentScript;

  const T = {
    en: {
      approve: "Approve", approved: "I approve.",
      title: "Health assistant", open: "Open the health assistant chat", close: "Close chat",
      greeting: "Hello! Ask me a health question. I am not a doctor; in an emergency call your local emergency number.",
      placeholder: "Type your question…", input: "Your message", send: "Send", stop: "Stop",
      photo: "Add a photo", language: "Language", sources: "Sources", source: "Source",
      connecting: "Connecting…", online: "Connected", offline: "Reconnecting…",
      uploading: "Uploading the photo…", photoSent: "Photo", evidencePending: "evidence recorded",
      verified: "verified", verifiedTitle: "This answer's evidence is anchored on chain: open its receipt",
      emergency: "Seek emergency care now", urgent: "Please see a doctor soon",
      call: (n) => `Call ${n}`, dismiss: "Dismiss", you: "You", assistant: "Assistant",
      consent: "Access to your records", cancelled: "(stopped)", thinking: "Answering…",
      uploadFailed: "The photo could not be uploaded.", originRefused: "This website may not use this chat key.",
      unreachable: "The health assistant cannot be reached right now.",
      ptt: "Hold to talk", handsFree: "Hands-free", listening: "Listening…",
      speaking: "Speaking… (talk to interrupt)",
      micDenied: "The microphone was not allowed. Allow it for this site in your browser's settings, then try again.",
      noMic: "No microphone is available in this browser.", noVoice: "Voice input does not work in this browser.",
    },
    "zh-CN": {
      approve: "同意", approved: "我同意。",
      title: "健康助手", open: "打开健康助手对话", close: "关闭对话",
      greeting: "您好！请问有什么健康问题？我不是医生；如遇紧急情况，请立即拨打急救电话。",
      placeholder: "请输入您的问题…", input: "您的消息", send: "发送", stop: "停止",
      photo: "添加照片", language: "语言", sources: "参考来源", source: "来源",
      connecting: "正在连接…", online: "已连接", offline: "正在重新连接…",
      uploading: "正在上传照片…", photoSent: "照片", evidencePending: "已记录证据",
      verified: "已上链", verifiedTitle: "此回答的证据已上链：打开凭证",
      emergency: "请立即就医急救", urgent: "请尽快就医",
      call: (n) => `拨打 ${n}`, dismiss: "关闭", you: "您", assistant: "助手",
      consent: "病历访问授权", cancelled: "（已停止）", thinking: "正在回答…",
      uploadFailed: "照片上传失败。", originRefused: "本网站不能使用此对话密钥。",
      unreachable: "暂时无法连接健康助手。",
      ptt: "按住说话", handsFree: "免提对话", listening: "正在听…", speaking: "正在朗读…（直接说话可打断）",
      micDenied: "未获准使用麦克风。请在浏览器的网站设置中允许本网站使用麦克风后重试。",
      noMic: "此浏览器没有可用的麦克风。", noVoice: "此浏览器不支持语音输入。",
    },
  };

  const STYLE = `
:host { all: initial; }
*, *::before, *::after { box-sizing: border-box; }
[hidden] { display: none !important; }
.wrap { --accent: #0b6; --bg: #fff; --fg: #1a1a1a; --muted: #5f6368; --line: #dadce0;
  --bubble: #f1f3f4; --warn: #b3261e; font: 15px/1.45 system-ui, -apple-system, "Segoe UI",
  "PingFang SC", "Microsoft YaHei", sans-serif; color: var(--fg); position: fixed; bottom: 20px;
  right: 20px; z-index: 2147483000; display: flex; flex-direction: column; align-items: flex-end;
  gap: 12px; text-align: left; letter-spacing: normal; }
.wrap.left { right: auto; left: 20px; align-items: flex-start; }
.wrap.dark { --bg: #1f2124; --fg: #e8eaed; --muted: #a8abaf; --line: #3c4043; --bubble: #2d2f33;
  --warn: #f2b8b5; }
.wrap.inline { position: static; height: 100%; width: 100%; }
button, select, textarea, input { font: inherit; color: inherit; }
button { cursor: pointer; }
:focus-visible { outline: 3px solid var(--accent); outline-offset: 2px; }
.launcher { display: inline-flex; align-items: center; justify-content: center; width: 56px; height: 56px;
  border-radius: 50%; border: 0; background: var(--accent); color: #fff; box-shadow: 0 4px 14px rgba(0,0,0,.25); }
.launcher svg { width: 28px; height: 28px; fill: currentColor; }
form button.photo svg { width: 22px; height: 22px; fill: var(--muted); vertical-align: middle; }
.panel { display: flex; flex-direction: column; width: 380px; height: min(600px, calc(100vh - 100px));
  background: var(--bg); color: var(--fg); border: 1px solid var(--line); border-radius: 14px;
  box-shadow: 0 8px 30px rgba(0,0,0,.25); overflow: hidden; }
.inline .panel { width: 100%; height: 100%; border-radius: 0; box-shadow: none; border: 0; }
header { display: flex; align-items: center; gap: 8px; padding: 10px 12px; background: var(--accent); color: #fff; }
header h2 { flex: 1; margin: 0; font-size: 16px; font-weight: 600; color: #fff; }
header img { width: 28px; height: 28px; border-radius: 50%; object-fit: cover; }
header select { background: rgba(255,255,255,.15); color: #fff; border: 1px solid rgba(255,255,255,.5); border-radius: 6px; }
header select option { color: #000; }
header .close { background: transparent; border: 0; color: #fff; font-size: 22px; line-height: 1; padding: 2px 6px; }
.sr { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
.status { font-size: 12px; color: var(--muted); padding: 2px 12px; min-height: 18px; }
.triage { margin: 8px 12px 0; padding: 10px; border-radius: 8px; border: 2px solid var(--warn); color: var(--fg); }
.triage strong { display: block; color: var(--warn); }
.triage a { display: inline-block; margin-top: 6px; padding: 6px 12px; border-radius: 6px; background: var(--warn);
  color: #fff; font-weight: 600; text-decoration: none; }
.triage button { margin-left: 8px; background: transparent; border: 1px solid var(--line); border-radius: 6px; }
.log { flex: 1; overflow-y: auto; padding: 12px; display: flex; flex-direction: column; gap: 8px; }
.msg { max-width: 88%; padding: 8px 11px; border-radius: 12px; white-space: pre-wrap; word-wrap: break-word; color: var(--fg); }
.msg.user { align-self: flex-end; background: var(--accent); color: #fff; }
.msg.assistant { align-self: flex-start; background: var(--bubble); }
.msg.meta { align-self: center; background: transparent; color: var(--muted); font-size: 13px; }
.msg.error { align-self: stretch; max-width: none; background: transparent; color: var(--warn); border: 1px solid var(--warn); }
.cite { border: 0; background: transparent; color: var(--accent); font-weight: 600; padding: 0 1px; font-size: .85em; vertical-align: super; }
details.sources { margin-top: 6px; font-size: 13px; }
details.sources ol { margin: 4px 0 0; padding-left: 20px; }
details.sources li { margin-bottom: 4px; }
details.sources li.active { background: rgba(0,187,102,.12); }
details.sources .snippet { display: block; color: var(--muted); }
a { color: var(--accent); }
.evidence { display: inline-block; margin-top: 4px; font-size: 12px; color: var(--muted); }
.evidence.verified { color: var(--accent); font-weight: 600; }
.consent { align-self: stretch; border: 1px solid var(--accent); border-radius: 8px; padding: 8px; font-size: 14px; }
.consent strong { display: block; }
form { display: flex; gap: 6px; padding: 8px; border-top: 1px solid var(--line); align-items: flex-end; }
textarea { flex: 1; resize: none; min-height: 40px; max-height: 120px; padding: 8px; border: 1px solid var(--line);
  border-radius: 8px; background: var(--bg); color: var(--fg); }
form button { min-height: 40px; border-radius: 8px; border: 1px solid var(--line); background: var(--bg); padding: 0 10px; }
form button.send { background: var(--accent); border-color: var(--accent); color: #fff; }
form button:disabled, .voice button:disabled { opacity: .5; cursor: default; }
.voice { display: flex; gap: 6px; align-items: center; padding: 8px 8px 0; border-top: 1px solid var(--line); }
.voice + form { border-top: 0; }
.voice button { min-height: 36px; border-radius: 18px; border: 1px solid var(--line); background: var(--bg); padding: 0 12px;
  touch-action: none; user-select: none; -webkit-user-select: none; -webkit-touch-callout: none; }
.voice button.active, .voice button[aria-pressed="true"] { background: var(--accent); border-color: var(--accent); color: #fff; }
.voice-state { font-size: 12px; color: var(--muted); }
.msg.user.pending { opacity: .7; }
@media (max-width: 600px) {
  .wrap.open { inset: 0; bottom: 0; right: 0; left: 0; }
  .wrap.open .launcher { display: none; }
  .wrap.open .panel { width: 100vw; height: 100vh; height: 100dvh; border-radius: 0; border: 0; }
}`;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    node.append(...children);
    return node;
  }
  const httpUrl = (value, base) => {
    try {
      const url = new URL(value, base);
      return url.protocol === "https:" || url.protocol === "http:" ? url.href : null;
    } catch (err) { return null; }
  };
  function newId() {
    if (crypto.randomUUID) return crypto.randomUUID().replace(/-/g, "");
    return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
  }
  function store(kind) {
    try { return kind === "local" ? window.localStorage : window.sessionStorage; } catch (err) { return null; }
  }
  const CHAT_ICON = "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8l-4 4V6a2 2 0 0 1 2-2z";
  const CAMERA_ICON = "M9 4 7.2 6H4a2 2 0 0 0-2 2v10a2 2 0 0 0 2 2h16a2 2 0 0 0 2-2V8a2 2 0 0 0-2-2h-3.2L15 4H9zm3 4.5a4.5 4.5 0 1 1 0 9 4.5 4.5 0 0 1 0-9zm0 2a2.5 2.5 0 1 0 0 5 2.5 2.5 0 0 0 0-5z";

  // A copy of static/voice-worklet.js (a test keeps them equal). Worklet modules load in CORS
  // mode and the service answers CORS only for HEALTRACE_ALLOWED_ORIGINS, which a site that
  // embeds the widget need not be in: there the service's copy is refused and this one loads
  // from a blob: URL of the page's own origin.
  const WORKLET = `// Microphone capture for HealTrace voice: hands 20 ms blocks of 16-bit PCM to the page.
class PcmCapture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.frame = Math.round(sampleRate / 50);
    this.buf = new Int16Array(this.frame);
    this.n = 0;
  }
  process(inputs) {
    const ch = inputs[0] && inputs[0][0];
    if (!ch) return true;
    for (let i = 0; i < ch.length; i++) {
      const v = Math.max(-1, Math.min(1, ch[i]));
      this.buf[this.n++] = v < 0 ? v * 0x8000 : v * 0x7fff;
      if (this.n === this.frame) {
        this.port.postMessage(this.buf.buffer, [this.buf.buffer]);
        this.buf = new Int16Array(this.frame);
        this.n = 0;
      }
    }
    return true;
  }
}
registerProcessor("pcm-capture", PcmCapture);
`;
  const RELEASED = new Error("the microphone was released while it was being opened");
  // Ogg Opus is smallest; browsers that cannot decode it get MP3.
  const REPLY_FORMAT = document.createElement("audio").canPlayType('audio/ogg; codecs="opus"') ? "opus" : "mp3";

  // Voice as on the chat page (static/voice.js, docs/protocol.md#voice): after audio_start,
  // binary frames of one flags byte (1 = captured while our audio was playing) + s16le PCM at
  // the AudioContext's rate; the answer comes back as transcript and audio events.
  class Voice {
    constructor(chat) {
      this.chat = chat;
      this.ctx = null; this.mic = null; this.ready = null; this.on = null;
      this.mode = null; this.sending = false; this.held = false; this.stateKey = "idle";
      this.playEnd = 0; this.sources = []; this.turn = null; this.pending = null;
      this.queue = Promise.resolve(); this.gen = 0;
    }

    acquire() {
      if (!this.ready) {
        const ready = this.open().catch((err) => { if (this.ready === ready) this.release(); throw err; });
        this.ready = ready;
      }
      return this.ready;
    }

    async open() {
      // Created within the press, so the browser lets it play the answer.
      const ctx = new AudioContext();
      this.ctx = ctx;
      if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
        throw new DOMException("getUserMedia is not available", "NotFoundError");
      }
      const mic = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
      });
      if (this.ctx !== ctx) { for (const track of mic.getTracks()) track.stop(); throw RELEASED; }
      this.mic = mic;
      try {
        await ctx.audioWorklet.addModule(new URL("static/voice-worklet.js", this.chat.base).href);
      } catch (err) {
        const url = URL.createObjectURL(new Blob([WORKLET], { type: "text/javascript" }));
        try { await ctx.audioWorklet.addModule(url); } finally { URL.revokeObjectURL(url); }
      }
      if (this.ctx !== ctx) throw RELEASED;
      const node = new AudioWorkletNode(ctx, "pcm-capture");
      node.port.onmessage = (e) => this.frame(e.data);
      ctx.createMediaStreamSource(mic).connect(node);
      if (ctx.state === "suspended") ctx.resume().catch(() => { /* it plays on the next press */ });
    }

    // The microphone off (the browser's recording indicator goes away) and playback stopped.
    release() {
      this.stop();
      if (this.mic) for (const track of this.mic.getTracks()) track.stop();
      if (this.ctx) this.ctx.close().catch(() => {});
      this.ctx = null; this.mic = null; this.ready = null;
    }

    frame(pcm) {
      const ws = this.chat.ws;
      if (!this.sending || ws !== this.on || ws.readyState !== WebSocket.OPEN) return;
      const bytes = new Uint8Array(pcm.byteLength + 1);
      bytes[0] = this.ctx && this.ctx.currentTime < this.playEnd ? 1 : 0;
      bytes.set(new Uint8Array(pcm), 1);
      ws.send(bytes);
    }

    begin(mode) {
      this.mode = mode;
      const frame = { type: "audio_start", mode, sample_rate: this.ctx.sampleRate, reply_format: REPLY_FORMAT };
      if (!this.chat.send(frame)) { this.mode = null; this.sending = false; this.setState("idle"); return false; }
      this.on = this.chat.ws;
      return true;
    }

    // A new connection has no voice session: announce the one in use again.
    reconnected() { if (this.mode && this.ctx) this.begin(this.mode); }

    async pttDown() {
      this.held = true;
      await this.acquire();
      if (!this.held) return;  // released before the microphone was ready
      if (this.mode !== "push_to_talk" && !this.begin("push_to_talk")) return;
      this.silence(); this.sending = true; this.setState("listening");
    }

    pttUp() {
      this.held = false;
      if (!this.sending || this.mode !== "push_to_talk") return;
      this.sending = false; this.chat.send({ type: "audio_end" }); this.setState("idle");
    }

    async toggleHandsFree() {
      if (this.mode === "hands_free") { this.stop(); return; }
      await this.acquire();
      if (!this.begin("hands_free")) return;
      this.silence(); this.sending = true; this.setState("listening");
    }

    stop() {
      if (this.mode) this.chat.send({ type: "audio_stop" });
      this.mode = null; this.sending = false; this.held = false; this.turn = null;
      this.silence(); this.setState("idle");
    }

    setState(key) { this.stateKey = key; this.chat.paintVoice(); }

    silence() {
      this.gen += 1;
      for (const s of this.sources) {
        s.onended = null;
        try { s.stop(); } catch (err) { /* already ended */ }
      }
      this.sources = []; this.playEnd = 0;
    }

    // Chunks play in the order they came, each after the one before.
    async play(ev, gen) {
      const ctx = this.ctx;
      if (!ctx) return;
      const bytes = Uint8Array.from(atob(String(ev.data || "")), (c) => c.charCodeAt(0));
      const buf = await ctx.decodeAudioData(bytes.buffer);
      if (gen !== this.gen || ctx !== this.ctx) return;
      const src = ctx.createBufferSource();
      src.buffer = buf; src.connect(ctx.destination);
      const at = Math.max(ctx.currentTime + 0.02, this.playEnd);
      src.start(at); this.playEnd = at + buf.duration; this.sources.push(src);
      if (ev.index === 0) this.chat.send({ type: "playback", state: "started", turn_id: ev.turn_id });
      this.setState("speaking");
      src.onended = () => { this.sources = this.sources.filter((s) => s !== src); this.ended(); };
    }

    ended() {
      const turn = this.turn;
      if (this.sources.length || !turn || !turn.done) return;
      this.turn = null;
      this.chat.send({ type: "playback", state: "ended", turn_id: turn.id });
      this.setState(this.sending ? "listening" : "idle");
    }

    onEvent(ev) {
      switch (ev.type) {
        case "speech_started":
          if (!this.pending) this.pending = this.chat.add("user pending", "");
          this.pending.textContent = "…";
          break;
        case "transcript":
          if (!this.pending) this.pending = this.chat.add("user pending", "");
          this.pending.textContent = String(ev.text || "");
          if (ev.final) {
            this.chat.sentHere.add(ev.utterance_id);
            this.pending.classList.remove("pending"); this.pending = null;
          }
          break;
        case "audio": {
          if (!this.turn || this.turn.id !== ev.turn_id) this.turn = { id: ev.turn_id, done: false };
          const gen = this.gen;
          this.queue = this.queue.then(() => this.play(ev, gen)).catch(() => { /* undecodable: skipped */ });
          break;
        }
        case "audio_done": {
          const turn = this.turn;
          if (!turn || turn.id !== ev.turn_id) break;
          this.queue = this.queue.then(() => { turn.done = true; this.ended(); });
          break;
        }
        case "barge_in":
          this.silence(); this.turn = null;
          this.setState(this.sending ? "listening" : "idle");
          break;
        case "error":
          // An utterance that came to nothing (silence, no speech engine): drop its bubble.
          if (this.pending && !ev.turn_id) { this.pending.remove(); this.pending = null; }
          break;
        default: break;
      }
    }
  }

  class HealTraceChat extends HTMLElement {
    connectedCallback() {
      if (this.shadowRoot) return;
      this.base = this.getAttribute("base") || new URL("/", location.href).href;
      this.key = this.getAttribute("key") || "";
      const asked = this.getAttribute("locale") || "auto";
      const saved = store("local") && store("local").getItem("healtrace.widget.locale");
      this.locale = saved || (asked === "auto" ? this.pageLocale() : asked.toLowerCase().startsWith("zh") ? "zh-CN" : "en");
      this.mode = this.getAttribute("mode") === "inline" ? "inline" : "launcher";
      this.ws = null; this.sessionId = null; this.lastSeq = null; this.current = null;
      this.citations = []; this.evidence = new Map(); this.backoff = 500; this.stopped = false;
      this.statusKey = "connecting"; this.lastTriage = null; this.sentHere = new Set();
      this.endUser = this.visitorId();
      this.voice = new Voice(this);
      const sessions = store("session");
      this.sessionKey = "healtrace.widget.session." + this.key.slice(-12);
      this.sessionId = sessions && sessions.getItem(this.sessionKey);
      this.build();
      this.applyLocale();
      if (this.mode === "inline") this.open();
    }

    disconnectedCallback() {
      this.stopped = true;
      this.voice.release();
      if (this.ws && typeof this.ws !== "string") this.ws.close();
      clearTimeout(this.retry);
    }

    icon(d) {
      const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
      svg.setAttribute("viewBox", "0 0 24 24"); svg.setAttribute("aria-hidden", "true");
      const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
      path.setAttribute("d", d); svg.append(path);
      return svg;
    }

    pageLocale() {
      const lang = (document.documentElement.lang || navigator.language || "en").toLowerCase();
      return lang.startsWith("zh") ? "zh-CN" : "en";
    }

    visitorId() {
      const local = store("local");
      let id = local && local.getItem("healtrace.widget.end_user");
      if (!id || !/^[A-Za-z0-9_-]{1,64}$/.test(id)) {
        id = newId();
        if (local) local.setItem("healtrace.widget.end_user", id);
      }
      return id;
    }

    get t() { return T[this.locale]; }

    build() {
      const root = this.attachShadow({ mode: "open" });
      const theme = this.getAttribute("theme") || "auto";
      const dark = theme === "dark" || (theme === "auto" && window.matchMedia &&
        window.matchMedia("(prefers-color-scheme: dark)").matches);
      const side = this.getAttribute("position") === "left" ? " left" : "";
      this.wrap = el("div", { class: `wrap${side}${dark ? " dark" : ""}${this.mode === "inline" ? " inline" : ""}`, part: "wrap" });
      const color = this.getAttribute("color");
      if (color && CSS.supports && CSS.supports("color", color)) this.wrap.style.setProperty("--accent", color);

      const panelId = "ht-panel";
      this.launcher = el("button", { class: "launcher", type: "button", "aria-controls": panelId, "aria-expanded": "false" });
      this.launcher.append(this.icon(CHAT_ICON));
      this.launcher.addEventListener("click", () => (this.panel.hidden ? this.open() : this.close()));

      this.heading = el("h2", { id: "ht-title" });
      const avatar = this.getAttribute("avatar") ? httpUrl(this.getAttribute("avatar"), this.base) : null;
      this.langLabel = el("label", { class: "sr", for: "ht-lang" });
      this.langSelect = el("select", { id: "ht-lang" },
        el("option", { value: "en", text: "English" }), el("option", { value: "zh-CN", text: "中文" }));
      this.langSelect.addEventListener("change", () => {
        this.locale = this.langSelect.value;
        const local = store("local");
        if (local) local.setItem("healtrace.widget.locale", this.locale);
        this.applyLocale();
      });
      this.closeBtn = el("button", { class: "close", type: "button", text: "×" });
      this.closeBtn.addEventListener("click", () => this.close());
      const header = el("header", {},
        ...(avatar ? [el("img", { src: avatar, alt: "" })] : []),
        this.heading, this.langLabel, this.langSelect, ...(this.mode === "inline" ? [] : [this.closeBtn]));

      this.status = el("div", { class: "status", role: "status" });
      this.triageTitle = el("strong");
      this.triageAdvice = el("p", {});
      this.triageCall = el("a", {});
      this.triageDismiss = el("button", { type: "button" });
      this.triageDismiss.addEventListener("click", () => { this.triage.hidden = true; });
      this.triage = el("div", { class: "triage", role: "alert", hidden: true },
        this.triageTitle, this.triageAdvice, this.triageCall, this.triageDismiss);
      // aria-busy while an answer streams, so screen readers read it once it is whole.
      this.log = el("div", { class: "log", role: "log", "aria-live": "polite", "aria-relevant": "additions text", "aria-busy": "false", tabindex: "0" });

      this.inputLabel = el("label", { class: "sr", for: "ht-text" });
      this.text = el("textarea", { id: "ht-text", rows: "1", maxlength: "8000" });
      this.text.addEventListener("keydown", (e) => {
        if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); this.form.requestSubmit(); }
      });
      this.fileInput = el("input", { type: "file", accept: "image/*", capture: "environment", hidden: true, tabindex: "-1" });
      this.fileInput.addEventListener("change", () => this.upload());
      this.photoBtn = el("button", { type: "button", class: "photo" }, this.icon(CAMERA_ICON));
      this.photoBtn.addEventListener("click", () => this.fileInput.click());
      this.stopBtn = el("button", { type: "button", class: "stop", hidden: true });
      this.stopBtn.addEventListener("click", () => this.send({ type: "cancel" }));
      this.sendBtn = el("button", { type: "submit", class: "send" });
      this.pttBtn = el("button", { type: "button", class: "ptt" });
      const down = (e) => {
        if (e.repeat || (e.key !== undefined && e.key !== " " && e.key !== "Enter")) return;
        // Held even when the finger slides off the button.
        if (e.pointerId !== undefined) {
          try { this.pttBtn.setPointerCapture(e.pointerId); } catch (err) { /* not a live pointer */ }
        }
        this.voice.pttDown().catch((err) => this.micFailed(err));
      };
      const up = (e) => { if (e.key === undefined || e.key === " " || e.key === "Enter") this.voice.pttUp(); };
      this.pttBtn.addEventListener("pointerdown", down);
      this.pttBtn.addEventListener("keydown", down);
      for (const name of ["pointerup", "pointercancel", "keyup", "blur"]) this.pttBtn.addEventListener(name, up);
      this.pttBtn.addEventListener("contextmenu", (e) => e.preventDefault());
      this.handsFreeBtn = el("button", { type: "button", class: "hands-free", "aria-pressed": "false" });
      this.handsFreeBtn.addEventListener("click", () => this.voice.toggleHandsFree().catch((err) => this.micFailed(err)));
      this.voiceState = el("span", { class: "voice-state", role: "status", "data-state": "idle" });
      this.voiceBar = el("div", { class: "voice" }, this.pttBtn, this.handsFreeBtn, this.voiceState);
      this.form = el("form", {}, this.inputLabel, this.text, this.fileInput, this.photoBtn, this.stopBtn, this.sendBtn);
      this.form.addEventListener("submit", (e) => { e.preventDefault(); this.submit(); });

      this.panel = el("div", { class: "panel", id: panelId, role: this.mode === "inline" ? "region" : "dialog", "aria-labelledby": "ht-title", hidden: true },
        header, this.status, this.triage, this.log, this.voiceBar, this.form);
      this.panel.addEventListener("keydown", (e) => { if (e.key === "Escape" && this.mode !== "inline") { e.preventDefault(); this.close(); } });
      const style = el("style", { text: STYLE });
      if (this.mode === "inline") this.wrap.append(this.panel);
      else this.wrap.append(this.panel, this.launcher);
      root.append(style, this.wrap);
      this.greeting = this.getAttribute("greeting");
      this.greetingEl = this.add("assistant", this.greeting || "");
    }

    applyLocale() {
      const t = this.t;
      this.langSelect.value = this.locale;
      this.langLabel.textContent = t.language;
      this.heading.textContent = t.title;
      this.launcher.setAttribute("aria-label", t.open);
      this.closeBtn.setAttribute("aria-label", t.close);
      this.inputLabel.textContent = t.input;
      this.text.placeholder = t.placeholder;
      this.sendBtn.textContent = t.send;
      this.stopBtn.textContent = t.stop;
      this.photoBtn.setAttribute("aria-label", t.photo);
      this.photoBtn.title = t.photo;
      this.triageDismiss.textContent = t.dismiss;
      this.pttBtn.textContent = t.ptt;
      this.handsFreeBtn.textContent = t.handsFree;
      this.paintVoice();
      this.panel.setAttribute("lang", this.locale);
      if (!this.greeting) this.greetingEl.textContent = t.greeting;
      this.setStatus(this.statusKey);
      if (this.lastTriage) this.showTriage(this.lastTriage);
      for (const [, badge] of this.evidence) this.paintBadge(badge);
    }

    setStatus(key, text) {
      this.statusKey = key;
      this.status.textContent = text || (key ? this.t[key] : "");
    }

    paintVoice() {
      const v = this.voice;
      this.voiceState.dataset.state = v.stateKey;
      this.voiceState.textContent = v.stateKey === "idle" ? "" : this.t[v.stateKey];
      this.handsFreeBtn.setAttribute("aria-pressed", v.mode === "hands_free" ? "true" : "false");
      this.pttBtn.classList.toggle("active", v.mode === "push_to_talk" && v.sending);
    }

    micFailed(err) {
      if (err === RELEASED) return;
      const name = err && err.name;
      const t = this.t;
      if (name === "NotAllowedError" || name === "SecurityError") this.add("error", t.micDenied);
      else if (name === "NotFoundError" || name === "NotReadableError" || name === "OverconstrainedError") this.add("error", t.noMic);
      else this.add("error", t.noVoice);
    }

    open() {
      this.panel.hidden = false;
      this.wrap.classList.add("open");
      this.launcher.setAttribute("aria-expanded", "true");
      this.text.focus();
      if (!this.ws && !this.stopped) this.start();
    }

    close() {
      this.panel.hidden = true;
      this.wrap.classList.remove("open");
      this.launcher.setAttribute("aria-expanded", "false");
      this.launcher.focus();
      this.voice.release();  // a closed chat does not listen
    }

    add(cls, text) {
      const div = el("div", { class: "msg " + cls, text });
      this.log.append(div);
      this.log.scrollTop = this.log.scrollHeight;
      return div;
    }

    fail(message) {
      this.stopped = true;
      this.setStatus("", message);
      this.add("error", message);
      this.sendBtn.disabled = true; this.photoBtn.disabled = true;
      this.pttBtn.disabled = true; this.handsFreeBtn.disabled = true;
      this.voice.release();
    }

    query() {
      return `key=${encodeURIComponent(this.key)}&end_user=${encodeURIComponent(this.endUser)}`;
    }

    // Ask first whether this page may use the key: a refused WebSocket handshake tells the
    // page nothing, this answer says what is wrong.
    async start() {
      this.ws = "starting";
      try {
        const r = await fetch(new URL(`widget/config?key=${encodeURIComponent(this.key)}`, this.base),
          { headers: { "Accept-Language": this.locale } });
        if (!r.ok) {
          const body = await r.json().catch(() => ({}));
          this.fail((body.error && body.error.message) || this.t.originRefused);
          return;
        }
      } catch (err) {
        this.fail(this.t.unreachable);
        return;
      }
      this.connect();
    }

    connect() {
      if (this.stopped) return;
      this.setStatus(this.lastSeq === null ? "connecting" : "offline");
      const url = new URL("v1/ws/chat", this.base);
      url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
      const ws = new WebSocket(url.href);
      this.ws = ws;
      ws.onopen = () => {
        const hello = { type: "hello", api_key: this.key, locale: this.locale, end_user: this.endUser };
        if (this.sessionId) hello.session_id = this.sessionId;
        if (this.lastSeq !== null) hello.resume_from_seq = this.lastSeq;
        ws.send(JSON.stringify(hello));
      };
      ws.onmessage = (e) => {
        let ev;
        try { ev = JSON.parse(e.data); } catch (err) { return; }
        if (ev && typeof ev === "object") this.onEvent(ev);
      };
      ws.onclose = (e) => {
        if (this.ws !== ws) return;
        if (e.code === 4401 || e.code === 4403) { if (!this.stopped) this.fail(this.t.originRefused); return; }
        if (e.code === 4404) {
          this.sessionId = null; this.lastSeq = null;
          const sessions = store("session"); if (sessions) sessions.removeItem(this.sessionKey);
        }
        if (this.stopped) return;
        this.setStatus("offline");
        this.retry = setTimeout(() => this.connect(), this.backoff);
        this.backoff = Math.min(this.backoff * 2, 10000);
      };
    }

    send(frame) {
      if (!this.ws || typeof this.ws === "string" || this.ws.readyState !== WebSocket.OPEN) return false;
      this.ws.send(JSON.stringify(frame));
      return true;
    }

    busy(on) {
      this.stopBtn.hidden = !on;
      this.log.setAttribute("aria-busy", on ? "true" : "false");
    }

    submit(imageIds, label) {
      const text = this.text.value.trim();
      if (!text && !imageIds) return;
      const id = newId();
      const frame = { type: "user_message", text, client_message_id: id };
      if (imageIds) frame.image_ids = imageIds;
      if (!this.send(frame)) return;
      this.sentHere.add(id);
      this.add("user", label ? (text ? text + " " : "") + label : text);
      this.text.value = "";
      this.text.focus();
    }

    async upload() {
      const file = this.fileInput.files && this.fileInput.files[0];
      this.fileInput.value = "";
      if (!file) return;
      const note = this.add("meta", this.t.uploading);
      const body = new FormData();
      body.append("file", file);
      try {
        // A plain multipart POST with the key in the query: browsers send it without a
        // CORS preflight (see docs/widget.md).
        const r = await fetch(new URL(`v1/images?${this.query()}`, this.base),
          { method: "POST", body, headers: { "Accept-Language": this.locale } });
        const out = await r.json();
        if (!r.ok) { note.textContent = (out.error && out.error.message) || this.t.uploadFailed; note.className = "msg error"; return; }
        note.textContent = String(out.note || "");
        this.submit([out.image.id], `[${this.t.photoSent}: ${file.name}]`);
      } catch (err) {
        note.textContent = this.t.uploadFailed; note.className = "msg error";
      }
    }

    showTriage(ev) {
      if (ev.level !== "emergency" && ev.level !== "urgent") return;
      this.lastTriage = ev;
      const number = String(ev.emergency_number || "120");
      this.triageTitle.textContent = ev.level === "emergency" ? this.t.emergency : this.t.urgent;
      this.triageAdvice.textContent = String(ev.advice || "");
      this.triageCall.href = "tel:" + number.replace(/[^0-9+*#]/g, "");
      this.triageCall.textContent = this.t.call(number);
      this.triage.hidden = false;
    }

    paintBadge(badge) {
      const verified = badge.classList.contains("verified");
      badge.textContent = verified ? this.t.verified : this.t.evidencePending;
      if (verified) badge.title = this.t.verifiedTitle;
    }

    badgeFor(messageId, hash) {
      let badge = this.evidence.get(messageId);
      if (!badge) {
        badge = el("a", { class: "evidence", target: "_blank", rel: "noopener" });
        badge.dataset.hash = String(hash || "");
        (this.current || this.log).append(badge);
        this.evidence.set(messageId, badge);
        this.paintBadge(badge);
      }
      return badge;
    }

    // The stored answer, with each "[n]" a button that opens its source below.
    renderAnswer(bubble, text, citations) {
      const byMarker = new Map(citations.map((c) => [Number(c.marker), c]));
      const body = el("span", { class: "body" });
      const list = el("ol", {});
      const items = new Map();
      for (const c of citations) {
        const li = el("li", { value: String(c.marker) });
        const title = String(c.source_title || c.title || this.t.source) + (c.section ? ` — ${c.section}` : "");
        const href = c.source_url && httpUrl(String(c.source_url), this.base);
        li.append(href ? el("a", { href, target: "_blank", rel: "noopener noreferrer", text: title }) : el("span", { text: title }));
        if (c.snippet) li.append(el("span", { class: "snippet", text: String(c.snippet) }));
        list.append(li);
        items.set(Number(c.marker), li);
      }
      const details = el("details", { class: "sources" }, el("summary", { text: this.t.sources }), list);
      let last = 0;
      for (const m of text.matchAll(/\[(\d+)\]/g)) {
        const n = Number(m[1]);
        if (!byMarker.has(n)) continue;
        body.append(document.createTextNode(text.slice(last, m.index)));
        const btn = el("button", { type: "button", class: "cite", text: `[${n}]`, "aria-label": `${this.t.source} ${n}` });
        btn.addEventListener("click", () => {
          details.open = true;
          for (const li of items.values()) li.classList.remove("active");
          const li = items.get(n); li.classList.add("active"); li.scrollIntoView({ block: "nearest" });
        });
        body.append(btn);
        last = m.index + m[0].length;
      }
      body.append(document.createTextNode(text.slice(last)));
      bubble.replaceChildren(body);
      if (citations.length) bubble.append(details);
    }

    onEvent(ev) {
      if (ev.seq) {
        if (this.lastSeq !== null && ev.seq <= this.lastSeq && ev.type !== "hello_ok") return;
        this.lastSeq = Math.max(this.lastSeq || 0, ev.seq);
      }
      const t = this.t;
      this.voice.onEvent(ev);
      switch (ev.type) {
        case "hello_ok": {
          this.backoff = 500;
          const fresh = this.sessionId !== ev.session_id;
          this.sessionId = ev.session_id;
          const sessions = store("session"); if (sessions) sessions.setItem(this.sessionKey, ev.session_id);
          if (this.lastSeq === null) { this.lastSeq = ev.last_seq; if (!fresh || ev.last_seq) this.loadHistory(); }
          this.setStatus("online");
          this.voice.reconnected();
          break;
        }
        case "turn_started":
          this.current = null; this.citations = []; this.busy(true);
          if (ev.text && !this.sentHere.has(ev.client_message_id)) this.add("user", ev.text);
          break;
        case "triage": this.showTriage(ev); break;
        case "token":
          if (!this.current) this.current = this.add("assistant", "");
          this.current.append(document.createTextNode(String(ev.text || "")));
          this.log.scrollTop = this.log.scrollHeight;
          break;
        case "citation": this.citations.push(ev); break;
        case "tool_result": this.consentPrompt(ev); break;
        case "approval_required": this.approvalPrompt(ev); break;
        case "answer_done": {
          if (!this.current) this.current = this.add("assistant", "");
          const text = typeof ev.text === "string" && ev.text ? ev.text : this.current.textContent;
          this.renderAnswer(this.current, text + (ev.finish_reason === "cancelled" ? " " + t.cancelled : ""), this.citations);
          if (ev.evidence_hash) this.badgeFor(ev.message_id, ev.evidence_hash);
          this.current = null; this.citations = []; this.busy(false);
          break;
        }
        case "evidence_anchored": {
          const badge = this.badgeFor(ev.message_id, ev.evidence_hash);
          const href = httpUrl(String(ev.receipt_url || `/v1/evidence/${ev.evidence_hash}`), this.base);
          if (href) badge.href = href;
          badge.classList.add("verified");
          this.paintBadge(badge);
          break;
        }
        case "turn_held":
          this.current = null; this.busy(false);
          if (ev.message) this.add("meta", String(ev.message));
          break;
        case "handoff": if (ev.message) this.add("meta", String(ev.message)); break;
        case "clinician_message": this.add("assistant", String(ev.text || "")); break;
        case "error":
          if (ev.code === "resume_gap") { this.loadHistory(); break; }
          if (ev.code === "key_origin_forbidden" || ev.code === "auth_invalid" || ev.code === "auth_required") {
            this.fail(String(ev.message || t.originRefused)); break;
          }
          this.add("error", String(ev.message || ev.code || ""));
          if (ev.turn_id) { this.current = null; this.busy(false); }
          break;
        default: break;  // newer event types: ignored, as the protocol asks
      }
    }

    // A records lookup that was refused says how the patient can grant access.
    // A tool call held for the patient's approval; approving sends its id with the next
    // message (the server decides what runs, not this script).
    approvalPrompt(ev) {
      const ok = el("button", { type: "button", class: "approve", text: this.t.approve });
      ok.addEventListener("click", () => {
        const id = newId();
        if (!this.send({ type: "user_message", text: this.t.approved, client_message_id: id, approvals: [String(ev.approval_id)] })) return;
        ok.disabled = true;
        this.sentHere.add(id);
        this.add("user", this.t.approved);
      });
      this.add("consent", "").append(el("span", { text: String(ev.message || "") }),
        el("code", { text: JSON.stringify(ev.arguments) }), ok);
    }

    consentPrompt(ev) {
      let result;
      try { result = JSON.parse(ev.content); } catch (err) { return; }
      if (!result || typeof result.how_to_grant !== "string" || !result.how_to_grant) return;
      this.add("consent", "").append(el("strong", { text: this.t.consent }), el("span", { text: result.how_to_grant }));
    }

    async loadHistory() {
      if (!this.sessionId) return;
      try {
        const r = await fetch(new URL(`v1/sessions/${encodeURIComponent(this.sessionId)}/messages?${this.query()}`, this.base),
          { headers: { "Accept-Language": this.locale } });
        if (!r.ok) return;
        const messages = await r.json();
        for (const child of [...this.log.children]) if (child !== this.greetingEl) child.remove();
        this.evidence.clear();
        for (const m of messages) {
          const bubble = this.add(m.role === "user" ? "user" : "assistant", "");
          this.renderAnswer(bubble, String(m.content || ""), m.role === "assistant" ? (m.citations || []) : []);
        }
      } catch (err) { /* the live stream still works */ }
    }
  }

  window.customElements.define("healtrace-chat", HealTraceChat);

  // The <script> tag itself: make one element from its data-* attributes.
  if (script && script.dataset && script.dataset.key !== undefined) {
    const src = new URL(script.src, location.href);
    const base = new URL("../", src).href;  // …/static/widget.js → the service's root
    const chat = document.createElement("healtrace-chat");
    chat.setAttribute("base", base);
    for (const name of ["key", "locale", "position", "color", "greeting", "avatar", "theme", "mode"]) {
      const value = script.dataset[name];
      if (value !== undefined) chat.setAttribute(name, value);
    }
    const mount = () => document.body.append(chat);
    if (document.body) mount(); else document.addEventListener("DOMContentLoaded", mount);
  }
})();
