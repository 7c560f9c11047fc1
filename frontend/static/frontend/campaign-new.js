// The new-campaign page: settings, a label-schema editor (with its JSON), studies, readers. One submit creates
// the project with its schema (POST /api/v1/projects), then adds members and cases; the server's field errors
// are shown beside the fields they name. If the project was made but a reader or the studies were refused, the
// page keeps the project and retries only what failed.

import { api, clearErrors, fill, h, jsonFromScript, showErrors } from "./campaign-common.js";
import { studyPicker } from "./campaign-studies.js";

const TYPES = [["single_choice", "Single choice"], ["multiple_choice", "Multiple choice"],
  ["ordinal", "Ordinal scale"], ["yes_no", "Yes / no"]];
const COLOURS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324"];
const QUESTION_KEYS = new Set(["key", "label", "type", "options", "min", "max", "required"]);
const TOP_KEYS = new Set(["questions", "segments", "free_text", "confidence"]);
const DEFAULT_SCHEMA = {
  questions: [{ key: "finding", label: "Finding", type: "single_choice", options: ["normal", "abnormal"] }],
  segments: [],
  free_text: true,
  confidence: false,
};

const form = document.getElementById("campaign-form");
const questionsBox = document.getElementById("questions");
const segmentsBox = document.getElementById("segments");
const jsonBox = document.getElementById("schema-json");
const memberRows = document.getElementById("member-rows");
const memberRoles = jsonFromScript("member-roles");
const state = { projectId: null, casesAdded: false, busy: false };
let topExtra = {};

function slug(text) {
  let s = text.toLowerCase().normalize("NFKD").replace(/[^a-z0-9]+/g, "_").replace(/^_+|_+$/g, "");
  if (s && !/^[a-z]/.test(s)) s = `q_${s}`;
  return s.slice(0, 64);
}

function numberOrRaw(value) {
  const n = Number(value);
  return value.trim() !== "" && Number.isInteger(n) ? n : value;
}

function field(label, input, hint) {
  return h("div", { class: "field" }, h("label", { for: input.id }, label), input,
    hint ? h("span", { class: "hint" }, hint) : null);
}

// --- schema editor --------------------------------------------------------------------------------------------

function optionLines(options) {
  return (options || []).map((o) => {
    if (typeof o === "string") return o;
    return o.label && o.label !== o.value ? `${o.value} | ${o.label}` : o.value;
  }).join("\n");
}

function parseOptions(text) {
  return text.split("\n").map((line) => line.trim()).filter(Boolean).map((line) => {
    const [value, ...rest] = line.split("|");
    const label = rest.join("|").trim();
    return label ? { value: value.trim(), label } : value.trim();
  });
}

function questionRow(q, i) {
  const p = `questions[${i}]`;
  const id = `q${i}`;
  const extra = Object.fromEntries(Object.entries(q).filter(([k]) => !QUESTION_KEYS.has(k)));
  const label = h("input", { type: "text", id: `${id}-label`, "data-field": `${p}.label`, value: q.label || "", size: 30 });
  const key = h("input", { type: "text", id: `${id}-key`, "data-field": `${p}.key`, value: q.key || "", size: 20,
    dataset: { auto: !q.key || q.key === slug(q.label || "") ? "1" : "0" } });
  const type = h("select", { id: `${id}-type`, "data-field": `${p}.type` },
    TYPES.map(([v, text]) => h("option", { value: v, selected: v === q.type }, text)));
  if (!TYPES.some(([v]) => v === q.type) && q.type) type.append(h("option", { value: q.type, selected: true }, q.type));
  const options = h("textarea", { id: `${id}-options`, "data-field": `${p}.options`, rows: 3 });
  options.value = optionLines(q.options);
  const min = h("input", { type: "number", id: `${id}-min`, "data-field": `${p}.min`, value: q.min ?? 1, style: "width:5rem" });
  const max = h("input", { type: "number", id: `${id}-max`, "data-field": `${p}.max`, value: q.max ?? 5, style: "width:5rem" });
  const required = h("input", { type: "checkbox", id: `${id}-required`, checked: q.required !== false });
  const optionsField = field("Options (one per line)", options);
  const scaleField = h("div", { class: "row" }, field("Scale from", min), field("to", max));
  const row = h("fieldset", { class: "question", dataset: { extra: JSON.stringify(extra) }, "data-field": p },
    h("legend", {}, `Question ${i + 1}`),
    h("div", { class: "row" }, field("Question", label), field("Key", key), field("Type", type),
      h("div", { class: "field inline" }, required, " ", h("label", { for: required.id }, "required"))),
    optionsField, scaleField,
    h("button", { type: "button", class: "link", onclick: () => removeQuestion(i) }, `Remove question ${i + 1}`));
  const showFor = () => {
    optionsField.hidden = !["single_choice", "multiple_choice"].includes(type.value);
    scaleField.hidden = type.value !== "ordinal";
  };
  type.addEventListener("change", showFor);
  label.addEventListener("input", () => { if (key.dataset.auto === "1") key.value = slug(label.value); });
  key.addEventListener("input", () => { key.dataset.auto = key.value ? "0" : "1"; });
  showFor();
  return row;
}

