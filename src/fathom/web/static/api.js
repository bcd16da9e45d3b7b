// Calls to the JSON API; errors come back as {error, message} and are thrown as ApiError with that message.

export class ApiError extends Error {
  constructor(status, body) {
    super(body && body.message ? body.message : `HTTP ${status}`);
    this.status = status;
    this.kind = body && body.error;
  }
}

export async function getJSON(path) {
  const r = await fetch(path);
  const body = await r.json().catch(() => null);
  if (!r.ok) throw new ApiError(r.status, body);
  return body;
}

export async function postJSON(path, payload) {
  const r = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(payload) });
  const body = await r.json().catch(() => null);
  if (!r.ok) throw new ApiError(r.status, body);
  return body;
}

// Start a background job and poll it, calling onProgress(share, state) until it ends; resolves to its result.
export async function runJob(kind, request, onProgress, intervalMs = 300) {
  const created = await postJSON("/api/jobs", { kind, request });
  for (;;) {
    const job = await getJSON(created.status_url);
    onProgress(job.progress, job.state, job.elapsed_s);
    if (job.state === "done") return job.result;
    if (job.state === "failed") throw new ApiError(Number(job.error.status) || 422, job.error);
    await new Promise((res) => setTimeout(res, intervalMs));
  }
}
