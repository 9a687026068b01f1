// The console's only way to the API: bearer token from the sign-in, problem-details errors.

const TOKEN_KEY = "payops.token";

export const auth = {
  get token() { return sessionStorage.getItem(TOKEN_KEY); },
  set token(value) {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
  },
};

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v === undefined || v === null || v === "") continue;
    if (Array.isArray(v)) v.forEach((item) => q.append(k, item));
    else q.set(k, v);
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

export async function api(path, { method = "GET", body, params, headers = {} } = {}) {
  const h = { Accept: "application/json", ...headers };
  if (auth.token) h.Authorization = `Bearer ${auth.token}`;
  if (body !== undefined) h["Content-Type"] = "application/json";
  const resp = await fetch(`/api/v1${path}${query(params)}`, {
    method, headers: h, body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (resp.status === 204) return null;
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { detail: text }; }
  if (!resp.ok) {
    const err = new ApiError(resp.status, data);
    if (resp.status === 401) window.dispatchEvent(new CustomEvent("payops:unauthorized", { detail: err }));
    throw err;
  }
  return data;
}

// Exports need the bearer token, so they are fetched and handed to the browser as a file.
export async function download(path, params, fallbackName) {
  const resp = await fetch(`/api/v1${path}${query(params)}`, { headers: { Authorization: `Bearer ${auth.token}` } });
  if (!resp.ok) {
    let problem = null;
    try { problem = await resp.json(); } catch { /* not JSON */ }
    throw new ApiError(resp.status, problem);
  }
  const disposition = resp.headers.get("Content-Disposition") || "";
  const name = (disposition.match(/filename="([^"]+)"/) || [])[1] || fallbackName;
  const url = URL.createObjectURL(await resp.blob());
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
  return name;
}

export function idempotencyKey() {
  return crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(16).slice(2)}`;
}
