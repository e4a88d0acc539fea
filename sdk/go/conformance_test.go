package sandbox

// The Go SDK's conformance runner (tests/conformance/README.md):
//   go test -run TestVectors
//   SANDBOX_CONFORMANCE_ENDPOINT=unix:///path.sock go test -run TestScenario -v
//   SANDBOX_CONFORMANCE_ENDPOINT=... SANDBOX_BENCH_MIB=100 go test -run TestBench -v

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
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
	fmt.Printf("ok %d vectors\n", n)
}

type patternReader struct{ size, done, modulus int }

func (p *patternReader) Read(b []byte) (int, error) {
	if p.done >= p.size {
		return 0, io.EOF
	}
	n := len(b)
	if n > p.size-p.done {
		n = p.size - p.done
	}
	for i := 0; i < n; i++ {
		b[i] = byte((p.done + i) % p.modulus)
	}
	p.done += n
	return n, nil
}

func endpoint(t *testing.T) string {
	ep := os.Getenv("SANDBOX_CONFORMANCE_ENDPOINT")
	if ep == "" {
		t.Skip("SANDBOX_CONFORMANCE_ENDPOINT is not set")
	}
	return ep
}

func collect(ctx context.Context, h *ExecHandle, until string) ([]byte, []byte, error) {
	var out, errb bytes.Buffer
	for {
		ev, err := h.Next(ctx)
		if err == io.EOF {
			return out.Bytes(), errb.Bytes(), nil
		}
		if err != nil {
			return nil, nil, err
		}
		if ev.Channel == "stdout" {
			out.Write(ev.Data)
		} else {
			errb.Write(ev.Data)
		}
		if until != "" && strings.Contains(out.String(), until) {
			return out.Bytes(), errb.Bytes(), nil
		}
	}
}

func checkResult(want map[string]interface{}, out, errb []byte, st *ExitStatus) error {
	if w, ok := want["stdout"]; ok && string(out) != w {
		return fmt.Errorf("stdout %q", out)
	}
	if w, ok := want["stderr"]; ok && string(errb) != w {
		return fmt.Errorf("stderr %q", errb)
	}
	if w, ok := want["exit_code"]; ok && float64(st.ExitCode) != w {
		return fmt.Errorf("exit code %d", st.ExitCode)
	}
	if w, ok := want["timed_out"]; ok && st.TimedOut != w {
		return fmt.Errorf("timed_out %v", st.TimedOut)
	}
	return nil
}

func cmdOf(v interface{}) interface{} {
	if l, ok := v.([]interface{}); ok {
		out := make([]string, len(l))
		for i, x := range l {
			out[i] = x.(string)
		}
		return out
	}
	return v
}

func str(v interface{}) string { s, _ := v.(string); return s }
func num(v interface{}) int    { f, _ := v.(float64); return int(f) }

