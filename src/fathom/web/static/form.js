// Forms built from field lists, read into API requests, and written to / read from the URL (sharing).

const opt = (values) => values.map((v) => [v, v]);

export const TRAIN_FIELDS = [
  { name: "model", label: "Model preset", type: "select", options: [], value: "llama-3.1-8b" },
  { name: "config", label: "…or paste config.json", type: "textarea", value: "" },
  { name: "gpu", label: "GPU", type: "select", options: [], value: "h100-sxm" },
  { name: "system", label: "System", type: "select", options: [], value: "" },
  { name: "num_gpus", label: "GPUs", type: "int", value: 8 },
  { name: "seq_len", label: "Sequence length", type: "int", value: 4096 },
  { name: "global_batch", label: "Global batch (sequences)", type: "int", value: 64 },
  { name: "micro_batch", label: "Micro-batch", type: "int", value: 1, plan: true },
  { name: "tp", label: "TP", type: "int", value: 1, plan: true },
  { name: "pp", label: "PP", type: "int", value: 1, plan: true },
  { name: "cp", label: "CP", type: "int", value: 1, plan: true },
  { name: "ep", label: "EP", type: "int", value: 1, plan: true },
  { name: "vpp", label: "VPP", type: "int", value: 1, plan: true },
  { name: "zero", label: "ZeRO stage", type: "select", options: opt(["0", "1", "2", "3"]), value: "1", int: true, plan: true },
  { name: "recompute", label: "Recompute", type: "select", options: opt(["selective", "none", "full"]), value: "selective", plan: true },
  { name: "schedule", label: "Schedule", type: "select", options: [["", "auto"], ...opt(["1f1b", "interleaved", "zero-bubble", "zero-bubble-2p"])], value: "", plan: true },
  { name: "precision", label: "Precision", type: "select", options: opt(["bf16", "fp16", "fp8", "fp32"]), value: "bf16" },
  { name: "optimizer", label: "Optimizer", type: "select", options: opt(["adamw", "adam-8bit", "adafactor", "sgd"]), value: "adamw" },
  { name: "tokens", label: "Tokens to train (optional)", type: "float", value: "" },
  { name: "max_gpus", label: "Search: GPU counts up to (optional)", type: "int", value: "", searchOnly: true },
  { name: "objective", label: "Search objective", type: "select", options: opt(["throughput", "time", "cost", "energy"]), value: "throughput", searchOnly: true },
];

export const SERVE_FIELDS = [
  { name: "model", label: "Model preset", type: "select", options: [], value: "llama-3.1-8b" },
  { name: "config", label: "…or paste config.json", type: "textarea", value: "" },
  { name: "gpu", label: "GPU", type: "select", options: [], value: "h100-sxm" },
  { name: "system", label: "System", type: "select", options: [], value: "" },
  { name: "tp", label: "TP per replica", type: "int", value: 1 },
  { name: "replicas", label: "Replicas", type: "int", value: 1 },
  { name: "precision", label: "Weights", type: "select", options: opt(["bf16", "fp16", "fp8", "int8", "int4"]), value: "bf16" },
  { name: "arrival", label: "Arrivals", type: "select", options: opt(["poisson", "gamma", "fixed-rate", "offline", "closed-loop"]), value: "poisson" },
  { name: "rate", label: "Rate (requests/s)", type: "float", value: 4 },
  { name: "num_requests", label: "Requests", type: "int", value: 200 },
  { name: "concurrency", label: "Concurrency (closed loop)", type: "int", value: "" },
  { name: "input_len", label: "Input length (N or dist)", type: "text", value: "1024" },
  { name: "output_len", label: "Output length (N or dist)", type: "text", value: "256" },
  { name: "scheduler", label: "Scheduler", type: "select", options: opt(["continuous", "chunked-prefill", "decode-priority", "static", "prompt-first", "prompt-first-padded"]), value: "continuous" },
  { name: "max_batch", label: "Max batch", type: "int", value: 256 },
  { name: "slo_ttft_s", label: "SLO TTFT (s, optional)", type: "float", value: "" },
  { name: "slo_tpot_s", label: "SLO TPOT (s, optional)", type: "float", value: "" },
  { name: "seed", label: "Seed", type: "int", value: 0 },
  { name: "rates", label: "Load sweep rates (req/s)", type: "text", value: "1,2,4,8,16", sweepOnly: true },
];

export function buildForm(form, prefix, fields) {
  form.innerHTML = "";
  for (const f of fields) {
    const wrap = document.createElement("label");
    wrap.className = f.type === "textarea" ? "field wide" : "field";
    wrap.textContent = f.label;
    const input = document.createElement(f.type === "select" ? "select" : f.type === "textarea" ? "textarea" : "input");
    input.id = `${prefix}-${f.name.replaceAll("_", "-")}`;
    input.name = f.name;
    if (f.type === "select") setOptions(input, f.options);
    if (f.type === "int" || f.type === "float") { input.type = "text"; input.inputMode = "decimal"; }
    if (f.type === "textarea") { input.rows = 3; input.placeholder = '{"model_type": "llama", "hidden_size": 4096, ...}'; }
    input.value = f.value;
    input.dataset.default = f.value;
    wrap.appendChild(input);
    form.appendChild(wrap);
  }
}

export function setOptions(select, options) {
  const keep = select.value || select.dataset.default;
  select.innerHTML = "";
  for (const [value, label] of options) {
    const o = document.createElement("option");
    o.value = value; o.textContent = label;
    select.appendChild(o);
  }
  if (keep && options.some(([v]) => v === keep)) select.value = keep;
}

function input(prefix, f) { return document.getElementById(`${prefix}-${f.name.replaceAll("_", "-")}`); }

// The form's values: {name: raw string}; and the API request they make (empty optional fields left out).
export function readValues(prefix, fields) {
  return Object.fromEntries(fields.map((f) => [f.name, input(prefix, f).value]));
}

export function writeValues(prefix, fields, values) {
  for (const f of fields) if (f.name in values) input(prefix, f).value = values[f.name];
}

export function toRequest(fields, values, { skip = () => false } = {}) {
  const req = {};
  for (const f of fields) {
    const raw = String(values[f.name] ?? "").trim();
    if (skip(f) || raw === "") continue;
    if (f.name === "config") {
      try { req.config = JSON.parse(raw); } catch (e) { throw new Error(`config: not valid JSON (${e.message})`); }
      delete req.model;
      continue;
    }
    if (f.name === "model" && req.config) continue;
    if (f.type === "int" || f.int) req[f.name] = Number.isInteger(Number(raw)) ? Number(raw) : raw;
    else if (f.type === "float") req[f.name] = Number.isFinite(Number(raw)) ? Number(raw) : raw;
    else req[f.name] = raw;
  }
  return req;
}

// Share: the view, the form's non-default values and what to run, in the URL's hash.
export function shareHash(view, fields, values, run) {
  const p = new URLSearchParams({ view });
  for (const f of fields) if (String(values[f.name]) !== String(f.value)) p.set(f.name, values[f.name]);
  if (run) p.set("run", run);
  return `#${p.toString()}`;
}

export function parseHash(hash) {
  return Object.fromEntries(new URLSearchParams(hash.replace(/^#/, "")).entries());
}
