// The daemon's REST API from the page: same origin, the API key (if any) as
// Authorization: Bearer (the gateway's, or the one `sbx ui` prints in the URL).

const KEY = "sandboxd.key";
/** The API root: the page is served at <root>/ui/. */
export const root = location.pathname.replace(/\/ui\/.*$/, "");

/** Take a key given in the URL fragment (#key=...) into this tab's storage. */
export function adoptKeyFromFragment() {
  const match = /(^#|&)key=([^&]+)/.exec(location.hash);
  if (match) {
    sessionStorage.setItem(KEY, decodeURIComponent(match[2]));
    const rest = location.hash.slice(0, match.index) + (match[1] === "#" ? "#" : "") + location.hash.slice(match.index + match[0].length);
    history.replaceState(null, "", location.pathname + location.search + (rest.length > 1 ? rest : "#/"));
  }
}

export function apiKey() { return sessionStorage.getItem(KEY); }
export function setApiKey(key) { if (key) sessionStorage.setItem(KEY, key); else sessionStorage.removeItem(KEY); }

export class ApiError extends Error {
  constructor(status, code, message) {
    super(`${code}: ${message}`);
    this.status = status;
    this.code = code;
  }
}

export function headers(extra = {}) {
  const h = { ...extra };
  const key = apiKey();
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

/** `method path` with an optional JSON body: the decoded answer, or ApiError. */
export async function request(method, path, body, init = {}) {
  const opts = { method, headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }), ...init };
  if (body !== undefined) opts.body = JSON.stringify(body);
  const res = await fetch(root + path, opts);
  const text = await res.text();
  let obj = null;
  try { obj = text ? JSON.parse(text) : null; } catch { obj = null; }
  if (!res.ok) {
    const err = (obj && obj.error) || { code: `HTTP_${res.status}`, message: res.statusText };
    const e = new ApiError(res.status, err.code, err.message);
    if (res.status === 401) window.dispatchEvent(new CustomEvent("sandboxd:unauthorized", { detail: e }));
    throw e;
  }
  return obj;
}

/** Run `fn` over `items` with at most `limit` at once. */
export async function bounded(items, limit, fn) {
  let next = 0;
  const worker = async () => { while (next < items.length) { const i = next++; await fn(items[i], i); } };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
