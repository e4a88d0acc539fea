package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
)

// Process runs commands in the sandbox. A cmd is a string (run by /bin/sh -c)
// or a []string (the argv).
type Process struct{ s *session }

// ExecOptions are the parameters of Exec, StreamExec and Spawn.
type ExecOptions struct {
	Cwd       string
	Env       map[string]string
	Timeout   float64   // seconds; the agent kills the process group
	Stdin     io.Reader // streamed to the process, then closed (Exec, StreamExec)
	MaxOutput int64     // Exec: per channel (0: the agent's 16 MiB)
}

// ExitStatus is how a command ended; ExitCode is 128+signal when a signal killed it.
type ExitStatus struct {
	ExitCode  int  `json:"exit_code"`
	TimedOut  bool `json:"timed_out"`
	Truncated bool `json:"truncated"`
}

// ExecResult is a finished command.
type ExecResult struct {
	ExitStatus
	Stdout, Stderr []byte
}

// OutputEvent is a chunk of output; Channel is "stdout" or "stderr".
type OutputEvent struct {
	Channel string
	Data    []byte
}

func execParams(cmd interface{}, o *ExecOptions) map[string]interface{} {
	p := map[string]interface{}{"cmd": cmd}
	if o != nil {
		if o.Cwd != "" {
			p["cwd"] = o.Cwd
		}
		if o.Env != nil {
			p["env"] = o.Env
		}
		if o.Timeout > 0 {
			p["timeout"] = o.Timeout
		}
		if o.Stdin != nil {
			p["stdin_stream"] = true
		}
	}
	return p
}

// Exec runs cmd to completion.
func (pr *Process) Exec(ctx context.Context, cmd interface{}, o *ExecOptions) (*ExecResult, error) {
	p := execParams(cmd, o)
	if o != nil && o.MaxOutput > 0 {
		p["max_output"] = o.MaxOutput
	}
	h, err := pr.start(ctx, "process.exec", p, o)
	if err != nil {
		return nil, err
	}
	var out, errb bytes.Buffer
	for {
		ev, err := h.Next(ctx)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if ev.Channel == "stdout" {
			out.Write(ev.Data)
		} else {
			errb.Write(ev.Data)
		}
	}
	return &ExecResult{ExitStatus: *h.status, Stdout: out.Bytes(), Stderr: errb.Bytes()}, nil
}

// StreamExec starts cmd and streams its output (Next, then Wait).
func (pr *Process) StreamExec(ctx context.Context, cmd interface{}, o *ExecOptions) (*ExecHandle, error) {
	return pr.start(ctx, "process.stream", execParams(cmd, o), o)
}

func (pr *Process) start(ctx context.Context, method string, p map[string]interface{}, o *ExecOptions) (*ExecHandle, error) {
	st, err := pr.s.open(ctx, method, p)
	if err != nil {
		return nil, err
	}
	if o != nil && o.Stdin != nil {
		go st.sendBody(context.Background(), o.Stdin)
	}
	return &ExecHandle{st: st}, nil
}

// ExecHandle is a running command's output.
type ExecHandle struct {
	st           *stream
	status       *ExitStatus
	Pid          int
	DroppedBytes int64
}

// Next is the next output chunk; io.EOF once the command ended (then Wait).
func (h *ExecHandle) Next(ctx context.Context) (*OutputEvent, error) {
	for h.status == nil {
		f, err := h.st.next(ctx)
		if err != nil {
			return nil, err
		}
		switch f.Type {
		case FrameData:
			h.st.consumed(len(f.Payload))
			ch := "stdout"
			if f.Flags == 2 {
				ch = "stderr"
			}
			return &OutputEvent{Channel: ch, Data: f.Payload}, nil
		case FrameEvent:
			var ev struct {
				Pid     *int   `json:"pid"`
				Dropped *int64 `json:"dropped_bytes"`
			}
			if json.Unmarshal(f.Payload, &ev) == nil {
				if ev.Pid != nil {
					h.Pid = *ev.Pid
				}
				if ev.Dropped != nil {
					h.DroppedBytes += *ev.Dropped
				}
			}
		case FrameResult:
			var s ExitStatus
			if err := json.Unmarshal(f.Payload, &s); err != nil {
				return nil, err
			}
			h.status = &s
		}
	}
	return nil, io.EOF
}

