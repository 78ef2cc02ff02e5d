// SPDX-License-Identifier: Apache-2.0
// Nucleus console. Every string shown here may come from an agent: it is placed with
// textContent only (never innerHTML), and the server has already escaped invisible and
// reordering characters. State-changing requests carry the session cookie (SameSite=Strict)
// and the X-Nucleus-Console header; the server also checks Origin.
"use strict";

const state = { pods: [], selected: null, events: null, seen: new Set(), approvals: [] };

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

async function api(path, opts) {
  const r = await fetch(path, Object.assign({ credentials: "same-origin", cache: "no-store" }, opts || {}));
  let body = null;
  try { body = await r.json(); } catch (e) { body = null; }
  if (!r.ok) {
    const msg = body && body.error ? body.error : ("HTTP " + r.status);
    throw new Error(msg);
  }
  return body;
}

function post(path, obj) {
  return api(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Nucleus-Console": "1" },
    body: JSON.stringify(obj),
  });
}

function setStatus(text) {
  document.getElementById("status").textContent = text || "";
}

function fmtTime(s) {
  if (!s) return "";
  const d = new Date(s);
  return isNaN(d) ? String(s) : d.toLocaleTimeString();
}

function usd(micros) {
  if (micros === undefined || micros === null) return "";
  return "$" + (micros / 1e6).toFixed(4);
}

function renderPods() {
  const tb = document.querySelector("#pods tbody");
  tb.replaceChildren();
  for (const p of state.pods) {
    const tr = el("tr");
    tr.dataset.pod = p.id;
    if (p.id === state.selected) tr.classList.add("selected");
    const idc = el("td", "mono", (p.name ? p.name + " " : "") + p.id.slice(0, 8));
    idc.title = p.id;
    tr.append(idc);
    const st = el("td");
    st.append(el("span", "state state-" + p.state, p.state));
    tr.append(st);
    tr.append(el("td", null, fmtTime(p.deadline)));
    tr.append(el("td", null, p.budget_max_usd_micros ? usd(p.budget_spent_usd_micros || 0) + " / " + usd(p.budget_max_usd_micros) : ""));
    tr.addEventListener("click", () => selectPod(p.id));
    tb.append(tr);
  }
  if (state.selected) renderPodMeta();
}

function renderPodMeta() {
  const p = state.pods.find((x) => x.id === state.selected);
  if (!p) return;
  document.getElementById("pod-id").textContent = p.id;
  const st = document.getElementById("pod-state");
  st.textContent = p.state;
  st.className = "state state-" + p.state;
  document.getElementById("pod-meta").textContent =
    "driver " + p.driver + ", created " + fmtTime(p.created) + (p.reason ? ", " + p.reason : "");
  const created = Date.parse(p.created), deadline = Date.parse(p.deadline), now = Date.now();
  const tm = document.getElementById("time-meter");
  if (!isNaN(created) && !isNaN(deadline) && deadline > created) {
    tm.value = Math.min(1, Math.max(0, (now - created) / (deadline - created)));
    document.getElementById("time-text").textContent = "deadline " + fmtTime(p.deadline);
  }
  const bm = document.getElementById("budget-meter");
  if (p.budget_max_usd_micros) {
    bm.value = Math.min(1, (p.budget_spent_usd_micros || 0) / p.budget_max_usd_micros);
    document.getElementById("budget-text").textContent = usd(p.budget_spent_usd_micros || 0) + " of " + usd(p.budget_max_usd_micros);
  } else {
    document.getElementById("budget-text").textContent = p.budget_spent_usd_micros !== undefined ? usd(p.budget_spent_usd_micros) : "";
  }
}

function addCall(rec) {
  if (state.seen.has(rec.seq)) return;
  state.seen.add(rec.seq);
  const tr = el("tr");
  tr.dataset.seq = rec.seq;
  tr.append(el("td", null, rec.seq));
  tr.append(el("td", null, fmtTime(rec.time)));
  tr.append(el("td", "mono", rec.op));
  tr.append(el("td", "mono", rec.args_display || ""));
  tr.append(el("td", "decision-" + (rec.decision || ""), rec.decision || ""));
  tr.append(el("td", null, rec.kind || ""));
  document.querySelector("#calls tbody").append(tr);
}

async function loadAuditState(id) {
  const s = document.getElementById("audit-state");
  try {
    const a = await api("/api/pods/" + encodeURIComponent(id) + "/audit-state");
    s.textContent = a.state + (a.records !== undefined ? " (" + a.records + " records)" : "") + (a.detail ? ": " + a.detail : "");
    s.className = "state state-" + (a.state === "valid" || a.state === "open" ? "running" : "failed");
  } catch (e) {
    s.textContent = "unknown: " + e.message;
  }
}

