export declare const VERSION: 1;
export declare const HEADER_SIZE: number;
export declare const MAX_PAYLOAD: number;
export declare const MAX_JSON: number;
export declare const CHUNK_SIZE: number;
export declare const INITIAL_WINDOW: number;
export declare const MAX_STREAMS: number;
export declare const MAX_STREAM_ID: number;
export declare const FrameType: Readonly<{
  HELLO: 1; AUTH: 2; READY: 3; PING: 4; PONG: 5; REQUEST: 16; DATA: 17; END: 18;
  RESULT: 19; ERROR: 20; CANCEL: 21; WINDOW: 22; EVENT: 23;
}>;
export interface Frame { type: number; flags: number; stream: number; payload: Buffer }
export declare class WireError extends Error {
  readonly code: string;
  readonly stream: number;
  constructor(code: string, message: string, stream?: number);
}
export declare function typeName(type: number): string;
export declare function encode(type: number, stream: number, payload?: Uint8Array, flags?: number): Buffer;
export declare function encodeJSON(type: number, stream: number, obj: unknown): Buffer;
export declare function window(stream: number, increment: number): Buffer;
export declare class Framer { feed(data: Uint8Array): Frame[]; finish(): void }
export declare function decodeOne(data: Uint8Array): Frame;
export declare function decodeJSON(payload: Uint8Array, stream?: number): Record<string, unknown>;
export declare function windowIncrement(frame: Frame): number;
