package sandbox

// The agent wire protocol, version 1 (docs/protocol.md): the frame codec.
// Every frame: u32 length (6 + payload), u8 type, u8 flags, u32 stream, payload.

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

const (
	WireVersion   = 1
	HeaderSize    = 10
	MaxPayload    = 1 << 20
	MaxJSON       = 256 * 1024
	ChunkSize     = 256 * 1024
	InitialWindow = 4 * 1024 * 1024
	MaxStreams    = 1024
	MaxStreamID   = 0xFFFFFFFF
)

// FrameType is the type byte of a frame.
type FrameType byte

const (
	FrameHello   FrameType = 0x01
	FrameAuth    FrameType = 0x02
	FrameReady   FrameType = 0x03
	FramePing    FrameType = 0x04
	FramePong    FrameType = 0x05
	FrameRequest FrameType = 0x10
	FrameData    FrameType = 0x11
	FrameEnd     FrameType = 0x12
	FrameResult  FrameType = 0x13
	FrameError   FrameType = 0x14
	FrameCancel  FrameType = 0x15
	FrameWindow  FrameType = 0x16
	FrameEvent   FrameType = 0x17
)

// FrameTypes names every frame type.
var FrameTypes = map[string]FrameType{
	"HELLO": FrameHello, "AUTH": FrameAuth, "READY": FrameReady, "PING": FramePing, "PONG": FramePong,
	"REQUEST": FrameRequest, "DATA": FrameData, "END": FrameEnd, "RESULT": FrameResult, "ERROR": FrameError,
	"CANCEL": FrameCancel, "WINDOW": FrameWindow, "EVENT": FrameEvent,
}

func (t FrameType) String() string {
	for name, v := range FrameTypes {
		if v == t {
			return name
		}
	}
	return fmt.Sprintf("0x%02x", byte(t))
}

func (t FrameType) known() bool {
	return (t >= FrameHello && t <= FramePong) || (t >= FrameRequest && t <= FrameEvent)
}

func (t FrameType) isJSON() bool {
	switch t {
	case FrameHello, FrameAuth, FrameReady, FrameRequest, FrameResult, FrameError, FrameEvent:
		return true
	}
	return false
}

// Frame is one decoded frame.
type Frame struct {
	Type    FrameType
	Flags   byte
	Stream  uint32
	Payload []byte
}

// WireError is a framing violation; Code is the protocol's error code.
type WireError struct {
	Code    string
	Message string
	Stream  uint32
}

func (e *WireError) Error() string { return e.Code + ": " + e.Message }

func wireErr(code string, stream uint32, format string, args ...interface{}) *WireError {
	return &WireError{Code: code, Message: fmt.Sprintf(format, args...), Stream: stream}
}

// Encode returns the bytes of one frame.
func Encode(t FrameType, stream uint32, payload []byte, flags byte) ([]byte, error) {
	if len(payload) > MaxPayload {
		return nil, wireErr("FRAME_TOO_LARGE", stream, "payload of %d bytes exceeds %d", len(payload), MaxPayload)
	}
	out := make([]byte, HeaderSize+len(payload))
	binary.BigEndian.PutUint32(out, uint32(len(payload)+6))
	out[4] = byte(t)
	out[5] = flags
	binary.BigEndian.PutUint32(out[6:], stream)
	copy(out[HeaderSize:], payload)
	return out, nil
}

// EncodeJSON returns the bytes of a frame whose payload is v as JSON.
func EncodeJSON(t FrameType, stream uint32, v interface{}) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	payload := bytes.TrimRight(buf.Bytes(), "\n")
	if len(payload) > MaxJSON {
		return nil, wireErr("FRAME_TOO_LARGE", stream, "JSON payload of %d bytes exceeds %d", len(payload), MaxJSON)
	}
	return Encode(t, stream, payload, 0)
}

