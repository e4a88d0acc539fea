package sandbox

// The Go SDK's conformance runner (tests/conformance/README.md):
//   go test -run TestVectors
//   SANDBOX_CONFORMANCE_ENDPOINT=unix:///path.sock go test -run TestScenario -v
//   SANDBOX_CONFORMANCE_ENDPOINT=... SANDBOX_BENCH_MIB=100 go test -run TestBench -v

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

var conformanceDir = filepath.Join("..", "..", "tests", "conformance")

func load(t *testing.T, name string, v interface{}) {
	b, err := os.ReadFile(filepath.Join(conformanceDir, name))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

func partsBytes(c map[string]interface{}, hexKey, partsKey string) []byte {
	parts, ok := c[partsKey].([]interface{})
	if !ok {
		b, _ := hex.DecodeString(c[hexKey].(string))
		return b
	}
	var out []byte
	for _, p := range parts {
		if s, ok := p.(string); ok {
			b, _ := hex.DecodeString(s)
			out = append(out, b...)
		} else {
			run := p.([]interface{})
			out = append(out, bytes.Repeat([]byte{byte(run[0].(float64))}, int(run[1].(float64)))...)
		}
	}
	return out
}

func family(err error) string {
	var e *Error
	if !errors.As(err, &e) {
		return "?"
	}
	return string(e.Kind)
}

func normal(v interface{}) string {
	b, _ := json.Marshal(v)
	var x interface{}
	_ = json.Unmarshal(b, &x)
	b, _ = json.Marshal(x)
	return string(b)
}

// TestVectors: the codec and the error mapping against vectors.json.
func TestVectors(t *testing.T) {
	var v struct {
		Constants    map[string]int
		FrameTypes   map[string]int `json:"frame_types"`
		Encode       []map[string]interface{}
		Decode       []map[string]interface{}
		DecodeErrors []map[string]interface{} `json:"decode_errors"`
		WireErrors   []map[string]interface{} `json:"wire_errors"`
		HTTPErrors   []map[string]interface{} `json:"http_errors"`
		E2E          e2eVectors               `json:"e2e"`
	}
	load(t, "vectors.json", &v)
	consts := map[string]int{"HEADER_SIZE": HeaderSize, "MAX_PAYLOAD": MaxPayload, "MAX_JSON": MaxJSON, "CHUNK_SIZE": ChunkSize,
		"INITIAL_WINDOW": InitialWindow, "MAX_STREAMS": MaxStreams, "MAX_STREAM_ID": MaxStreamID}
	for k, want := range v.Constants {
		if consts[k] != want {
			t.Errorf("constant %s: %d != %d", k, consts[k], want)
		}
	}
	for k, want := range v.FrameTypes {
		if int(FrameTypes[k]) != want {
			t.Errorf("frame type %s", k)
		}
	}
	n := 0
	for _, c := range v.Encode {
		f := c["frame"].(map[string]interface{})
		payload, _ := hex.DecodeString(f["payload_hex"].(string))
		got, err := Encode(FrameTypes[f["type"].(string)], uint32(f["stream"].(float64)), payload, byte(f["flags"].(float64)))
		if err != nil || hex.EncodeToString(got) != c["hex"] {
			t.Errorf("encode %s: %x %v", c["name"], got, err)
		}
		n++
	}
	for _, c := range v.Decode {
		data := partsBytes(c, "hex", "parts")
		var frames []*Frame
		var err error
		if c["stream_bytes"] == true {
			var fr Framer
			if frames, err = fr.Feed(data); err == nil {
				err = fr.Finish()
			}
		} else {
			var f *Frame
			if f, err = DecodeOne(data); err == nil {
				frames = []*Frame{f}
			}
		}
		want := c["frames"].([]interface{})
		if err != nil || len(frames) != len(want) {
			t.Errorf("decode %s: %v", c["name"], err)
			continue
		}
		for i, w := range want {
			wf := w.(map[string]interface{})
			got := frames[i]
			if got.Type.String() != wf["type"] || int(got.Flags) != int(wf["flags"].(float64)) || float64(got.Stream) != wf["stream"].(float64) ||
				!bytes.Equal(got.Payload, partsBytes(wf, "payload_hex", "payload_parts")) {
				t.Errorf("decode %s: frame %d", c["name"], i)
			}
		}
		if j, ok := c["json"]; ok {
			obj, err := DecodeJSON(frames[0].Payload, 0)
			if err != nil || normal(obj) != normal(j) {
				t.Errorf("decode %s: json %v", c["name"], err)
			}
		}
		n++
	}
	for _, c := range v.DecodeErrors {
		f, err := DecodeOne(partsBytes(c, "hex", "parts"))
		if err == nil && c["when"] == "json" {
			_, err = DecodeJSON(f.Payload, f.Stream)
		} else if err == nil && c["when"] == "window" {
			_, err = WindowIncrement(f)
		}
		var we *WireError
		if !errors.As(err, &we) || we.Code != c["error"] {
			t.Errorf("decode error %s: %v, want %s", c["name"], err, c["error"])
		}
		n++
	}
	for _, c := range v.WireErrors {
		b, _ := hex.DecodeString(c["hex"].(string))
		f, err := DecodeOne(b)
		if err != nil {
			t.Fatal(err)
		}
		obj, _ := DecodeJSON(f.Payload, f.Stream)
		e := ErrorFromPayload(obj, 0)
		if e.Code != c["code"] || string(e.Kind) != c["family"] || e.Message != c["message"] || normal(e.Details) != normal(c["details"]) {
			t.Errorf("wire error %s: %+v", c["code"], e)
		}
		n++
	}
	for _, c := range v.HTTPErrors {
		status := int(c["status"].(float64))
		e := ErrorFromHTTP(status, "Reason", "", []byte(c["body"].(string)))
		if e.Code != c["code"] || string(e.Kind) != c["family"] || e.Status != status {
			t.Errorf("http error %d %s: %+v", status, c["code"], e)
		}
		n++
	}
	n += playE2E(t, v.E2E)
	fmt.Printf("ok %d vectors\n", n)
}

type e2eVectors struct {
	Sandbox         string                 `json:"sandbox"`
	ClientPrivate   string                 `json:"client_private_hex"`
	Pin             string                 `json:"pin"`
	Hello           map[string]interface{} `json:"hello"`
	Result          map[string]interface{} `json:"result"`
	ToAgent         []map[string]string    `json:"to_agent"`
	FromAgent       []map[string]string    `json:"from_agent"`
	FromAgentErrors []struct {
		Name   string `json:"name"`
		After  int    `json:"after"`
		Sealed string `json:"sealed_hex"`
		Error  string `json:"error"`
	} `json:"from_agent_errors"`
	WrongPin map[string]string `json:"wrong_pin"`
}

// playE2E: the encrypted-session vectors (README, e2e): the same hello, keys, sealed bytes and errors.
func playE2E(t *testing.T, v e2eVectors) int {
	unhex := func(s string) []byte { b, _ := hex.DecodeString(s); return b }
	client := func(pin string) (*Sealing, error) {
		h, err := NewClientHandshake(v.Sandbox, pin, unhex(v.ClientPrivate))
		if err != nil {
			return nil, err
		}
		got, _ := json.Marshal(h.Hello())
		want, _ := json.Marshal(v.Hello)
		if string(got) != string(want) {
			t.Errorf("e2e hello: %s != %s", got, want)
		}
		s, err := h.Finish(v.Result)
		if err != nil {
			return nil, err
		}
		for _, c := range v.ToAgent {
			sealed, err := s.Seal(unhex(c["plain_hex"]))
			if err != nil || hex.EncodeToString(sealed) != c["sealed_hex"] {
				t.Errorf("e2e seal: %v", err)
			}
		}
		return s, nil
	}
	open := func(s *Sealing, h string) (*Frame, error) {
		f, err := DecodeOne(unhex(h))
		if err != nil {
			return nil, err
		}
		return s.Open(f)
	}
	s, err := client(v.Pin)
	if err != nil {
		t.Fatalf("e2e handshake: %v", err)
	}
	for _, c := range v.FromAgent {
		f, err := open(s, c["sealed_hex"])
		if err != nil {
			t.Fatalf("e2e open: %v", err)
		}
		plain, _ := Encode(f.Type, f.Stream, f.Payload, f.Flags)
		if hex.EncodeToString(plain) != c["plain_hex"] {
			t.Errorf("e2e open: %x", plain)
		}
	}
	n := 2
	for _, c := range v.FromAgentErrors {
		s, _ := client(v.Pin)
		for _, good := range v.FromAgent[:c.After] {
			_, _ = open(s, good["sealed_hex"])
		}
		_, err := open(s, c.Sealed)
		if e, ok := err.(*Error); !ok || e.Code != c.Error {
			t.Errorf("e2e %s: %v", c.Name, err)
		}
		n++
	}
	if _, err := client(v.WrongPin["pin"]); err == nil || err.(*Error).Code != v.WrongPin["error"] {
		t.Errorf("e2e wrong pin: %v", err)
	}
	return n + 1
}

// TestBench: upload then download SANDBOX_BENCH_MIB MiB through the streams.
func TestBench(t *testing.T) {
	ep := endpoint(t)
	mib, _ := strconv.Atoi(os.Getenv("SANDBOX_BENCH_MIB"))
	if mib == 0 {
		t.Skip("SANDBOX_BENCH_MIB is not set")
	}
	ctx := context.Background()
	size := mib << 20
	sbx, err := Create(ctx, &Options{Endpoint: ep, Storage: fmt.Sprintf("%dm", mib+64), Memory: fmt.Sprintf("%dm", mib+256)})
	if err != nil {
		t.Fatal(err)
	}
	defer sbx.Destroy(ctx)
	t0 := time.Now()
	if _, err := sbx.FS().Write(ctx, "/root/bench.bin", &patternReader{size: size, modulus: 251}, nil); err != nil {
		t.Fatal(err)
	}
	t1 := time.Now()
	n, err := sbx.FS().Read(ctx, "/root/bench.bin", io.Discard, nil)
	if err != nil || n != int64(size) {
		t.Fatal(n, err)
	}
	t2 := time.Now()
	mbs := func(d time.Duration) float64 { return float64(int(float64(size)/1e6/d.Seconds()*10)) / 10 }
	fmt.Printf("{\"sdk\": \"go\", \"mib\": %d, \"upload_mb_s\": %v, \"download_mb_s\": %v}\n", mib, mbs(t1.Sub(t0)), mbs(t2.Sub(t1)))
}
