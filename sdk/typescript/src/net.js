// sbx.net: HTTP from inside the sandbox (net.fetch) and port tunnels (REST).
import { FrameType } from "./wire.js";

export class Network {
  constructor(session, client, sandboxId) { this.session = session; this.client = client; this.sandboxId = sandboxId; }

  /** An HTTP(S) request made by the agent: {status, reason, headers, url, body, truncated}. */
  async fetch(url, opts = {}) {
    const p = { url, method: opts.method ?? "GET" };
    if (opts.headers) p.headers = opts.headers;
    if (opts.body != null) {
      if (typeof opts.body === "string") p.body = opts.body;
      else p.body_base64 = Buffer.from(opts.body).toString("base64");
    }
    for (const [k, w] of [["timeout", "timeout"], ["maxRedirects", "max_redirects"], ["maxBody", "max_body"]]) {
      if (opts[k] != null) p[w] = opts[k];
    }
    if (opts.verify === false) p.verify = false;
    const stream = await this.session.open("net.fetch", p);
    const chunks = [];
    for (;;) {
      const f = await stream.next();
      if (f.type === FrameType.DATA) { chunks.push(Buffer.from(f.payload)); stream.consumed(f.payload.length); }
      if (f.type === FrameType.RESULT) {
        const r = JSON.parse(f.payload.toString("utf8"));
        const body = Buffer.concat(chunks);
        return { ...r, body, ok: r.status < 400, text: () => body.toString("utf8"), json: () => JSON.parse(body.toString("utf8")),
          header: (name) => (r.headers.find(([n]) => n.toLowerCase() === name.toLowerCase()) ?? [])[1] ?? null };
      }
    }
  }

  /** The path-proxy URL of `port` (no request). */
  url(port) { return this.client.portUrl(this.sandboxId, port); }
  /** A dedicated host port once `port` accepts connections: {port, host_port, url, ...}. */
  expose(port, opts = {}) { return this.client.expose(this.sandboxId, port, opts); }
  ports() { return this.client.ports(this.sandboxId); }
  async close(port) { await this.client.closePort(this.sandboxId, port); }
  signedUrl(port, opts = {}) { return this.client.signedPortUrl(this.sandboxId, port, opts); }
}
