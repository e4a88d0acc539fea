package sandbox

import (
	"context"
	"io"
	"sync"
)

// stream is one request: the frames that came for it and both windows.
type stream struct {
	s        *session
	id       uint32
	mu       sync.Mutex
	frames   []*Frame
	notify   chan struct{}
	creditCh chan struct{}
	credit   int64
	unacked  int
	finished bool
	err      error
}

func newStream(s *session, id uint32) *stream {
	return &stream{s: s, id: id, notify: make(chan struct{}, 1), creditCh: make(chan struct{}, 1), credit: InitialWindow}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// wake wakes both the reader and a writer waiting for credit.
func (st *stream) wake() {
	signal(st.notify)
	signal(st.creditCh)
}

func (st *stream) push(f *Frame) {
	st.mu.Lock()
	switch f.Type {
	case FrameWindow:
		if n, err := WindowIncrement(f); err == nil {
			st.credit += int64(n)
		}
		st.mu.Unlock()
		signal(st.creditCh)
		return
	case FrameResult, FrameError:
		st.finished = true
		st.frames = append(st.frames, f)
		st.mu.Unlock()
		st.s.release(st)
		st.wake()
		return
	default:
		st.frames = append(st.frames, f)
	}
	st.mu.Unlock()
	signal(st.notify)
}

func (st *stream) fail(err error) {
	st.mu.Lock()
	st.finished = true
	st.err = err
	st.mu.Unlock()
	st.wake()
}

// next is the next DATA, END, EVENT or RESULT frame; ERROR comes back as its *Error.
// A cancelled ctx sends CANCEL and returns ctx.Err().
func (st *stream) next(ctx context.Context) (*Frame, error) {
	for {
		st.mu.Lock()
		if len(st.frames) > 0 {
			f := st.frames[0]
			st.frames = st.frames[1:]
			st.mu.Unlock()
			if f.Type == FrameError {
				obj, err := DecodeJSON(f.Payload, st.id)
				if err != nil {
					return nil, err
				}
				return nil, ErrorFromPayload(obj, 0)
			}
			return f, nil
		}
		err := st.err
		st.mu.Unlock()
		if err != nil {
			return nil, err
		}
		select {
		case <-st.notify:
		case <-ctx.Done():
			st.cancel()
			return nil, ctx.Err()
		}
	}
}

func (st *stream) consumed(n int) {
	st.mu.Lock()
	st.unacked += n
	var inc int
	if st.unacked >= InitialWindow/2 && !st.finished {
		inc, st.unacked = st.unacked, 0
	}
	st.mu.Unlock()
	if inc > 0 {
		_ = st.s.send(windowFrame(st.id, uint32(inc)))
	}
}

func (st *stream) result(ctx context.Context) (map[string]interface{}, error) {
	for {
		f, err := st.next(ctx)
		if err != nil {
			return nil, err
		}
		switch f.Type {
		case FrameResult:
			return DecodeJSON(f.Payload, st.id)
		case FrameData:
			st.consumed(len(f.Payload))
		}
	}
}

// write sends b as DATA on channel within the agent's credit; false once the stream ended.
func (st *stream) write(ctx context.Context, b []byte, channel byte) (bool, error) {
	for len(b) > 0 {
		st.mu.Lock()
		for st.credit <= 0 && !st.finished {
			st.mu.Unlock()
			select {
			case <-st.creditCh:
			case <-ctx.Done():
				st.cancel()
				return false, ctx.Err()
			}
			st.mu.Lock()
		}
		if st.finished {
			err := st.err
			st.mu.Unlock()
			return false, err
		}
		n := int64(len(b))
		if n > ChunkSize {
			n = ChunkSize
		}
		if n > st.credit {
			n = st.credit
		}
		st.credit -= n
		st.mu.Unlock()
		frame, _ := Encode(FrameData, st.id, b[:n], channel)
		if err := st.s.send(frame); err != nil {
			return false, err
		}
		b = b[n:]
	}
	return true, nil
}

func (st *stream) end() error {
	b, _ := Encode(FrameEnd, st.id, nil, 0)
	return st.s.send(b)
}

func (st *stream) cancel() {
	st.mu.Lock()
	done := st.finished
	st.mu.Unlock()
	if !done {
		b, _ := Encode(FrameCancel, st.id, nil, 0)
		_ = st.s.send(b)
	}
}

// sendBody copies r to the stream as DATA, then END.
func (st *stream) sendBody(ctx context.Context, r io.Reader) error {
	if r != nil {
		buf := make([]byte, ChunkSize)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				ok, werr := st.write(ctx, buf[:n], 0)
				if werr != nil || !ok {
					return werr
				}
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				st.cancel()
				return err
			}
		}
	}
	return st.end()
}
