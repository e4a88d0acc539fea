// Typed errors from the daemon's and the agent's error codes (docs/sdk.md, "Errors").

export class SandboxError extends Error {
  constructor(code, message, status = null, details = {}) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.status = status;
    this.details = details ?? {};
  }
}
export class InvalidEndpointError extends SandboxError {
  constructor(message) { super("INVALID_ENDPOINT", message); }
}
export class DaemonUnavailableError extends SandboxError {
  constructor(endpoint, reason) {
    super("DAEMON_UNAVAILABLE", `cannot reach the sandbox daemon at ${endpoint}: ${reason}`);
    this.endpoint = String(endpoint);
    this.reason = reason;
  }
}
export class InvalidRequestError extends SandboxError {}
export class NotFoundError extends SandboxError {}
export class CapacityError extends SandboxError {
  constructor(code, message, status = null, details = {}, retryAfter = null) {
    super(code, message, status, details);
    this.retryAfter = retryAfter;
  }
}
export class RateLimitedError extends CapacityError {}
export class ServerError extends SandboxError {}
export class SandboxUnavailableError extends SandboxError {}
export class FileError extends SandboxError {
  get path() { return this.details.path ?? null; }
}
export class PathNotFoundError extends FileError {}
export class ProtocolError extends SandboxError {}
export class SandboxTimeoutError extends SandboxError {}
export class RequestCancelledError extends SandboxError {}
export class NetworkError extends SandboxError {}
export class ProcessExitedError extends SandboxError {}
/** An end-to-end encrypted session failed (E2E_* codes, docs/security.md); the session is over. */
export class EncryptionError extends SandboxUnavailableError {}
export class IdentityMismatchError extends EncryptionError {}
export class TamperedError extends EncryptionError {}

const POSIX = new Set(("ENOENT EACCES EPERM EISDIR ENOTDIR EEXIST ENOSPC EROFS ENAMETOOLONG ELOOP " +
  "EINVAL EIO ENOTEMPTY EBUSY EXDEV ETXTBSY EMFILE EFBIG EDQUOT UNSAFE_PATH BAD_ARCHIVE").split(" "));
const PROTOCOL = new Set(("FRAME_TOO_LARGE FRAME_TOO_SHORT UNKNOWN_FRAME_TYPE BAD_FLAGS BAD_PAYLOAD " +
  "BAD_STREAM UNEXPECTED_FRAME TRUNCATED VERSION_MISMATCH AUTH_FAILED STREAM_IN_USE TOO_MANY_STREAMS " +
  "WINDOW_EXCEEDED").split(" "));
const BY_CODE = {
  INVALID_BODY: InvalidRequestError, INVALID_FIELD: InvalidRequestError, LIMIT_EXCEEDED: InvalidRequestError,
  METHOD_NOT_ALLOWED: InvalidRequestError, BAD_PARAMS: InvalidRequestError, UNKNOWN_METHOD: InvalidRequestError,
  SANDBOX_NOT_FOUND: NotFoundError, UNKNOWN_PROFILE: NotFoundError, NOT_FOUND: NotFoundError,
  AT_CAPACITY: CapacityError, TOO_MANY_TUNNELS: CapacityError, PORT_NOT_READY: SandboxTimeoutError,
  RATE_LIMITED: RateLimitedError, QUOTA_EXCEEDED: CapacityError, INTERNAL: ServerError, RUNTIME_ERROR: ServerError,
  SANDBOX_UNAVAILABLE: SandboxUnavailableError, SANDBOX_PAUSED: SandboxUnavailableError, TIMEOUT: SandboxTimeoutError, CANCELLED: RequestCancelledError,
  TOO_MANY_REDIRECTS: NetworkError, CONNECTION_REFUSED: NetworkError, HOST_NOT_FOUND: NetworkError,
  TLS_ERROR: NetworkError, NET_ERROR: NetworkError, ENOENT: PathNotFoundError, ESRCH: NotFoundError,
  EGRESS_DENIED: NetworkError, NETWORK_UNSUPPORTED: InvalidRequestError, EGRESS_FAILED: ServerError,
  ENOTTY: InvalidRequestError,
  E2E_HANDSHAKE_FAILED: EncryptionError, E2E_IDENTITY_MISMATCH: IdentityMismatchError, E2E_TAMPERED: TamperedError,
  E2E_REPLAYED: TamperedError, E2E_UNSEALED: TamperedError, E2E_UNKNOWN_SESSION: EncryptionError,
  E2E_UNSUPPORTED: EncryptionError, E2E_MALFORMED: EncryptionError, E2E_EXHAUSTED: EncryptionError,
};
const BY_STATUS = { 400: InvalidRequestError, 404: NotFoundError, 405: InvalidRequestError };

/** The error for `code` (falling back on the HTTP status). */
export function errorFrom(code, message, status = null, details = {}, retryAfter = null) {
  let cls = BY_CODE[code];
  if (!cls) {
    if (POSIX.has(code)) cls = FileError;
    else if (PROTOCOL.has(code)) cls = ProtocolError;
    else if (status != null) cls = BY_STATUS[status] ?? (status >= 500 ? ServerError : SandboxError);
    else cls = SandboxError;
  }
  if (cls === CapacityError || cls === RateLimitedError) return new cls(code, message, status, details, retryAfter);
  return new cls(code, message, status, details);
}

/** The error for an error object `{code, message, ...details}`. */
export function errorFromPayload(obj, status = null, retryAfter = null) {
  const { code, message, ...details } = obj ?? {};
  const c = String(code || "UNKNOWN");
  return errorFrom(c, String(message || c), status, details, retryAfter);
}

/** The error for a failed HTTP answer (`headers` with lower-case names). */
export function errorFromHttp(status, reason, headers, body) {
  let retryAfter = null;
  const ra = headers?.["retry-after"];
  if (ra != null && !Number.isNaN(Number(ra))) retryAfter = Number(ra);
  const text = Buffer.isBuffer(body) ? body.toString("utf8") : String(body ?? "");
  try {
    const obj = JSON.parse(text);
    if (obj && typeof obj.error === "object" && obj.error && "code" in obj.error) {
      return errorFromPayload(obj.error, status, retryAfter);
    }
  } catch { /* not our error shape */ }
  const first = text.slice(0, 200).trim().split("\n")[0];
  return errorFrom(`HTTP_${status}`, `HTTP ${status} ${reason}${first ? ": " + first : ""}`, status, {}, retryAfter);
}
