// The serving view: latency percentiles, CDFs, the load timeline, and throughput against offered load.

import { COLORS, lineChart } from "./charts.js";
import { postJSON, runJob } from "./api.js";
import { SERVE_FIELDS, readValues, toRequest } from "./form.js";
import { metricList, num, progress, status, table } from "./view.js";

const $ = (id) => document.getElementById(id);
const LATENCIES = [["TTFT", "ttft_s"], ["TPOT", "tpot_s"], ["ITL", "itl_s"], ["end-to-end", "e2e_s"]];
const PCTS = ["p50", "p90", "p95", "p99", "mean"];

export const SERVE_METRICS = [
  ["completed", "completed"], ["rejected", "rejected"], ["requests/s", "throughput.requests_per_s"],
  ["output tokens/s", "throughput.output_tokens_per_s"], ["total tokens/s", "throughput.total_tokens_per_s"],
  ["goodput (req/s)", "goodput_requests_per_s"], ["max concurrency", "max_concurrency"],
  ["KV cache (GiB)", "kv_cache_gib"], ["preemptions", "preemptions"], ["J per output token", "energy_per_token_j"],
  ["USD per M output tokens", "cost_per_million_tokens"], ["makespan (s)", "duration_s"],
];

export function simulateRequest() {
  return toRequest(SERVE_FIELDS, readValues("s", SERVE_FIELDS), { skip: (f) => f.sweepOnly });
}

export function rates() {
  return readValues("s", SERVE_FIELDS).rates.split(",").map((r) => r.trim()).filter(Boolean).map(Number);
}

export function percentileTable(container, report, id = "s-percentiles") {
  const rows = LATENCIES.map(([label, key]) => [label, ...PCTS.map((p) => num(report[key][p], `${key}.${p}`, { unit: "s" }))]);
  table(container, ["latency", ...PCTS], rows, { id });
}

export function renderSimulation(res, prefix = "s") {
  percentileTable($(`${prefix}-percentiles`), res.report, `${prefix}-percentile-table`);
  metricList($(`${prefix}-metrics`), res.report, SERVE_METRICS);
  const slo = { ttft_s: $("s-slo-ttft-s")?.value, tpot_s: $("s-slo-tpot-s")?.value };
  for (const [key, title] of [["ttft_s", "TTFT"], ["tpot_s", "TPOT"], ["e2e_s", "end-to-end"]]) {
    const c = res.cdf[key], vlines = [];
    const p99 = res.report[key].p99;
    if (p99 !== null) vlines.push({ x: p99, label: "p99", color: "#666" });
    if (prefix === "s" && slo[key]) vlines.push({ x: Number(slo[key]), label: "SLO", color: COLORS[2] });
    lineChart($(`${prefix}-cdf-${key.replace("_s", "")}`), [{ name: title, x: c.x, y: c.y }],
      { title: `${title} CDF`, xlabel: "seconds", ylabel: "fraction", ydomain: [0, 1], vlines, xlog: "auto", width: 320, height: 220 });
  }
  const tl = res.timeline, pools = Object.entries(tl.pools);
  for (const [key, label] of [["kv_percent", "KV cache use (%)"], ["waiting", "queued requests"], ["running", "running requests"]]) {
    const series = pools.map(([pool, s], i) => ({ name: pool, x: tl.time_s, y: s[key], color: COLORS[i] }));
    lineChart($(`${prefix}-timeline-${key.replace("_", "-")}`), series,
      { title: label, xlabel: "simulated time (s)", width: 320, height: 200, xzero: true, ydomain: key === "kv_percent" ? [0, 100] : undefined });
  }
}

export function renderSweep(res) {
  const x = res.points.map((p) => p.rate);
  const slo = res.points.some((p) => p.report.goodput_requests_per_s !== p.report.throughput.requests_per_s);
  lineChart($("s-sweep-throughput"), [
    { name: "offered", x, y: x, color: "#999" },
    { name: "achieved", x, y: res.points.map((p) => p.report.throughput.requests_per_s) },
    ...(slo ? [{ name: "goodput", x, y: res.points.map((p) => p.report.goodput_requests_per_s), color: COLORS[4] }] : []),
  ], { title: "Throughput vs offered load", xlabel: "offered requests/s", ylabel: "requests/s", markers: true, width: 420 });
  lineChart($("s-sweep-latency"), [
    { name: "p50 e2e", x, y: res.points.map((p) => p.report.e2e_s.p50 ?? NaN) },
    { name: "p99 e2e", x, y: res.points.map((p) => p.report.e2e_s.p99 ?? NaN), color: COLORS[2] },
    { name: "p99 TTFT", x, y: res.points.map((p) => p.report.ttft_s.p99 ?? NaN), color: COLORS[1] },
  ], { title: "Latency vs offered load", xlabel: "offered requests/s", ylabel: "seconds", markers: true, width: 420 });
}

export async function runSimulation(state) {
  const el = $("s-status");
  status(el, "simulating…");
  try {
    const request = simulateRequest();
    const res = await postJSON("/api/serve/simulate", request);
    state.last.serve = { kind: "serve", request, response: res };
    renderSimulation(res);
    status(el, `${res.report.completed} requests completed on ${res.num_gpus} GPU(s)`, "ok");
    return res;
  } catch (e) { status(el, `error: ${e.message}`, "error"); return null; }
}

export async function runSweep() {
  const el = $("s-status"), bar = $("s-progress");
  status(el, "sweeping…");
  progress(bar, 0);
  try {
    const res = await runJob("serve_sweep", { scenario: simulateRequest(), rates: rates() }, (share, state) => {
      progress(bar, share); status(el, `sweep ${state}: ${Math.round(100 * share)}%`);
    });
    renderSweep(res);
    status(el, `sweep done: ${res.points.length} rates`, "ok");
    return res;
  } catch (e) { status(el, `error: ${e.message}`, "error"); return null; } finally { progress(bar, null); }
}
