// The live dashboard of one campaign. Figures come from the REST API (progress, agreement, adjudication
// queue, members); the page subscribes to /ws/projects/<id> and refetches what an event changes, so counts and
// plots follow the readers without a reload. Plots are inline SVG drawn here: Cohen's kappa per reader pair as
// a heat map with a colour scale, and each reader's agreement with the consensus as bars with 95% CIs.

import { api, clearErrors, estimate, fill, fmt, h, seconds, showErrors, svg } from "./campaign-common.js";
import { studyPicker } from "./campaign-studies.js";

const root = document.getElementById("dashboard");
const projectId = Number(root.dataset.project);
const isLead = root.dataset.lead === "1";
const canAdjudicate = root.dataset.adjudicate === "1";
const base = `/api/v1/projects/${projectId}`;
const view = { question: null, questionKeys: "" };

// --- progress -------------------------------------------------------------------------------------------------

async function loadProgress() {
  const res = await api("GET", `${base}/progress`);
  if (!res.ok) {  // say why, rather than leave the counts at "…"
    document.getElementById("reads-text").textContent = `progress unavailable: ${res.body.message}`;
    return;
  }
  const p = res.body;
  for (const key of ["total", "open", "adjudication", "consensus"]) {
    document.getElementById(`count-${key}`).textContent = String(p.cases[key] ?? 0);
  }
  const bar = document.getElementById("reads-progress");
  bar.max = Math.max(p.reads.needed, 1);
  bar.value = p.reads.submitted;
  document.getElementById("reads-text").textContent =
    `${p.reads.submitted} of ${p.reads.needed} (${Math.round(100 * p.reads.fraction_done)}%), ${p.reads.drafts} drafts; `
    + `median time per read ${seconds(p.median_seconds_per_read)}`;
  const box = document.getElementById("readers-table");
  if (!p.readers.length) {
    fill(box, h("p", { class: "muted" }, "No reader has claimed a case yet."));
    return;
  }
  fill(box, h("table", { id: "readers" },
    h("thead", {}, h("tr", {}, ["Reader", "Submitted", "Drafts", "Open claims", "Median time"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, p.readers.map((r) => h("tr", { dataset: { reader: r.reader } },
      h("th", { scope: "row" }, r.reader), h("td", { class: "submitted" }, r.submitted), h("td", {}, r.drafts),
      h("td", {}, r.claimed), h("td", {}, seconds(r.median_seconds)))))));
}

// --- agreement ------------------------------------------------------------------------------------------------

function kappaColour(v) {
  // diverging: -1 red, 0 near-white, 1 blue (readable for the common colour-vision deficiencies)
  const stops = [[-1, [178, 24, 43]], [0, [247, 247, 247]], [1, [33, 102, 172]]];
  const x = Math.max(-1, Math.min(1, v));
  const [a, b] = x <= 0 ? [stops[0], stops[1]] : [stops[1], stops[2]];
  const t = (x - a[0]) / (b[0] - a[0]);
  const c = a[1].map((ch, i) => Math.round(ch + t * (b[1][i] - ch)));
  return { fill: `rgb(${c.join(",")})`, dark: Math.abs(x) > 0.55 };
}

function heatmap(readers, pairs) {
  const lookup = new Map();
  for (const p of pairs) {
    lookup.set(`${p.readers[0]}|${p.readers[1]}`, p);
    lookup.set(`${p.readers[1]}|${p.readers[0]}`, p);
  }
  const n = readers.length;
  const cell = Math.max(40, Math.min(72, Math.floor(420 / Math.max(n, 1))));
  const longest = Math.max(...readers.map((r) => r.length));
  const left = Math.min(170, 12 + 7 * longest);
  const top = Math.min(130, 16 + 5 * longest);
  const gridW = n * cell;
  const legendX = left + gridW + 24;
  const legendH = Math.max(gridW, 150);
  const width = legendX + 70;
  const height = top + legendH + 10;
  const described = pairs.map((p) => `${p.readers[0]} and ${p.readers[1]}: ${fmt(p.value)}`).join("; ");
  const chart = svg("svg", { id: "kappa-heatmap", width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": `Cohen's kappa per reader pair. ${described || "No pair has enough cases yet."}` });
  readers.forEach((r, i) => {
    chart.append(svg("text", { x: left - 6, y: top + i * cell + cell / 2 + 4, "text-anchor": "end" }, r));
    const x = left + i * cell + cell / 2;
    chart.append(svg("text", { x, y: top - 8, transform: `rotate(-40 ${x} ${top - 8})` }, r));
  });
  readers.forEach((a, i) => readers.forEach((b, j) => {
    const x = left + j * cell;
    const y = top + i * cell;
    if (i === j) {
      chart.append(svg("g", { class: "cell diagonal" },
        svg("rect", { x, y, width: cell - 2, height: cell - 2, fill: "#e4e6ea" }),
        svg("text", { x: x + cell / 2 - 1, y: y + cell / 2 + 4, "text-anchor": "middle", fill: "#5b6372" }, "—")));
      return;
    }
    const p = lookup.get(`${a}|${b}`);
    const value = p ? p.value : null;
    const colour = value === null ? { fill: "#ffffff", dark: false } : kappaColour(value);
    const tip = p ? `${a} vs ${b}: kappa ${estimate(p)}, ${p.n} cases` : `${a} vs ${b}: no cases read by both`;
    chart.append(svg("g", { class: "cell", "data-pair": `${a}|${b}`, "data-value": value === null ? "" : value },
      svg("title", {}, tip),
      svg("rect", { x, y, width: cell - 2, height: cell - 2, fill: colour.fill, stroke: value === null ? "#c4c9d2" : "none",
        "stroke-dasharray": value === null ? "3 3" : null }),
      svg("text", { x: x + cell / 2 - 1, y: y + cell / 2 + 4, "text-anchor": "middle", fill: colour.dark ? "#fff" : "#1d2330" },
        value === null ? "n/a" : fmt(value))));
  }));
  const gradient = svg("linearGradient", { id: "kappa-scale", x1: 0, y1: 0, x2: 0, y2: 1 },
    [1, 0.5, 0, -0.5, -1].map((v, i) => svg("stop", { offset: `${i * 25}%`, "stop-color": kappaColour(v).fill })));
  chart.append(svg("defs", {}, gradient),
    svg("rect", { x: legendX, y: top, width: 16, height: legendH, fill: "url(#kappa-scale)", stroke: "#c4c9d2" }),
    ...[1, 0.5, 0, -0.5, -1].map((v, i) => svg("text", { x: legendX + 22, y: top + (i * legendH) / 4 + 4 }, v.toFixed(1))),
    svg("text", { x: legendX, y: top - 8 }, "kappa"));
  return chart;
}

function consensusBars(rows) {
  const longest = Math.max(...rows.map((r) => r.reader.length));
  const left = Math.min(170, 12 + 7 * longest);
  const plotW = 320;
  const barH = 26;
  const top = 10;
  const height = top + rows.length * (barH + 10) + 30;
  const width = left + plotW + 60;
  const x = (v) => left + plotW * Math.max(0, Math.min(1, v));
  const chart = svg("svg", { id: "consensus-bars", width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": `Agreement of each reader with the consensus: ${rows.map((r) => `${r.reader} ${estimate(r.agreement)}`).join("; ")}` });
  for (const t of [0, 0.25, 0.5, 0.75, 1]) {
    const gx = x(t);
    const axisY = top + rows.length * (barH + 10);
    chart.append(svg("line", { x1: gx, x2: gx, y1: top - 4, y2: axisY, stroke: "#e4e6ea" }),
      svg("text", { x: gx, y: axisY + 16, "text-anchor": "middle" }, t.toFixed(2)));
  }
  rows.forEach((r, i) => {
    const y = top + i * (barH + 10);
    const a = r.agreement || {};
    const g = svg("g", { class: "bar", "data-reader": r.reader, "data-value": a.value ?? "" },
      svg("title", {}, `${r.reader}: agreement with consensus ${estimate(a)} over ${a.n ?? 0} cases; kappa ${estimate(r.kappa)}`),
      svg("text", { x: left - 6, y: y + barH / 2 + 4, "text-anchor": "end" }, r.reader));
    if (a.value !== null && a.value !== undefined) {
      g.append(svg("rect", { x: left, y, width: Math.max(1, x(a.value) - left), height: barH, fill: "#6f8fd8" }));
      if (a.ci_low !== null && a.ci_low !== undefined && a.ci_high !== null && a.ci_high !== undefined) {
        const cy = y + barH / 2;
        g.append(svg("line", { class: "whisker", x1: x(a.ci_low), x2: x(a.ci_high), y1: cy, y2: cy, stroke: "#1d2330", "stroke-width": 1.5 }),
          svg("line", { x1: x(a.ci_low), x2: x(a.ci_low), y1: cy - 6, y2: cy + 6, stroke: "#1d2330", "stroke-width": 1.5 }),
          svg("line", { x1: x(a.ci_high), x2: x(a.ci_high), y1: cy - 6, y2: cy + 6, stroke: "#1d2330", "stroke-width": 1.5 }));
      }
      g.append(svg("text", { x: x(Math.max(a.value, a.ci_high ?? 0)) + 6, y: y + barH / 2 + 4 }, fmt(a.value)));
    } else {
      g.append(svg("text", { x: left + 4, y: y + barH / 2 + 4, fill: "#5b6372" }, "n/a"));
    }
    chart.append(g);
  });
  return chart;
}

function dataTable(caption, headers, rows) {
  return h("details", {}, h("summary", {}, `${caption} as a table`),
    h("table", {}, h("thead", {}, h("tr", {}, headers.map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c)))))));
}

function renderQuestion(data, key) {
  const q = data.questions[key];
  const stats = h("dl", { class: "stats", id: "agreement-stats" },
    h("dt", {}, "Cases compared"), h("dd", {}, q.cases),
    h("dt", {}, "Percent agreement"), h("dd", {}, estimate(q.percent_agreement)),
    h("dt", {}, "Fleiss' kappa"), h("dd", {}, estimate(q.fleiss_kappa)),
    h("dt", {}, "Krippendorff's alpha (nominal)"), h("dd", {}, estimate(q.krippendorff_alpha_nominal)),
    q.krippendorff_alpha_ordinal ? [h("dt", {}, "Krippendorff's alpha (ordinal)"), h("dd", {}, estimate(q.krippendorff_alpha_ordinal))] : null);
  const kappaTitle = q.type === "ordinal" ? "Cohen's kappa (quadratic weights) per reader pair" : "Cohen's kappa per reader pair";
  const vs = q.reader_vs_consensus || [];
  return h("div", {}, stats,
    h("div", { class: "plots" },
      h("figure", { class: "plot" }, h("figcaption", {}, kappaTitle), heatmap(data.readers, q.cohen_kappa || []),
        dataTable("Kappa per pair", ["Readers", "Kappa", "95% CI", "Cases"],
          (q.cohen_kappa || []).map((p) => [p.readers.join(" and "), fmt(p.value), `${fmt(p.ci_low)} to ${fmt(p.ci_high)}`, p.n]))),
      h("figure", { class: "plot" }, h("figcaption", {}, "Each reader against the consensus"),
        vs.length ? consensusBars(vs) : h("p", { class: "muted", id: "no-consensus-yet" }, "No case has a consensus on this question yet."),
        vs.length ? dataTable("Reader against consensus", ["Reader", "Agreement", "95% CI", "Kappa", "Cases"],
          vs.map((r) => [r.reader, fmt(r.agreement.value), `${fmt(r.agreement.ci_low)} to ${fmt(r.agreement.ci_high)}`,
            estimate(r.kappa), r.agreement.n])) : null)));
}

function renderMasks(masks) {
  const labels = Object.keys(masks || {});
  if (!labels.length) return null;
  return h("div", {}, h("h3", {}, "Segmentations: overlap per reader pair"),
    h("table", {}, h("thead", {}, h("tr", {}, ["Label", "Readers", "Cases", "Mean Dice", "Mean HD95 (mm)"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, labels.flatMap((label) => masks[label].map((p) => h("tr", {}, h("td", {}, label),
        h("td", {}, p.readers.join(" and ")), h("td", {}, p.cases), h("td", {}, fmt(p.dice_mean, 3)),
        h("td", {}, p.hd95_mean === null ? "n/a" : fmt(p.hd95_mean, 1))))))));
}

async function loadAgreement() {
  const res = await api("GET", `${base}/agreement`);
  const box = document.getElementById("agreement");
  if (!res.ok) {
    fill(box, h("p", { class: "field-error" }, res.body.message));
    return;
  }
  const data = res.body;
  const keys = Object.keys(data.questions);
  if (!data.cases || (!keys.length && !Object.keys(data.masks || {}).length)) {
    view.questionKeys = "";
    fill(box, h("p", { class: "muted", id: "agreement-empty" },
      "No case has all its reads yet: agreement appears here as soon as one does."));
    return;
  }
  if (!keys.includes(view.question)) view.question = keys[0] || null;
  let controls = document.getElementById("agreement-controls");
  if (!controls || view.questionKeys !== keys.join("|")) {
    view.questionKeys = keys.join("|");
    const select = h("select", { id: "agreement-question" },
      keys.map((k) => h("option", { value: k, selected: k === view.question }, `${k} (${data.questions[k].type.replace("_", " ")})`)));
    select.addEventListener("change", () => {
      view.question = select.value;
      fill(document.getElementById("agreement-body"), renderQuestion(view.data, view.question));
    });
    controls = h("div", { id: "agreement-controls", class: "row" },
      h("p", { id: "agreement-cases" }), keys.length ? h("div", { class: "field" }, h("label", { for: "agreement-question" }, "Question"), select) : null);
    fill(box, controls, h("div", { id: "agreement-body" }), h("div", { id: "agreement-masks" }));
  }
  view.data = data;
  document.getElementById("agreement-cases").textContent =
    `Over the ${data.cases} ${data.cases === 1 ? "case" : "cases"} with all their reads, ${data.readers.length} readers.`;
  fill(document.getElementById("agreement-body"), view.question ? renderQuestion(data, view.question) : "");
  fill(document.getElementById("agreement-masks"), renderMasks(data.masks) || "");
}

// --- adjudication queue ---------------------------------------------------------------------------------------

async function loadQueue() {
  if (!canAdjudicate) return;
  const res = await api("GET", `${base}/adjudication-queue`);
  const box = document.getElementById("queue");
  if (!res.ok) {
    fill(box, h("p", { class: "field-error" }, res.body.message));
    return;
  }
  if (!res.body.length) {
    fill(box, h("p", { class: "muted", id: "queue-empty" }, "No case is waiting for adjudication."));
    return;
  }
  fill(box, h("table", { id: "queue-table" },
    h("thead", {}, h("tr", {}, ["Case", "Study", "Agreement", "Why", ""].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, res.body.map((c) => h("tr", { dataset: { case: c.id } },
      h("td", {}, `#${c.id}`),
      h("td", {}, `${c.patient_name || c.patient_id || "unnamed"} · ${c.study_description || c.modalities || ""}`),
      h("td", {}, fmt(c.agreement)),
      h("td", { class: "small" }, ((c.consensus_detail || {}).reasons || []).join("; ")),
      h("td", {}, h("a", { href: `/campaigns/${projectId}/cases/${c.id}/adjudicate` }, `Adjudicate case ${c.id}`)))))));
}

// --- members --------------------------------------------------------------------------------------------------

async function loadMembers() {
  const res = await api("GET", `${base}/members`);
  const box = document.getElementById("members-list");
  if (!res.ok) {
    fill(box, h("p", { class: "field-error" }, res.body.message));
    return;
  }
  fill(box, h("table", { id: "members-table" },
    h("thead", {}, h("tr", {}, ["User", "Role", "Since", isLead ? h("span", { class: "visually-hidden" }, "Remove") : null]
      .filter(Boolean).map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, res.body.map((m) => h("tr", { dataset: { username: m.username, role: m.role } },
      h("td", {}, m.username), h("td", {}, m.role.replace("_", " ")), h("td", {}, m.created_at.slice(0, 10)),
      isLead ? h("td", {}, h("button", { type: "button", class: "link",
        onclick: () => removeMember(m), "aria-label": `Remove ${m.username} as ${m.role.replace("_", " ")}` }, "remove")) : null)))),
    h("p", { id: "members-status", role: "status", class: "small" }));
}

async function removeMember(m) {
  const res = await api("DELETE", `${base}/members/${m.id}`);
  await loadMembers();
  document.getElementById("members-status").textContent = res.ok ? `${m.username} removed.` : res.body.message;
  document.getElementById(isLead ? "member-username" : "members-title").focus();
}

if (isLead) {
  const memberForm = document.getElementById("member-form");
  memberForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    clearErrors(memberForm);
    const input = document.getElementById("member-username");
    const res = await api("POST", `${base}/members`, { username: input.value.trim(), role: document.getElementById("member-role").value });
    if (!res.ok) {
      showErrors(memberForm, res.body);
      return;
    }
    input.value = "";
    await loadMembers();
    document.getElementById("members-status").textContent = `${res.body.username} added as ${res.body.role.replace("_", " ")}.`;
    input.focus();
  });

  const casesForm = document.getElementById("cases-form");
  const picker = studyPicker(document.getElementById("studies"));
  casesForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    clearErrors(casesForm);
    const status = document.getElementById("cases-status");
    const uids = picker.uids();
    if (!uids.length) {
      status.textContent = "Select studies first.";
      return;
    }
    const res = await api("POST", `${base}/cases`, { study_uids: uids });
    if (!res.ok) {
      showErrors(casesForm, res.body, { prefix: "study_uids" });
      return;
    }
    status.textContent = `Added ${res.body.added} cases${res.body.skipped ? `, ${res.body.skipped} were already in` : ""}.`;
    picker.clear();
    schedule("progress");
  });
}

// --- live updates ---------------------------------------------------------------------------------------------

const loaders = { progress: loadProgress, agreement: loadAgreement, queue: loadQueue, members: loadMembers };
const pending = new Set();
let timer = null;
let running = false;

function schedule(...parts) {
  parts.forEach((p) => pending.add(p));
  if (!timer) timer = setTimeout(flush, 250);
}

async function flush() {
  timer = null;
  if (running) {  // one refresh at a time; what arrived meanwhile is fetched right after
    timer = setTimeout(flush, 250);
    return;
  }
  running = true;
  const parts = [...pending];
  pending.clear();
  try {
    await Promise.all(parts.map((p) => loaders[p]()));
  } finally {
    running = false;
  }
}

function describeEvent(e) {
  switch (e.type) {
    case "claim": return e.assigned_by ? `${e.assigned_by} assigned case ${e.case} to ${e.reader}` : `${e.reader} claimed case ${e.case}`;
    case "release": return `${e.reader} released case ${e.case}`;
    case "read": return `${e.reader} ${e.state === "submitted" ? "submitted" : "saved a draft of"} a read of case ${e.case}`;
    case "consensus": return `case ${e.case} reached consensus (agreement ${fmt(e.agreement)})`;
    case "adjudication_needed": return `case ${e.case} needs adjudication: ${(e.reasons || []).join("; ")}`;
    case "adjudicated": return `${e.adjudicator} adjudicated case ${e.case}`;
    default: return e.type;
  }
}

const REFRESH = {
  // Agreement counts cases with all their reads: a submission that completes (or corrects) one evaluates it,
  // which sends consensus or adjudication_needed; a plain read event cannot change it.
  claim: ["progress"], release: ["progress"], read: ["progress"],
  consensus: ["progress", "agreement", "queue"], adjudication_needed: ["progress", "agreement", "queue"],
  adjudicated: ["progress", "agreement", "queue"],
};

function setLive(stateName, text) {
  const live = document.getElementById("live");
  live.dataset.state = stateName;
  document.getElementById("live-text").textContent = text;
}

let retry = 1000;
let dropped = false;

function connect() {
  const scheme = window.location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${window.location.host}/ws/projects/${projectId}`);
  ws.addEventListener("message", (msg) => {
    const event = JSON.parse(msg.data);
    const time = new Date().toLocaleTimeString();
    const last = document.getElementById("last-event");
    if (event.type === "subscribed") {
      setLive("live", "Live: updates as readers work");
      if (dropped) {  // events sent while the socket was down are lost: fetch everything again
        last.textContent = `Reconnected (${time}): figures refreshed.`;
        schedule("progress", "agreement", "queue");
      }
      dropped = false;
      retry = 1000;
      return;
    }
    last.textContent = `Last event (${time}): ${describeEvent(event)}.`;
    last.dataset.type = event.type;
    schedule(...(REFRESH[event.type] || ["progress"]));
  });
  ws.addEventListener("close", () => {
    dropped = true;
    setLive("offline", `Live updates interrupted: reconnecting in ${Math.round(retry / 1000)} s…`);
    setTimeout(connect, retry);
    retry = Math.min(retry * 2, 30000);
  });
}

schedule("progress", "agreement", "queue", "members");
connect();