// TestScenario plays scenario.json against a real daemon.
func TestScenario(t *testing.T) {
	ep := endpoint(t)
	var doc struct{ Steps []map[string]interface{} }
	load(t, "scenario.json", &doc)
	var sbx *Sandbox
	var id string
	defer func() {
		if sbx != nil && !sbx.Closed() {
			sbx.Destroy(context.Background())
		}
	}()
	step := func(ctx context.Context, s map[string]interface{}) error {
		want, _ := s["expect"].(map[string]interface{})
		path := str(s["path"])
		switch s["op"] {
		case "create":
			args := s["args"].(map[string]interface{})
			o := &Options{Endpoint: ep, Profile: str(args["profile"]), Memory: str(args["memory"])}
			if l, ok := args["labels"].(map[string]interface{}); ok {
				o.Labels = map[string]string{}
				for k, v := range l {
					o.Labels[k] = v.(string)
				}
			}
			b, err := Create(ctx, o)
			if err != nil {
				return err
			}
			sbx, id = b, b.ID
			if b.Info.State != want["state"] {
				return fmt.Errorf("state %s", b.Info.State)
			}
		case "write":
			var r io.Reader = strings.NewReader(str(s["text"]))
			if p, ok := s["pattern"].(map[string]interface{}); ok {
				r = &patternReader{size: num(p["size"]), modulus: num(p["modulus"])}
			}
			n, err := sbx.FS().Write(ctx, path, r, nil)
			if err != nil {
				return err
			}
			if n != int64(num(want["size"])) {
				return fmt.Errorf("wrote %d", n)
			}
		case "read":
			h := sha256.New()
			var got bytes.Buffer
			n, err := sbx.FS().Read(ctx, path, io.MultiWriter(h, &got), &ReadOptions{Offset: int64(num(s["offset"])), Length: int64(num(s["length"]))})
			if err != nil {
				return err
			}
			if n != int64(num(want["size"])) {
				return fmt.Errorf("read %d", n)
			}
			if w, ok := want["sha256"]; ok && hex.EncodeToString(h.Sum(nil)) != w {
				return fmt.Errorf("sha256")
			}
			if w, ok := want["hex"]; ok && hex.EncodeToString(got.Bytes()) != w {
				return fmt.Errorf("bytes %x", got.Bytes())
			}
		case "read_text":
			b, err := sbx.FS().ReadFile(ctx, path)
			if err != nil {
				return err
			}
			if string(b) != want["text"] {
				return fmt.Errorf("text %q", b)
			}
		case "stat":
			fi, err := sbx.FS().Stat(ctx, path)
			if err != nil {
				return err
			}
			if fi.Type != want["type"] || fi.Size != int64(num(want["size"])) {
				return fmt.Errorf("stat %+v", fi)
			}
		case "mkdir":
			return sbx.FS().Mkdir(ctx, path, s["parents"] == true)
		case "rename":
			return sbx.FS().Rename(ctx, str(s["src"]), str(s["dst"]), true)
		case "list":
			entries, err := sbx.FS().List(ctx, path, 1)
			if err != nil {
				return err
			}
			var names []interface{}
			for _, e := range entries {
				names = append(names, e.Name)
			}
			if !reflect.DeepEqual(names, want["names"]) {
				return fmt.Errorf("names %v", names)
			}
		case "remove":
			return sbx.FS().Remove(ctx, path, s["recursive"] == true)
		case "exists":
			ok, err := sbx.FS().Exists(ctx, path)
			if err != nil {
				return err
			}
			if ok != want["exists"] {
				return fmt.Errorf("exists %v", ok)
			}
		case "exec":
			o := &ExecOptions{}
			if in, ok := s["stdin"].(string); ok {
				o.Stdin = strings.NewReader(in)
			}
			if to, ok := s["timeout"].(float64); ok {
				o.Timeout = to
			}
			r, err := sbx.Process().Exec(ctx, cmdOf(s["cmd"]), o)
			if err != nil {
				return err
			}
			return checkResult(want, r.Stdout, r.Stderr, &r.ExitStatus)
		case "stream":
			h, err := sbx.Process().StreamExec(ctx, cmdOf(s["cmd"]), nil)
			if err != nil {
				return err
			}
			out, errb, err := collect(ctx, h, "")
			if err != nil {
				return err
			}
			st, err := h.Wait(ctx)
			if err != nil {
				return err
			}
			return checkResult(want, out, errb, st)
		case "spawn", "pty":
			var p *SpawnedProcess
			var err error
			if s["op"] == "pty" {
				p, err = sbx.Process().Pty(ctx, cmdOf(s["cmd"]), num(s["cols"]), num(s["rows"]), nil)
			} else {
				p, err = sbx.Process().Spawn(ctx, cmdOf(s["cmd"]), nil, nil)
			}
			if err != nil {
				return err
			}
			if p.Pid <= 0 {
				return fmt.Errorf("pid %d", p.Pid)
			}
			var out []byte
			if w := str(s["wait_for"]); w != "" {
				if out, _, err = collect(ctx, &p.ExecHandle, w); err != nil {
					return err
				}
			}
			if r, ok := s["resize"].([]interface{}); ok {
				if err := p.Resize(ctx, num(r[0]), num(r[1])); err != nil {
					return err
				}
			}
			if w, ok := s["write"].(string); ok {
				if err := p.Write(ctx, []byte(w)); err != nil {
					return err
				}
			}
			if s["close_stdin"] == true {
				if err := p.CloseStdin(ctx); err != nil {
					return err
				}
			}
			if sig, ok := s["signal"].(string); ok {
				if err := p.Signal(ctx, sig); err != nil {
					return err
				}
			}
			rest, errb, err := collect(ctx, &p.ExecHandle, "")
			if err != nil {
				return err
			}
			st, err := p.Wait(ctx)
			if err != nil {
				return err
			}
			out = append(out, rest...)
			if s["op"] == "pty" {
				for _, needle := range want["contains"].([]interface{}) {
					if !strings.Contains(string(out), needle.(string)) {
						return fmt.Errorf("pty output %q lacks %q", out, needle)
					}
				}
				if float64(st.ExitCode) != want["exit_code"] {
					return fmt.Errorf("exit %d", st.ExitCode)
				}
				return nil
			}
			return checkResult(want, out, errb, st)
		case "env_set":
			vars := map[string]string{}
			for k, v := range s["vars"].(map[string]interface{}) {
				vars[k] = v.(string)
			}
			return sbx.Env().Set(ctx, vars)
		case "env_get":
			v, ok, err := sbx.Env().Get(ctx, str(s["name"]))
			if err != nil {
				return err
			}
			if (want["value"] == nil) == ok || (ok && v != want["value"]) {
				return fmt.Errorf("value %q %v", v, ok)
			}
		case "env_delete":
			var names []string
			for _, n := range s["names"].([]interface{}) {
				names = append(names, n.(string))
			}
			deleted, err := sbx.Env().Delete(ctx, names...)
			if err != nil {
				return err
			}
			if normal(deleted) != normal(want["deleted"]) {
				return fmt.Errorf("deleted %v", deleted)
			}
		case "connect_again":
			other, err := Connect(ctx, id, &Options{Endpoint: ep})
			if err != nil {
				return err
			}
			defer other.Close()
			r, err := other.Process().Exec(ctx, cmdOf(s["cmd"]), nil)
			if err != nil {
				return err
			}
			if string(r.Stdout) != want["stdout"] {
				return fmt.Errorf("stdout %q", r.Stdout)
			}
		case "signal":
			return sbx.Process().Signal(ctx, num(s["pid"]), s["signal"], true)
		case "connect":
			other, err := Connect(ctx, str(s["id"]), &Options{Endpoint: ep})
			if err != nil {
				return err
			}
			other.Close()
		case "destroy":
			return sbx.Destroy(ctx)
		case "get":
			c, err := NewClient(&Options{Endpoint: ep})
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = c.Get(ctx, id)
			return err
		default:
			return fmt.Errorf("unknown op %v", s["op"])
		}
		return nil
	}
	for i, s := range doc.Steps {
		ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
		err := step(ctx, s)
		cancel()
		wantErr, _ := s["expect_error"].(map[string]interface{})
		var e *Error
		switch {
		case wantErr == nil && err != nil:
			t.Fatalf("FAIL step %d %v: %v", i, s["op"], err)
		case wantErr != nil && err == nil:
			t.Fatalf("FAIL step %d %v: no error, want %v", i, s["op"], wantErr)
		case wantErr != nil && (!errors.As(err, &e) || e.Code != wantErr["code"] || string(e.Kind) != wantErr["family"]):
			t.Fatalf("FAIL step %d %v: got %v (%s), want %v", i, s["op"], err, family(err), wantErr)
		}
		fmt.Printf("ok %d %v\n", i, s["op"])
	}
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
