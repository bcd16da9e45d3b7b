// The training view: estimate one plan (memory bar, step-time waterfall) or search plans (table, Pareto plot).

import { scatter, stackedBar, waterfall } from "./charts.js";
import { postJSON, runJob } from "./api.js";
import { TRAIN_FIELDS, readValues, toRequest } from "./form.js";
import { metricList, num, pretty, progress, status, table } from "./view.js";

const $ = (id) => document.getElementById(id);

export const TRAIN_METRICS = [
  ["step time", "step_time_s", { unit: "s" }], ["tokens/s", "tokens_per_s"], ["tokens/s per GPU", "tokens_per_s_per_gpu"],
  ["TFLOP/s per GPU", "tflops_per_gpu"], ["MFU", "mfu", { pct: true }], ["HFU", "hfu", { pct: true }],
  ["peak memory (GiB)", "memory.peak_gib"], ["capacity (GiB)", "memory.capacity_gib"],
  ["headroom (GiB)", "memory.headroom_gib"], ["fits", "fits"], ["bottleneck", "bottleneck"],
  ["grad accumulation", "grad_accum_steps"], ["days", "run.days"], ["GPU-hours", "run.gpu_hours"],
  ["cost (USD)", "run.cost_usd"], ["energy (MWh)", "run.energy_mwh"],
];

export function estimateRequest() {
  return toRequest(TRAIN_FIELDS, readValues("t", TRAIN_FIELDS), { skip: (f) => f.searchOnly });
}

export function searchRequest() {
  const req = toRequest(TRAIN_FIELDS, readValues("t", TRAIN_FIELDS), { skip: (f) => f.plan });
  if (req.max_gpus) delete req.num_gpus;
  return { ...req, pareto: true, top: 20 };
}

export function renderEstimate(est, prefix = "t") {
  metricList($(`${prefix}-metrics`), est, TRAIN_METRICS);
  const mem = Object.entries(est.memory.breakdown).filter(([, v]) => v > 0).map(([k, v]) => ({ label: pretty(k), value: v }));
  stackedBar($(`${prefix}-memory-chart`), mem, { unit: "GiB", capacity: est.memory.capacity_gib, title: "Memory per GPU (GiB)" });
  const time = Object.entries(est.time_breakdown).filter(([, v]) => v > 0).map(([k, v]) => ({ label: pretty(k), value: v }));
  waterfall($(`${prefix}-time-chart`), time, { unit: "s", title: `Step time ${est.step_time_s.toPrecision(3)} s by component` });
}

function describe(p) {
  const parts = [`tp${p.tp} pp${p.pp} dp${p.dp}`];
  for (const k of ["cp", "ep", "vpp"]) if (p[k] > 1) parts.push(`${k}${p[k]}`);
  parts.push(`zero${p.zero}`, `mb${p.micro_batch}`, `rc=${p.recompute}`);
  if (p.pp > 1) parts.push(p.schedule);
  return parts.join(" ");
}

export function renderSearch(res) {
  const head = `${res.space_size.toLocaleString()} plans searched, ${res.fits_memory.toLocaleString()} fit in memory, ` +
    `${res.feasible.toLocaleString()} feasible, in ${res.seconds.toFixed(2)} s`;
  $("t-search-summary").textContent = res.feasible ? head : `${head}: ${res.message || "no feasible plan"}`;
  const priced = res.plans.some((p) => p.run);
  const rows = res.plans.map((p) => [String(p.rank), String(p.num_gpus), describe(p), num(p.step_time_s, "step_time_s", { unit: "s" }),
    num(p.tokens_per_s, "tokens_per_s"), num(p.mfu, "mfu", { pct: true }), num(p.memory.peak_gib, "memory.peak_gib"),
    pretty(p.bottleneck), ...(priced ? [p.run ? num(p.run.days, "run.days") : "–", p.run ? num(p.run.cost_usd, "run.cost_usd") : "–"] : [])]);
  const columns = ["#", "GPUs", "plan", "step", "tokens/s", "MFU", "GiB", "bottleneck", ...(priced ? ["days", "cost USD"] : [])];
  table($("t-search-table"), columns, rows, { id: "search-results" });
  $("t-search-why").textContent = (res.why || []).join("\n");
  const key = (p) => `${p.num_gpus} ${describe(p)}`;
  const front = new Set((res.pareto || []).map(key));
  const seen = new Map();
  for (const p of [...res.plans, ...(res.pareto || [])]) seen.set(key(p), p);
  // Several GPU counts: throughput against GPUs; one count: against peak memory (what the faster plans spend).
  const byGpus = res.gpu_counts.length > 1;
  const pts = [...seen.entries()].map(([k, p]) => ({ x: byGpus ? p.num_gpus : p.memory.peak_gib, y: p.tokens_per_s,
    highlight: front.has(k), label: `${p.num_gpus} GPUs: ${describe(p)}, ${Math.round(p.tokens_per_s).toLocaleString()} tokens/s` }));
  scatter($("t-pareto-chart"), pts, { xlabel: byGpus ? "GPUs" : "peak memory per GPU (GiB)", ylabel: "tokens/s",
    title: "Ranked plans; red: Pareto front (throughput vs cost vs GPUs)", xlog: byGpus ? "auto" : false });
}

export async function runEstimate(state) {
  const el = $("t-status");
  status(el, "estimating…");
  try {
    const request = estimateRequest();
    const est = await postJSON("/api/train/estimate", request);
    state.last.train = { kind: "train", request, response: est };
    renderEstimate(est);
    status(el, `${est.model} on ${est.num_gpus} × ${est.gpu}: ${est.fits ? "fits" : "does NOT fit"} in memory`, est.fits ? "ok" : "warn");
    return est;
  } catch (e) { status(el, `error: ${e.message}`, "error"); return null; }
}

export async function runSearch() {
  const el = $("t-status"), bar = $("t-progress");
  status(el, "searching…");
  progress(bar, 0);
  try {
    const res = await runJob("train_search", searchRequest(), (share, state, elapsed) => {
      progress(bar, share); status(el, `search ${state}, ${elapsed.toFixed(1)} s`);
    });
    renderSearch(res);
    status(el, `search done: ${res.feasible.toLocaleString()} feasible plans`, "ok");
    return res;
  } catch (e) { status(el, `error: ${e.message}`, "error"); return null; } finally { progress(bar, null); }
}
