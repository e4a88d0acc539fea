package sandbox

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestLiveEncrypted: an encrypted session with the real agent: exec and a 3 MiB file round trip
// work sealed, the fingerprint is the agent's, its pin connects, another pin is E2E_IDENTITY_MISMATCH.
func TestLiveEncrypted(t *testing.T) {
	ep := endpoint(t)
	ctx := context.Background()
	sbx, err := Create(ctx, &Options{Endpoint: ep, Encrypted: true, TTL: 60})
	if err != nil {
		t.Fatal(err)
	}
	defer sbx.Destroy(context.Background())
	if !sbx.Encrypted() || !strings.HasPrefix(sbx.Fingerprint(), "sha256:") {
		t.Fatalf("not encrypted: %q", sbx.Fingerprint())
	}
	r, err := sbx.Process().Exec(ctx, "echo go-$((6*7))", nil)
	if err != nil || string(r.Stdout) != "go-42\n" {
		t.Fatalf("exec: %+v %v", r, err)
	}
	data := bytes.Repeat([]byte("go-file "), 3<<17)
	if err := sbx.FS().WriteFile(ctx, "/root/go.bin", data); err != nil {
		t.Fatal(err)
	}
	var back bytes.Buffer
	if _, err := sbx.FS().Read(ctx, "/root/go.bin", &back, nil); err != nil || !bytes.Equal(back.Bytes(), data) {
		t.Fatalf("read back %d bytes: %v", back.Len(), err)
	}
	answered, err := sbx.AgentFingerprint(ctx)
	if err != nil || answered != sbx.Fingerprint() {
		t.Fatalf("agent fingerprint %q != %q (%v)", answered, sbx.Fingerprint(), err)
	}
	pinned, err := Connect(ctx, sbx.ID, &Options{Endpoint: ep, Pin: sbx.Fingerprint()})
	if err != nil {
		t.Fatal(err)
	}
	pinned.Close()
	_, err = Connect(ctx, sbx.ID, &Options{Endpoint: ep, Pin: "sha256:" + strings.Repeat("2", 64)})
	if e, ok := err.(*Error); !ok || e.Code != "E2E_IDENTITY_MISMATCH" || e.Kind != KindEncryption {
		t.Fatalf("wrong pin: %v", err)
	}
}
