package sandbox

// End-to-end encrypted sessions (docs/security.md, docs/protocol.md "Sealed frames"): the client's
// handshake and frame sealing, byte for byte what agent/e2e.py and agent/e2e_frames.py do. X25519 and
// HKDF come from golang.org/x/crypto (vendored from Debian's golang-golang-x-crypto-dev: Go 1.19 has
// neither), AES-256-GCM from the standard library.

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"sync"

	"golang.org/x/crypto/curve25519"
	"golang.org/x/crypto/hkdf"
)

const (
	// Sealed is the flag bit of a frame sealed end to end.
	Sealed      = 0x80
	e2eVersion  = 1
	e2eOverhead = 24
	rekeyShift  = 16
)

var (
	e2eLabel   = []byte("sandboxd-e2e-v1")
	e2eADLabel = []byte("sbx-e2e1")
	// E2ECodes are the codes that end an encrypted session.
	E2ECodes = set("E2E_HANDSHAKE_FAILED E2E_IDENTITY_MISMATCH E2E_TAMPERED E2E_REPLAYED E2E_UNSEALED " +
		"E2E_UNKNOWN_SESSION E2E_UNSUPPORTED E2E_MALFORMED E2E_EXHAUSTED")
	relayCodes = set("SANDBOX_UNAVAILABLE STREAM_IN_USE TOO_MANY_STREAMS")
)

func e2eErr(code, format string, args ...interface{}) *Error {
	return &Error{Kind: KindEncryption, Code: code, Message: fmt.Sprintf(format, args...), Details: map[string]interface{}{}}
}

// Fingerprint is "sha256:" and the hex SHA-256 of a 32-byte public key.
func Fingerprint(public []byte) string {
	sum := sha256.Sum256(public)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func normalisePin(pin string) (string, error) {
	text := strings.TrimPrefix(strings.ToLower(strings.TrimSpace(pin)), "sha256:")
	if raw, err := hex.DecodeString(text); err != nil || len(raw) != 32 {
		return "", e2eErr("E2E_IDENTITY_MISMATCH", "%q is not a key fingerprint", pin)
	}
	return "sha256:" + text, nil
}

// ClientHandshake is the client's half of e2e.hello.
type ClientHandshake struct {
	sandboxID string
	pin       string
	private   []byte
	ClientKey []byte
}

// NewClientHandshake makes an ephemeral key (private, 32 bytes, fixes it: for test vectors only).
func NewClientHandshake(sandboxID, pin string, private []byte) (*ClientHandshake, error) {
	h := &ClientHandshake{sandboxID: sandboxID}
	if pin != "" {
		p, err := normalisePin(pin)
		if err != nil {
			return nil, err
		}
		h.pin = p
	}
	if private == nil {
		private = make([]byte, 32)
		if _, err := io.ReadFull(rand.Reader, private); err != nil {
			return nil, err
		}
	}
	public, err := curve25519.X25519(private, curve25519.Basepoint)
	if err != nil {
		return nil, err
	}
	h.private, h.ClientKey = private, public
	return h, nil
}

// Hello is e2e.hello's params.
func (h *ClientHandshake) Hello() map[string]interface{} {
	return map[string]interface{}{"version": e2eVersion, "sandbox": h.sandboxID, "client_key": hex.EncodeToString(h.ClientKey)}
}

func hexField(result map[string]interface{}, key string, size int) ([]byte, error) {
	s, _ := result[key].(string)
	raw, err := hex.DecodeString(s)
	if err != nil || len(raw) != size {
		return nil, e2eErr("E2E_HANDSHAKE_FAILED", "%s must be %d bytes in hex", key, size)
	}
	return raw, nil
}

// Finish checks the agent's answer (and the pin) and returns the session's Sealing.
func (h *ClientHandshake) Finish(result map[string]interface{}) (*Sealing, error) {
	if fmt.Sprint(result["version"]) != fmt.Sprint(e2eVersion) {
		return nil, e2eErr("E2E_HANDSHAKE_FAILED", "the agent's hello has another version")
	}
	var fields [4][]byte
	for i, f := range []struct {
		key  string
		size int
	}{{"session", 16}, {"agent_key", 32}, {"identity", 32}, {"confirm", 32}} {
		raw, err := hexField(result, f.key, f.size)
		if err != nil {
			return nil, err
		}
		fields[i] = raw
	}
	session, agentKey, identity, confirm := fields[0], fields[1], fields[2], fields[3]
	seen := Fingerprint(identity)
	if h.pin != "" && seen != h.pin {
		return nil, e2eErr("E2E_IDENTITY_MISMATCH", "the agent's key is %s, not the pinned %s", seen, h.pin)
	}
	sid := []byte(h.sandboxID)
	th := sha256.New()
	th.Write(e2eLabel)
	_ = binary.Write(th, binary.BigEndian, uint16(len(sid)))
	for _, part := range [][]byte{sid, h.ClientKey, session, agentKey, identity} {
		th.Write(part)
	}
	transcript := th.Sum(nil)
	ee, err1 := curve25519.X25519(h.private, agentKey)
	es, err2 := curve25519.X25519(h.private, identity)
	if err1 != nil || err2 != nil {
		return nil, e2eErr("E2E_HANDSHAKE_FAILED", "bad agent key")
	}
	okm := make([]byte, 96)
	if _, err := io.ReadFull(hkdf.New(sha256.New, append(ee, es...), transcript, append(append([]byte{}, e2eLabel...), " keys"...)), okm); err != nil {
		return nil, err
	}
	mac := hmac.New(sha256.New, okm[64:])
	mac.Write([]byte("agent confirms"))
	mac.Write(transcript)
	if subtle.ConstantTimeCompare(mac.Sum(nil), confirm) != 1 {
		return nil, e2eErr("E2E_HANDSHAKE_FAILED", "the agent did not confirm the keys")
	}
	return &Sealing{
		fingerprint: seen, session: session,
		send: newKeys(okm[:32]), recv: newKeys(okm[32:64]), sent: -1, received: -1,
		streams: map[uint32]*sealedStream{},
	}, nil
}

// expand is HKDF-Expand for one 32-byte block.
func expand(secret []byte, info string) []byte {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(info))
	mac.Write([]byte{1})
	return mac.Sum(nil)
}

