// Type declarations of the sandboxd SDK (the code is ESM JavaScript in src/).
import type { Readable } from "node:stream";
export * as wire from "./wire.js";

export declare const VERSION: string;
export declare const DEFAULT_ENDPOINT: string;

export interface Endpoint {
  url: string; scheme: "unix" | "http" | "https"; path: string | null; host: string;
  port: number | null; prefix: string; tls: boolean; hostHeader: string;
}
export declare function parseEndpoint(url?: string | Endpoint | null): Endpoint;
export declare function resolveAuth(auth?: string | null): string | null;

/** What `write`, `upload` and `stdin` accept: text, bytes, or a (sync/async) iterable of them (a Readable is one). */
export type Body = string | Uint8Array | Iterable<string | Uint8Array> | AsyncIterable<string | Uint8Array> | Readable;
/** A string runs under /bin/sh -c; an array is the argv. */
export type Command = string | string[];

export interface ClientOptions {
  /** unix:///path.sock, http://host:port, https://host:port; default $SANDBOX_ENDPOINT, else the local socket. */
  endpoint?: string;
  /** Bearer token; default $SANDBOX_AUTH. */
  auth?: string;
  /** Seconds per REST request and WebSocket handshake (default 60). */
  timeout?: number;
  /** Authenticate the WebSocket with a short-lived session token in Sec-WebSocket-Protocol (the browser way) instead of Authorization. */
  sessionToken?: boolean;
  /** TLS options for https endpoints (ca, cert, key, rejectUnauthorized...). */
  tls?: Record<string, unknown>;
}
export interface CreateOptions extends ClientOptions {
  profile?: string; template?: string; memory?: string | number; cpu?: number; storage?: string | number;
  ttl?: number; labels?: Record<string, string>;
  /** Share one Client (its kept-alive connections); it is then not closed with the sandbox. */
  client?: Client;
}
export interface SandboxInfo {
  id: string; profile: string; template: string | null; image: string; runtime: string; state: string;
  created: string; ttl: number; labels: Record<string, string>; memory: number; cpu: number; storage: number;
  method: string; [key: string]: unknown;
}
export interface Tunnel { port: number; host_port: number; url: string; bind_address: string; connections: number; refused: number }

export declare class Client {
  constructor(opts?: ClientOptions);
  readonly endpoint: Endpoint;
  readonly auth: string | null;
  request(method: string, path: string, body?: unknown): Promise<any>;
  create(opts?: Omit<CreateOptions, keyof ClientOptions | "client">): Promise<SandboxInfo>;
  list(labels?: Record<string, string>): Promise<SandboxInfo[]>;
  get(id: string): Promise<SandboxInfo>;
  destroy(id: string): Promise<void>;
  stats(id: string): Promise<Record<string, number>>;
  expose(id: string, port: number, opts?: { timeout?: number }): Promise<Tunnel>;
  ports(id: string): Promise<Tunnel[]>;
  closePort(id: string, port: number): Promise<void>;
  signedPortUrl(id: string, port: number, opts?: { expires?: number }): Promise<Record<string, unknown>>;
  portUrl(id: string, port: number): string;
  profiles(): Promise<Record<string, unknown>[]>;
  health(): Promise<Record<string, unknown>>;
  close(): void;
}

export interface FileInfo {
  name: string; path: string; type: "file" | "dir" | "symlink" | "other"; size: number; mode: number; mtime: number;
  isFile: boolean; isDir: boolean; isSymlink: boolean;
}
export declare class Filesystem {
  read(path: string, opts?: { offset?: number; length?: number }): Promise<Buffer>;
  readText(path: string): Promise<string>;
  /** Chunks of at most 256 KiB; leaving the loop early cancels the read. */
  readStream(path: string, opts?: { offset?: number; length?: number }): AsyncIterable<Buffer>;
  write(path: string, data: Body, opts?: { mode?: number; append?: boolean }): Promise<number>;
  list(path: string, opts?: { depth?: number }): Promise<FileInfo[]>;
  stat(path: string): Promise<FileInfo>;
  exists(path: string): Promise<boolean>;
  mkdir(path: string, opts?: { parents?: boolean; mode?: number }): Promise<string>;
  remove(path: string, opts?: { recursive?: boolean }): Promise<void>;
  rename(src: string, dst: string, opts?: { overwrite?: boolean }): Promise<{ src: string; dst: string }>;
  upload(path: string, tar: Body): Promise<{ files: number; dirs: number; symlinks: number; hardlinks: number; bytes: number }>;
  download(path: string): AsyncIterable<Buffer>;
}
export declare class Environment {
  set(vars: Record<string, string>): Promise<void>;
  get(name: string, dflt?: string | null): Promise<string | null>;
  delete(...names: string[]): Promise<string[]>;
  list(): Promise<Record<string, string>>;
}

