// The data page: each campaign's exports and models, fetched from their APIs (GET /api/v1/projects/<id>/exports
// and /models). Where an API is not installed on this server (404) the list says so; an empty list says "none
// yet". Nothing is made up.

import { api, clearErrors, fill, fmt, h, showErrors } from "./campaign-common.js";

const KINDS = {
  exports: { none: "No exports yet.", noun: "exports" },
  models: { none: "No models yet: a model appears after the first round of active learning.", noun: "models" },
};

function when(text) {
  return text ? new Date(text).toLocaleString() : "";
}

function metricsText(metrics) {
  return Object.entries(metrics || {}).filter(([, v]) => typeof v === "number").slice(0, 4)
    .map(([k, v]) => `${k} ${fmt(v, 3)}`).join(", ");
}

function bytes(n) {
  if (typeof n !== "number") return "";
  return n > 1e6 ? `${(n / 1e6).toFixed(1)} MB` : `${Math.max(1, Math.round(n / 1e3))} kB`;
}

function counts(summary) {
  return Object.entries((summary || {}).counts || {}).map(([k, v]) => `${v} ${k.replace(/_/g, " ")}`).join(", ");
}

function exportRows(items) {
  return h("table", {}, h("thead", {}, h("tr", {}, ["Version", "Contents", "Images", "De-identified", "Size", "Created", ""]
    .map((t) => h("th", { scope: "col" }, t)))),
  h("tbody", {}, items.map((x) => h("tr", { dataset: { version: x.version } },
    h("td", {}, x.version !== undefined ? `v${x.version}` : x.id), h("td", { class: "small" }, counts(x.summary)),
    h("td", {}, (x.request || {}).images || ""), h("td", {}, x.deidentified ? "yes" : "no"), h("td", {}, bytes(x.size)),
    h("td", { class: "small" }, `${when(x.created_at)}${x.created_by ? ` by ${x.created_by}` : ""}`),
    h("td", {}, x.download ? h("a", { href: x.download, download: "" }, `download v${x.version}`) : "")))));
}

function modelRows(items) {
  return h("table", {}, h("thead", {}, h("tr", {}, ["Version", "Current", "Labels used", "Validation", "Created"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, items.map((m) => h("tr", {}, h("td", {}, m.version ?? m.id ?? ""), h("td", {}, m.promoted ? "yes" : ""),
      h("td", {}, m.labels_used ?? ""), h("td", { class: "small" }, metricsText(m.metrics)), h("td", {}, when(m.created_at))))));
}

async function list(box, kind) {
  const res = await api("GET", box.dataset.url);
  if (res.status === 404) {
    box.dataset.state = "unavailable";
    fill(box, h("p", { class: "muted" }, `Not available on this server yet: the ${KINDS[kind].noun} API `,
      h("code", {}, box.dataset.url), " does not exist here. This list fills in once it does."));
    return;
  }
  if (!res.ok) {
    box.dataset.state = "error";
    fill(box, h("p", { class: "field-error" }, res.body.message));
    return;
  }
  const items = Array.isArray(res.body) ? res.body : res.body.results || [];
  const request = box.parentElement.querySelector("form.export-request");
  if (kind === "exports" && request) request.hidden = false;  // the exports API is there: exports can be asked for
  box.dataset.state = items.length ? "listed" : "empty";
  fill(box, items.length ? (kind === "models" ? modelRows(items) : exportRows(items))
    : h("p", { class: "muted" }, KINDS[kind].none));
}

// A new export is a background job (202): follow it on /ws/jobs/<id>, then list the exports again.
function follow(form, job) {
  const box = form.querySelector(".export-job");
  const bar = box.querySelector("progress");
  const status = box.querySelector(".export-status");
  box.hidden = false;
  const show = (j) => {
    bar.value = j.progress || 0;
    status.textContent = j.state === "failed" ? `failed: ${j.error}` : `${j.state}${j.message ? `: ${j.message}` : ""}`;
  };
  show(job);
  const scheme = window.location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${window.location.host}/ws/jobs/${job.id}`);
  ws.addEventListener("message", (msg) => {
    const j = JSON.parse(msg.data);
    show(j);
    if (j.state === "succeeded" || j.state === "failed") {
      ws.close();
      form.querySelector("button[type=submit]").disabled = false;
      if (j.state === "succeeded") list(form.parentElement.querySelector(".exports"), "exports");
    }
  });
}

document.querySelectorAll("form.export-request").forEach((form) => form.addEventListener("submit", async (e) => {
  e.preventDefault();
  clearErrors(form);
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  const res = await api("POST", form.dataset.url, { cases: "consensus", images: form.elements.images.value });
  if (!res.ok) {
    button.disabled = false;
    showErrors(form, res.body, { title: `No export: ${res.body.message}` });
    return;
  }
  follow(form, res.body);
}));

for (const kind of Object.keys(KINDS)) {
  document.querySelectorAll(`.data-project .${kind}`).forEach((box) => list(box, kind));
}
