// The patient's own record-access controls on the chat page: shown only for a patient key.
// Grants go to POST /v1/me/consents (signed with the patient's key and anchored in the
// ConsentRegistry); each can be revoked; the access log lists every read. Text only.
(() => {
  "use strict";
  const S = {
    "en": { title: "My records access", intro: "Let the assistant read these records:",
            labs: "Lab results", conditions: "Conditions", medications: "Medicines",
            allergies: "Allergies", days: "days", grant: "Grant access", revoke: "Revoke",
            none: "No access granted.", active: "active", revoked: "revoked", expired: "expired",
            until: "until", log: "Access log", granted: "Access granted.", gone: "Access revoked.",
            read: "read", denied: "refused", pick: "Choose at least one kind of record." },
    "zh-CN": { title: "我的病历授权", intro: "允许智能助手读取以下记录：",
            labs: "化验结果", conditions: "疾病诊断", medications: "用药", allergies: "过敏",
            days: "天", grant: "授权", revoke: "撤销", none: "尚未授权。", active: "有效",
            revoked: "已撤销", expired: "已过期", until: "至", log: "访问记录",
            granted: "已授权。", gone: "已撤销授权。", read: "已读取", denied: "已拒绝",
            pick: "请至少选择一类记录。" },
  };
  const SCOPES = {
    labs: ["patient/Observation.rs?category=laboratory"],
    conditions: ["patient/Condition.rs"],
    medications: ["patient/MedicationRequest.rs", "patient/MedicationStatement.rs"],
    allergies: ["patient/AllergyIntolerance.rs"],
  };
  const $ = (id) => document.getElementById(id);
  const lang = () => (document.documentElement.lang === "zh-CN" ? "zh-CN" : "en");
  const s = () => S[lang()];
  const key = () => sessionStorage.getItem("ht.key");
  const api = (path, init = {}) => fetch(path, { ...init, headers: {
    Authorization: `Bearer ${key()}`, "Accept-Language": lang(), "Content-Type": "application/json",
    ...(init.headers || {}) } });
  const el = (tag, text, cls) => { const e = document.createElement(tag); if (text !== undefined) e.textContent = text; if (cls) e.className = cls; return e; };

  function kindOf(scope) {
    for (const [kind, scopes] of Object.entries(SCOPES)) if (scopes.includes(scope)) return s()[kind];
    return scope;
  }

  function render() {
    const t = s();
    $("consentTitle").textContent = t.title;
    $("consentIntro").textContent = t.intro;
    for (const kind of Object.keys(SCOPES)) $(`consentLabel-${kind}`).textContent = t[kind];
    $("consentDaysLabel").textContent = t.days;
    $("consentGrant").textContent = t.grant;
    $("consentLogTitle").textContent = t.log;
  }

  async function refresh() {
    const t = s();
    const list = $("consentList");
    list.replaceChildren();
    const r = await api("/v1/me/consents");
    if (!r.ok) return;
    const grants = (await r.json()).grants;
    if (!grants.length) list.append(el("li", t.none));
    for (const g of grants) {
      const li = el("li", `${kindOf(g.scope)} — ${t[g.status] || g.status}, ${t.until} ${g.expires_at.slice(0, 10)} `);
      li.dataset.grantId = g.grant_id;
      li.dataset.status = g.status;
      if (g.status === "active") {
        const b = el("button", t.revoke);
        b.type = "button";
        b.addEventListener("click", async () => {
          const res = await api(`/v1/me/consents/${g.grant_id}`, { method: "DELETE" });
          say(res.ok ? t.gone : (await res.json()).error.message);
          refresh();
        });
        li.append(b);
      }
      list.append(li);
    }
    const log = $("consentLog");
    log.replaceChildren();
    const lr = await api("/v1/me/access-log?limit=20");
    if (!lr.ok) return;
    for (const e of (await lr.json()).entries) {
      let text = `${e.at.slice(0, 16).replace("T", " ")} ${e.action}`;
      if (e.action === "records_lookup") {
        const parts = (e.details.decisions || []).map((d) => `${d.type}: ${d.allowed ? t.read : t.denied}`);
        text += ` (${e.actor}) ${parts.join(", ")}`;
      }
      log.append(el("li", text));
    }
  }

  function say(text) { $("consentStatus").textContent = text; }

  async function grant() {
    const t = s();
    const scopes = Object.keys(SCOPES).filter((k) => $(`consentKind-${k}`).checked).flatMap((k) => SCOPES[k]);
    if (!scopes.length) { say(t.pick); return; }
    const days = parseInt($("consentDays").value, 10);
    const r = await api("/v1/me/consents", { method: "POST", body: JSON.stringify({ scopes, days }) });
    say(r.ok ? t.granted : (await r.json()).error.message);
    refresh();
  }

  async function start() {
    if (!key()) return;
    const r = await api("/v1/me");
    if (!r.ok) return; // not a patient key: nothing to control here
    $("consentPanel").hidden = false;
    render();
    refresh();
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("consentGrant").addEventListener("click", grant);
    $("lang").addEventListener("change", () => { render(); refresh(); });
    start();
  });
  window.htConsent = { refresh, start };
})();
