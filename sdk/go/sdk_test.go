package sandbox

// Tests of the Go SDK beyond the conformance scenario. The live ones need a
// daemon: SANDBOX_CONFORMANCE_ENDPOINT (tests/test_sdk_suites.py sets it).

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestParseEndpoint: the three endpoint forms parse; anything else is KindInvalidEndpoint.
func TestParseEndpoint(t *testing.T) {
	for _, c := range []struct{ in, scheme, host, path, prefix string }{
		{"unix:///run/s.sock", "unix", "localhost", "/run/s.sock", ""},
		{"unix:/run/s.sock", "unix", "localhost", "/run/s.sock", ""},
		{"https://h.test:8443/api/", "https", "h.test:8443", "", "/api"},
	} {
		ep, err := ParseEndpoint(c.in)
		if err != nil || ep.Scheme != c.scheme || ep.Host != c.host || ep.Path != c.path || ep.Prefix != c.prefix {
			t.Errorf("%s: %+v %v", c.in, ep, err)
		}
	}
	for _, bad := range []string{"ftp://x", "unix:", "http://h/?q=1", "http://u:p@h"} {
		if _, err := ParseEndpoint(bad); !IsKind(err, KindInvalidEndpoint) {
			t.Errorf("%s: %v", bad, err)
		}
	}
}

// TestStreamIDsWrap: odd stream ids wrap from 2^32-1 back to 1 (0 is the connection's).
func TestStreamIDsWrap(t *testing.T) {
	if nextStreamID(1) != 3 || nextStreamID(MaxStreamID-2) != MaxStreamID || nextStreamID(MaxStreamID) != 1 {
		t.Fatal("stream ids do not wrap from 2^32-1 to 1")
	}
}

func liveSandbox(t *testing.T) *Sandbox {
	ep := endpoint(t)
	sbx, err := Create(context.Background(), &Options{Endpoint: ep})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sbx.Destroy(context.Background()) })
	return sbx
}

// TestLiveDestroyOverSession: Destroy goes over the session, not DELETE (the sandbox's client is
// given an endpoint that answers nothing); the sandbox is gone from the API after.
func TestLiveDestroyOverSession(t *testing.T) {
	ctx := context.Background()
	ep := endpoint(t)
	sbx, err := Create(ctx, &Options{Endpoint: ep})
	if err != nil {
		t.Fatal(err)
	}
	nowhere, err := NewClient(&Options{Endpoint: "unix:///nonexistent/sandboxd.sock"})
	if err != nil {
		t.Fatal(err)
	}
	api := sbx.client
	defer closeOwn(api, sbx.ownClient)
	sbx.client, sbx.ownClient = nowhere, false
	if err := sbx.Destroy(ctx); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if _, err := api.Get(ctx, sbx.ID); !IsKind(err, KindNotFound) {
		t.Fatalf("after Destroy: %v", err)
	}
}

