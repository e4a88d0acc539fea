// The frame codec of docs/protocol.md for the browser (Uint8Array, DataView):
// u32 length (6 + payload), u8 type, u8 flags, u32 stream, payload.
// Only what a terminal needs: REQUEST, DATA, WINDOW out; any frame in.

export const HEADER_SIZE = 10;
export const CHUNK_SIZE = 256 * 1024;
export const INITIAL_WINDOW = 4 * 1024 * 1024;
export const FrameType = Object.freeze({
  PING: 0x04, PONG: 0x05, REQUEST: 0x10, DATA: 0x11, END: 0x12, RESULT: 0x13,
  ERROR: 0x14, CANCEL: 0x15, WINDOW: 0x16, EVENT: 0x17,
});

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The bytes of one frame. */
export function encode(type, stream, payload = new Uint8Array(0), flags = 0) {
  const out = new Uint8Array(HEADER_SIZE + payload.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, payload.length + 6);
  out[4] = type;
  out[5] = flags;
  view.setUint32(6, stream >>> 0);
  out.set(payload, HEADER_SIZE);
  return out;
}

export function encodeJSON(type, stream, obj) {
  return encode(type, stream, encoder.encode(JSON.stringify(obj)));
}

export function encodeWindow(stream, increment) {
  const p = new Uint8Array(4);
  new DataView(p.buffer).setUint32(0, increment >>> 0);
  return encode(FrameType.WINDOW, stream, p);
}

/** One whole frame from one WebSocket message (an ArrayBuffer). */
export function decode(buffer) {
  const bytes = new Uint8Array(buffer);
  if (bytes.length < HEADER_SIZE) throw new Error("a message shorter than a frame header");
  const view = new DataView(buffer);
  const length = view.getUint32(0);
  if (length + 4 !== bytes.length) throw new Error("a message that is not exactly one frame");
  return { type: bytes[4], flags: bytes[5], stream: view.getUint32(6), payload: bytes.subarray(HEADER_SIZE) };
}

export function decodeJSON(payload) {
  return JSON.parse(decoder.decode(payload));
}

export function windowIncrement(payload) {
  return new DataView(payload.buffer, payload.byteOffset, payload.byteLength).getUint32(0);
}

export { encoder as utf8 };
