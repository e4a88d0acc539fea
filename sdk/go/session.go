package sandbox

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/gorilla/websocket"
)

// session is one WebSocket with a sandbox: stream multiplexing and flow control
// (docs/protocol.md, "Requests and streams" and the client checklist).
type session struct {
	ws      *websocket.Conn
	id      string
	writeMu sync.Mutex
	mu      sync.Mutex
	streams map[uint32]*stream
	nextID  uint32
	slots   chan struct{}
	err     error
	done    chan struct{}
	// sealed is the encrypted session's Sealing once encrypt agreed keys (else nil).
	sealed atomic.Pointer[Sealing]
}

func openSession(ctx context.Context, c *Client, id string) (*session, error) {
	d := websocket.Dialer{NetDialContext: c.dial, TLSClientConfig: c.tls, HandshakeTimeout: c.timeout, Proxy: nil,
		ReadBufferSize: 64 << 10, WriteBufferSize: 64 << 10}
	scheme := "ws"
	if c.Endpoint.Scheme == "https" {
		scheme = "wss"
	}
	host := c.Endpoint.Host
	u := fmt.Sprintf("%s://%s%s%s/ws", scheme, host, c.Endpoint.Prefix, sid(id))
	h := http.Header{"User-Agent": {UserAgent}}
	if c.Auth != "" {
		h.Set("Authorization", "Bearer "+c.Auth)
	}
	ws, res, err := d.DialContext(ctx, u, h)
	if err != nil {
		if res != nil {
			body, _ := io.ReadAll(io.LimitReader(res.Body, 1<<16))
			e := ErrorFromHTTP(res.StatusCode, http.StatusText(res.StatusCode), res.Header.Get("Retry-After"), body)
			if res.StatusCode == 404 && e.Code == "HTTP_404" {
				e = ErrorFrom("SANDBOX_NOT_FOUND", "sandbox "+id+" not found", 404, nil)
			}
			return nil, e
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &Error{Kind: KindDaemonUnavailable, Code: "DAEMON_UNAVAILABLE", Message: fmt.Sprintf("cannot open a session at %s: %v", c.Endpoint.URL, err)}
	}
	ws.SetReadLimit(MaxPayload + HeaderSize)
	s := &session{ws: ws, id: id, streams: map[uint32]*stream{}, nextID: 1, slots: make(chan struct{}, MaxStreams), done: make(chan struct{})}
	go s.readLoop()
	return s, nil
}

func (s *session) send(frame []byte) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if err := s.failure(); err != nil {
		return err
	}
	if sealing := s.sealed.Load(); sealing != nil {
		sealed, err := sealing.Seal(frame)
		if err != nil {
			if e, ok := err.(*Error); ok && e.Kind == KindEncryption {
				go s.endEncrypted(e)
			}
			return err
		}
		frame = sealed
	}
	if err := s.ws.WriteMessage(websocket.BinaryMessage, frame); err != nil {
		return unavailable("cannot write to the session: " + err.Error())
	}
	return nil
}

func unavailable(msg string) *Error {
	return &Error{Kind: KindSandboxUnavailable, Code: "SANDBOX_UNAVAILABLE", Message: msg, Details: map[string]interface{}{}}
}

func (s *session) failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// open sends REQUEST method on a fresh stream id.
func (s *session) open(ctx context.Context, method string, params map[string]interface{}) (*stream, error) {
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.done:
		return nil, s.failure()
	}
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		<-s.slots
		return nil, s.err
	}
	id := s.nextID
	for s.streams[id] != nil {
		id = nextStreamID(id)
	}
	s.nextID = nextStreamID(id)
	st := newStream(s, id)
	s.streams[id] = st
	s.mu.Unlock()
	if params == nil {
		params = map[string]interface{}{}
	}
	frame, err := EncodeJSON(FrameRequest, id, map[string]interface{}{"method": method, "params": params})
	if err == nil {
		err = s.send(frame)
	}
	if err != nil {
		s.release(st)
		return nil, err
	}
	return st, nil
}

// nextStreamID: odd ids, wrapping from 2^32-1 back to 1.
func nextStreamID(id uint32) uint32 {
	if id >= MaxStreamID-1 {
		return 1
	}
	return id + 2
}

func (s *session) call(ctx context.Context, method string, params map[string]interface{}) (map[string]interface{}, error) {
	st, err := s.open(ctx, method, params)
	if err != nil {
		return nil, err
	}
	return st.result(ctx)
}

// destroySandbox destroys the sandbox over this session (sandbox.destroy, which the daemon answers
// itself: no HTTP request). False when it cannot: the session is encrypted or gone, or an older
// daemon relays the method to the agent (UNKNOWN_METHOD).
func (s *session) destroySandbox(ctx context.Context) (bool, error) {
	if s.sealed.Load() != nil || s.failure() != nil {
		return false, nil
	}
	_, err := s.call(ctx, "sandbox.destroy", nil)
	if e, ok := err.(*Error); ok && (e.Kind == KindSandboxUnavailable || e.Code == "UNKNOWN_METHOD") {
		return false, nil
	}
	return err == nil, err
}

