package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
)

// FS is the sandbox's files; large ones stream through io.Reader / io.Writer.
type FS struct{ s *session }

// FileInfo is an fs.stat / fs.list entry.
type FileInfo struct {
	Name  string  `json:"name"`
	Path  string  `json:"path"`
	Type  string  `json:"type"` // file, dir, symlink, other
	Size  int64   `json:"size"`
	Mode  uint32  `json:"mode"`
	Mtime float64 `json:"mtime"`
}

// IsDir reports a directory.
func (f FileInfo) IsDir() bool { return f.Type == "dir" }

// WriteOptions are fs.write's parameters.
type WriteOptions struct {
	Mode   uint32 // permission bits of a new file (0: 0644)
	Append bool
}

// Write streams r into path; the bytes written.
func (fs *FS) Write(ctx context.Context, path string, r io.Reader, o *WriteOptions) (int64, error) {
	p := map[string]interface{}{"path": path}
	if o != nil {
		if o.Mode != 0 {
			p["mode"] = o.Mode
		}
		if o.Append {
			p["append"] = true
		}
	}
	r2, err := fs.sendAndWait(ctx, "fs.write", p, r)
	if err != nil {
		return 0, err
	}
	n, _ := r2["size"].(json.Number).Int64()
	return n, nil
}

// WriteFile writes data to path.
func (fs *FS) WriteFile(ctx context.Context, path string, data []byte) error {
	_, err := fs.Write(ctx, path, bytes.NewReader(data), nil)
	return err
}

func (fs *FS) sendAndWait(ctx context.Context, method string, p map[string]interface{}, r io.Reader) (map[string]interface{}, error) {
	st, err := fs.s.open(ctx, method, p)
	if err != nil {
		return nil, err
	}
	sent := make(chan error, 1)
	go func() { sent <- st.sendBody(ctx, r) }()
	res, err := st.result(ctx)
	serr := <-sent
	if err != nil {
		return nil, err
	}
	if serr != nil {
		return nil, serr
	}
	return res, nil
}

// ReadOptions are fs.read's parameters.
type ReadOptions struct {
	Offset int64
	Length int64 // 0: to the end
}

// Read streams path into w; the bytes read. Only a window (4 MiB) is in flight.
func (fs *FS) Read(ctx context.Context, path string, w io.Writer, o *ReadOptions) (int64, error) {
	p := map[string]interface{}{"path": path}
	if o != nil {
		if o.Offset > 0 {
			p["offset"] = o.Offset
		}
		if o.Length > 0 {
			p["length"] = o.Length
		}
	}
	return fs.receive(ctx, "fs.read", p, w)
}

func (fs *FS) receive(ctx context.Context, method string, p map[string]interface{}, w io.Writer) (int64, error) {
	st, err := fs.s.open(ctx, method, p)
	if err != nil {
		return 0, err
	}
	var n int64
	for {
		f, err := st.next(ctx)
		if err != nil {
			return n, err
		}
		switch f.Type {
		case FrameData:
			if _, err := w.Write(f.Payload); err != nil {
				st.cancel()
				return n, err
			}
			n += int64(len(f.Payload))
			st.consumed(len(f.Payload))
		case FrameResult:
			return n, nil
		}
	}
}

// ReadFile is the whole content of path.
func (fs *FS) ReadFile(ctx context.Context, path string) ([]byte, error) {
	var b bytes.Buffer
	_, err := fs.Read(ctx, path, &b, nil)
	return b.Bytes(), err
}

// List is a directory's entries (depth 0 or 1: the directory itself).
func (fs *FS) List(ctx context.Context, path string, depth int) ([]FileInfo, error) {
	p := map[string]interface{}{"path": path}
	if depth > 1 {
		p["depth"] = depth
	}
	st, err := fs.s.open(ctx, "fs.list", p)
	if err != nil {
		return nil, err
	}
	var out []FileInfo
	for {
		f, err := st.next(ctx)
		if err != nil {
			return nil, err
		}
		switch f.Type {
		case FrameEvent:
			var ev struct{ Entries []FileInfo }
			if err := json.Unmarshal(f.Payload, &ev); err != nil {
				return nil, err
			}
			out = append(out, ev.Entries...)
		case FrameResult:
			return out, nil
		}
	}
}

// Stat describes path (symlinks not followed).
func (fs *FS) Stat(ctx context.Context, path string) (*FileInfo, error) {
	r, err := fs.s.call(ctx, "fs.stat", map[string]interface{}{"path": path})
	if err != nil {
		return nil, err
	}
	var fi FileInfo
	return &fi, remarshal(r, &fi)
}

// Exists reports whether path exists.
func (fs *FS) Exists(ctx context.Context, path string) (bool, error) {
	_, err := fs.Stat(ctx, path)
	if e, ok := err.(*Error); ok && e.Code == "ENOENT" {
		return false, nil
	}
	return err == nil, err
}

// Mkdir makes a directory (parents: missing parents too, an existing one is fine).
func (fs *FS) Mkdir(ctx context.Context, path string, parents bool) error {
	_, err := fs.s.call(ctx, "fs.mkdir", map[string]interface{}{"path": path, "parents": parents})
	return err
}

// Remove removes a file, symlink, empty directory, or a tree with recursive.
func (fs *FS) Remove(ctx context.Context, path string, recursive bool) error {
	_, err := fs.s.call(ctx, "fs.remove", map[string]interface{}{"path": path, "recursive": recursive})
	return err
}

// Rename moves src to dst, replacing dst unless overwrite is false.
func (fs *FS) Rename(ctx context.Context, src, dst string, overwrite bool) error {
	_, err := fs.s.call(ctx, "fs.rename", map[string]interface{}{"src": src, "dst": dst, "overwrite": overwrite})
	return err
}

// Upload extracts a tar stream (plain or compressed) under the directory path.
func (fs *FS) Upload(ctx context.Context, path string, tar io.Reader) (map[string]interface{}, error) {
	return fs.sendAndWait(ctx, "fs.upload", map[string]interface{}{"path": path}, tar)
}

// Download writes a tar of a file or directory to w; the tar's size.
func (fs *FS) Download(ctx context.Context, path string, w io.Writer) (int64, error) {
	return fs.receive(ctx, "fs.download", map[string]interface{}{"path": path}, w)
}