function selectPod(id) {
  state.selected = id;
  state.seen = new Set();
  document.getElementById("pod-pane").hidden = false;
  document.querySelector("#calls tbody").replaceChildren();
  document.getElementById("patch").replaceChildren();
  document.getElementById("flags").replaceChildren();
  if (state.events) state.events.close();
  const es = new EventSource("/api/pods/" + encodeURIComponent(id) + "/events");
  es.addEventListener("call", (ev) => {
    try { addCall(JSON.parse(ev.data)); } catch (e) { /* ignore a malformed event */ }
  });
  es.addEventListener("end", () => { es.close(); refreshPods(); loadAuditState(id); });
  state.events = es;
  renderPods();
  loadAuditState(id);
}

async function loadPatch() {
  if (!state.selected) return;
  const pre = document.getElementById("patch"), ul = document.getElementById("flags");
  pre.replaceChildren();
  ul.replaceChildren();
  try {
    const p = await api("/api/pods/" + encodeURIComponent(state.selected) + "/patch");
    for (const f of p.flags || []) ul.append(el("li", null, f.path_display + ": " + f.reason));
    const flagged = new Set((p.flags || []).map((f) => f.path_display));
    for (const line of (p.patch_display || "").split("\n")) {
      const m = /^diff --git a\/(.*) b\//.exec(line);
      const span = el("span", m && flagged.has(m[1]) ? "flagged" : null, line + "\n");
      pre.append(span);
    }
    if (!p.patch_display) pre.textContent = "(no changes)";
  } catch (e) {
    pre.textContent = "cannot load the patch: " + e.message;
  }
}

function renderApprovals() {
  const box = document.getElementById("approvals");
  const tpl = document.getElementById("approval-template");
  const ids = new Set(state.approvals.map((a) => a.id));
  for (const card of Array.from(box.children))
    if (!ids.has(card.dataset.id) && !card.dataset.done) card.remove();
  for (const a of state.approvals) {
    if (box.querySelector('[data-id="' + CSS.escape(a.id) + '"]')) continue;
    const card = tpl.content.firstElementChild.cloneNode(true);
    card.dataset.id = a.id;
    card.querySelector(".op").textContent = a.operation + " (" + a.tool + ")";
    card.querySelector(".pod").textContent = a.pod;
    card.querySelector(".why").textContent = a.reason_display;
    card.querySelector(".args").textContent = a.args_display;
    card.querySelector(".meta").textContent = "requested " + fmtTime(a.created) + ", expires " + fmtTime(a.expires) + ", digest " + a.digest.slice(0, 16);
    const podBtn = card.querySelector(".approve-pod");
    if (!(a.scopes || []).includes("pod")) { podBtn.disabled = true; podBtn.title = "not offered for this operation"; }
    const decide = async (decision) => {
      for (const b of card.querySelectorAll("button")) b.disabled = true;
      const res = card.querySelector(".result");
      try {
        await post("/api/approvals/" + encodeURIComponent(a.id), {
          pod: a.pod, decision: decision, digest: a.digest,
          reason: card.querySelector(".reason").value,
        });
        res.textContent = decision === "refuse" ? "refused" : "approved";
        card.dataset.done = "1";
      } catch (e) {
        res.textContent = "failed: " + e.message;
      }
    };
    card.querySelector(".approve-once").addEventListener("click", () => decide("once"));
    podBtn.addEventListener("click", () => decide("pod"));
    card.querySelector(".refuse").addEventListener("click", () => decide("refuse"));
    box.append(card);
  }
  document.getElementById("approvals-count").textContent = String(state.approvals.length);
}

async function refreshPods() {
  try {
    const j = await api("/api/pods");
    state.pods = j.pods || [];
    renderPods();
    setStatus("");
  } catch (e) {
    setStatus("node: " + e.message);
  }
}

async function refreshApprovals() {
  try {
    const j = await api("/api/approvals");
    state.approvals = j.approvals || [];
    renderApprovals();
  } catch (e) {
    setStatus("approvals: " + e.message);
  }
}

async function start() {
  try {
    const info = await api("/api/info");
    document.getElementById("node").textContent = "node " + info.node_url;
  } catch (e) {
    setStatus(e.message);
  }
  document.getElementById("load-patch").addEventListener("click", loadPatch);
  await refreshPods();
  await refreshApprovals();
  setInterval(refreshPods, 2000);
  setInterval(refreshApprovals, 1000);
}

document.addEventListener("DOMContentLoaded", start);