function segmentRow(s, i) {
  const p = `segments[${i}]`;
  const id = `s${i}`;
  const name = h("input", { type: "text", id: `${id}-name`, "data-field": `${p}.name`, value: s.name || "", size: 24 });
  const color = h("input", { type: "color", id: `${id}-color`, "data-field": `${p}.color`, value: s.color || COLOURS[i % COLOURS.length] });
  const code = h("input", { type: "text", id: `${id}-code`, "data-field": `${p}.code`, value: s.code ? s.code.value : "", size: 14,
    inputmode: "numeric" });
  const meaning = h("input", { type: "text", id: `${id}-meaning`, value: s.code ? s.code.meaning : "", size: 20 });
  return h("fieldset", { class: "segment", "data-field": p, dataset: { scheme: s.code ? s.code.scheme : "SCT" } },
    h("legend", {}, `Segmentation label ${i + 1}`),
    h("div", { class: "row" }, field("Name", name), field("Colour", color),
      field("SNOMED CT code (optional)", code, "e.g. 52988006"), field("Code meaning", meaning, "defaults to the name"),
      h("div", { class: "field" }, h("button", { type: "button", class: "link", onclick: () => removeSegment(i) },
        `Remove segmentation label ${i + 1}`))));
}

function readSchema() {
  const questions = [...questionsBox.querySelectorAll(":scope > .question")].map((row, i) => {
    const v = (suffix) => row.querySelector(`#q${i}-${suffix}`);
    const q = { ...JSON.parse(row.dataset.extra || "{}"), key: v("key").value.trim(), label: v("label").value.trim(),
      type: v("type").value };
    if (q.type === "single_choice" || q.type === "multiple_choice") q.options = parseOptions(v("options").value);
    if (q.type === "ordinal") {
      q.min = numberOrRaw(v("min").value);
      q.max = numberOrRaw(v("max").value);
    }
    if (!v("required").checked) q.required = false;
    return q;
  });
  const segments = [...segmentsBox.querySelectorAll(":scope > .segment")].map((row, i) => {
    const v = (suffix) => row.querySelector(`#s${i}-${suffix}`).value.trim();
    const s = { name: v("name"), color: v("color") };
    if (v("code")) s.code = { scheme: row.dataset.scheme || "SCT", value: v("code"), meaning: v("meaning") || v("name") };
    return s;
  });
  const confidence = document.getElementById("f-confidence").checked
    ? { min: numberOrRaw(document.getElementById("f-confidence-min").value),
      max: numberOrRaw(document.getElementById("f-confidence-max").value) }
    : false;
  return { ...topExtra, questions, segments, free_text: document.getElementById("f-free-text").checked, confidence };
}

function renderSchema(def) {
  topExtra = Object.fromEntries(Object.entries(def).filter(([k]) => !TOP_KEYS.has(k)));
  fill(questionsBox, ...(def.questions || []).map(questionRow));
  fill(segmentsBox, ...(def.segments || []).map(segmentRow));
  document.getElementById("f-free-text").checked = Boolean(def.free_text);
  const conf = def.confidence;
  document.getElementById("f-confidence").checked = Boolean(conf);
  document.getElementById("f-confidence-min").value = conf && conf.min !== undefined ? conf.min : 1;
  document.getElementById("f-confidence-max").value = conf && conf.max !== undefined ? conf.max : 5;
  syncJson();
}

function syncJson() {
  if (document.activeElement !== jsonBox) jsonBox.value = JSON.stringify(readSchema(), null, 2);
}

function removeQuestion(i) {
  const def = readSchema();
  def.questions.splice(i, 1);
  renderSchema(def);
  const next = document.getElementById(`q${Math.min(i, def.questions.length - 1)}-label`);
  (next || document.getElementById("add-question")).focus();
}

function removeSegment(i) {
  const def = readSchema();
  def.segments.splice(i, 1);
  renderSchema(def);
  const next = document.getElementById(`s${Math.min(i, def.segments.length - 1)}-name`);
  (next || document.getElementById("add-segment")).focus();
}

document.getElementById("add-question").addEventListener("click", () => {
  const def = readSchema();
  def.questions.push({ key: "", label: "", type: "single_choice", options: [] });
  renderSchema(def);
  document.getElementById(`q${def.questions.length - 1}-label`).focus();
});

document.getElementById("add-segment").addEventListener("click", () => {
  const def = readSchema();
  def.segments.push({ name: "", color: COLOURS[def.segments.length % COLOURS.length] });
  renderSchema(def);
  document.getElementById(`s${def.segments.length - 1}-name`).focus();
});