type epochKeys struct {
	secret []byte
	epoch  int64
	aead   cipher.AEAD
}

func newKeys(secret []byte) *epochKeys {
	k := &epochKeys{secret: secret}
	k.aead = gcm(expand(secret, "key"))
	return k
}

func gcm(key []byte) cipher.AEAD {
	block, _ := aes.NewCipher(key)
	a, _ := cipher.NewGCM(block)
	return a
}

func (k *epochKeys) at(epoch int64) (cipher.AEAD, []byte) {
	if epoch == k.epoch {
		return k.aead, k.secret
	}
	secret := k.secret
	for e := k.epoch; e < epoch; e++ {
		secret = expand(secret, "next")
	}
	return gcm(expand(secret, "key")), secret
}

type sealedStream struct{ lstream, sent, received uint64 }

// Sealing seals and opens one encrypted session's frames, keyed by the client's stream ids.
type Sealing struct {
	mu          sync.Mutex // the reader opens while writers seal
	fingerprint string
	session     []byte
	send, recv  *epochKeys
	sent        int64
	received    int64
	streams     map[uint32]*sealedStream
	failure     *Error
}

// Fingerprint is the agent key the session agreed.
func (s *Sealing) Fingerprint() string { return s.fingerprint }

func nonce(n uint64) []byte {
	out := make([]byte, 12)
	binary.BigEndian.PutUint64(out[4:], n)
	return out
}

func associated(t FrameType, flags byte, lstream, index uint64, extra []byte) []byte {
	out := make([]byte, 26, 26+len(extra))
	copy(out, e2eADLabel)
	out[8], out[9] = byte(t), flags|Sealed
	binary.BigEndian.PutUint64(out[10:], lstream)
	binary.BigEndian.PutUint64(out[18:], index)
	return append(out, extra...)
}

func (s *Sealing) seal(t FrameType, flags byte, lstream, index uint64, plaintext, prefix []byte) []byte {
	n := s.sent + 1
	epoch := n >> rekeyShift
	if epoch != s.send.epoch {
		s.send.aead, s.send.secret = s.send.at(epoch)
		s.send.epoch = epoch
	}
	s.sent = n
	out := make([]byte, 0, len(prefix)+e2eOverhead+len(plaintext))
	out = append(out, prefix...)
	out = binary.BigEndian.AppendUint64(out, uint64(n))
	return s.send.aead.Seal(out, nonce(uint64(n)), plaintext, associated(t, flags, lstream, index, prefix))
}

