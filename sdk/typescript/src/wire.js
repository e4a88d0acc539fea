// The agent wire protocol, version 1 (docs/protocol.md): frame codec.
// Every frame: u32 length (6 + payload), u8 type, u8 flags, u32 stream, payload.

export const VERSION = 1;
export const HEADER_SIZE = 10;
export const MAX_PAYLOAD = 1 << 20;
export const MAX_JSON = 256 * 1024;
export const CHUNK_SIZE = 256 * 1024;
export const INITIAL_WINDOW = 4 * 1024 * 1024;
export const MAX_STREAMS = 1024;
export const MAX_STREAM_ID = 0xffffffff;

export const FrameType = Object.freeze({
  HELLO: 0x01, AUTH: 0x02, READY: 0x03, PING: 0x04, PONG: 0x05,
  REQUEST: 0x10, DATA: 0x11, END: 0x12, RESULT: 0x13, ERROR: 0x14,
  CANCEL: 0x15, WINDOW: 0x16, EVENT: 0x17,
});
const NAMES = new Map(Object.entries(FrameType).map(([k, v]) => [v, k]));
const JSON_TYPES = new Set([0x01, 0x02, 0x03, 0x10, 0x13, 0x14, 0x17]);
const CONNECTION_TYPES = new Set([0x01, 0x02, 0x03, 0x04, 0x05]);
/** The flag bit of a frame sealed end to end (docs/protocol.md, "Sealed frames"). */
export const SEALED = 0x80;
const SEALABLE_TYPES = new Set([0x10, 0x11, 0x12, 0x13, 0x14, 0x17]);
const SEALED_EXTRA = 1 + 16 + 1 + 255 + 24;

/** A framing violation; `code` is the protocol's error code. */
export class WireError extends Error {
  constructor(code, message, stream = 0) {
    super(`${code}: ${message}`);
    this.name = "WireError";
    this.code = code;
    this.stream = stream;
  }
}

export function typeName(type) {
  return NAMES.get(type) ?? `0x${type.toString(16)}`;
}

/** The bytes of one frame. */
export function encode(type, stream, payload = new Uint8Array(0), flags = 0) {
  if (payload.length > MAX_PAYLOAD) {
    throw new WireError("FRAME_TOO_LARGE", `payload of ${payload.length} bytes exceeds ${MAX_PAYLOAD}`, stream);
  }
  const out = Buffer.allocUnsafe(HEADER_SIZE + payload.length);
  out.writeUInt32BE(payload.length + 6, 0);
  out[4] = type;
  out[5] = flags;
  out.writeUInt32BE(stream >>> 0, 6);
  if (payload.length) out.set(payload, HEADER_SIZE);
  return out;
}

export function encodeJSON(type, stream, obj) {
  const payload = Buffer.from(JSON.stringify(obj), "utf8");
  if (payload.length > MAX_JSON) {
    throw new WireError("FRAME_TOO_LARGE", `JSON payload of ${payload.length} bytes exceeds ${MAX_JSON}`, stream);
  }
  return encode(type, stream, payload);
}

export function window(stream, increment) {
  const p = Buffer.allocUnsafe(4);
  p.writeUInt32BE(increment >>> 0, 0);
  return encode(FrameType.WINDOW, stream, p);
}

function checkHeader(length, type, flags, stream) {
  if (length < 6) throw new WireError("FRAME_TOO_SHORT", `length field ${length} is below 6`);
  const size = length - 6;
  if (size > MAX_PAYLOAD) throw new WireError("FRAME_TOO_LARGE", `payload of ${size} bytes exceeds ${MAX_PAYLOAD}`, stream);
  if (!NAMES.has(type)) throw new WireError("UNKNOWN_FRAME_TYPE", `unknown frame type 0x${type.toString(16).padStart(2, "0")}`, stream);
  let jsonLimit = MAX_JSON;
  if (flags & SEALED && SEALABLE_TYPES.has(type)) {
    flags &= ~SEALED;
    jsonLimit = MAX_JSON + SEALED_EXTRA;
  }
  if (type === FrameType.DATA) {
    if (flags > 2) throw new WireError("BAD_FLAGS", `unknown DATA channel ${flags}`, stream);
  } else if (flags) {
    throw new WireError("BAD_FLAGS", `${typeName(type)} frames carry no flags`, stream);
  }
  if (CONNECTION_TYPES.has(type)) {
    if (stream !== 0) throw new WireError("BAD_STREAM", `${typeName(type)} belongs on stream 0`, stream);
  } else if (stream === 0 && type !== FrameType.ERROR) {
    throw new WireError("BAD_STREAM", `${typeName(type)} needs a stream id above 0`);
  }
  if (JSON_TYPES.has(type) && size > jsonLimit) {
    throw new WireError("FRAME_TOO_LARGE", `JSON payload of ${size} bytes exceeds ${jsonLimit}`, stream);
  }
}

/** Incremental decoder of a byte stream; holds at most one frame. */
export class Framer {
  constructor() { this.buffer = Buffer.alloc(0); }
  feed(data) {
    let buf = this.buffer.length ? Buffer.concat([this.buffer, data]) : Buffer.from(data);
    const frames = [];
    let off = 0;
    while (buf.length - off >= HEADER_SIZE) {
      const length = buf.readUInt32BE(off);
      const type = buf[off + 4], flags = buf[off + 5], stream = buf.readUInt32BE(off + 6);
      checkHeader(length, type, flags, stream);
      const end = off + 4 + length;
      if (end > buf.length) break;
      frames.push({ type, flags, stream, payload: buf.subarray(off + HEADER_SIZE, end) });
      off = end;
    }
    this.buffer = buf.subarray(off);
    return frames;
  }
  finish() {
    if (this.buffer.length) throw new WireError("TRUNCATED", `stream ended ${this.buffer.length} bytes into a frame`);
  }
}

/** Exactly one whole frame from one WebSocket message. */
export function decodeOne(data) {
  const buf = Buffer.isBuffer(data) ? data : Buffer.from(data);
  if (buf.length >= HEADER_SIZE) {
    const length = buf.readUInt32BE(0);
    checkHeader(length, buf[4], buf[5], buf.readUInt32BE(6));
    if (buf.length === length + 4) {
      return { type: buf[4], flags: buf[5], stream: buf.readUInt32BE(6), payload: buf.subarray(HEADER_SIZE) };
    }
    if (buf.length > length + 4) throw new WireError("BAD_PAYLOAD", "message must hold exactly one frame");
  }
  throw new WireError("TRUNCATED", "message holds no whole frame");
}

/** A JSON object payload, or WireError BAD_PAYLOAD. */
export function decodeJSON(payload, stream = 0) {
  let obj;
  try {
    const text = new TextDecoder("utf-8", { fatal: true }).decode(payload);
    obj = JSON.parse(text);
  } catch (e) {
    throw new WireError("BAD_PAYLOAD", `invalid JSON: ${e.message}`, stream);
  }
  if (obj === null || typeof obj !== "object" || Array.isArray(obj)) {
    throw new WireError("BAD_PAYLOAD", "JSON payload must be an object", stream);
  }
  return obj;
}

/** The increment of a WINDOW frame. */
export function windowIncrement(frame) {
  if (frame.payload.length !== 4) throw new WireError("BAD_PAYLOAD", "WINDOW payload must be 4 bytes", frame.stream);
  const n = Buffer.from(frame.payload).readUInt32BE(0);
  if (n === 0) throw new WireError("BAD_PAYLOAD", "WINDOW increment must be positive", frame.stream);
  return n;
}