document.getElementById("apply-json").addEventListener("click", () => {
  const status = document.getElementById("json-status");
  try {
    const def = JSON.parse(jsonBox.value);
    if (!def || typeof def !== "object" || Array.isArray(def)) throw new Error("a schema is a JSON object");
    renderSchema(def);
    status.textContent = "Loaded into the editor.";
  } catch (err) {
    status.textContent = `Not applied: ${err.message}`;
  }
});

const editor = document.getElementById("schema-editor");
editor.addEventListener("input", (e) => { if (e.target !== jsonBox) syncJson(); });
editor.addEventListener("change", (e) => { if (e.target !== jsonBox) syncJson(); });

// --- members --------------------------------------------------------------------------------------------------

let memberCounter = 0;

function addMember(username = "", role = "radiologist") {
  const i = memberCounter++;
  const p = `members[${i}]`;
  const user = h("input", { type: "text", id: `m${i}-user`, "data-field": `${p}.username`, list: "known-users",
    value: username, autocomplete: "off", "aria-label": `User ${i + 1}` });
  const select = h("select", { id: `m${i}-role`, "data-field": `${p}.role`, "aria-label": `Role of user ${i + 1}` },
    memberRoles.map(([v, text]) => h("option", { value: v, selected: v === role }, text)));
  const row = h("tr", { dataset: { index: String(i) } },
    h("td", {}, h("div", { class: "field", "data-field": p }, user)),
    h("td", {}, h("div", { class: "field" }, select)),
    h("td", {}, h("button", { type: "button", class: "link", "aria-label": `Remove user ${i + 1}`, onclick: () => {
      const next = row.nextElementSibling || row.previousElementSibling;
      row.remove();
      (next ? next.querySelector("input") : document.getElementById("add-member")).focus();
    } }, "remove")));
  memberRows.append(row);
  return user;
}

document.getElementById("add-member").addEventListener("click", () => addMember().focus());

// --- submit ---------------------------------------------------------------------------------------------------

function projectPayload() {
  const value = (id) => document.getElementById(id).value;
  const threshold = value("f-threshold").trim();
  return {
    name: value("f-name").trim(),
    description: value("f-description").trim(),
    reads_per_case: numberOrRaw(value("f-k")),
    agreement_threshold: threshold !== "" && !Number.isNaN(Number(threshold)) ? Number(threshold) : threshold,
    ordinal_consensus: value("f-ordinal"),
    mask_consensus: value("f-mask"),
    claim_minutes: numberOrRaw(value("f-claim")),
    schema: readSchema(),
  };
}

async function submit(event) {
  event.preventDefault();
  if (state.busy) return;
  state.busy = true;
  const button = document.getElementById("create-submit");
  const status = document.getElementById("submit-status");
  button.disabled = true;
  clearErrors(form);
  try {
    if (!state.projectId) {
      status.textContent = "Creating the campaign…";
      const res = await api("POST", "/api/v1/projects", projectPayload());
      if (!res.ok) {
        status.textContent = "";
        showErrors(form, res.body, { title: `Not created: ${res.body.message}` });
        return;
      }
      state.projectId = res.body.id;
      document.getElementById("settings").disabled = true;
      editor.disabled = true;
    }
    const failures = [];
    for (const row of memberRows.querySelectorAll("tr:not([data-done])")) {
      const i = row.dataset.index;
      const username = row.querySelector("input").value.trim();
      if (!username) continue;
      status.textContent = `Adding ${username}…`;
      const res = await api("POST", `/api/v1/projects/${state.projectId}/members`,
        { username, role: row.querySelector("select").value });
      if (res.ok) {
        row.dataset.done = "1";
        row.querySelectorAll("input, select, button").forEach((n) => { n.disabled = true; });
        fill(row.lastElementChild, h("span", { class: "small" }, "added"));
      } else {
        failures.push([res.body, `members[${i}]`]);
      }
    }
    const uids = picker.uids();
    if (uids.length && !state.casesAdded) {
      status.textContent = `Adding ${uids.length} studies as cases…`;
      const res = await api("POST", `/api/v1/projects/${state.projectId}/cases`, { study_uids: uids });
      if (res.ok) state.casesAdded = true;
      else failures.push([res.body, "study_uids"]);
    }
    if (!failures.length) {
      status.textContent = "Campaign ready: opening its dashboard…";
      window.location.assign(`/campaigns/${state.projectId}/`);
      return;
    }
    failures.forEach(([body, prefix], n) => showErrors(form, body, { prefix, focus: false, append: n > 0,
      title: "The campaign was created, but not everything was added" }));
    const summary = form.querySelector(".error-summary");
    summary.querySelector("h2").after(h("p", {}, "Fix what is marked and press “Finish setup”, or ",
      h("a", { href: `/campaigns/${state.projectId}/` }, "go to the dashboard"), " and add them there."));
    summary.focus();
    button.textContent = "Finish setup";
    status.textContent = "";
  } finally {
    state.busy = false;
    button.disabled = false;
  }
}

form.addEventListener("submit", submit);
const picker = studyPicker(document.getElementById("studies"));
renderSchema(DEFAULT_SCHEMA);
addMember();
