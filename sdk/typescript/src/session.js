// One WebSocket session with a sandbox: stream multiplexing and flow control
// (docs/protocol.md, "Requests and streams" and the client checklist).
import WebSocket from "ws";
import * as wire from "./wire.js";
import { USER_AGENT } from "./client.js";
import {
  DaemonUnavailableError, NotFoundError, ProtocolError, SandboxTimeoutError, SandboxUnavailableError,
  errorFrom, errorFromHttp, errorFromPayload,
} from "./errors.js";
import { ClientHandshake, E2EError } from "./e2e.js";

const { FrameType } = wire;
const HALF_WINDOW = wire.INITIAL_WINDOW / 2;

/** Open the session of `sandboxId` through `client` (a Client). */
export async function openSession(client, sandboxId) {
  let protocols;
  if (client.sessionToken) {
    // The browser way (docs/api.md): a short-lived token in Sec-WebSocket-Protocol, no Authorization header.
    const minted = await client.request("POST", `/sandboxes/${encodeURIComponent(sandboxId)}/session-token`);
    protocols = [minted.protocol, `sandboxd.bearer.${minted.token}`];
  }
  const ep = client.endpoint;
  const path = `${ep.prefix}/sandboxes/${encodeURIComponent(sandboxId)}/ws`;
  const url = ep.scheme === "unix" ? `ws+unix://${ep.path}:${path}` : `${ep.tls ? "wss" : "ws"}://${ep.hostHeader}${path}`;
  const headers = { "User-Agent": USER_AGENT };
  if (client.auth && !protocols) headers.Authorization = `Bearer ${client.auth}`;
  const ws = new WebSocket(url, protocols, {
    headers, perMessageDeflate: false, maxPayload: wire.MAX_PAYLOAD + wire.HEADER_SIZE,
    handshakeTimeout: client.timeout, ...(ep.tls ? client.tls : {}),
  });
  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (e) => { if (!settled) { settled = true; reject(e); } };
    ws.once("open", () => { settled = true; resolve(new Session(ws, sandboxId)); });
    ws.once("unexpected-response", (req, res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => {
        let e = errorFromHttp(res.statusCode, res.statusMessage, res.headers, Buffer.concat(chunks));
        if (res.statusCode === 404 && e.code === "HTTP_404") e = new NotFoundError("SANDBOX_NOT_FOUND", `sandbox ${sandboxId} not found`, 404);
        fail(e);
        req.destroy();
      });
    });
    ws.once("error", (e) => {
      if (/timed out/i.test(e.message)) fail(new SandboxTimeoutError("TIMEOUT", `no WebSocket session from ${ep.url} in time`));
      else fail(new DaemonUnavailableError(ep.url, e.message));
    });
  });
}

export class Session {
  constructor(ws, sandboxId) {
    this.ws = ws;
    this.sandboxId = sandboxId;
    this.streams = new Map();
    this.nextId = 1;
    this.slotWaiters = [];
    this.error = null;
    this.sealing = null;
    this.closed = false;
    this.closedPromise = new Promise((r) => { this._closedResolve = r; });
    ws.on("message", (data, isBinary) => this._onMessage(data, isBinary));
    ws.on("close", (code, reason) => this._onClose(code, reason.toString()));
    ws.on("error", () => {});
  }

  /** Open a stream: send REQUEST `method` with `params`; the Stream. */
  async open(method, params = {}) {
    while (this.streams.size >= wire.MAX_STREAMS && !this.error) await new Promise((r) => this.slotWaiters.push(r));
    if (this.error) throw this.error;
    let id = this.nextId;
    while (this.streams.has(id)) id = id >= wire.MAX_STREAM_ID - 1 ? 1 : id + 2;
    this.nextId = id >= wire.MAX_STREAM_ID - 1 ? 1 : id + 2;
    const stream = new Stream(this, id);
    this.streams.set(id, stream);
    await this.send(wire.encodeJSON(FrameType.REQUEST, id, { method, params }));
    return stream;
  }

  /** A request without a body: its RESULT (DATA and EVENTs ignored). */
  async call(method, params = {}) {
    const stream = await this.open(method, params);
    return stream.result();
  }

