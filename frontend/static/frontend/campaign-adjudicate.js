// The adjudication page: every read of one case in its own column (answers, confidence, time, comment,
// segmentation), the votes and agreement from the case's consensus detail, and the decision: adopt one read or
// answer the schema's questions, posted to /api/v1/cases/<id>/adjudication. Errors appear as the server words
// them, beside the question they name.

import { api, clearErrors, fill, fmt, h, seconds, showErrors } from "./campaign-common.js";

const root = document.getElementById("adjudication");
const projectId = Number(root.dataset.project);
const caseId = Number(root.dataset.case);
const form = document.getElementById("decision-form");
const page = { case: null, reads: [], schema: null };

function viewerUrl(studyUid) {
  return `/viewer/viewer?StudyInstanceUIDs=${encodeURIComponent(studyUid)}`;
}

function optionLabel(q, value) {
  const opt = (q.options || []).find((o) => (typeof o === "string" ? o : o.value) === value);
  if (!opt) return String(value);
  return typeof opt === "string" ? opt : opt.label || opt.value;
}

function answerText(q, value) {
  if (value === null || value === undefined) return "—";
  if (q.type === "yes_no") return value === true || value === "yes" ? "Yes" : "No";
  if (q.type === "multiple_choice") return value.length ? value.map((v) => optionLabel(q, v)).join(", ") : "none";
  if (q.type === "ordinal") {
    const label = (q.labels || {})[String(value)];
    return label ? `${value} (${label})` : String(value);
  }
  return optionLabel(q, value);
}

// The vote key the server uses in consensus_detail: booleans as "true"/"false", numbers as text.
const voteKey = (value) => String(value);

function majority(detail) {
  if (!detail || !detail.votes) return null;
  const entries = Object.entries(detail.votes).sort((a, b) => b[1] - a[1]);
  if (!entries.length || (entries.length > 1 && entries[0][1] === entries[1][1])) return null;
  return entries[0][0];
}

function renderSummary() {
  const c = page.case;
  const badge = document.getElementById("case-state");
  badge.textContent = c.state;
  badge.className = `badge ${c.state}`;
  fill(document.getElementById("case-study"),
    `${c.patient_name || c.patient_id || "unnamed patient"} · ${c.study_description || "no description"} · ${c.modalities || ""} · `,
    h("a", { href: viewerUrl(c.study_uid) }, "open the study in the viewer"));
  const detail = c.consensus_detail || {};
  const box = document.getElementById("case-summary");
  fill(box,
    h("p", {}, `Agreement ${fmt(c.agreement)} over ${c.reads_submitted} submitted reads.`),
    (detail.reasons || []).length ? h("p", {}, "Sent to adjudication: ", detail.reasons.join("; "), ".") : null,
    c.state === "consensus"
      ? h("p", { class: "success", id: "consensus-note" }, `This case has its consensus (${c.consensus_source}): `,
        page.schema.questions.map((q) => `${q.label}: ${answerText(q, ((c.consensus || {}).answers || {})[q.key])}`).join("; "),
        ". A new decision replaces it.")
      : null,
    c.state === "open" ? h("p", { class: "notice" }, "This case does not have all its reads yet: it can be decided once they are in.") : null);
}