// Seal turns an encoded frame into the one to send (sealed, or as it was for frames that stay clear).
func (s *Sealing) Seal(frame []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failure != nil {
		return nil, s.failure
	}
	t, flags, id := FrameType(frame[4]), frame[5], binary.BigEndian.Uint32(frame[6:])
	payload := frame[HeaderSize:]
	sealable := t == FrameRequest || t == FrameData || t == FrameEnd || t == FrameResult || t == FrameEvent || t == FrameError
	if !sealable || id == 0 {
		return frame, nil
	}
	var sealed []byte
	if t == FrameRequest {
		obj, err := DecodeJSON(payload, id)
		if err != nil {
			return nil, err
		}
		method, _ := obj["method"].(string)
		if len(method) > 255 {
			method = method[:255]
		}
		n := uint64(s.sent + 1)
		prefix := append(append(append([]byte{e2eVersion}, s.session...), byte(len(method))), method...)
		sealed = s.seal(t, flags, n, 0, payload, prefix)
		s.streams[id] = &sealedStream{lstream: n, sent: 1}
	} else {
		st := s.streams[id]
		if st == nil {
			return frame, nil
		}
		sealed = s.seal(t, flags, st.lstream, st.sent, payload, nil)
		st.sent++
	}
	return Encode(t, id, sealed, flags|Sealed)
}

func (s *Sealing) fail(code, format string, args ...interface{}) error {
	s.failure = e2eErr(code, format, args...)
	return s.failure
}

// Open turns a received frame into its plaintext (nil: ignore it); an error ends the session.
func (s *Sealing) Open(f *Frame) (*Frame, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failure != nil {
		return nil, s.failure
	}
	if f.Flags&Sealed == 0 {
		if f.Stream == 0 || f.Type == FrameWindow || f.Type == FrameCancel {
			return f, nil
		}
		if f.Type == FrameError {
			obj, _ := DecodeJSON(f.Payload, f.Stream)
			code, _ := obj["code"].(string)
			if E2ECodes[code] {
				return nil, s.fail(code, "the agent ended the encrypted session: %v", obj["message"])
			}
			if s.streams[f.Stream] == nil || relayCodes[code] {
				delete(s.streams, f.Stream)
				return f, nil
			}
		}
		if s.streams[f.Stream] == nil || f.Type == FrameEvent {
			return nil, nil
		}
		return nil, s.fail("E2E_UNSEALED", "%s on an encrypted stream came in clear", f.Type)
	}
	st := s.streams[f.Stream]
	if st == nil {
		return nil, nil
	}
	if len(f.Payload) < e2eOverhead {
		return nil, s.fail("E2E_MALFORMED", "a sealed payload of %d bytes", len(f.Payload))
	}
	n := int64(binary.BigEndian.Uint64(f.Payload))
	if n <= s.received || uint64(n) > 1<<63-1 {
		return nil, s.fail("E2E_REPLAYED", "frame counter %d is not above %d: replayed or reordered", n, s.received)
	}
	if n-s.received > 1<<rekeyShift {
		return nil, s.fail("E2E_REPLAYED", "frame counter %d jumps past %d", n, s.received)
	}
	flags := f.Flags &^ Sealed
	epoch := n >> rekeyShift
	aead, secret := s.recv.at(epoch)
	plain, err := aead.Open(nil, nonce(uint64(n)), f.Payload[8:], associated(f.Type, flags, st.lstream, st.received, nil))
	if err != nil {
		return nil, s.fail("E2E_TAMPERED", "sealed frame %d failed authentication (changed, dropped, reordered or moved to another stream)", n)
	}
	if epoch != s.recv.epoch {
		s.recv.aead, s.recv.secret, s.recv.epoch = aead, secret, epoch
	}
	s.received = n
	st.received++
	if f.Type == FrameResult || f.Type == FrameError {
		delete(s.streams, f.Stream)
	}
	return &Frame{Type: f.Type, Flags: flags, Stream: f.Stream, Payload: plain}, nil
}

// Forget drops a stream the client gave up on.
func (s *Sealing) Forget(id uint32) {
	s.mu.Lock()
	delete(s.streams, id)
	s.mu.Unlock()
}
