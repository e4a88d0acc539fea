"""
Typed exceptions of the SDK, built from the error codes of the API and of the
wire protocol (docs/api.md, docs/protocol.md).

Every exception is a ``SandboxError`` carrying ``code``, ``message``,
``status`` (the HTTP status, or None for errors that came over a session) and
``details`` (the other fields of the error object, e.g. ``path``).
"""

__all__ = [
    "SandboxError",
    "InvalidEndpointError",
    "DaemonUnavailableError",
    "InvalidRequestError",
    "NotFoundError",
    "CapacityError",
    "ServerError",
    "SandboxUnavailableError",
    "FileError",
    "PathNotFoundError",
    "ProtocolError",
    "SandboxTimeoutError",
    "RequestCancelledError",
    "NetworkError",
    "EncryptionError",
    "IdentityMismatchError",
    "TamperedError",
    "error_from",
    "error_from_http",
]


class SandboxError(Exception):
    """
    The base of every error the SDK raises.
    """

    def __init__(self, code, message, status=None, details=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.details = dict(details or {})

    def __str__(self):
        return self.message

    def __repr__(self):
        return f"{type(self).__name__}({self.code!r}, {self.message!r})"


class InvalidEndpointError(SandboxError, ValueError):
    """
    ``SANDBOX_ENDPOINT`` or ``endpoint=`` is not ``unix://``, ``http://`` or
    ``https://``.
    """

    def __init__(self, message):
        super().__init__("INVALID_ENDPOINT", message)


class DaemonUnavailableError(SandboxError, ConnectionError):
    """
    The daemon cannot be reached at ``endpoint`` (not running, wrong path,
    permission denied, TLS failure, connection dropped mid-request).
    """

    def __init__(self, endpoint, reason):
        super().__init__(
            "DAEMON_UNAVAILABLE", f"cannot connect to the daemon at {endpoint}: {reason}"
        )
        self.endpoint = endpoint
        self.reason = reason


class InvalidRequestError(SandboxError):
    """
    The request was refused as malformed or beyond a limit: ``INVALID_BODY``,
    ``INVALID_FIELD``, ``LIMIT_EXCEEDED``, ``METHOD_NOT_ALLOWED``,
    ``BAD_PARAMS``, ``UNKNOWN_METHOD``, ``ENOTTY`` (resizing a process
    without a pty).
    """


class NotFoundError(SandboxError):
    """
    ``SANDBOX_NOT_FOUND``, ``UNKNOWN_PROFILE``, ``NOT_FOUND`` (no such route),
    ``ESRCH`` (no such process), and ``ENOENT`` (see PathNotFoundError).
    """


class CapacityError(SandboxError):
    """
    ``AT_CAPACITY``: the daemon holds its maximum of sandboxes.
    ``retry_after`` is the ``Retry-After`` delay in seconds, or None.
    """

    def __init__(self, code, message, status=None, details=None, retry_after=None):
        super().__init__(code, message, status, details)
        self.retry_after = retry_after


class RateLimitedError(CapacityError):
    """
    ``RATE_LIMITED`` (429): this caller created more sandboxes in the last
    minute than the daemon allows.  ``retry_after`` is the ``Retry-After``
    delay in seconds.
    """


class ServerError(SandboxError):
    """
    The daemon failed: ``INTERNAL`` (a bug), ``RUNTIME_ERROR`` (the container
    engine), or any other 5xx.
    """


class SandboxUnavailableError(SandboxError):
    """
    The session is gone: ``SANDBOX_UNAVAILABLE`` (agent lost, sandbox
    destroyed) or the WebSocket closed.  Every pending call of the session
    fails with it at once.
    """


class SandboxPausedError(SandboxUnavailableError):
    """
    The sandbox is paused (``SANDBOX_PAUSED``): resume it first.
    """


class FileError(SandboxError):
    """
    A file operation failed with a POSIX code (``EISDIR``, ``EACCES``,
    ``ENOTDIR``, ``ENOSPC``, ...); ``path`` names the file when known.
    """

    @property
    def path(self):
        return self.details.get("path")


class PathNotFoundError(FileError, NotFoundError):
    """
    ``ENOENT``: the file, directory or command does not exist.
    """


class ProtocolError(SandboxError):
    """
    A wire protocol violation (``BAD_PAYLOAD``, ``WINDOW_EXCEEDED``,
    ``STREAM_IN_USE``, ...) by either side.
    """


class SandboxTimeoutError(SandboxError, TimeoutError):
    """
    ``TIMEOUT``, or the daemon did not answer within the client's timeout.
    """


class RequestCancelledError(SandboxError):
    """
    ``CANCELLED``: the request was cancelled before it finished.
    """


class EncryptionError(SandboxUnavailableError):
    """
    An end-to-end encrypted session failed (an ``E2E_*`` code,
    docs/security.md); the session is over.
    """


class IdentityMismatchError(EncryptionError):
    """
    ``E2E_IDENTITY_MISMATCH``: the agent's key is not the pinned one.
    """


class TamperedError(EncryptionError):
    """
    A sealed frame was changed, dropped, replayed, reordered or sent in
    clear on the way (``E2E_TAMPERED``, ``E2E_REPLAYED``,
    ``E2E_UNSEALED``).
    """


class NetworkError(SandboxError):
    """
    ``net.fetch`` failed: ``CONNECTION_REFUSED``, ``HOST_NOT_FOUND``,
    ``TLS_ERROR``, ``TOO_MANY_REDIRECTS``, ``NET_ERROR``, ``EGRESS_DENIED``
    (the sandbox's network policy refused it at the daemon's egress proxy)
    (``TIMEOUT`` is a SandboxTimeoutError).  ``details["url"]`` is the URL.
    """


_POSIX = frozenset(
    "ENOENT EACCES EPERM EISDIR ENOTDIR EEXIST ENOSPC EROFS ENAMETOOLONG ELOOP "
    "EINVAL EIO ENOTEMPTY EBUSY EXDEV ETXTBSY EMFILE EFBIG EDQUOT UNSAFE_PATH BAD_ARCHIVE".split()
)
_PROTOCOL = frozenset(
    "FRAME_TOO_LARGE FRAME_TOO_SHORT UNKNOWN_FRAME_TYPE BAD_FLAGS BAD_PAYLOAD "
    "BAD_STREAM UNEXPECTED_FRAME TRUNCATED VERSION_MISMATCH AUTH_FAILED "
    "STREAM_IN_USE TOO_MANY_STREAMS WINDOW_EXCEEDED".split()
)
_BY_CODE = {
    "INVALID_BODY": InvalidRequestError,
    "INVALID_FIELD": InvalidRequestError,
    "LIMIT_EXCEEDED": InvalidRequestError,
    "METHOD_NOT_ALLOWED": InvalidRequestError,
    "BAD_PARAMS": InvalidRequestError,
    "UNKNOWN_METHOD": InvalidRequestError,
    "SANDBOX_NOT_FOUND": NotFoundError,
    "UNKNOWN_PROFILE": NotFoundError,
    "NOT_FOUND": NotFoundError,
    "AT_CAPACITY": CapacityError,
    "TOO_MANY_TUNNELS": CapacityError,
    "PORT_NOT_READY": SandboxTimeoutError,
    "RATE_LIMITED": RateLimitedError,
    "QUOTA_EXCEEDED": CapacityError,
    "INTERNAL": ServerError,
    "RUNTIME_ERROR": ServerError,
    "SANDBOX_UNAVAILABLE": SandboxUnavailableError,
    "SANDBOX_PAUSED": SandboxPausedError,
    "CLUSTER_UNAVAILABLE": ServerError,
    "TIMEOUT": SandboxTimeoutError,
    "CANCELLED": RequestCancelledError,
    "TOO_MANY_REDIRECTS": NetworkError,
    "CONNECTION_REFUSED": NetworkError,
    "HOST_NOT_FOUND": NetworkError,
    "TLS_ERROR": NetworkError,
    "NET_ERROR": NetworkError,
    "EGRESS_DENIED": NetworkError,
    "NETWORK_UNSUPPORTED": InvalidRequestError,
    "EGRESS_FAILED": ServerError,
    "E2E_HANDSHAKE_FAILED": EncryptionError,
    "E2E_IDENTITY_MISMATCH": IdentityMismatchError,
    "E2E_TAMPERED": TamperedError,
    "E2E_REPLAYED": TamperedError,
    "E2E_UNSEALED": TamperedError,
    "E2E_UNKNOWN_SESSION": EncryptionError,
    "E2E_UNSUPPORTED": EncryptionError,
    "E2E_MALFORMED": EncryptionError,
    "E2E_EXHAUSTED": EncryptionError,
    "ENOENT": PathNotFoundError,
    "ESRCH": NotFoundError,
    "ENOTTY": InvalidRequestError,
}
_BY_STATUS = {400: InvalidRequestError, 404: NotFoundError, 405: InvalidRequestError}


def error_from(code, message, status=None, details=None, retry_after=None):
    """
    The exception for an error ``code`` (falling back on the HTTP ``status``).
    """
    cls = _BY_CODE.get(code)
    if cls is None:
        if code in _POSIX:
            cls = FileError
        elif code in _PROTOCOL:
            cls = ProtocolError
        elif status is not None:
            cls = _BY_STATUS.get(status)
            if cls is None:
                cls = ServerError if status >= 500 else SandboxError
        else:
            cls = SandboxError
    if issubclass(cls, CapacityError):
        return cls(code, message, status, details, retry_after)
    return cls(code, message, status, details)


def error_from_payload(obj, status=None, retry_after=None):
    """
    The exception for an error object ``{"code", "message", ...}``.
    """
    obj = dict(obj)
    code = str(obj.pop("code", "") or "UNKNOWN")
    message = str(obj.pop("message", "") or code)
    return error_from(code, message, status, obj, retry_after)


def error_from_http(status, reason, headers, body):
    """
    The exception for a failed HTTP response (``headers`` lower-case keys).
    Bodies that are not our JSON error shape get the code ``HTTP_<status>``.
    """
    import json

    retry_after = None
    if "retry-after" in headers:
        try:
            retry_after = float(headers["retry-after"])
        except ValueError:
            pass
    try:
        obj = json.loads(body)
        error = obj["error"]
        if isinstance(error, dict) and "code" in error:
            return error_from_payload(error, status, retry_after)
    except (ValueError, KeyError, TypeError):
        pass
    text = body[:200].decode("utf-8", "replace").strip().splitlines()
    message = f"HTTP {status} {reason}" + (f": {text[0]}" if text else "")
    return error_from(f"HTTP_{status}", message, status, None, retry_after)
