// Shared rendering pieces: numbers that carry their exact value, metric lists, tables, status lines.

import { fmt } from "./charts.js";

// A number shown rounded, with the API's exact value in data-value (and its JSON key in data-key).
export function num(value, key, { unit = "", pct = false, digits = 3 } = {}) {
  const span = document.createElement("span");
  span.className = "num";
  span.dataset.key = key;
  span.dataset.value = value === null || value === undefined ? "" : String(value);
  span.textContent = pct ? `${fmt(100 * value, digits)}%` : `${fmt(value, digits)}${unit ? " " + unit : ""}`;
  return span;
}

export function get(obj, dotted) {
  return dotted.split(".").reduce((o, k) => (o === null || o === undefined ? undefined : o[k]), obj);
}

// rows: [label, key, options]; values read from data by the dotted key.
export function metricList(container, data, rows) {
  container.innerHTML = "";
  const dl = document.createElement("dl");
  dl.className = "metrics";
  for (const [label, key, o] of rows) {
    const v = get(data, key);
    if (v === undefined) continue;
    const dt = document.createElement("dt"); dt.textContent = label;
    const dd = document.createElement("dd");
    if (typeof v === "number" || v === null) dd.appendChild(num(v, key, o || {}));
    else { dd.textContent = String(v); dd.dataset.key = key; }
    dl.append(dt, dd);
  }
  container.appendChild(dl);
}

export function table(container, columns, rows, { id = "" } = {}) {
  container.innerHTML = "";
  const t = document.createElement("table");
  if (id) t.id = id;
  const head = t.createTHead().insertRow();
  for (const c of columns) { const th = document.createElement("th"); th.textContent = c; head.appendChild(th); }
  const body = t.createTBody();
  for (const r of rows) {
    const tr = body.insertRow();
    for (const cell of r) {
      const td = tr.insertCell();
      if (cell instanceof Node) td.appendChild(cell); else td.textContent = cell ?? "–";
    }
  }
  container.appendChild(t);
  return t;
}

export function status(el, text, kind = "") {
  el.textContent = text;
  el.className = `status ${kind}`;
}

export function progress(el, share) {
  el.hidden = share === null;
  if (share !== null) el.value = share;
}

export function pretty(key) { return key.replaceAll("_", " "); }
