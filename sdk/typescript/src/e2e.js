// End-to-end encrypted sessions (docs/security.md, docs/protocol.md "Sealed frames"): the client's
// handshake and frame sealing, byte for byte what agent/e2e.py and agent/e2e_frames.py do, with Node's
// built-in crypto (X25519, HKDF-SHA256, AES-256-GCM).
import crypto from "node:crypto";
import { FrameType, HEADER_SIZE, MAX_PAYLOAD, WireError, decodeJSON, encode } from "./wire.js";

export const VERSION = 1;
export const SEALED = 0x80;
export const OVERHEAD = 24;
const LABEL = Buffer.from("sandboxd-e2e-v1");
const AD_LABEL = Buffer.from("sbx-e2e1");
const REKEY_SHIFT = 16n;
const SEALABLE = new Set([FrameType.REQUEST, FrameType.DATA, FrameType.END, FrameType.RESULT, FrameType.EVENT, FrameType.ERROR]);
const FINAL = new Set([FrameType.RESULT, FrameType.ERROR]);
export const E2E_CODES = new Set([
  "E2E_HANDSHAKE_FAILED", "E2E_IDENTITY_MISMATCH", "E2E_TAMPERED", "E2E_REPLAYED", "E2E_UNSEALED",
  "E2E_UNKNOWN_SESSION", "E2E_UNSUPPORTED", "E2E_MALFORMED", "E2E_EXHAUSTED",
]);
const RELAY_CODES = new Set(["SANDBOX_UNAVAILABLE", "STREAM_IN_USE", "TOO_MANY_STREAMS"]);

/** An encrypted session failed; `code` is one of E2E_CODES. */
export class E2EError extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.code = code;
    this.detail = message;
  }
}

export function fingerprint(publicKey) {
  return "sha256:" + crypto.createHash("sha256").update(publicKey).digest("hex");
}

export function normalisePin(pin) {
  let text = String(pin).trim().toLowerCase();
  if (text.startsWith("sha256:")) text = text.slice(7);
  if (!/^[0-9a-f]{64}$/.test(text)) throw new E2EError("E2E_IDENTITY_MISMATCH", `${JSON.stringify(pin)} is not a key fingerprint`);
  return "sha256:" + text;
}

function rawPublic(keyObject) {
  return Buffer.from(keyObject.export({ format: "jwk" }).x, "base64url");
}

function publicFromRaw(raw) {
  return crypto.createPublicKey({ key: { kty: "OKP", crv: "X25519", x: raw.toString("base64url") }, format: "jwk" });
}

function fromHex(value, size, what) {
  const raw = typeof value === "string" && /^[0-9a-fA-F]*$/.test(value) ? Buffer.from(value, "hex") : Buffer.alloc(0);
  if (raw.length !== size) throw new E2EError("E2E_HANDSHAKE_FAILED", `${what} must be ${size} bytes in hex`);
  return raw;
}

// HKDF-Expand for one 32-byte block (RFC 5869): HMAC-SHA256(secret, info || 0x01).
function expand(secret, info) {
  return crypto.createHmac("sha256", secret).update(Buffer.concat([Buffer.from(info), Buffer.from([1])])).digest();
}

/** The client's half of the handshake: hello() is e2e.hello's params; finish(result) the Sealing. */
export class ClientHandshake {
  // `keys` ({privateKey, publicKey}: raw 32-byte Buffers) fixes the ephemeral key: for test vectors only.
  constructor(sandboxId, pin = null, keys = null) {
    this.sandboxId = sandboxId;
    this.pin = pin ? normalisePin(pin) : null;
    if (keys) {
      this.privateKey = crypto.createPrivateKey({
        key: { kty: "OKP", crv: "X25519", d: keys.privateKey.toString("base64url"), x: keys.publicKey.toString("base64url") },
        format: "jwk",
      });
      this.clientKey = rawPublic(crypto.createPublicKey(this.privateKey));
    } else {
      const { privateKey, publicKey } = crypto.generateKeyPairSync("x25519");
      this.privateKey = privateKey;
      this.clientKey = rawPublic(publicKey);
    }
  }

  hello() {
    return { version: VERSION, sandbox: this.sandboxId, client_key: this.clientKey.toString("hex") };
  }

