package sandbox

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Kind is an error's family (docs/sdk.md, "Errors"; tests/conformance/README.md).
type Kind string

const (
	KindInvalidRequest     Kind = "invalid_request"
	KindNotFound           Kind = "not_found"
	KindPathNotFound       Kind = "path_not_found"
	KindFile               Kind = "file"
	KindCapacity           Kind = "capacity"
	KindRateLimited        Kind = "rate_limited"
	KindServer             Kind = "server"
	KindSandboxUnavailable Kind = "sandbox_unavailable"
	KindProtocol           Kind = "protocol"
	KindTimeout            Kind = "timeout"
	KindCancelled          Kind = "cancelled"
	KindNetwork            Kind = "network"
	KindSandbox            Kind = "sandbox"
	KindInvalidEndpoint    Kind = "invalid_endpoint"
	KindDaemonUnavailable  Kind = "daemon_unavailable"
	KindProcessExited      Kind = "process_exited"
	// KindEncryption: an end-to-end encrypted session failed (E2E_* codes); it is over.
	KindEncryption Kind = "encryption"
)

// Error is every error the SDK returns about the daemon or the sandbox:
// errors.As(err, &e) with e *sandbox.Error, then e.Kind or e.Code.
type Error struct {
	Kind       Kind
	Code       string
	Message    string
	Status     int // HTTP status, 0 for session errors
	Details    map[string]interface{}
	RetryAfter float64 // seconds from Retry-After, 0 if none
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Path is the "path" detail of a file error.
func (e *Error) Path() string { s, _ := e.Details["path"].(string); return s }

// IsKind reports whether err is a *Error of kind k (a PathNotFound is also a File and a NotFound).
func IsKind(err error, k Kind) bool {
	e, ok := err.(*Error)
	if !ok {
		return false
	}
	if e.Kind == k {
		return true
	}
	switch e.Kind {
	case KindPathNotFound:
		return k == KindFile || k == KindNotFound || k == KindSandbox
	case KindRateLimited:
		return k == KindCapacity || k == KindSandbox
	}
	return k == KindSandbox
}

var posixCodes = set("ENOENT EACCES EPERM EISDIR ENOTDIR EEXIST ENOSPC EROFS ENAMETOOLONG ELOOP " +
	"EINVAL EIO ENOTEMPTY EBUSY EXDEV ETXTBSY EMFILE EFBIG EDQUOT UNSAFE_PATH BAD_ARCHIVE")
var protocolCodes = set("FRAME_TOO_LARGE FRAME_TOO_SHORT UNKNOWN_FRAME_TYPE BAD_FLAGS BAD_PAYLOAD " +
	"BAD_STREAM UNEXPECTED_FRAME TRUNCATED VERSION_MISMATCH AUTH_FAILED STREAM_IN_USE TOO_MANY_STREAMS WINDOW_EXCEEDED")

func set(s string) map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(s) {
		m[w] = true
	}
	return m
}

var byCode = map[string]Kind{
	"INVALID_BODY": KindInvalidRequest, "INVALID_FIELD": KindInvalidRequest, "LIMIT_EXCEEDED": KindInvalidRequest,
	"METHOD_NOT_ALLOWED": KindInvalidRequest, "BAD_PARAMS": KindInvalidRequest, "UNKNOWN_METHOD": KindInvalidRequest,
	"SANDBOX_NOT_FOUND": KindNotFound, "UNKNOWN_PROFILE": KindNotFound, "NOT_FOUND": KindNotFound,
	"AT_CAPACITY": KindCapacity, "TOO_MANY_TUNNELS": KindCapacity, "PORT_NOT_READY": KindTimeout,
	"RATE_LIMITED": KindRateLimited, "QUOTA_EXCEEDED": KindCapacity, "INTERNAL": KindServer, "RUNTIME_ERROR": KindServer,
	"SANDBOX_UNAVAILABLE": KindSandboxUnavailable, "SANDBOX_PAUSED": KindSandboxUnavailable, "TIMEOUT": KindTimeout, "CANCELLED": KindCancelled,
	"TOO_MANY_REDIRECTS": KindNetwork, "CONNECTION_REFUSED": KindNetwork, "HOST_NOT_FOUND": KindNetwork,
	"TLS_ERROR": KindNetwork, "NET_ERROR": KindNetwork, "ENOENT": KindPathNotFound, "ESRCH": KindNotFound,
	"EGRESS_DENIED": KindNetwork, "NETWORK_UNSUPPORTED": KindInvalidRequest, "EGRESS_FAILED": KindServer,
	"ENOTTY":               KindInvalidRequest,
	"E2E_HANDSHAKE_FAILED": KindEncryption, "E2E_IDENTITY_MISMATCH": KindEncryption, "E2E_TAMPERED": KindEncryption,
	"E2E_REPLAYED": KindEncryption, "E2E_UNSEALED": KindEncryption, "E2E_UNKNOWN_SESSION": KindEncryption,
	"E2E_UNSUPPORTED": KindEncryption, "E2E_MALFORMED": KindEncryption, "E2E_EXHAUSTED": KindEncryption,
}

// ErrorFrom is the error for code (falling back on the HTTP status when not 0).
func ErrorFrom(code, message string, status int, details map[string]interface{}) *Error {
	kind, ok := byCode[code]
	if !ok {
		switch {
		case posixCodes[code]:
			kind = KindFile
		case protocolCodes[code]:
			kind = KindProtocol
		case status == 400 || status == 405:
			kind = KindInvalidRequest
		case status == 404:
			kind = KindNotFound
		case status >= 500:
			kind = KindServer
		default:
			kind = KindSandbox
		}
	}
	if details == nil {
		details = map[string]interface{}{}
	}
	return &Error{Kind: kind, Code: code, Message: message, Status: status, Details: details}
}

// ErrorFromPayload is the error for an error object {code, message, ...details}.
func ErrorFromPayload(obj map[string]interface{}, status int) *Error {
	details := map[string]interface{}{}
	code, message := "", ""
	for k, v := range obj {
		switch k {
		case "code":
			code = fmt.Sprint(v)
		case "message":
			message = fmt.Sprint(v)
		default:
			details[k] = v
		}
	}
	if code == "" {
		code = "UNKNOWN"
	}
	if message == "" {
		message = code
	}
	return ErrorFrom(code, message, status, details)
}

// ErrorFromHTTP is the error for a failed HTTP answer.
func ErrorFromHTTP(status int, reason string, retryAfter string, body []byte) *Error {
	var e *Error
	var obj struct {
		Error map[string]interface{} `json:"error"`
	}
	if json.Unmarshal(body, &obj) == nil && obj.Error != nil && obj.Error["code"] != nil {
		e = ErrorFromPayload(obj.Error, status)
	} else {
		text := string(body)
		if len(text) > 200 {
			text = text[:200]
		}
		msg := fmt.Sprintf("HTTP %d %s", status, reason)
		if first := strings.SplitN(strings.TrimSpace(text), "\n", 2)[0]; first != "" {
			msg += ": " + first
		}
		e = ErrorFrom(fmt.Sprintf("HTTP_%d", status), msg, status, nil)
	}
	if f, err := strconv.ParseFloat(retryAfter, 64); err == nil {
		e.RetryAfter = f
	}
	return e
}
