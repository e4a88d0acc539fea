// Package sandbox is the Go SDK of sandboxd (docs/sdk.md): sandboxes, files,
// processes, ptys, the environment and tunnels over one WebSocket session.
package sandbox

import (
	"context"
	"encoding/json"
)

// Sandbox is a sandbox with an open session.
type Sandbox struct {
	ID        string
	Info      *Info
	client    *Client
	ownClient bool
	s         *session
}

// Create creates a sandbox (POST /sandboxes) and opens its session; if the
// session cannot be opened the sandbox is destroyed.
func Create(ctx context.Context, opts *Options) (*Sandbox, error) {
	c, own, err := clientFor(opts)
	if err != nil {
		return nil, err
	}
	info, err := c.Create(ctx, opts)
	if err != nil {
		closeOwn(c, own)
		return nil, err
	}
	s, err := openSession(ctx, c, info.ID)
	if err == nil {
		err = secure(ctx, s, opts)
	}
	if err != nil {
		_ = c.Destroy(context.Background(), info.ID)
		closeOwn(c, own)
		return nil, err
	}
	return &Sandbox{ID: info.ID, Info: info, client: c, ownClient: own, s: s}, nil
}

// Connect opens a session with an existing sandbox.
func Connect(ctx context.Context, id string, opts *Options) (*Sandbox, error) {
	c, own, err := clientFor(opts)
	if err != nil {
		return nil, err
	}
	info, err := c.Get(ctx, id)
	if err == nil {
		var s *session
		if s, err = openSession(ctx, c, id); err == nil {
			if err = secure(ctx, s, opts); err == nil {
				return &Sandbox{ID: id, Info: info, client: c, ownClient: own, s: s}, nil
			}
		}
	}
	closeOwn(c, own)
	return nil, err
}

// secure encrypts the session when opts ask; closes it on failure.
func secure(ctx context.Context, s *session, opts *Options) error {
	if opts == nil || (!opts.Encrypted && opts.Pin == "") {
		return nil
	}
	if err := s.encrypt(ctx, opts.Pin); err != nil {
		_ = s.close()
		return err
	}
	return nil
}

// Encrypted reports whether the session is end-to-end encrypted.
func (b *Sandbox) Encrypted() bool { return b.s.sealed.Load() != nil }

// Fingerprint is the agent key an encrypted session agreed ("" when clear).
func (b *Sandbox) Fingerprint() string {
	if sealing := b.s.sealed.Load(); sealing != nil {
		return sealing.Fingerprint()
	}
	return ""
}

// AgentFingerprint is the fingerprint the agent answers (e2e.identity; relayed by the daemon:
// check it out of band before pinning it).
func (b *Sandbox) AgentFingerprint(ctx context.Context) (string, error) {
	r, err := b.s.call(ctx, "e2e.identity", nil)
	if err != nil {
		return "", err
	}
	fp, _ := r["fingerprint"].(string)
	return fp, nil
}

func clientFor(opts *Options) (*Client, bool, error) {
	if opts != nil && opts.Client != nil {
		return opts.Client, false, nil
	}
	c, err := NewClient(opts)
	return c, true, err
}

func closeOwn(c *Client, own bool) {
	if own {
		c.Close()
	}
}

// Client is the REST client this sandbox uses.
func (b *Sandbox) Client() *Client { return b.client }

// FS is the sandbox's files.
func (b *Sandbox) FS() *FS { return &FS{b.s} }

// Process is the sandbox's commands.
func (b *Sandbox) Process() *Process { return &Process{b.s} }

// Env is the sandbox's environment.
func (b *Sandbox) Env() *Env { return &Env{b.s} }

// Net is HTTP from inside the sandbox and its port tunnels.
func (b *Sandbox) Net() *Net { return &Net{b.s, b.client, b.ID} }

// Ping is a round trip through the agent's request path.
func (b *Sandbox) Ping(ctx context.Context) error { _, err := b.s.call(ctx, "ping", nil); return err }

// Closed reports whether the session is gone.
func (b *Sandbox) Closed() bool { return b.s.failure() != nil }

// Refresh re-reads Info.
func (b *Sandbox) Refresh(ctx context.Context) (*Info, error) {
	info, err := b.client.Get(ctx, b.ID)
	if err == nil {
		b.Info = info
	}
	return info, err
}

// Stats is GET /sandboxes/{id}/stats.
func (b *Sandbox) Stats(ctx context.Context) (map[string]interface{}, error) {
	return b.client.Stats(ctx, b.ID)
}

