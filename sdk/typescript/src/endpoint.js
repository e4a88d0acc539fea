// Where the daemon is: SANDBOX_ENDPOINT and SANDBOX_AUTH (docs/sdk.md, "Finding the daemon").
import { InvalidEndpointError } from "./errors.js";

export const DEFAULT_ENDPOINT = "unix:///var/run/sandboxd/sandboxd.sock";

/** `unix:///path.sock`, `http://host[:port][/prefix]`, `https://host[:port][/prefix]`. */
export function parseEndpoint(url) {
  if (url && typeof url === "object" && url.scheme) return url;
  if (url == null) url = process.env.SANDBOX_ENDPOINT || DEFAULT_ENDPOINT;
  if (typeof url !== "string" || !url.trim()) throw new InvalidEndpointError(`invalid endpoint ${JSON.stringify(url)}: empty`);
  url = url.trim();
  if (url.startsWith("unix:")) {
    const path = url.startsWith("unix://") ? url.slice(7) : url.slice(5);
    if (!path) throw new InvalidEndpointError(`invalid endpoint "${url}": expected unix:///path/to.sock`);
    return { url, scheme: "unix", path, host: "localhost", port: null, prefix: "", tls: false, hostHeader: "localhost" };
  }
  let u;
  try { u = new URL(url); } catch (e) { throw new InvalidEndpointError(`invalid endpoint "${url}": ${e.message}`); }
  const scheme = u.protocol.slice(0, -1);
  if (scheme !== "http" && scheme !== "https") {
    throw new InvalidEndpointError(`invalid endpoint "${url}": use unix:///path, http://host:port or https://host:port`);
  }
  if (!u.hostname) throw new InvalidEndpointError(`invalid endpoint "${url}": no host`);
  if (u.search || u.hash || u.username || u.password) {
    throw new InvalidEndpointError(`invalid endpoint "${url}": no query, fragment or credentials allowed (put the token in SANDBOX_AUTH)`);
  }
  const tls = scheme === "https";
  const port = u.port ? Number(u.port) : (tls ? 443 : 80);
  const host = u.hostname.replace(/^\[|\]$/g, "");
  return { url, scheme, path: null, host, port, prefix: u.pathname.replace(/\/+$/, ""), tls, hostHeader: u.host };
}

/** The bearer token: `auth`, else SANDBOX_AUTH, else null. */
export function resolveAuth(auth) {
  return auth ?? (process.env.SANDBOX_AUTH || null);
}