  finish(result) {
    if (!result || result.version !== VERSION) throw new E2EError("E2E_HANDSHAKE_FAILED", "the agent's hello has another version");
    const session = fromHex(result.session, 16, "session");
    const agentKey = fromHex(result.agent_key, 32, "agent_key");
    const identity = fromHex(result.identity, 32, "identity");
    const confirm = fromHex(result.confirm, 32, "confirm");
    const seen = fingerprint(identity);
    if (this.pin !== null && seen !== this.pin) {
      throw new E2EError("E2E_IDENTITY_MISMATCH", `the agent's key is ${seen}, not the pinned ${this.pin}`);
    }
    const sid = Buffer.from(this.sandboxId, "utf8");
    const length = Buffer.alloc(2);
    length.writeUInt16BE(sid.length);
    const th = crypto.createHash("sha256").update(Buffer.concat([LABEL, length, sid, this.clientKey, session, agentKey, identity])).digest();
    let ee, es;
    try {
      ee = crypto.diffieHellman({ privateKey: this.privateKey, publicKey: publicFromRaw(agentKey) });
      es = crypto.diffieHellman({ privateKey: this.privateKey, publicKey: publicFromRaw(identity) });
    } catch (e) {
      throw new E2EError("E2E_HANDSHAKE_FAILED", `bad agent key: ${e.message}`);
    }
    if (ee.equals(Buffer.alloc(32)) || es.equals(Buffer.alloc(32))) throw new E2EError("E2E_HANDSHAKE_FAILED", "bad agent key: a low-order point");
    const okm = Buffer.from(crypto.hkdfSync("sha256", Buffer.concat([ee, es]), th, Buffer.concat([LABEL, Buffer.from(" keys")]), 96));
    const expected = crypto.createHmac("sha256", okm.subarray(64)).update(Buffer.concat([Buffer.from("agent confirms"), th])).digest();
    if (!crypto.timingSafeEqual(expected, confirm)) throw new E2EError("E2E_HANDSHAKE_FAILED", "the agent did not confirm the keys");
    return new Sealing(new Channel(session, seen, okm.subarray(0, 32), okm.subarray(32, 64)));
  }
}

class Keys {
  constructor(secret) { this.secret = secret; this.epoch = 0n; this.key = expand(secret, "key"); }
  at(epoch) {
    let secret = this.secret;
    for (let e = this.epoch; e < epoch; e++) secret = expand(secret, "next");
    return { secret, key: epoch === this.epoch ? this.key : expand(secret, "key") };
  }
  commit(epoch, { secret, key }) { this.epoch = epoch; this.secret = secret; this.key = key; }
}

function nonce(n) {
  const out = Buffer.alloc(12);
  out.writeBigUInt64BE(n, 4);
  return out;
}

function ad(type, flags, lstream, index, extra) {
  const out = Buffer.alloc(26);
  AD_LABEL.copy(out, 0);
  out[8] = type;
  out[9] = flags | SEALED;
  out.writeBigUInt64BE(lstream, 10);
  out.writeBigUInt64BE(index, 18);
  return extra && extra.length ? Buffer.concat([out, extra]) : out;
}