// TestLiveConcurrentExec: 50 commands at once on one session, each with its own output and exact exit code.
func TestLiveConcurrentExec(t *testing.T) {
	sbx := liveSandbox(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r, err := sbx.Process().Exec(ctx, fmt.Sprintf("echo %d; exit %d", i, i%7), nil)
			if err != nil {
				errs <- err
			} else if string(r.Stdout) != fmt.Sprintf("%d\n", i) || r.ExitCode != i%7 {
				errs <- fmt.Errorf("%d: %q %d", i, r.Stdout, r.ExitCode)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestLiveBigStdin: 8 MiB of random stdin reaches the process unchanged (both windows turn over).
func TestLiveBigStdin(t *testing.T) {
	sbx := liveSandbox(t)
	data := make([]byte, 8<<20)
	rand.Read(data)
	r, err := sbx.Process().Exec(context.Background(), "sha256sum | cut -d' ' -f1", &ExecOptions{Stdin: bytes.NewReader(data)})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if strings.TrimSpace(string(r.Stdout)) != hex.EncodeToString(sum[:]) {
		t.Fatalf("stdout %q", r.Stdout)
	}
}

// TestLiveContextCancelsCommand: a context deadline returns ctx.Err() and kills the command (CANCEL).
func TestLiveContextCancelsCommand(t *testing.T) {
	sbx := liveSandbox(t)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err := sbx.Process().Exec(ctx, "sleep 60", nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v", err)
	}
	// The agent kills the group on CANCEL; allow it a moment, not a minute.
	var out string
	for i := 0; i < 100 && out != "none"; i++ {
		r, err := sbx.Process().Exec(context.Background(), "pgrep -x sleep || echo none", nil)
		if err != nil {
			t.Fatal(err)
		}
		out = strings.TrimSpace(string(r.Stdout))
		time.Sleep(50 * time.Millisecond)
	}
	if out != "none" {
		t.Fatalf("the command still runs: %q", out)
	}
}

// TestLiveDownloadUpload: a downloaded tar uploads elsewhere with the same files; ENOENT is a file error with its path.
func TestLiveDownloadUpload(t *testing.T) {
	sbx := liveSandbox(t)
	ctx := context.Background()
	fs := sbx.FS()
	if err := fs.Mkdir(ctx, "/root/proj/sub", true); err != nil {
		t.Fatal(err)
	}
	if err := fs.WriteFile(ctx, "/root/proj/sub/a.txt", []byte("alpha")); err != nil {
		t.Fatal(err)
	}
	var tar bytes.Buffer
	if _, err := fs.Download(ctx, "/root/proj", &tar); err != nil {
		t.Fatal(err)
	}
	if _, err := fs.Upload(ctx, "/tmp/copy", &tar); err != nil {
		t.Fatal(err)
	}
	b, err := fs.ReadFile(ctx, "/tmp/copy/proj/sub/a.txt")
	if err != nil || string(b) != "alpha" {
		t.Fatalf("%q %v", b, err)
	}
	_, err = fs.ReadFile(ctx, "/root/nope")
	var e *Error
	if !errors.As(err, &e) || e.Code != "ENOENT" || !IsKind(err, KindFile) || e.Path() != "/root/nope" {
		t.Fatalf("err %v", err)
	}
}

// TestLiveFetchAndTunnel: net.fetch reaches a server on the sandbox's loopback; expose, ports and close work.
func TestLiveFetchAndTunnel(t *testing.T) {
	sbx := liveSandbox(t)
	ctx := context.Background()
	srv, err := sbx.Process().Spawn(ctx, "cd /etc && exec python3 -m http.server 8765 --bind 0.0.0.0", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Kill(ctx)
	var res *FetchResponse
	for i := 0; i < 300; i++ {
		if res, err = sbx.Net().Fetch(ctx, "http://127.0.0.1:8765/hostname", nil); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil || res.Status != 200 || len(res.Body) == 0 {
		t.Fatalf("%+v %v", res, err)
	}
	tun, err := sbx.Net().Expose(ctx, 8765, 30)
	if err != nil || tun.Port != 8765 || tun.HostPort == 0 {
		t.Fatalf("%+v %v", tun, err)
	}
	ports, err := sbx.Net().Ports(ctx)
	if err != nil || len(ports) != 1 {
		t.Fatalf("%+v %v", ports, err)
	}
	if err := sbx.Net().Close(ctx, 8765); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(sbx.Net().URL(8765), "/ports/8765/") {
		t.Fatal(sbx.Net().URL(8765))
	}
}

// TestLivePtyAndSignal: a pty echoes input; SIGKILL gives exit code 137; writing after exit is refused.
func TestLivePtyAndSignal(t *testing.T) {
	sbx := liveSandbox(t)
	ctx := context.Background()
	p, err := sbx.Process().Pty(ctx, "cat", 80, 24, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Write(ctx, []byte("hi\n")); err != nil {
		t.Fatal(err)
	}
	out, _, err := collect(ctx, &p.ExecHandle, "hi\r\nhi\r\n")
	if err != nil || !strings.Contains(string(out), "hi\r\nhi\r\n") {
		t.Fatalf("%q %v", out, err)
	}
	if err := p.Signal(ctx, 9); err != nil {
		t.Fatal(err)
	}
	st, err := p.Wait(ctx)
	if err != nil || st.ExitCode != 137 {
		t.Fatalf("%+v %v", st, err)
	}
	if err := p.Write(ctx, []byte("x")); !IsKind(err, KindProcessExited) && !IsKind(err, KindSandbox) {
		t.Fatalf("write after exit: %v", err)
	}
}