  /**
   * Destroy the sandbox over this session (`sandbox.destroy`, which the daemon answers itself: no HTTP
   * request); false when it cannot: the session is encrypted or gone, or an older daemon relays the
   * method to the agent (UNKNOWN_METHOD).
   */
  async destroySandbox() {
    if (this.sealing || this.error) return false;
    try {
      await this.call("sandbox.destroy");
    } catch (e) {
      if (e instanceof SandboxUnavailableError || e?.code === "UNKNOWN_METHOD") return false;
      throw e;
    }
    // The daemon closes every session of the sandbox now: end this connection at once instead of
    // waiting out the closing handshake.
    this._fail(new SandboxUnavailableError("SANDBOX_UNAVAILABLE", `sandbox ${this.sandboxId}: the sandbox was destroyed`));
    this.ws.terminate();
    return true;
  }

  /** Agree keys with the agent and seal every later frame (docs/security.md); `pin` refuses other keys. */
  async encrypt(pin = null) {
    if (this.sealing) return;
    try {
      const hello = new ClientHandshake(this.sandboxId, pin);
      this.sealing = hello.finish(await this.call("e2e.hello", hello.hello()));
    } catch (e) {
      if (e instanceof E2EError) throw errorFrom(e.code, `sandbox ${this.sandboxId}: ${e.detail}`);
      throw e;
    }
  }

  get fingerprint() { return this.sealing ? this.sealing.fingerprint : null; }

  send(frame) {
    if (this.error) return Promise.reject(this.error);
    if (this.sealing) {
      try {
        frame = this.sealing.seal(frame);
      } catch (e) {
        if (!(e instanceof E2EError)) return Promise.reject(e);
        this._fail(errorFrom(e.code, `sandbox ${this.sandboxId}: ${e.detail}`));
        this.ws.close(1002, "E2E");
        return Promise.reject(this.error);
      }
    }
    return new Promise((resolve, reject) => {
      this.ws.send(frame, { binary: true }, (err) => (err ? reject(this.error ?? new SandboxUnavailableError("SANDBOX_UNAVAILABLE", err.message)) : resolve()));
    });
  }

  _release(stream) {
    if (this.streams.get(stream.id) === stream) this.streams.delete(stream.id);
    if (this.sealing) this.sealing.forget(stream.id);
    const w = this.slotWaiters.shift();
    if (w) w();
  }

  _onMessage(data, isBinary) {
    let frame;
    try {
      if (!isBinary) throw new wire.WireError("BAD_PAYLOAD", "a text message");
      frame = wire.decodeOne(data);
    } catch (e) {
      this._fail(new ProtocolError(e.code ?? "BAD_PAYLOAD", `the daemon sent a bad frame: ${e.message}`));
      this.ws.close(1002);
      return;
    }
    if (this.sealing) {
      try {
        frame = this.sealing.open(frame);
      } catch (e) {
        this._fail(errorFrom(e.code ?? "E2E_MALFORMED", `sandbox ${this.sandboxId}: ${e.detail ?? e.message}`));
        this.ws.close(1002, "E2E");
        return;
      }
      if (frame === null) return;
    }
    if (frame.stream === 0) {
      if (frame.type === FrameType.PING) this.send(wire.encode(FrameType.PONG, 0, frame.payload)).catch(() => {});
      else if (frame.type === FrameType.ERROR) {
        let obj = {};
        try { obj = wire.decodeJSON(frame.payload); } catch { /* keep empty */ }
        this._fail(new SandboxUnavailableError("SANDBOX_UNAVAILABLE", `the daemon ended the session: ${obj.code}: ${obj.message}`, null, obj));
      }
      return;
    }
    const stream = this.streams.get(frame.stream);
    if (stream) stream._push(frame);
  }

  _fail(error) {
    if (!this.error) this.error = error;
    for (const s of [...this.streams.values()]) s._fail(this.error);
    this.streams.clear();
    for (const w of this.slotWaiters.splice(0)) w();
  }

  _onClose(code, reason) {
    this.closed = true;
    const why = code === 1000 ? "the sandbox was destroyed or the session closed" : code === 1011 ? "the sandbox's agent was lost" : `the WebSocket closed (${code}${reason ? " " + reason : ""})`;
    this._fail(new SandboxUnavailableError("SANDBOX_UNAVAILABLE", `session of sandbox ${this.sandboxId} ended: ${why}`, null, { close_code: code }));
    this._closedResolve();
  }

