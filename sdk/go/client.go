package sandbox

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// DefaultEndpoint is used when neither Options.Endpoint nor SANDBOX_ENDPOINT is set.
const DefaultEndpoint = "unix:///var/run/sandboxd/sandboxd.sock"

// UserAgent is sent on every request.
const UserAgent = "sandboxd-sdk-go/0.1.0"

// Endpoint is a parsed daemon address.
type Endpoint struct {
	URL    string
	Scheme string // unix, http, https
	Path   string // the socket, for unix
	Host   string // host[:port] as the Host header carries it
	Prefix string
}

// ParseEndpoint parses unix:///path.sock, http://host[:port][/prefix] or https://...;
// "" means SANDBOX_ENDPOINT, else DefaultEndpoint.
func ParseEndpoint(s string) (*Endpoint, error) {
	if s == "" {
		s = os.Getenv("SANDBOX_ENDPOINT")
	}
	if s == "" {
		s = DefaultEndpoint
	}
	s = strings.TrimSpace(s)
	bad := func(why string) error {
		return &Error{Kind: KindInvalidEndpoint, Code: "INVALID_ENDPOINT", Message: fmt.Sprintf("invalid endpoint %q: %s", s, why)}
	}
	if strings.HasPrefix(s, "unix:") {
		p := strings.TrimPrefix(strings.TrimPrefix(s, "unix:"), "//")
		if p == "" {
			return nil, bad("expected unix:///path/to.sock")
		}
		return &Endpoint{URL: s, Scheme: "unix", Path: p, Host: "localhost"}, nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, bad(err.Error())
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, bad("use unix:///path, http://host:port or https://host:port")
	}
	if u.Hostname() == "" {
		return nil, bad("no host")
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, bad("no query, fragment or credentials allowed (put the token in SANDBOX_AUTH)")
	}
	return &Endpoint{URL: s, Scheme: u.Scheme, Host: u.Host, Prefix: strings.TrimRight(u.Path, "/")}, nil
}

// Options says where the daemon is and what sandbox to create.
type Options struct {
	Endpoint  string // "" = SANDBOX_ENDPOINT, else DefaultEndpoint
	Auth      string // "" = SANDBOX_AUTH
	TLSConfig *tls.Config
	Timeout   time.Duration // per REST request and WebSocket handshake (default 60 s)
	Client    *Client       // share one client (its connections) between sandboxes

	Profile  string
	Template string
	Memory   string // "512m", "2g" or bytes
	CPU      float64
	Storage  string
	TTL      int // seconds
	Labels   map[string]string

	// Encrypted makes the session end-to-end encrypted (docs/security.md); Pin ("sha256:...",
	// implies Encrypted) refuses any agent key but that one.
	Encrypted bool
	Pin       string
}

// Client calls the daemon's REST routes (docs/api.md).
type Client struct {
	Endpoint *Endpoint
	Auth     string
	http     *http.Client
	dial     func(ctx context.Context, network, addr string) (net.Conn, error)
	tls      *tls.Config
	timeout  time.Duration
}

// NewClient makes a Client from the endpoint fields of opts (nil: the environment).
func NewClient(opts *Options) (*Client, error) {
	if opts == nil {
		opts = &Options{}
	}
	ep, err := ParseEndpoint(opts.Endpoint)
	if err != nil {
		return nil, err
	}
	auth := opts.Auth
	if auth == "" {
		auth = os.Getenv("SANDBOX_AUTH")
	}
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	c := &Client{Endpoint: ep, Auth: auth, tls: opts.TLSConfig, timeout: timeout}
	d := &net.Dialer{}
	c.dial = d.DialContext
	if ep.Scheme == "unix" {
		c.dial = func(ctx context.Context, _, _ string) (net.Conn, error) { return d.DialContext(ctx, "unix", ep.Path) }
	}
	c.http = &http.Client{Timeout: timeout, Transport: &http.Transport{DialContext: c.dial, TLSClientConfig: opts.TLSConfig, Proxy: nil, MaxIdleConnsPerHost: 8}}
	return c, nil
}

func (c *Client) baseURL() string {
	if c.Endpoint.Scheme == "unix" {
		return "http://localhost"
	}
	return c.Endpoint.Scheme + "://" + c.Endpoint.Host + c.Endpoint.Prefix
}

// Do sends a request with a JSON body (nil: none) and decodes the JSON answer into out (nil: ignore).
func (c *Client) Do(ctx context.Context, method, path string, body, out interface{}) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.baseURL()+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", UserAgent)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Auth != "" {
		req.Header.Set("Authorization", "Bearer "+c.Auth)
	}
	res, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return &Error{Kind: KindDaemonUnavailable, Code: "DAEMON_UNAVAILABLE", Message: fmt.Sprintf("cannot reach the sandbox daemon at %s: %v", c.Endpoint.URL, err)}
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return &Error{Kind: KindDaemonUnavailable, Code: "DAEMON_UNAVAILABLE", Message: err.Error()}
	}
	if res.StatusCode >= 400 {
		return ErrorFromHTTP(res.StatusCode, http.StatusText(res.StatusCode), res.Header.Get("Retry-After"), raw)
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return &Error{Kind: KindProtocol, Code: "BAD_RESPONSE", Message: fmt.Sprintf("%s %s: invalid JSON: %v", method, path, err)}
		}
	}
	return nil
}