func checkHeader(length uint32, t FrameType, flags byte, stream uint32) error {
	if length < 6 {
		return wireErr("FRAME_TOO_SHORT", 0, "length field %d is below 6", length)
	}
	size := length - 6
	if size > MaxPayload {
		return wireErr("FRAME_TOO_LARGE", stream, "payload of %d bytes exceeds %d", size, MaxPayload)
	}
	if !t.known() {
		return wireErr("UNKNOWN_FRAME_TYPE", stream, "unknown frame type 0x%02x", byte(t))
	}
	jsonLimit := uint32(MaxJSON)
	if flags&Sealed != 0 && (t == FrameRequest || t == FrameData || t == FrameEnd || t == FrameResult || t == FrameError || t == FrameEvent) {
		flags &^= Sealed
		jsonLimit += 1 + 16 + 1 + 255 + e2eOverhead
	}
	if t == FrameData {
		if flags > 2 {
			return wireErr("BAD_FLAGS", stream, "unknown DATA channel %d", flags)
		}
	} else if flags != 0 {
		return wireErr("BAD_FLAGS", stream, "%s frames carry no flags", t)
	}
	if t <= FramePong {
		if stream != 0 {
			return wireErr("BAD_STREAM", stream, "%s belongs on stream 0", t)
		}
	} else if stream == 0 && t != FrameError {
		return wireErr("BAD_STREAM", 0, "%s needs a stream id above 0", t)
	}
	if t.isJSON() && size > jsonLimit {
		return wireErr("FRAME_TOO_LARGE", stream, "JSON payload of %d bytes exceeds %d", size, jsonLimit)
	}
	return nil
}

// DecodeOne decodes exactly one whole frame from one WebSocket message.
func DecodeOne(data []byte) (*Frame, error) {
	if len(data) >= HeaderSize {
		length := binary.BigEndian.Uint32(data)
		stream := binary.BigEndian.Uint32(data[6:])
		if err := checkHeader(length, FrameType(data[4]), data[5], stream); err != nil {
			return nil, err
		}
		if uint64(len(data)) == uint64(length)+4 {
			return &Frame{FrameType(data[4]), data[5], stream, data[HeaderSize:]}, nil
		}
		if uint64(len(data)) > uint64(length)+4 {
			return nil, wireErr("BAD_PAYLOAD", 0, "message must hold exactly one frame")
		}
	}
	return nil, wireErr("TRUNCATED", 0, "message holds no whole frame")
}

// Framer decodes a byte stream incrementally, holding at most one frame.
type Framer struct{ buf []byte }

// Feed adds bytes and returns the complete frames so far.
func (f *Framer) Feed(data []byte) ([]*Frame, error) {
	f.buf = append(f.buf, data...)
	var frames []*Frame
	off := 0
	for len(f.buf)-off >= HeaderSize {
		b := f.buf[off:]
		length := binary.BigEndian.Uint32(b)
		stream := binary.BigEndian.Uint32(b[6:])
		if err := checkHeader(length, FrameType(b[4]), b[5], stream); err != nil {
			return nil, err
		}
		end := 4 + int(length)
		if end > len(b) {
			break
		}
		payload := append([]byte(nil), b[HeaderSize:end]...)
		frames = append(frames, &Frame{FrameType(b[4]), b[5], stream, payload})
		off += end
	}
	f.buf = append([]byte(nil), f.buf[off:]...)
	return frames, nil
}

// Finish reports a byte stream that ended inside a frame.
func (f *Framer) Finish() error {
	if len(f.buf) > 0 {
		return wireErr("TRUNCATED", 0, "stream ended %d bytes into a frame", len(f.buf))
	}
	return nil
}

// DecodeJSON parses a JSON object payload (BAD_PAYLOAD otherwise).
func DecodeJSON(payload []byte, stream uint32) (map[string]interface{}, error) {
	if !utf8.Valid(payload) {
		return nil, wireErr("BAD_PAYLOAD", stream, "invalid JSON: not UTF-8")
	}
	var v interface{}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil || dec.More() {
		return nil, wireErr("BAD_PAYLOAD", stream, "invalid JSON")
	}
	obj, ok := v.(map[string]interface{})
	if !ok {
		return nil, wireErr("BAD_PAYLOAD", stream, "JSON payload must be an object")
	}
	return obj, nil
}

// WindowIncrement is the credit of a WINDOW frame.
func WindowIncrement(f *Frame) (uint32, error) {
	if len(f.Payload) != 4 {
		return 0, wireErr("BAD_PAYLOAD", f.Stream, "WINDOW payload must be 4 bytes")
	}
	n := binary.BigEndian.Uint32(f.Payload)
	if n == 0 {
		return 0, wireErr("BAD_PAYLOAD", f.Stream, "WINDOW increment must be positive")
	}
	return n, nil
}

func windowFrame(stream uint32, n uint32) []byte {
	p := make([]byte, 4)
	binary.BigEndian.PutUint32(p, n)
	b, _ := Encode(FrameWindow, stream, p, 0)
	return b
}