  /** Close the WebSocket (code 1000) and wait for it. */
  async close() {
    if (!this.closed) {
      if (!this.error) this.error = new SandboxUnavailableError("SANDBOX_UNAVAILABLE", "the session was closed");
      this.ws.close(1000);
      const t = setTimeout(() => this.ws.terminate(), 5000);
      await this.closedPromise;
      clearTimeout(t);
    }
  }
}

/** One request's stream: a queue of incoming frames and the two windows. */
export class Stream {
  constructor(session, id) {
    this.session = session;
    this.id = id;
    this.frames = [];
    this.waiter = null;
    this.credit = wire.INITIAL_WINDOW;
    this.creditWaiter = null;
    this.unacked = 0;
    this.finished = false;
    this.error = null;
  }

  _wake() {
    const w = this.waiter; this.waiter = null; if (w) w();
    const c = this.creditWaiter; this.creditWaiter = null; if (c) c();
  }

  _push(frame) {
    if (frame.type === FrameType.WINDOW) {
      try { this.credit += wire.windowIncrement(frame); } catch { /* ignore a bad window */ }
    } else {
      if (frame.type === FrameType.RESULT || frame.type === FrameType.ERROR) {
        this.finished = true;
        this.session._release(this);
      }
      this.frames.push(frame);
    }
    this._wake();
  }

  _fail(error) {
    this.finished = true;
    this.error = error;
    this._wake();
  }

  /** The next frame (DATA, END, EVENT, RESULT); ERROR is thrown as its typed error. */
  async next() {
    while (!this.frames.length) {
      if (this.error) throw this.error;
      await new Promise((r) => { this.waiter = r; });
    }
    const f = this.frames.shift();
    if (f.type === FrameType.ERROR) {
      this.error = errorFromPayload(wire.decodeJSON(f.payload, this.id));
      throw this.error;
    }
    return f;
  }

  /** Grant credit for `n` consumed DATA bytes (batched at half the window). */
  consumed(n) {
    this.unacked += n;
    if (this.unacked >= HALF_WINDOW && !this.finished) {
      const inc = this.unacked;
      this.unacked = 0;
      this.session.send(wire.window(this.id, inc)).catch(() => {});
    }
  }

  /** Wait for the RESULT, dropping DATA (granting it back) and EVENTs. */
  async result() {
    for (;;) {
      const f = await this.next();
      if (f.type === FrameType.RESULT) return wire.decodeJSON(f.payload, this.id);
      if (f.type === FrameType.DATA) this.consumed(f.payload.length);
    }
  }

  /** Send `data` as DATA on `channel` within the agent's credit; false if the stream ended meanwhile. */
  async write(data, channel = 0) {
    let buf = Buffer.isBuffer(data) ? data : typeof data === "string" ? Buffer.from(data, "utf8")
      : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    while (buf.length) {
      while (this.credit <= 0 && !this.finished) await new Promise((r) => { this.creditWaiter = r; });
      if (this.finished) { if (this.error) throw this.error; return false; }
      const n = Math.min(buf.length, wire.CHUNK_SIZE, this.credit);
      this.credit -= n;
      await this.session.send(wire.encode(FrameType.DATA, this.id, buf.subarray(0, n), channel));
      buf = buf.subarray(n);
    }
    return true;
  }

  /** Send END (no more DATA). */
  async end() {
    if (!this.finished) await this.session.send(wire.encode(FrameType.END, this.id));
  }

  /** Send CANCEL. */
  async cancel() {
    if (!this.finished) await this.session.send(wire.encode(FrameType.CANCEL, this.id)).catch(() => {});
  }
}

/** Send a body (string, bytes, sync or async iterable of either, or a Readable) then END. */
export async function sendBody(stream, body) {
  if (body != null) {
    if (typeof body === "string" || body instanceof Uint8Array || ArrayBuffer.isView(body)) {
      if (!(await stream.write(body))) return;
    } else if (body[Symbol.asyncIterator] || body[Symbol.iterator]) {
      for await (const chunk of body) {
        if (!(await stream.write(chunk))) return;
      }
    } else {
      throw new TypeError("a body is a string, bytes, or an (async) iterable of them");
    }
  }
  await stream.end();
}