function renderReads() {
  const questions = page.schema.questions;
  const detail = (page.case.consensus_detail || {}).questions || {};
  const conf = page.schema.confidence;
  const box = document.getElementById("reads");
  if (!page.reads.length) {
    fill(box, h("p", { class: "muted" }, "No read of this case yet."));
    return;
  }
  fill(box, ...page.reads.map((r) => {
    const seg = r.segmentation;
    const answers = questions.map((q) => {
      const top = majority(detail[q.key]);
      const value = r.answers[q.key];
      const differs = top !== null && value !== undefined && voteKey(value) !== top;
      return [h("dt", {}, q.label), h("dd", { class: differs ? "differs" : null, dataset: { question: q.key } },
        answerText(q, value), differs ? h("span", { class: "visually-hidden" }, " (differs from the majority)") : null)];
    });
    return h("article", { class: "read-col", dataset: { reader: r.reader, read: r.id }, "aria-labelledby": `read-${r.id}-title` },
      h("h3", { id: `read-${r.id}-title` }, r.reader),
      h("p", { class: "small muted" }, `${r.state}, version ${r.version}`,
        r.schema_version !== undefined ? `, schema v${r.schema_version}` : "",
        r.submitted_at ? `, submitted ${new Date(r.submitted_at).toLocaleString()}` : ""),
      h("dl", {}, answers,
        conf ? [h("dt", {}, "Confidence"), h("dd", {}, r.confidence === null ? "—" : `${r.confidence} of ${conf === true ? 5 : conf.max}`)] : null,
        h("dt", {}, "Time spent"), h("dd", {}, seconds(r.time_spent_seconds)),
        page.schema.free_text ? [h("dt", {}, "Comment"), h("dd", { style: "white-space:pre-wrap" }, r.free_text || "—")] : null,
        (page.schema.segments || []).length ? [h("dt", {}, "Segmentation"), h("dd", {}, seg
          ? [h("a", { href: viewerUrl(seg.study_uid) }, `Open in the viewer`), h("br"),
            h("span", { class: "small" }, "SEG series ", h("code", {}, seg.series_uid)),
            h("img", { class: "mask", width: 128, height: 128, loading: "lazy",
              src: `/dicomweb/studies/${encodeURIComponent(seg.study_uid)}/series/${encodeURIComponent(seg.series_uid)}/thumbnail?viewport=128,128`,
              alt: `Mask of ${r.reader}'s segmentation, middle frame`,
              onerror: (e) => e.target.replaceWith(h("span", { class: "small muted" }, " (no thumbnail)")) })]
          : "none")] : null),
      r.state === "submitted"
        ? h("p", { class: "adopt" }, h("button", { type: "button", onclick: () => choose(`read-${r.id}`) }, `Adopt ${r.reader}'s read`))
        : h("p", { class: "adopt small muted" }, "A draft: it cannot be adopted."));
  }));
}