func (s *session) release(st *stream) {
	s.mu.Lock()
	if s.streams[st.id] == st {
		delete(s.streams, st.id)
		<-s.slots
	}
	s.mu.Unlock()
	if sealing := s.sealed.Load(); sealing != nil {
		sealing.Forget(st.id)
	}
}

// encrypt agrees keys with the agent (e2e.hello, docs/security.md) and seals every later frame;
// pin ("sha256:...") refuses any other agent key.
func (s *session) encrypt(ctx context.Context, pin string) error {
	hello, err := NewClientHandshake(s.id, pin, nil)
	if err != nil {
		return err
	}
	result, err := s.call(ctx, "e2e.hello", hello.Hello())
	if err != nil {
		return err
	}
	sealing, err := hello.Finish(result)
	if err != nil {
		if e, ok := err.(*Error); ok {
			e.Message = fmt.Sprintf("sandbox %s: %s", s.id, e.Message)
		}
		return err
	}
	s.writeMu.Lock()
	s.sealed.Store(sealing)
	s.writeMu.Unlock()
	return nil
}

// endEncrypted fails every call with the session's encryption error and closes it.
func (s *session) endEncrypted(e *Error) {
	s.fail(e)
	_ = s.ws.Close()
}

func (s *session) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
		close(s.done)
	}
	streams := s.streams
	s.streams = map[uint32]*stream{}
	s.mu.Unlock()
	for _, st := range streams {
		st.fail(s.err)
	}
}

func (s *session) readLoop() {
	for {
		kind, data, err := s.readMessage()
		if err != nil {
			why := "the connection dropped"
			if ce, ok := err.(*websocket.CloseError); ok {
				switch ce.Code {
				case 1000:
					why = "the sandbox was destroyed or the session closed"
				case 1011:
					why = "the sandbox's agent was lost"
				default:
					why = fmt.Sprintf("the WebSocket closed (%d %s)", ce.Code, ce.Text)
				}
			}
			s.fail(unavailable(fmt.Sprintf("session of sandbox %s ended: %s", s.id, why)))
			return
		}
		var f *Frame
		if kind != websocket.BinaryMessage {
			err = wireErr("BAD_PAYLOAD", 0, "a text message")
		} else {
			f, err = DecodeOne(data)
		}
		if err != nil {
			we := err.(*WireError)
			s.fail(&Error{Kind: KindProtocol, Code: we.Code, Message: "the daemon sent a bad frame: " + we.Message})
			s.ws.Close()
			return
		}
		if sealing := s.sealed.Load(); sealing != nil {
			opened, err := sealing.Open(f)
			if err != nil {
				if e, ok := err.(*Error); ok {
					e.Message = fmt.Sprintf("sandbox %s: %s", s.id, e.Message)
					s.endEncrypted(e)
				} else {
					s.endEncrypted(e2eErr("E2E_MALFORMED", "sandbox %s: %v", s.id, err))
				}
				return
			}
			if opened == nil {
				continue
			}
			f = opened
		}
		if f.Stream == 0 {
			if f.Type == FramePing {
				if b, err := Encode(FramePong, 0, f.Payload, 0); err == nil {
					go s.send(b)
				}
			} else if f.Type == FrameError {
				obj, _ := DecodeJSON(f.Payload, 0)
				s.fail(&Error{Kind: KindSandboxUnavailable, Code: "SANDBOX_UNAVAILABLE", Message: fmt.Sprintf("the daemon ended the session: %v: %v", obj["code"], obj["message"]), Details: obj})
			}
			continue
		}
		s.mu.Lock()
		st := s.streams[f.Stream]
		s.mu.Unlock()
		if st != nil {
			st.push(f)
		}
	}
}

// readMessage reads one WebSocket message into a buffer of the frame's exact
// size (the length field says it), not a growing one.
func (s *session) readMessage() (int, []byte, error) {
	kind, r, err := s.ws.NextReader()
	if err != nil {
		return kind, nil, err
	}
	head := make([]byte, HeaderSize)
	n, err := io.ReadFull(r, head)
	if err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return kind, head[:n], nil // too short: DecodeOne says TRUNCATED
		}
		return kind, nil, err
	}
	length := binary.BigEndian.Uint32(head)
	if length < 6 || length-6 > MaxPayload {
		return kind, head, nil // DecodeOne names the error
	}
	data := make([]byte, 4+int(length), 4+int(length)+1)
	copy(data, head)
	n, err = io.ReadFull(r, data[HeaderSize:])
	if err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return kind, data[:HeaderSize+n], nil
		}
		return kind, nil, err
	}
	var extra [1]byte
	if m, _ := r.Read(extra[:]); m > 0 {
		data = append(data, extra[0]) // more than one frame: DecodeOne says BAD_PAYLOAD
	}
	return kind, data, nil
}

func (s *session) close() error {
	s.writeMu.Lock()
	_ = s.ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""))
	s.writeMu.Unlock()
	s.fail(unavailable("the session was closed"))
	return s.ws.Close()
}
