// Compare two pinned scenarios side by side (same kind: two training plans or two serving runs).

import { lineChart, stackedBar, waterfall } from "./charts.js";
import { postJSON } from "./api.js";
import { SERVE_METRICS } from "./serve.js";
import { TRAIN_METRICS } from "./train.js";
import { get, num, pretty, status, table } from "./view.js";

const $ = (id) => document.getElementById(id);
const LATENCY_ROWS = ["ttft_s.p50", "ttft_s.p99", "tpot_s.p50", "tpot_s.p99", "e2e_s.p50", "e2e_s.p99"].map((k) => [k.replace("_s.", " "), k, { unit: "s" }]);
const ENDPOINT = { train: "/api/train/estimate", serve: "/api/serve/simulate" };

export function pin(state, slot, kind) {
  const last = state.last[kind];
  if (!last) { status($("c-status"), `run a ${kind === "train" ? "training estimate" : "serving simulation"} first`, "warn"); return false; }
  state.slots[slot] = last;
  renderCompare(state);
  return true;
}

function label(s) {
  const r = s.request;
  const model = r.model || "pasted config";
  return s.kind === "train" ? `${model}, ${r.num_gpus}×${r.gpu}, tp${r.tp || 1} pp${r.pp || 1}` : `${model}, ${r.replicas || 1}×tp${r.tp || 1} ${r.gpu}, ${r.rate ?? ""} req/s`;
}

export function renderCompare(state) {
  const { a, b } = state.slots;
  $("c-a-label").textContent = a ? `A: ${label(a)}` : "A: (pin a scenario)";
  $("c-b-label").textContent = b ? `B: ${label(b)}` : "B: (pin a scenario)";
  if (!a || !b) { $("c-table").innerHTML = ""; return; }
  if (a.kind !== b.kind) { status($("c-status"), "A and B are of different kinds: pin two training or two serving scenarios", "warn"); return; }
  status($("c-status"), "");
  const rows = (a.kind === "train" ? TRAIN_METRICS : [...LATENCY_ROWS, ...SERVE_METRICS])
    .filter(([, key]) => typeof get(a.response.report || a.response, key) === "number")
    .map(([name, key, o]) => {
      const va = get(a.response.report || a.response, key), vb = get(b.response.report || b.response, key);
      const ratio = typeof vb === "number" && va ? vb / va : null;
      return [name, num(va, key, o), num(vb, key, o), ratio === null ? "–" : `${ratio.toFixed(3)}×`];
    });
  table($("c-table"), ["metric", "A", "B", "B / A"], rows, { id: "compare-table" });
  for (const [slot, s] of [["a", a], ["b", b]]) {
    const r = s.response;
    if (s.kind === "train") {
      const mem = Object.entries(r.memory.breakdown).filter(([, v]) => v > 0).map(([k, v]) => ({ label: pretty(k), value: v }));
      stackedBar($(`c-${slot}-chart1`), mem, { unit: "GiB", capacity: r.memory.capacity_gib, title: `${slot.toUpperCase()}: memory per GPU` });
      const t = Object.entries(r.time_breakdown).filter(([, v]) => v > 0).map(([k, v]) => ({ label: pretty(k), value: v }));
      waterfall($(`c-${slot}-chart2`), t, { title: `${slot.toUpperCase()}: step time by component` });
    } else {
      lineChart($(`c-${slot}-chart1`), [["ttft_s", "TTFT"], ["e2e_s", "end-to-end"]].map(([k, n]) => ({ name: n, x: r.cdf[k].x, y: r.cdf[k].y })),
        { title: `${slot.toUpperCase()}: latency CDFs`, xlabel: "seconds", ydomain: [0, 1], xlog: "auto" });
      const pools = Object.entries(r.timeline.pools);
      lineChart($(`c-${slot}-chart2`), pools.map(([p, v]) => ({ name: p, x: r.timeline.time_s, y: v.kv_percent })),
        { title: `${slot.toUpperCase()}: KV cache use (%)`, xlabel: "simulated time (s)", ydomain: [0, 100], xzero: true });
    }
  }
}

// Re-run both scenarios of a shared compare link.
export async function loadCompare(state, a, b) {
  for (const [slot, s] of [["a", a], ["b", b]]) {
    if (!s || !ENDPOINT[s.kind]) continue;
    try {
      state.slots[slot] = { kind: s.kind, request: s.request, response: await postJSON(ENDPOINT[s.kind], s.request) };
    } catch (e) { status($("c-status"), `${slot.toUpperCase()}: ${e.message}`, "error"); }
  }
  renderCompare(state);
}

export function compareHash(state) {
  const p = new URLSearchParams({ view: "compare" });
  for (const slot of ["a", "b"]) {
    const s = state.slots[slot];
    if (s) p.set(slot, JSON.stringify({ kind: s.kind, request: s.request }));
  }
  return `#${p.toString()}`;
}
