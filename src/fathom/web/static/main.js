// Wires the page: catalog lists into the forms, tabs, buttons, and the shareable URL.

import { getJSON } from "./api.js";
import { compareHash, loadCompare, pin, renderCompare } from "./compare.js";
import { SERVE_FIELDS, TRAIN_FIELDS, buildForm, parseHash, readValues, setOptions, shareHash, writeValues } from "./form.js";
import { runSimulation, runSweep } from "./serve.js";
import { runEstimate, runSearch } from "./train.js";
import { status } from "./view.js";

const $ = (id) => document.getElementById(id);
const state = { last: {}, slots: { a: null, b: null } };
window.fathomState = state; // for tests and the curious

function show(view) {
  for (const v of ["train", "serve", "compare"]) {
    $(`view-${v}`).hidden = v !== view;
    $(`tab-${v}`).classList.toggle("active", v === view);
  }
}

async function share(hash) {
  history.replaceState(null, "", hash);
  const url = location.href;
  $("share-url").value = url;
  try { await navigator.clipboard.writeText(url); status($("share-status"), "link copied", "ok"); } catch { status($("share-status"), "link in the box: copy it", ""); }
}

async function loadCatalog() {
  const [models, gpus, systems] = await Promise.all([getJSON("/api/models"), getJSON("/api/gpus"), getJSON("/api/systems")]);
  const m = models.map((x) => [x.name, `${x.name} (${(x.details.params / 1e9).toFixed(1)}B)`]);
  const g = gpus.map((x) => [x.name, x.name]);
  const s = [["", "default for the GPU"], ...systems.map((x) => [x.name, x.name])];
  for (const p of ["t", "s"]) {
    setOptions($(`${p}-model`), m); setOptions($(`${p}-gpu`), g); setOptions($(`${p}-system`), s);
  }
}

async function applyHash() {
  const h = parseHash(location.hash);
  const view = h.view || "train";
  show(view);
  if (view === "train") {
    writeValues("t", TRAIN_FIELDS, h);
    if (h.run === "estimate") await runEstimate(state);
    if (h.run === "search") await runSearch();
  } else if (view === "serve") {
    writeValues("s", SERVE_FIELDS, h);
    if (h.run === "simulate") await runSimulation(state);
    if (h.run === "sweep") await runSweep();
  } else if (view === "compare") {
    const parse = (s) => { try { return s ? JSON.parse(s) : null; } catch { return null; } };
    await loadCompare(state, parse(h.a), parse(h.b));
  }
}

async function main() {
  buildForm($("t-form"), "t", TRAIN_FIELDS);
  buildForm($("s-form"), "s", SERVE_FIELDS);
  for (const v of ["train", "serve", "compare"]) $(`tab-${v}`).addEventListener("click", () => show(v));
  $("t-estimate").addEventListener("click", () => runEstimate(state));
  $("t-search").addEventListener("click", () => runSearch());
  $("s-simulate").addEventListener("click", () => runSimulation(state));
  $("s-sweep").addEventListener("click", () => runSweep());
  $("t-share").addEventListener("click", () => share(shareHash("train", TRAIN_FIELDS, readValues("t", TRAIN_FIELDS), "estimate")));
  $("s-share").addEventListener("click", () => share(shareHash("serve", SERVE_FIELDS, readValues("s", SERVE_FIELDS), "simulate")));
  $("c-share").addEventListener("click", () => share(compareHash(state)));
  for (const slot of ["a", "b"]) {
    $(`t-pin-${slot}`).addEventListener("click", () => pin(state, slot, "train"));
    $(`s-pin-${slot}`).addEventListener("click", () => pin(state, slot, "serve"));
  }
  try { await loadCatalog(); } catch (e) { status($("t-status"), `cannot load the catalog: ${e.message}`, "error"); }
  renderCompare(state);
  await applyHash();
  document.body.dataset.ready = "1";
}

main();