function renderConsensus() {
  const detail = page.case.consensus_detail || {};
  const box = document.getElementById("consensus");
  const rows = page.schema.questions.map((q) => {
    const d = (detail.questions || {})[q.key];
    if (!d) return h("tr", {}, h("th", { scope: "row" }, q.label), h("td", { colspan: 3 }, "fewer than two answers"));
    const votes = d.votes
      ? Object.entries(d.votes).map(([v, n]) => `${answerText(q, q.type === "ordinal" ? Number(v) : q.type === "yes_no" ? v === "true" : v)}: ${n}`).join(", ")
      : Object.entries(d.support || {}).map(([v, n]) => `${optionLabel(q, v)}: ${n}`).join(", ");
    return h("tr", { dataset: { question: q.key } }, h("th", { scope: "row" }, q.label), h("td", {}, votes),
      h("td", {}, d.tie ? h("strong", {}, "tie") : "no"), h("td", {}, fmt(d.agreement)));
  });
  const masks = detail.masks;
  fill(box, h("table", { id: "votes" },
    h("thead", {}, h("tr", {}, ["Question", "Votes", "Tie", "Agreement"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, rows)),
  masks ? h("p", {}, `Segmentations: mean Dice ${fmt(masks.mean_dice, 3)} over reader pairs.`) : null);
}

// --- decision form --------------------------------------------------------------------------------------------

function choose(id) {
  const radio = document.getElementById(id);
  radio.checked = true;
  radio.dispatchEvent(new Event("change", { bubbles: true }));
  radio.focus();
}

function answerInputs(q, preset) {
  const name = `answer-${q.key}`;
  const make = (value, label, type = "radio") => {
    const id = `${name}-${String(value).replace(/[^a-zA-Z0-9_-]/g, "_")}`;
    const checked = type === "radio" ? preset !== undefined && voteKey(preset) === voteKey(value)
      : Array.isArray(preset) && preset.includes(value);
    return h("span", { class: "choice" }, h("input", { type, id, name, value: String(value), checked }), h("label", { for: id }, label));
  };
  let inputs;
  if (q.type === "yes_no") inputs = [make(true, "Yes"), make(false, "No")];
  else if (q.type === "single_choice") inputs = q.options.map((o) => make(o.value ?? o, o.label ?? o));
  else if (q.type === "multiple_choice") inputs = q.options.map((o) => make(o.value ?? o, o.label ?? o, "checkbox"));
  else if (q.max - q.min <= 10) {
    inputs = [];
    for (let v = q.min; v <= q.max; v++) inputs.push(make(v, (q.labels || {})[String(v)] ? `${v} ${q.labels[String(v)]}` : String(v)));
  } else {
    inputs = [h("label", { for: name, class: "visually-hidden" }, q.label),
      h("input", { type: "number", id: name, name, min: q.min, max: q.max, value: preset ?? "" })];
  }
  return h("fieldset", { "data-field": `answers.${q.key}`, id: `answers-${q.key}` },
    h("legend", {}, q.label, q.required === false ? " (optional)" : ""), inputs);
}

function collectAnswers() {
  const answers = {};
  for (const q of page.schema.questions) {
    const name = `answer-${q.key}`;
    if (q.type === "multiple_choice") {
      const picked = [...form.querySelectorAll(`input[name="${name}"]:checked`)].map((n) => n.value);
      if (picked.length || q.required !== false) answers[q.key] = picked;
    } else if (q.type === "ordinal" && q.max - q.min > 10) {
      const raw = form.querySelector(`input[name="${name}"]`).value;
      if (raw !== "") answers[q.key] = Number(raw);
    } else {
      const picked = form.querySelector(`input[name="${name}"]:checked`);
      if (!picked) continue;
      answers[q.key] = q.type === "yes_no" ? picked.value === "true" : q.type === "ordinal" ? Number(picked.value) : picked.value;
    }
  }
  return answers;
}

function renderDecisionForm() {
  const submitted = page.reads.filter((r) => r.state === "submitted");
  const summary = (r) => page.schema.questions.map((q) => `${q.label}: ${answerText(q, r.answers[q.key])}`).join("; ");
  fill(document.getElementById("choices"),
    ...submitted.map((r) => h("div", { class: "field inline" },
      h("input", { type: "radio", name: "decision", id: `read-${r.id}`, value: String(r.id) }), " ",
      h("label", { for: `read-${r.id}` }, `Adopt ${r.reader}'s read`),
      h("span", { class: "hint" }, summary(r)))),
    h("div", { class: "field inline" }, h("input", { type: "radio", name: "decision", id: "decision-own", value: "own" }), " ",
      h("label", { for: "decision-own" }, "My own answers"),
      h("span", { class: "hint" }, "answer the questions below; the readers' masks are merged as for a majority consensus")));
  const detail = (page.case.consensus_detail || {}).questions || {};
  const current = (page.case.consensus || {}).answers || {};
  fill(document.getElementById("answer-fields"), ...page.schema.questions.map((q) => {
    let preset = current[q.key];
    if (preset === undefined && detail[q.key] && !detail[q.key].tie) {
      const top = majority(detail[q.key]);
      if (top !== null) preset = q.type === "yes_no" ? top === "true" : q.type === "ordinal" ? Number(top) : top;
    }
    return answerInputs(q, preset);
  }));
}

form.addEventListener("change", (e) => {
  if (e.target.name === "decision") document.getElementById("own-answers").hidden = e.target.value !== "own";
});

form.addEventListener("submit", async (e) => {
  e.preventDefault();
  clearErrors(form);
  const button = document.getElementById("decision-submit");
  const status = document.getElementById("decision-status");
  const picked = form.querySelector("input[name=decision]:checked");
  const body = { note: document.getElementById("decision-note").value };
  if (picked && picked.value === "own") body.answers = collectAnswers();
  else if (picked) body.chosen_read = Number(picked.value);
  button.disabled = true;
  status.textContent = "Recording…";
  const res = await api("POST", `/api/v1/cases/${caseId}/adjudication`, body);
  button.disabled = false;
  status.textContent = "";
  if (!res.ok) {
    showErrors(form, res.body, { title: `Not recorded: ${res.body.message}` });
    return;
  }
  await load();
  const queue = await api("GET", `/api/v1/projects/${projectId}/adjudication-queue`);
  const next = queue.ok ? queue.body.find((c) => c.id !== caseId) : null;
  const result = document.getElementById("decision-result");
  fill(result, h("div", { class: "success", id: "decision-recorded", tabindex: "-1" },
    h("p", {}, `Decision recorded by ${res.body.adjudicator}: case ${caseId} now has its consensus (${page.case.consensus_source}).`),
    h("p", {}, h("a", { href: `/campaigns/${projectId}/` }, "Back to the dashboard"),
      next ? [" · ", h("a", { href: `/campaigns/${projectId}/cases/${next.id}/adjudicate` }, `Next case waiting: ${next.id}`)]
        : " · no other case is waiting for adjudication.")));
  result.firstChild.focus();
});

async function load() {
  const [c, reads, schema] = await Promise.all([
    api("GET", `/api/v1/cases/${caseId}`), api("GET", `/api/v1/cases/${caseId}/reads`),
    api("GET", `/api/v1/projects/${projectId}/schema`)]);
  const failed = [c, reads, schema].find((r) => !r.ok);
  if (failed) {
    fill(document.getElementById("case-study"), h("span", { class: "field-error" }, failed.body.message));
    return;
  }
  page.case = c.body;
  page.reads = reads.body;
  page.schema = schema.body.definition;
  renderSummary();
  renderReads();
  renderConsensus();
  renderDecisionForm();
}

load();