// Close closes the session; the sandbox stays for its ttl.
func (b *Sandbox) Close() error {
	err := b.s.close()
	closeOwn(b.client, b.ownClient)
	return err
}

// Destroy destroys the sandbox, then closes the session: over the session when the daemon can
// (sandbox.destroy), else with DELETE /sandboxes/{id}.
func (b *Sandbox) Destroy(ctx context.Context) error {
	done, err := b.s.destroySandbox(ctx)
	if !done && err == nil {
		err = b.client.Destroy(ctx, b.ID)
	}
	b.s.close()
	closeOwn(b.client, b.ownClient)
	return err
}

// Env is the sandbox environment every later process starts with.
type Env struct{ s *session }

// Set sets variables.
func (e *Env) Set(ctx context.Context, vars map[string]string) error {
	_, err := e.s.call(ctx, "env.set", map[string]interface{}{"vars": vars})
	return err
}

// Get is a variable's value and whether it is set.
func (e *Env) Get(ctx context.Context, name string) (string, bool, error) {
	r, err := e.s.call(ctx, "env.get", map[string]interface{}{"name": name})
	if err != nil {
		return "", false, err
	}
	v, ok := r["value"].(string)
	return v, ok, nil
}

// Delete unsets names; the ones that were set.
func (e *Env) Delete(ctx context.Context, names ...string) ([]string, error) {
	r, err := e.s.call(ctx, "env.delete", map[string]interface{}{"names": names})
	if err != nil {
		return nil, err
	}
	var out []string
	return out, remarshal(r["deleted"], &out)
}

// List is the whole environment.
func (e *Env) List(ctx context.Context) (map[string]string, error) {
	r, err := e.s.call(ctx, "env.list", nil)
	if err != nil {
		return nil, err
	}
	var out map[string]string
	return out, remarshal(r["env"], &out)
}

func remarshal(in, out interface{}) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, out)
}

// Net is net.fetch and the port tunnels.
type Net struct {
	s      *session
	client *Client
	id     string
}

// FetchOptions are net.fetch's parameters.
type FetchOptions struct {
	Method       string
	Headers      map[string]string
	Body         []byte
	Timeout      float64
	MaxRedirects *int
	MaxBody      int64
	Insecure     bool // do not verify TLS
}

// FetchResponse is an HTTP answer fetched from inside the sandbox.
type FetchResponse struct {
	Status    int         `json:"status"`
	Reason    string      `json:"reason"`
	Headers   [][2]string `json:"headers"`
	URL       string      `json:"url"`
	Truncated bool        `json:"truncated"`
	Body      []byte      `json:"-"`
}

// Fetch makes an HTTP(S) request from inside the sandbox.
func (n *Net) Fetch(ctx context.Context, url string, o *FetchOptions) (*FetchResponse, error) {
	p := map[string]interface{}{"url": url}
	if o != nil {
		if o.Method != "" {
			p["method"] = o.Method
		}
		if o.Headers != nil {
			p["headers"] = o.Headers
		}
		if o.Body != nil {
			p["body_base64"] = o.Body
		}
		if o.Timeout > 0 {
			p["timeout"] = o.Timeout
		}
		if o.MaxRedirects != nil {
			p["max_redirects"] = *o.MaxRedirects
		}
		if o.MaxBody > 0 {
			p["max_body"] = o.MaxBody
		}
		if o.Insecure {
			p["verify"] = false
		}
	}
	st, err := n.s.open(ctx, "net.fetch", p)
	if err != nil {
		return nil, err
	}
	var body []byte
	for {
		f, err := st.next(ctx)
		if err != nil {
			return nil, err
		}
		switch f.Type {
		case FrameData:
			body = append(body, f.Payload...)
			st.consumed(len(f.Payload))
		case FrameResult:
			var r FetchResponse
			if err := json.Unmarshal(f.Payload, &r); err != nil {
				return nil, err
			}
			r.Body = body
			return &r, nil
		}
	}
}

// URL is the path-proxy URL of port (no request).
func (n *Net) URL(port int) string { return n.client.PortURL(n.id, port) }

// Expose gives port a dedicated host port once it accepts connections (timeout 0: the daemon's default).
func (n *Net) Expose(ctx context.Context, port int, timeout float64) (*Tunnel, error) {
	return n.client.Expose(ctx, n.id, port, timeout)
}

// Ports lists the dedicated host ports.
func (n *Net) Ports(ctx context.Context) ([]Tunnel, error) { return n.client.Ports(ctx, n.id) }

// Close stops exposing port.
func (n *Net) Close(ctx context.Context, port int) error { return n.client.ClosePort(ctx, n.id, port) }
