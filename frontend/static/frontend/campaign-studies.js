// Choosing studies for a campaign: search the archive (GET /api/v1/imaging/studies?q=) and tick results, or
// upload DICOM files / zips (POST /api/v1/imaging/uploads, with the upload's real progress) whose stored
// studies are selected. The selection keeps the order studies were picked in: that is the reading order.

import { api, csrfToken, fill, h } from "./campaign-common.js";

function studyLabel(s) {
  const who = s.patient_name || s.patient_identifier || "unnamed patient";
  const what = s.description || "no description";
  return `${who} · ${what}`;
}

function studyMeta(s) {
  const date = s.study_date ? `${s.study_date.slice(0, 4)}-${s.study_date.slice(4, 6)}-${s.study_date.slice(6, 8)}` : "no date";
  return `${date} · ${s.modalities || "?"} · ${s.num_series} series, ${s.num_instances} instances`;
}

function bytes(n) {
  return n > 1e6 ? `${(n / 1e6).toFixed(1)} MB` : `${Math.max(1, Math.round(n / 1e3))} kB`;
}

export function studyPicker(root, { onChange = () => {} } = {}) {
  const q = root.querySelector("#study-q");
  const results = root.querySelector("#study-results");
  const selectedList = root.querySelector("#selected-studies");
  const count = root.querySelector("#selected-count");
  const fileInput = root.querySelector("#upload-files");
  const selected = new Map(); // study_uid -> study, in the order picked

  function renderSelected() {
    count.textContent = String(selected.size);
    fill(selectedList, ...[...selected.values()].map((s) => h("li", { dataset: { uid: s.study_uid } },
      `${studyLabel(s)} `, h("span", { class: "muted small" }, studyMeta(s)), " ",
      h("button", { type: "button", class: "link", "aria-label": `Remove ${studyLabel(s)} from the selection`,
        onclick: () => toggle(s, false) }, "remove"))));
    for (const box of results.querySelectorAll("input[type=checkbox][data-uid]")) {
      box.checked = selected.has(box.dataset.uid);
    }
    onChange([...selected.keys()]);
  }

  function toggle(study, on) {
    if (on) selected.set(study.study_uid, study);
    else selected.delete(study.study_uid);
    renderSelected();
  }

  async function search() {
    const text = q.value.trim();
    fill(results, h("p", { class: "muted" }, "Searching…"));
    const res = await api("GET", `/api/v1/imaging/studies?limit=50&q=${encodeURIComponent(text)}`);
    if (!res.ok) {
      fill(results, h("p", { class: "field-error" }, res.body.message));
      return;
    }
    const studies = res.body.results || res.body;
    if (!studies.length) {
      fill(results, h("p", {}, text ? `No study you may see matches “${text}”.` : "The archive has no study you may see yet: upload some."));
      return;
    }
    const rows = studies.map((s, i) => {
      const id = `study-pick-${i}`;
      return h("tr", {},
        h("td", {}, h("input", { type: "checkbox", id, dataset: { uid: s.study_uid }, checked: selected.has(s.study_uid),
          onchange: (e) => toggle(s, e.target.checked) })),
        h("td", {}, h("label", { for: id }, studyLabel(s))),
        h("td", { class: "small" }, studyMeta(s)),
        h("td", { class: "small muted" }, s.patient_identifier || ""));
    });
    const total = res.body.count ?? studies.length;
    fill(results,
      h("p", { class: "small" }, `${total} ${total === 1 ? "study" : "studies"}${total > studies.length ? `, the newest ${studies.length} shown` : ""}. `,
        h("button", { type: "button", class: "link", onclick: () => {
          studies.forEach((s) => selected.set(s.study_uid, s));
          renderSelected();
        } }, "select all shown")),
      h("div", { class: "scroll-box", tabindex: "0", role: "region", "aria-label": "Search results" },
        h("table", {}, h("thead", {}, h("tr", {}, h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Select")),
          h("th", { scope: "col" }, "Study"), h("th", { scope: "col" }, "Date · modalities · size"),
          h("th", { scope: "col" }, "Patient ID"))), h("tbody", {}, rows))));
  }

  function upload(files) {
    const box = root.querySelector("#upload-box");
    const bar = root.querySelector("#upload-progress");
    const status = root.querySelector("#upload-status");
    const rejected = root.querySelector("#upload-rejected");
    const form = new FormData();
    let total = 0;
    for (const f of files) {
      form.append("files", f, f.name);
      total += f.size;
    }
    box.hidden = false;
    bar.value = 0;
    bar.max = 100;
    fill(rejected);
    status.textContent = `Uploading ${files.length} file${files.length === 1 ? "" : "s"} (${bytes(total)})…`;
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/v1/imaging/uploads");
    xhr.setRequestHeader("X-CSRFToken", csrfToken());
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.addEventListener("progress", (e) => {
      if (!e.lengthComputable) return;
      bar.value = Math.round((100 * e.loaded) / e.total);
      status.textContent = `Uploading: ${bar.value}% (${bytes(e.loaded)} of ${bytes(e.total)})`;
    });
    xhr.upload.addEventListener("load", () => {
      bar.value = 100;
      status.textContent = "Uploaded; the server is storing and indexing the files…";
    });
    xhr.addEventListener("error", () => { status.textContent = "The upload failed: the server could not be reached."; });
    xhr.addEventListener("load", async () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { body = null; }
      if (!body || (xhr.status >= 400 && !body.results)) {
        status.textContent = `The upload was refused: ${body ? body.message : `${xhr.status} ${xhr.statusText}`}`;
        return;
      }
      status.textContent = `Stored ${body.stored}, already in the archive ${body.duplicate}, rejected ${body.rejected}.`;
      fill(rejected, ...body.results.filter((r) => r.status === "rejected")
        .map((r) => h("li", {}, `${r.name}: ${r.reason}`)));
      const uids = [...new Set(body.results.filter((r) => r.study_uid && r.status !== "rejected").map((r) => r.study_uid))];
      for (const uid of uids) {
        const res = await api("GET", `/api/v1/imaging/studies/${encodeURIComponent(uid)}`);
        if (res.ok) selected.set(uid, res.body);
      }
      renderSelected();
      if (uids.length) status.textContent += ` ${uids.length} ${uids.length === 1 ? "study" : "studies"} selected.`;
      fileInput.value = "";
    });
    xhr.send(form);
  }

  q.addEventListener("keydown", (e) => {
    if (e.key === "Enter") {  // Enter here searches; it does not submit the whole form
      e.preventDefault();
      search();
    }
  });
  root.querySelector("#study-search").addEventListener("click", search);
  fileInput.addEventListener("change", () => { if (fileInput.files.length) upload([...fileInput.files]); });
  search();
  return {
    uids: () => [...selected.keys()],
    clear: () => { selected.clear(); renderSelected(); },
  };
}
