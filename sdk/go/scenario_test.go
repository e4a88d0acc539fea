package sandbox

// The conformance scenario (tests/conformance/scenario.json) played by the Go SDK.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

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