class Channel {
  constructor(sessionId, fp, sendSecret, recvSecret) {
    this.sessionId = sessionId;
    this.fingerprint = fp;
    this.send = new Keys(sendSecret);
    this.recv = new Keys(recvSecret);
    this.sent = -1n;
    this.received = -1n;
    this.failure = null;
  }
  fail(code, message) { this.failure = new E2EError(code, message); throw this.failure; }
  seal(type, flags, lstream, index, plaintext, prefix = Buffer.alloc(0), counter = null) {
    if (this.failure) throw this.failure;
    const n = counter ?? this.sent + 1n;
    const epoch = n >> REKEY_SHIFT;
    if (epoch !== this.send.epoch) this.send.commit(epoch, this.send.at(epoch));
    this.sent = n;
    const cipher = crypto.createCipheriv("aes-256-gcm", this.send.key, nonce(n));
    cipher.setAAD(ad(type, flags, lstream, index, prefix));
    const body = Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
    const count = Buffer.alloc(8);
    count.writeBigUInt64BE(n);
    return Buffer.concat([prefix, count, body]);
  }
  open(type, flags, lstream, index, payload, prefixLen = 0) {
    if (this.failure) throw this.failure;
    if (payload.length < prefixLen + OVERHEAD) this.fail("E2E_MALFORMED", `a sealed payload of ${payload.length - prefixLen} bytes`);
    const n = Buffer.from(payload.buffer, payload.byteOffset, payload.length).readBigUInt64BE(prefixLen);
    if (n <= this.received) this.fail("E2E_REPLAYED", `frame counter ${n} is not above ${this.received}: replayed or reordered`);
    if (n - this.received > (1n << REKEY_SHIFT)) this.fail("E2E_REPLAYED", `frame counter ${n} jumps past ${this.received}`);
    const epoch = n >> REKEY_SHIFT;
    const keys = this.recv.at(epoch);
    const decipher = crypto.createDecipheriv("aes-256-gcm", keys.key, nonce(n));
    decipher.setAAD(ad(type, flags, lstream, index, payload.subarray(0, prefixLen)));
    decipher.setAuthTag(payload.subarray(payload.length - 16));
    let plaintext;
    try {
      plaintext = Buffer.concat([decipher.update(payload.subarray(prefixLen + 8, payload.length - 16)), decipher.final()]);
    } catch {
      this.fail("E2E_TAMPERED", `sealed frame ${n} failed authentication (changed, dropped, reordered or moved to another stream)`);
    }
    if (epoch !== this.recv.epoch) this.recv.commit(epoch, keys);
    this.received = n;
    return plaintext;
  }
}

/** The frames of one encrypted session at the client, keyed by the client's stream ids. */
export class Sealing {
  constructor(channel) { this.channel = channel; this.streams = new Map(); }
  get fingerprint() { return this.channel.fingerprint; }

  seal(data) {
    const buf = Buffer.isBuffer(data) ? data : Buffer.from(data);
    const type = buf[4], flags = buf[5], stream = buf.readUInt32BE(6);
    if (!SEALABLE.has(type) || stream === 0) return buf;
    const payload = buf.subarray(HEADER_SIZE);
    let sealed;
    if (type === FrameType.REQUEST) {
      const method = Buffer.from(String(decodeJSON(payload, stream).method), "latin1").subarray(0, 255);
      const n = this.channel.sent + 1n;
      const prefix = Buffer.concat([Buffer.from([VERSION]), this.channel.sessionId, Buffer.from([method.length]), method]);
      sealed = this.channel.seal(type, flags, n, 0n, payload, prefix, n);
      this.streams.set(stream, { lstream: n, sent: 1n, received: 0n });
    } else {
      const state = this.streams.get(stream);
      if (!state) return buf;
      sealed = this.channel.seal(type, flags, state.lstream, state.sent, payload);
      state.sent += 1n;
    }
    if (sealed.length > MAX_PAYLOAD) throw new WireError("FRAME_TOO_LARGE", "the sealed frame exceeds MAX_PAYLOAD", stream);
    return encode(type, stream, sealed, flags | SEALED);
  }

  /** A received frame: the plaintext frame, or null to ignore it; E2EError ends the session. */
  open(frame) {
    const { type, stream } = frame;
    if (!(frame.flags & SEALED)) {
      if (stream === 0 || type === FrameType.WINDOW || type === FrameType.CANCEL) return frame;
      if (type === FrameType.ERROR) {
        const code = decodeJSON(frame.payload, stream).code;
        if (E2E_CODES.has(code)) throw new E2EError(code, `the agent ended the encrypted session`);
        if (!this.streams.has(stream) || RELAY_CODES.has(code)) { this.streams.delete(stream); return frame; }
      }
      if (!this.streams.has(stream)) return null;
      if (type === FrameType.EVENT) return null;
      throw new E2EError("E2E_UNSEALED", `a frame of type ${type} on an encrypted stream came in clear`);
    }
    const state = this.streams.get(stream);
    if (!state) return null;
    const flags = frame.flags & ~SEALED;
    const payload = this.channel.open(type, flags, state.lstream, state.received, frame.payload);
    state.received += 1n;
    if (FINAL.has(type)) this.streams.delete(stream);
    return { type, flags, stream, payload };
  }

  forget(stream) { this.streams.delete(stream); }
}
