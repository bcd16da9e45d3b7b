// Small SVG charts: stacked bar, waterfall, line (CDFs, timelines, curves) and scatter. No dependencies.

const NS = "http://www.w3.org/2000/svg";
export const COLORS = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
  "#9c755f", "#bab0ac", "#1f77b4", "#8c564b"];

function el(tag, attrs = {}, parent = null, text = null) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== null) node.textContent = text;
  if (parent) parent.appendChild(node);
  return node;
}

function svgIn(container, width, height) {
  container.innerHTML = "";
  return el("svg", { viewBox: `0 0 ${width} ${height}`, width: "100%", role: "img", class: "chart" }, container);
}

export function fmt(v, digits = 3) {
  if (v === null || v === undefined || !Number.isFinite(v)) return "–";
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e6 || a < 1e-3)) return v.toExponential(digits - 1);
  if (a >= 1000) return v.toLocaleString("en-US", { maximumFractionDigits: 0 });
  return Number(v.toPrecision(digits)).toString();
}

function niceTicks(lo, hi, count = 5) {
  if (!(hi > lo)) { hi = lo + 1; }
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => raw <= s) || 10 * mag;
  const ticks = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(Number(t.toPrecision(12)));
  return ticks;
}

function logTicks(lo, hi) {
  const ticks = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) ticks.push(10 ** e);
  return ticks.filter((t) => t >= lo / 1.0001 && t <= hi * 1.0001);
}

function scale(lo, hi, a, b, log = false) {
  if (log) {
    const [l0, l1] = [Math.log10(lo), Math.log10(hi)];
    return (v) => a + ((Math.log10(Math.max(v, lo)) - l0) / (l1 - l0 || 1)) * (b - a);
  }
  return (v) => a + ((v - lo) / (hi - lo || 1)) * (b - a);
}

function legend(svg, items, x, y, step = 150) {
  items.forEach((it, i) => {
    const g = el("g", { transform: `translate(${x + (i % 4) * step},${y + Math.floor(i / 4) * 16})` }, svg);
    el("rect", { width: 10, height: 10, fill: it.color, y: -9 }, g);
    el("text", { x: 14, class: "legend" }, g, it.label);
  });
}

// One horizontal bar split into parts (e.g. GiB per memory component), with an optional capacity marker.
export function stackedBar(container, parts, { unit = "", capacity = null, title = "" } = {}) {
  const W = 640, H = 70 + 16 * Math.ceil(parts.length / 4), L = 10, R = 620;
  const svg = svgIn(container, W, H);
  const total = parts.reduce((s, p) => s + Math.max(p.value, 0), 0);
  const max = Math.max(total, capacity || 0) || 1;
  const x = scale(0, max, L, R);
  if (title) el("text", { x: L, y: 12, class: "title" }, svg, title);
  let at = 0;
  parts.forEach((p, i) => {
    const w = x(at + Math.max(p.value, 0)) - x(at);
    const r = el("rect", { x: x(at), y: 20, width: Math.max(w, 0), height: 22, fill: p.color || COLORS[i % 12] }, svg);
    el("title", {}, r, `${p.label}: ${fmt(p.value)} ${unit}`);
    at += Math.max(p.value, 0);
  });
  if (capacity) {
    el("line", { x1: x(capacity), x2: x(capacity), y1: 14, y2: 48, class: "limit" }, svg);
    el("text", { x: Math.min(x(capacity), R - 90), y: 58, class: "axis" }, svg, `capacity ${fmt(capacity)} ${unit}`);
  }
  el("text", { x: L, y: 58, class: "axis" }, svg, `total ${fmt(total)} ${unit}`);
  legend(svg, parts.map((p, i) => ({ label: `${p.label} ${fmt(p.value)}`, color: p.color || COLORS[i % 12] })), L, 76);
}

// A waterfall: each component a bar starting where the previous one ended, the total last.
export function waterfall(container, parts, { unit = "s", title = "" } = {}) {
  const rowH = 20, L = 170, R = 570, W = 640, H = 30 + rowH * (parts.length + 1) + 24;
  const svg = svgIn(container, W, H);
  const total = parts.reduce((s, p) => s + p.value, 0) || 1;
  const x = scale(0, total, L, R);
  if (title) el("text", { x: 10, y: 12, class: "title" }, svg, title);
  let at = 0;
  const rows = [...parts, { label: "total", value: total, total: true }];
  rows.forEach((p, i) => {
    const y = 24 + i * rowH;
    const start = p.total ? 0 : at;
    el("text", { x: L - 6, y: y + 13, class: "axis", "text-anchor": "end" }, svg, p.label);
    const r = el("rect", { x: x(start), y: y + 2, width: Math.max(x(start + p.value) - x(start), 0.5), height: rowH - 5,
      fill: p.total ? "#555" : COLORS[i % 12] }, svg);
    el("title", {}, r, `${p.label}: ${fmt(p.value)} ${unit} (${fmt((100 * p.value) / total)}%)`);
    el("text", { x: x(start + p.value) + 4, y: y + 13, class: "axis" }, svg, `${fmt(p.value)} ${unit}`);
    if (!p.total) at += p.value;
  });
  for (const t of niceTicks(0, total, 5)) {
    const y = 24 + rows.length * rowH + 12;
    el("text", { x: x(t), y, class: "axis", "text-anchor": "middle" }, svg, fmt(t));
  }
}

