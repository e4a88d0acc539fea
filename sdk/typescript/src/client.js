// The daemon's REST routes (docs/api.md) over node:http / node:https.
import http from "node:http";
import https from "node:https";
import { parseEndpoint, resolveAuth } from "./endpoint.js";
import { DaemonUnavailableError, SandboxTimeoutError, errorFromHttp, ProtocolError } from "./errors.js";

export const USER_AGENT = "sandboxd-sdk-typescript/0.1.0";

export class Client {
  /** @param {{endpoint?: string, auth?: string, timeout?: number, tls?: object}} [opts] */
  constructor(opts = {}) {
    this.endpoint = parseEndpoint(opts.endpoint);
    this.auth = resolveAuth(opts.auth);
    this.timeout = (opts.timeout ?? 60) * 1000;
    this.tls = opts.tls ?? {};
    this.sessionToken = !!opts.sessionToken;
    const mod = this.endpoint.tls ? https : http;
    this.agent = new mod.Agent({ keepAlive: true, ...(this.endpoint.tls ? this.tls : {}) });
  }

  headers(extra = {}) {
    const h = { "User-Agent": USER_AGENT, Host: this.endpoint.hostHeader, ...extra };
    if (this.auth) h.Authorization = `Bearer ${this.auth}`;
    return h;
  }

  /** Node request options for an API `path`. */
  requestOptions(method, path, headers) {
    const ep = this.endpoint;
    const o = { method, path: ep.prefix + path, headers: this.headers(headers), agent: this.agent };
    if (ep.scheme === "unix") o.socketPath = ep.path;
    else { o.host = ep.host; o.port = ep.port; }
    return o;
  }

  /** A request: the decoded JSON (null for 204), or a typed error. */
  request(method, path, body) {
    const data = body === undefined ? null : Buffer.from(JSON.stringify(body));
    const headers = data ? { "Content-Type": "application/json", "Content-Length": data.length } : {};
    const mod = this.endpoint.tls ? https : http;
    return new Promise((resolve, reject) => {
      const req = mod.request(this.requestOptions(method, path, headers), (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("error", (e) => reject(new DaemonUnavailableError(this.endpoint.url, e.message)));
        res.on("end", () => {
          const raw = Buffer.concat(chunks);
          if (res.statusCode >= 400) {
            reject(errorFromHttp(res.statusCode, res.statusMessage, res.headers, raw));
          } else if (res.statusCode === 204 || raw.length === 0) {
            resolve(null);
          } else {
            try { resolve(JSON.parse(raw.toString("utf8"))); } catch (e) {
              reject(new ProtocolError("BAD_RESPONSE", `the daemon answered ${method} ${path} with invalid JSON`));
            }
          }
        });
      });
      req.setTimeout(this.timeout, () => req.destroy(new SandboxTimeoutError("TIMEOUT", `${method} ${path}: no answer in time`)));
      req.on("error", (e) => reject(e instanceof SandboxTimeoutError ? e : new DaemonUnavailableError(this.endpoint.url, e.message)));
      if (data) req.write(data);
      req.end();
    });
  }

  /** POST /sandboxes with only the fields given. */
  create(opts = {}) {
    const body = {};
    for (const k of ["profile", "template", "memory", "cpu", "storage", "ttl", "labels"]) {
      if (opts[k] !== undefined && opts[k] !== null) body[k] = opts[k];
    }
    return this.request("POST", "/sandboxes", body);
  }
  list(labels = {}) {
    const q = Object.entries(labels).map(([k, v]) => `label=${encodeURIComponent(`${k}:${v}`)}`).join("&");
    return this.request("GET", `/sandboxes${q ? "?" + q : ""}`);
  }
  get(id) { return this.request("GET", `/sandboxes/${encodeURIComponent(id)}`); }
  destroy(id) { return this.request("DELETE", `/sandboxes/${encodeURIComponent(id)}`); }
  stats(id) { return this.request("GET", `/sandboxes/${encodeURIComponent(id)}/stats`); }
  expose(id, port, opts = {}) {
    const body = opts.timeout != null ? { timeout: opts.timeout } : {};
    return this.request("POST", `/sandboxes/${encodeURIComponent(id)}/ports/${checkPort(port)}/expose`, body);
  }
  ports(id) { return this.request("GET", `/sandboxes/${encodeURIComponent(id)}/ports`); }
  closePort(id, port) { return this.request("DELETE", `/sandboxes/${encodeURIComponent(id)}/ports/${checkPort(port)}/expose`); }
  signedPortUrl(id, port, opts = {}) {
    const body = opts.expires != null ? { expires: opts.expires } : {};
    return this.request("POST", `/sandboxes/${encodeURIComponent(id)}/ports/${checkPort(port)}/url`, body);
  }
  /** The path-proxy URL of a port (no request). */
  portUrl(id, port) {
    const ep = this.endpoint;
    const path = `/sandboxes/${encodeURIComponent(id)}/ports/${checkPort(port)}/`;
    if (ep.scheme === "unix") return `http+unix://${encodeURIComponent(ep.path)}${path}`;
    return `${ep.scheme}://${ep.hostHeader}${ep.prefix}${path}`;
  }
  profiles() { return this.request("GET", "/profiles"); }
  health() { return this.request("GET", "/health"); }
  close() { this.agent.destroy(); }
}

export function checkPort(port) {
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new RangeError(`port must be an integer from 1 to 65535, not ${port}`);
  return port;
}
