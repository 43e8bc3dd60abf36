// The review page: extract drafts from a text, show every evidence span, accept/edit/reject facts, create the case.
"use strict";
const SECTIONS = ["conditions", "observations", "procedures", "medications", "outcomes"];
const SPAN_ROLES = new Set(["mention", "site", "time", "dosage", "particles", "age", "sex", "stop", "status-reason", "value", "segments"]);
let state = { text: "", drafts: [], current: 0, decisions: {} };

const $ = (id) => document.getElementById(id);
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value; else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

async function extract() {
  const text = $("source").value;
  $("status").textContent = "extracting…";
  const response = await fetch("/cases/$extract", { method: "POST", headers: { "Content-Type": "text/plain; charset=utf-8" }, body: text });
  const body = await response.json();
  if (!response.ok) { $("status").textContent = (body.issue || []).map((i) => i.diagnostics).join("; "); $("status").className = "error"; return; }
  state = { text, drafts: body.drafts, current: 0, decisions: {} };
  $("status").className = "ok";
  $("status").textContent = `${body.drafts.length} draft(s)`;
  renderDrafts();
}

function renderDrafts() {
  const nav = $("drafts");
  nav.replaceChildren(...state.drafts.map((draft, index) => el("button", {
    type: "button", "aria-pressed": String(index === state.current), class: "secondary",
    onclick: () => { state.current = index; renderDrafts(); },
  }, draft.label || `Draft ${index + 1}`)));
  $("review").hidden = state.drafts.length === 0;
  if (state.drafts.length) render(state.drafts[state.current]);
}

function spans(draft) {
  const found = [];
  for (const record of draft.evidence.concat(draft.mentions)) {
    if (record.role && !SPAN_ROLES.has(record.role)) continue;
    found.push({ start: record.start, end: record.end, type: record.type || record.role, assertion: record.assertion || "present", fact: record.fact });
  }
  found.sort((a, b) => a.start - b.start || (b.end - b.start) - (a.end - a.start));
  const kept = [];
  let cursor = -1;
  for (const span of found) if (span.start >= cursor && span.end > span.start) { kept.push(span); cursor = span.end; }
  return kept;
}

function renderText(draft) {
  const parts = [];
  let cursor = draft.start;
  for (const span of spans(draft)) {
    if (span.start < draft.start || span.end > draft.end) continue;
    parts.push(document.createTextNode(state.text.slice(cursor, span.start)));
    parts.push(el("mark", { class: `t-${span.type} a-${span.assertion}`, "data-fact": span.fact || "", title: `${span.type} (${span.assertion})`,
      onclick: () => focusFact(span.fact) }, state.text.slice(span.start, span.end)));
    cursor = span.end;
  }
  parts.push(document.createTextNode(state.text.slice(cursor, draft.end)));
  $("text").replaceChildren(...parts);
}

function focusFact(factId) {
  document.querySelectorAll("mark.focus").forEach((m) => m.classList.remove("focus"));
  if (!factId) return;
  document.querySelectorAll(`mark[data-fact="${CSS.escape(factId)}"]`).forEach((m) => m.classList.add("focus"));
  const item = document.querySelector(`li[data-fact="${CSS.escape(factId)}"]`);
  if (item) item.scrollIntoView({ block: "nearest" });
}

function decision(factId) {
  const key = `${state.current}:${factId}`;
  return (state.decisions[key] = state.decisions[key] || { status: "accepted", edited: null });
}

function renderFacts(draft) {
  const items = [];
  for (const section of SECTIONS) {
    for (const fact of draft.case[section] || []) {
      const choice = decision(fact.id);
      const quotes = draft.evidence.filter((r) => r.fact === fact.id && r.role === "mention").map((r) => `“${r.text}”`).join(" · ");
      const editor = el("textarea", { rows: "6", hidden: "", "aria-label": `edit ${fact.id}` }, JSON.stringify(choice.edited || fact, null, 1));
      const item = el("li", { class: `fact ${choice.status}`, "data-fact": fact.id },
        el("div", { class: "fact-head" },
          el("span", { class: "section" }, section.replace(/s$/, "")),
          el("strong", { class: "summary" }, fact.text || (fact.agents || []).map((a) => a.text).join(" + ") || fact.id),
          ...(fact.status === "not-done" || fact.absent ? [el("span", { class: "badge" }, fact.absent ? "not available" : "not done")] : []),
          el("button", { type: "button", class: "secondary", "data-action": "accept", onclick: () => setStatus(fact.id, "accepted") }, "Accept"),
          el("button", { type: "button", class: "secondary", "data-action": "edit", onclick: () => { editor.hidden = !editor.hidden; } }, "Edit"),
          el("button", { type: "button", class: "secondary", "data-action": "reject", onclick: () => setStatus(fact.id, "rejected") }, "Reject")),
        el("div", { class: "quote" }, quotes), editor);
      editor.addEventListener("change", () => { try { choice.edited = JSON.parse(editor.value); editor.classList.remove("error"); } catch { editor.classList.add("error"); } });
      item.addEventListener("mouseenter", () => focusFact(fact.id));
      items.push(item);
    }
  }
  $("facts").replaceChildren(...items);
  const patient = draft.case.patient;
  $("patient").textContent = `Patient: ${patient.sex}` + (patient.ageAtPresentation ? `, ${patient.ageAtPresentation.value} years at presentation` : "")
    + (patient.death ? "; died" : "") + (draft.issues.length ? ` — ${draft.issues.length} validation issue(s)` : " — the draft validates");
  $("unmapped").replaceChildren(...draft.unmapped.map((m) => el("li", {}, `${m.type}: “${m.text}” (${m.assertion}${m.key ? "" : ", no code"})`)));
}

function setStatus(factId, status) { decision(factId).status = status; renderFacts(state.drafts[state.current]); }

function render(draft) { renderText(draft); renderFacts(draft); $("created").textContent = ""; }

function reviewedCase(draft) {
  const result = JSON.parse(JSON.stringify(draft.case));
  for (const section of SECTIONS) {
    if (!result[section]) continue;
    result[section] = result[section].filter((f) => decision(f.id).status !== "rejected").map((f) => decision(f.id).edited || f);
    if (!result[section].length) delete result[section];
  }
  return result;
}

async function create() {
  const draft = state.drafts[state.current];
  const response = await fetch("/cases?store=true", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(reviewedCase(draft)) });
  const body = await response.json();
  const out = $("created");
  if (response.ok) {
    const patient = (body.entry || []).map((e) => e.fullUrl || (e.response || {}).location || "").find((u) => u.startsWith("Patient/")) || "";
    out.className = "ok"; out.textContent = `case created ${patient}`.trim();
  } else {
    out.className = "error"; out.textContent = (body.issue || []).map((i) => `${(i.expression || []).join(",")}: ${i.diagnostics}`).join("; ");
  }
}

$("extract").addEventListener("click", extract);
$("create").addEventListener("click", create);
$("file").addEventListener("change", async (event) => { const file = event.target.files[0]; if (file) $("source").value = await file.text(); });