function axes(svg, xs, ys, box, { xlabel = "", ylabel = "", xlog = false, ylog = false, title = "" }) {
  const [L, T, R, B] = box;
  el("line", { x1: L, x2: R, y1: B, y2: B, class: "frame" }, svg);
  el("line", { x1: L, x2: L, y1: T, y2: B, class: "frame" }, svg);
  for (const t of xlog ? logTicks(...xs.domain) : niceTicks(...xs.domain)) {
    el("line", { x1: xs(t), x2: xs(t), y1: T, y2: B, class: "grid" }, svg);
    el("text", { x: xs(t), y: B + 14, class: "axis", "text-anchor": "middle" }, svg, fmt(t));
  }
  for (const t of ylog ? logTicks(...ys.domain) : niceTicks(...ys.domain, 4)) {
    el("line", { x1: L, x2: R, y1: ys(t), y2: ys(t), class: "grid" }, svg);
    el("text", { x: L - 4, y: ys(t) + 4, class: "axis", "text-anchor": "end" }, svg, fmt(t));
  }
  if (xlabel) el("text", { x: (L + R) / 2, y: B + 30, class: "axis", "text-anchor": "middle" }, svg, xlabel);
  if (ylabel) el("text", { x: 12, y: (T + B) / 2, class: "axis", transform: `rotate(-90 12 ${(T + B) / 2})`,
    "text-anchor": "middle" }, svg, ylabel);
  if (title) el("text", { x: L, y: T - 8, class: "title" }, svg, title);
}

function domain(values, log, zero) {
  const v = values.filter((a) => Number.isFinite(a) && (!log || a > 0));
  if (!v.length) return log ? [1, 10] : [0, 1];
  let lo = Math.min(...v), hi = Math.max(...v);
  if (zero && !log) lo = Math.min(lo, 0);
  if (hi === lo) {
    if (log) return [lo / 2, hi * 2];
    const d = Math.abs(lo) * 0.1 || 1;
    [lo, hi] = [zero && lo >= 0 ? 0 : lo - d, hi + d];
  }
  return [lo, hi];
}

function wide(values) {
  const v = values.filter((a) => a > 0);
  return v.length > 1 && Math.max(...v) > 100 * Math.min(...v);
}

// Lines over a shared x axis. series: [{name, x, y, color}]; vlines: [{x, label, color}].
export function lineChart(container, series, opts = {}) {
  const W = opts.width || 420, H = opts.height || 240, box = [52, 26, W - 12, H - 40];
  const svg = svgIn(container, W, H);
  const allX = series.flatMap((s) => s.x), allY = series.flatMap((s) => s.y);
  const xlog = opts.xlog === "auto" ? wide(allX) : !!opts.xlog;
  const xd = opts.xdomain || domain([...allX, ...(opts.vlines || []).map((v) => v.x)], xlog, opts.xzero);
  const yd = opts.ydomain || domain(allY, false, true);
  const xs = scale(...xd, box[0], box[2], xlog), ys = scale(...yd, box[3], box[1]);
  xs.domain = xd; ys.domain = yd;
  axes(svg, xs, ys, box, { ...opts, xlog });
  series.forEach((s, i) => {
    const pts = s.x.map((x, k) => [x, s.y[k]]).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
    const d = pts.map(([x, y], k) => `${k ? "L" : "M"}${xs(x).toFixed(1)},${ys(y).toFixed(1)}`).join("");
    el("path", { d, fill: "none", stroke: s.color || COLORS[i % 12], "stroke-width": 1.6, class: "series" }, svg);
    if (opts.markers) pts.forEach(([x, y]) => el("circle", { cx: xs(x), cy: ys(y), r: 3, fill: s.color || COLORS[i % 12] }, svg));
  });
  for (const v of opts.vlines || []) {
    el("line", { x1: xs(v.x), x2: xs(v.x), y1: box[1], y2: box[3], stroke: v.color || "#666", "stroke-dasharray": "4 3" }, svg);
    el("text", { x: xs(v.x) + 3, y: box[1] + 10, class: "axis" }, svg, v.label);
  }
  if (series.length > 1) legend(svg, series.map((s, i) => ({ label: s.name, color: s.color || COLORS[i % 12] })), box[0] + 8, box[1] + 12, 95);
}

// Points with an optional highlighted subset (e.g. the Pareto front). points: [{x, y, label, highlight}].
export function scatter(container, points, opts = {}) {
  const W = opts.width || 520, H = opts.height || 280, box = [64, 26, W - 12, H - 40];
  const svg = svgIn(container, W, H);
  const xlog = opts.xlog === "auto" ? wide(points.map((p) => p.x)) : !!opts.xlog;
  const xd = domain(points.map((p) => p.x), xlog, false), yd = domain(points.map((p) => p.y), false, false);
  const pad = (d) => [d[0] - 0.05 * (d[1] - d[0]), d[1] + 0.05 * (d[1] - d[0])];
  const [xdd, ydd] = [xlog ? [xd[0] / 1.3, xd[1] * 1.3] : pad(xd), pad(yd)];
  const xs = scale(...xdd, box[0], box[2], xlog), ys = scale(...ydd, box[3], box[1]);
  xs.domain = xdd; ys.domain = ydd;
  axes(svg, xs, ys, box, { ...opts, xlog });
  const front = points.filter((p) => p.highlight).sort((a, b) => a.x - b.x);
  if (front.length > 1) {
    const d = front.map((p, k) => `${k ? "L" : "M"}${xs(p.x).toFixed(1)},${ys(p.y).toFixed(1)}`).join("");
    el("path", { d, fill: "none", stroke: COLORS[2], "stroke-width": 1.2, "stroke-dasharray": "5 3" }, svg);
  }
  for (const p of points) {
    const c = el("circle", { cx: xs(p.x), cy: ys(p.y), r: p.highlight ? 5 : 3.5, class: p.highlight ? "front" : "point",
      fill: p.highlight ? COLORS[2] : COLORS[0], "fill-opacity": 0.75 }, svg);
    el("title", {}, c, p.label || `${fmt(p.x)}, ${fmt(p.y)}`);
  }
}