// Wait drains what is left and returns the exit status.
func (h *ExecHandle) Wait(ctx context.Context) (*ExitStatus, error) {
	for {
		if _, err := h.Next(ctx); err == io.EOF {
			return h.status, nil
		} else if err != nil {
			return nil, err
		}
	}
}

// Cancel kills the command and waits for the agent's answer.
func (h *ExecHandle) Cancel(ctx context.Context) error {
	h.st.cancel()
	_, err := h.Wait(ctx)
	if e, ok := err.(*Error); ok && e.Code == "CANCELLED" {
		return nil
	}
	return err
}

// Pty is a terminal size.
type Pty struct{ Cols, Rows int }

// SpawnedProcess is a process started by Spawn or Pty: stdin, signals, output.
type SpawnedProcess struct {
	ExecHandle
	pr          *Process
	stdinClosed bool
}

// Spawn starts cmd (on a terminal with pty) and returns once it runs.
func (pr *Process) Spawn(ctx context.Context, cmd interface{}, o *ExecOptions, pty *Pty) (*SpawnedProcess, error) {
	p := execParams(cmd, o)
	delete(p, "stdin_stream")
	if pty != nil {
		p["pty"] = map[string]int{"cols": pty.Cols, "rows": pty.Rows}
	}
	st, err := pr.s.open(ctx, "process.spawn", p)
	if err != nil {
		return nil, err
	}
	f, err := st.next(ctx)
	if err != nil {
		return nil, err
	}
	var ev struct{ Pid int }
	if f.Type != FrameEvent || json.Unmarshal(f.Payload, &ev) != nil {
		return nil, &Error{Kind: KindProtocol, Code: "BAD_RESPONSE", Message: "process.spawn: no pid event first"}
	}
	return &SpawnedProcess{ExecHandle: ExecHandle{st: st, Pid: ev.Pid}, pr: pr}, nil
}

// Pty starts cmd (nil: bash -i) on a new terminal of cols x rows.
func (pr *Process) Pty(ctx context.Context, cmd interface{}, cols, rows int, o *ExecOptions) (*SpawnedProcess, error) {
	if cmd == nil {
		cmd = []string{"bash", "-i"}
	}
	return pr.Spawn(ctx, cmd, o, &Pty{cols, rows})
}

// Write sends b to stdin (the terminal, for a pty), within the agent's credit.
func (sp *SpawnedProcess) Write(ctx context.Context, b []byte) error {
	if sp.stdinClosed {
		return &Error{Kind: KindProcessExited, Code: "PROCESS_EXITED", Message: "stdin is closed"}
	}
	ok, err := sp.st.write(ctx, b, 0)
	if err == nil && !ok {
		err = &Error{Kind: KindProcessExited, Code: "PROCESS_EXITED", Message: "the process has exited"}
	}
	return err
}

// CloseStdin ends the input.
func (sp *SpawnedProcess) CloseStdin(ctx context.Context) error {
	if sp.stdinClosed {
		return nil
	}
	sp.stdinClosed = true
	return sp.st.end()
}

// Signal sends a signal ("TERM", "SIGKILL" or a number) to the process group.
func (sp *SpawnedProcess) Signal(ctx context.Context, sig interface{}) error {
	return sp.pr.Signal(ctx, sp.Pid, sig, true)
}

// Kill sends SIGKILL to the group.
func (sp *SpawnedProcess) Kill(ctx context.Context) error { return sp.Signal(ctx, "KILL") }

// Resize sets a pty's size (the process gets SIGWINCH).
func (sp *SpawnedProcess) Resize(ctx context.Context, cols, rows int) error {
	_, err := sp.pr.s.call(ctx, "process.resize", map[string]interface{}{"pid": sp.Pid, "cols": cols, "rows": rows})
	return err
}

// Signal signals a process the agent runs, by pid.
func (pr *Process) Signal(ctx context.Context, pid int, sig interface{}, group bool) error {
	_, err := pr.s.call(ctx, "process.signal", map[string]interface{}{"pid": pid, "signal": sig, "group": group})
	return err
}

// ProcessEntry is a process the agent runs.
type ProcessEntry struct {
	Pid int  `json:"pid"`
	Pty bool `json:"pty"`
}

// List is the processes the agent runs now.
func (pr *Process) List(ctx context.Context) ([]ProcessEntry, error) {
	r, err := pr.s.call(ctx, "process.list", nil)
	if err != nil {
		return nil, err
	}
	var out []ProcessEntry
	return out, remarshal(r["processes"], &out)
}