export interface ExecOptions { cwd?: string; env?: Record<string, string>; timeout?: number; stdin?: Body }
export interface ExitStatus { exitCode: number; timedOut: boolean; truncated: boolean }
export interface ExecResult extends ExitStatus {
  stdout: string; stderr: string; stdoutBytes: Buffer; stderrBytes: Buffer; ok: boolean;
}
export interface OutputEvent { channel: "stdout" | "stderr"; data: string; raw: Buffer }
export declare class ExecHandle implements AsyncIterable<OutputEvent> {
  readonly done: boolean;
  pid: number | null;
  droppedBytes: number;
  [Symbol.asyncIterator](): AsyncIterator<OutputEvent>;
  wait(): Promise<ExitStatus>;
  exitCode(): Promise<number>;
  cancel(): Promise<void>;
}
export declare class SpawnedProcess extends ExecHandle {
  pid: number;
  readonly hasPty: boolean;
  write(data: string | Uint8Array): Promise<void>;
  closeStdin(): Promise<void>;
  signal(signal?: string | number, group?: boolean): Promise<void>;
  kill(): Promise<void>;
  resize(cols: number, rows: number): Promise<void>;
}
export declare class Process {
  exec(cmd: Command, opts?: ExecOptions & { maxOutput?: number }): Promise<ExecResult>;
  streamExec(cmd: Command, opts?: ExecOptions): Promise<ExecHandle>;
  spawn(cmd: Command, opts?: Omit<ExecOptions, "stdin"> & { pty?: { cols?: number; rows?: number } }): Promise<SpawnedProcess>;
  pty(cmd?: Command | null, opts?: Omit<ExecOptions, "stdin"> & { cols?: number; rows?: number }): Promise<SpawnedProcess>;
  list(): Promise<{ pid: number; pty: boolean }[]>;
  signal(pid: number, signal?: string | number, group?: boolean): Promise<void>;
}
export interface FetchResponse {
  status: number; reason: string; headers: [string, string][]; url: string; size: number; truncated: boolean;
  body: Buffer; ok: boolean; text(): string; json(): any; header(name: string): string | null;
}
export declare class Network {
  fetch(url: string, opts?: { method?: string; headers?: Record<string, string>; body?: string | Uint8Array;
    timeout?: number; maxRedirects?: number; maxBody?: number; verify?: boolean }): Promise<FetchResponse>;
  url(port: number): string;
  expose(port: number, opts?: { timeout?: number }): Promise<Tunnel>;
  ports(): Promise<Tunnel[]>;
  close(port: number): Promise<void>;
  signedUrl(port: number, opts?: { expires?: number }): Promise<Record<string, unknown>>;
}
export declare class Sandbox {
  readonly id: string;
  info: SandboxInfo;
  readonly client: Client;
  readonly fs: Filesystem;
  readonly process: Process;
  readonly env: Environment;
  readonly net: Network;
  readonly closed: boolean;
  /** True for an end-to-end encrypted session (docs/security.md). */
  readonly encrypted: boolean;
  /** The agent key fingerprint an encrypted session agreed, else null. */
  readonly fingerprint: string | null;
  agentFingerprint(): Promise<string>;
  ping(): Promise<void>;
  refresh(): Promise<SandboxInfo>;
  stats(): Promise<Record<string, number>>;
  close(): Promise<void>;
  destroy(): Promise<void>;
}
export declare function createSandbox(opts?: CreateOptions & EncryptionOptions): Promise<Sandbox>;
export interface EncryptionOptions {
  /** Seal everything between this process and the agent (docs/security.md). */
  encrypted?: boolean;
  /** The agent key fingerprint (sha256:...) to accept, and no other; implies `encrypted`. */
  pin?: string;
}
export declare function connectSandbox(id: string, opts?: ClientOptions & EncryptionOptions & { client?: Client }): Promise<Sandbox>;

export declare class SandboxError extends Error {
  readonly code: string; readonly status: number | null; readonly details: Record<string, unknown>;
  constructor(code: string, message: string, status?: number | null, details?: Record<string, unknown>);
}
export declare class InvalidEndpointError extends SandboxError { constructor(message: string) }
export declare class DaemonUnavailableError extends SandboxError { readonly endpoint: string; readonly reason: string; constructor(endpoint: string, reason: string) }
export declare class InvalidRequestError extends SandboxError {}
export declare class NotFoundError extends SandboxError {}
export declare class CapacityError extends SandboxError { readonly retryAfter: number | null }
export declare class RateLimitedError extends CapacityError {}
export declare class ServerError extends SandboxError {}
export declare class SandboxUnavailableError extends SandboxError {}
export declare class FileError extends SandboxError { readonly path: string | null }
export declare class PathNotFoundError extends FileError {}
export declare class ProtocolError extends SandboxError {}
export declare class SandboxTimeoutError extends SandboxError {}
export declare class RequestCancelledError extends SandboxError {}
export declare class NetworkError extends SandboxError {}
export declare class ProcessExitedError extends SandboxError {}
export declare class EncryptionError extends SandboxUnavailableError {}
export declare class IdentityMismatchError extends EncryptionError {}
export declare class TamperedError extends EncryptionError {}
export declare function errorFrom(code: string, message: string, status?: number | null, details?: Record<string, unknown>, retryAfter?: number | null): SandboxError;
export declare function errorFromPayload(obj: Record<string, unknown>, status?: number | null, retryAfter?: number | null): SandboxError;
export declare function errorFromHttp(status: number, reason: string, headers: Record<string, string | string[] | undefined>, body: Buffer | string): SandboxError;

/** End-to-end encrypted sessions' client half (docs/security.md); the SDK uses it for `encrypted: true`. */
export declare namespace e2e {
  const SEALED: number;
  const OVERHEAD: number;
  class E2EError extends Error { readonly code: string; readonly detail: string }
  function fingerprint(publicKey: Buffer): string;
  function normalisePin(pin: string): string;
  interface Frame { type: number; flags: number; stream: number; payload: Buffer }
  class Sealing {
    readonly fingerprint: string;
    seal(frame: Buffer): Buffer;
    open(frame: Frame): Frame | null;
    forget(stream: number): void;
  }
  class ClientHandshake {
    constructor(sandboxId: string, pin?: string | null, keys?: { privateKey: Buffer; publicKey: Buffer } | null);
    hello(): Record<string, unknown>;
    finish(result: Record<string, unknown>): Sealing;
  }
}