// Info is the daemon's sandbox object.
type Info struct {
	ID       string            `json:"id"`
	Profile  string            `json:"profile"`
	Template *string           `json:"template"`
	Image    string            `json:"image"`
	Runtime  string            `json:"runtime"`
	State    string            `json:"state"`
	Created  string            `json:"created"`
	TTL      float64           `json:"ttl"`
	Labels   map[string]string `json:"labels"`
	Memory   int64             `json:"memory"`
	CPU      float64           `json:"cpu"`
	Storage  int64             `json:"storage"`
	Method   string            `json:"method"`
}

// Tunnel is a dedicated host port of a sandbox.
type Tunnel struct {
	Port        int    `json:"port"`
	HostPort    int    `json:"host_port"`
	URL         string `json:"url"`
	BindAddress string `json:"bind_address"`
	Connections int    `json:"connections"`
	Refused     int    `json:"refused"`
}

func sid(id string) string { return "/sandboxes/" + url.PathEscape(id) }

// Create is POST /sandboxes with the sandbox fields of opts that are set.
func (c *Client) Create(ctx context.Context, opts *Options) (*Info, error) {
	body := map[string]interface{}{}
	if opts != nil {
		for k, v := range map[string]string{"profile": opts.Profile, "template": opts.Template, "memory": opts.Memory, "storage": opts.Storage} {
			if v != "" {
				body[k] = v
			}
		}
		if opts.CPU != 0 {
			body["cpu"] = opts.CPU
		}
		if opts.TTL != 0 {
			body["ttl"] = opts.TTL
		}
		if opts.Labels != nil {
			body["labels"] = opts.Labels
		}
	}
	var info Info
	return &info, c.Do(ctx, "POST", "/sandboxes", body, &info)
}

// Get is GET /sandboxes/{id}.
func (c *Client) Get(ctx context.Context, id string) (*Info, error) {
	var info Info
	return &info, c.Do(ctx, "GET", sid(id), nil, &info)
}

// List is GET /sandboxes, filtered by labels.
func (c *Client) List(ctx context.Context, labels map[string]string) ([]Info, error) {
	q := url.Values{}
	for k, v := range labels {
		q.Add("label", k+":"+v)
	}
	path := "/sandboxes"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out []Info
	return out, c.Do(ctx, "GET", path, nil, &out)
}

// Destroy is DELETE /sandboxes/{id}.
func (c *Client) Destroy(ctx context.Context, id string) error {
	return c.Do(ctx, "DELETE", sid(id), nil, nil)
}

// Stats is GET /sandboxes/{id}/stats.
func (c *Client) Stats(ctx context.Context, id string) (map[string]interface{}, error) {
	var out map[string]interface{}
	return out, c.Do(ctx, "GET", sid(id)+"/stats", nil, &out)
}

func checkPort(port int) error {
	if port < 1 || port > 65535 {
		return &Error{Kind: KindInvalidRequest, Code: "INVALID_PORT", Message: fmt.Sprintf("port must be 1..65535, not %d", port)}
	}
	return nil
}

// Expose is POST /sandboxes/{id}/ports/{port}/expose (timeout 0: the daemon's default).
func (c *Client) Expose(ctx context.Context, id string, port int, timeout float64) (*Tunnel, error) {
	if err := checkPort(port); err != nil {
		return nil, err
	}
	body := map[string]interface{}{}
	if timeout > 0 {
		body["timeout"] = timeout
	}
	var t Tunnel
	return &t, c.Do(ctx, "POST", fmt.Sprintf("%s/ports/%d/expose", sid(id), port), body, &t)
}

// Ports is GET /sandboxes/{id}/ports.
func (c *Client) Ports(ctx context.Context, id string) ([]Tunnel, error) {
	var out []Tunnel
	return out, c.Do(ctx, "GET", sid(id)+"/ports", nil, &out)
}

// ClosePort is DELETE /sandboxes/{id}/ports/{port}/expose.
func (c *Client) ClosePort(ctx context.Context, id string, port int) error {
	if err := checkPort(port); err != nil {
		return err
	}
	return c.Do(ctx, "DELETE", fmt.Sprintf("%s/ports/%d/expose", sid(id), port), nil, nil)
}

// PortURL is the path-proxy URL of a port (no request).
func (c *Client) PortURL(id string, port int) string {
	path := fmt.Sprintf("%s/ports/%d/", sid(id), port)
	if c.Endpoint.Scheme == "unix" {
		return "http+unix://" + url.PathEscape(c.Endpoint.Path) + path
	}
	return c.baseURL() + path
}

// Close drops the kept-alive connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }
