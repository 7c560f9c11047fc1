// Shared by the campaign pages: the REST API with the session and CSRF token, a small DOM builder, and errors
// shown beside the fields they name (the API's {"code", "message", "detail"} with detail keys such as
// "questions[0].options" or "answers.finding").

export function csrfToken() {
  const input = document.querySelector("input[name=csrfmiddlewaretoken]");
  if (input) return input.value;
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

// fetch() against /api/v1 with the session; resolves to {ok, status, body} and never throws on HTTP errors.
export async function api(method, url, body) {
  const options = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (method !== "GET") options.headers["X-CSRFToken"] = csrfToken();
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, options);
  } catch (err) {
    return { ok: false, status: 0, body: { code: "network", message: `the server could not be reached (${err})`, detail: {} } };
  }
  let data = null;
  const type = response.headers.get("Content-Type") || "";
  if (response.status !== 204 && type.includes("json")) {
    data = await response.json();
  } else if (!response.ok) {
    data = { code: `http_${response.status}`, message: `${response.status} ${response.statusText}`, detail: {} };
  }
  return { ok: response.ok, status: response.status, body: data };
}

// h("tag", {attr: value, onclick: fn}, child, ...) -> element; strings become text nodes (never HTML).
export function h(tag, attrs, ...children) {
  const node = tag instanceof Element ? tag : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// Replace an element's children; like h(), it skips null/false and flattens arrays (replaceChildren would
// write them out as text).
export function fill(node, ...children) {
  node.replaceChildren();
  return h(node, {}, ...children);
}

const SVG_NS = "http://www.w3.org/2000/svg";

export function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined) node.setAttribute(key, value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function fmt(value, digits = 2) {
  return value === null || value === undefined || Number.isNaN(value) ? "n/a" : Number(value).toFixed(digits);
}

export function estimate(e, digits = 2) {
  if (!e || e.value === null || e.value === undefined) return "n/a";
  const ci = e.ci_low !== null && e.ci_low !== undefined && e.ci_high !== null && e.ci_high !== undefined
    ? ` (95% CI ${fmt(e.ci_low, digits)} to ${fmt(e.ci_high, digits)})` : "";
  return `${fmt(e.value, digits)}${ci}`;
}

export function seconds(s) {
  if (s === null || s === undefined) return "n/a";
  return s < 90 ? `${Math.round(s)} s` : `${(s / 60).toFixed(1)} min`;
}

// The parent of an error key: "questions[0].options[1]" -> "questions[0].options" -> "questions[0]" -> "questions".
function parentKey(key) {
  const m = key.match(/^(.*)(\[\d+\]|\.[^.[\]]+)$/);
  return m ? m[1] : "";
}

function messageOf(value) {
  if (Array.isArray(value)) return value.map(messageOf).join(" ");
  if (value && typeof value === "object") {
    return Object.entries(value).map(([k, v]) => `${k}: ${messageOf(v)}`).join("; ");
  }
  return String(value);
}

// Flatten DRF's nested errors ({"name": ["..."]}, {"options": {"0": [...]}}) into "path" -> value.
function flatten(detail, prefix = "", out = {}) {
  for (const [key, value] of Object.entries(detail)) {
    const path = prefix ? (/^\d+$/.test(key) ? `${prefix}[${key}]` : `${prefix}.${key}`) : key;
    if (value && typeof value === "object" && !Array.isArray(value)) flatten(value, path, out);
    else out[path] = value;
  }
  return out;
}

// Some details carry data rather than a reason ({"username": "bob"} with the message "no active user bob",
// {"missing": [uids]}): those are shown as the message, with the data.
function describe(value, message) {
  if (typeof value === "number" || (typeof value === "string" && message && message.includes(value))) return message;
  if (Array.isArray(value) && value.every((v) => typeof v !== "string" || !v.includes(" "))) {
    return `${message}: ${value.join(", ")}`;
  }
  return messageOf(value);
}

export function clearErrors(root) {
  root.querySelectorAll(".field-error[data-generated]").forEach((n) => n.remove());
  root.querySelectorAll("[aria-invalid=true]").forEach((n) => {
    n.removeAttribute("aria-invalid");
    const ids = (n.getAttribute("aria-describedby") || "").split(" ").filter((id) => !id.endsWith("-error"));
    if (ids.length) n.setAttribute("aria-describedby", ids.join(" "));
    else n.removeAttribute("aria-describedby");
  });
  const summary = root.querySelector(".error-summary");
  if (summary) {
    summary.hidden = true;
    summary.replaceChildren();
  }
}

let errorCounter = 0;

// Show an API error: each detail key beside the element with that data-field (or the nearest parent key's),
// and all of them in the error summary (links to the fields), which takes the focus. ``prefix`` scopes keys
// of one request to a part of the page (a member row: "members[2]"); ``append`` adds to a summary already shown.
export function showErrors(root, body, { prefix = "", title = null, focus = true, append = false } = {}) {
  const summary = root.querySelector(".error-summary");
  const message = (body && body.message) || "Something went wrong";
  const detail = body && body.detail && typeof body.detail === "object" && !Array.isArray(body.detail) ? body.detail : {};
  const errors = flatten(detail);
  if (!Object.keys(errors).length && prefix) errors[""] = message;
  const items = [];
  for (const [key, value] of Object.entries(errors)) {
    const text = key ? describe(value, message) : message;
    let probe = prefix ? (key ? `${prefix}.${key}` : prefix) : key;
    let field = null;
    while (probe && !field) {
      field = root.querySelector(`[data-field="${CSS.escape(probe)}"]`);
      if (!field) probe = parentKey(probe);
    }
    if (field) {
      if (!field.id) field.id = `field-${++errorCounter}`;
      const id = `${field.id}-error`;
      let note = document.getElementById(id);
      if (!note) {
        note = h("span", { class: "field-error", id, dataset: { generated: "1" } });
        const anchor = field.closest(".field") || field;
        if (anchor === field && !["FIELDSET", "DIV"].includes(field.tagName)) field.after(note);
        else anchor.append(note);
      }
      note.textContent = note.textContent ? `${note.textContent} ${text}` : text;
      field.setAttribute("aria-invalid", "true");
      const described = new Set((field.getAttribute("aria-describedby") || "").split(" ").filter(Boolean));
      described.add(id);
      field.setAttribute("aria-describedby", [...described].join(" "));
      items.push(h("li", {}, h("a", { href: `#${field.id}` }, key && text !== message ? `${key}: ${text}` : text)));
    } else {
      items.push(h("li", {}, key && text !== message ? `${key}: ${text}` : text));
    }
  }
  if (!summary) return;
  if (append && !summary.hidden) {
    const list = summary.querySelector("ul") || summary.appendChild(h("ul"));
    list.append(...(items.length ? items : [h("li", {}, message)]));
  } else {
    fill(summary, h("h2", {}, title || message), items.length ? h("ul", {}, items) : null);
    summary.hidden = false;
  }
  if (focus) summary.focus();
}

export function jsonFromScript(id) {
  const node = document.getElementById(id);
  return node ? JSON.parse(node.textContent) : null;
}
