// sbx.process: exec, streamExec, spawn, pty, signal, list (docs/protocol.md, process.*).
import { StringDecoder } from "node:string_decoder";
import { FrameType } from "./wire.js";
import { sendBody } from "./session.js";
import { ProcessExitedError, ProtocolError } from "./errors.js";

const CHANNELS = { 1: "stdout", 2: "stderr" };

function params(cmd, opts = {}) {
  const p = { cmd };
  if (opts.cwd != null) p.cwd = opts.cwd;
  if (opts.env != null) p.env = opts.env;
  if (opts.timeout != null) p.timeout = opts.timeout;
  return p;
}

/** Output of a running command: an async iterator of {channel, data, raw}, then its result. */
export class ExecHandle {
  constructor(stream) {
    this.stream = stream;
    this.decoders = { stdout: new StringDecoder("utf8"), stderr: new StringDecoder("utf8") };
    this.resultValue = null;
    this.droppedBytes = 0;
    this.pid = null;
  }

  get done() { return this.resultValue !== null; }

  /** The next output event, or null at the end. */
  async nextEvent() {
    while (this.resultValue === null) {
      const f = await this.stream.next();
      if (f.type === FrameType.DATA) {
        this.stream.consumed(f.payload.length);
        const channel = CHANNELS[f.flags] ?? "stdout";
        return { channel, raw: Buffer.from(f.payload), data: this.decoders[channel].write(f.payload) };
      }
      if (f.type === FrameType.RESULT) {
        const r = JSON.parse(f.payload.toString("utf8"));
        this.resultValue = { exitCode: r.exit_code, timedOut: !!r.timed_out, truncated: !!r.truncated };
      } else if (f.type === FrameType.EVENT) {
        const ev = JSON.parse(f.payload.toString("utf8"));
        if (typeof ev.pid === "number") this.pid = ev.pid;
        if (typeof ev.dropped_bytes === "number") this.droppedBytes += ev.dropped_bytes;
      }
    }
    return null;
  }

  async *[Symbol.asyncIterator]() {
    for (;;) {
      const ev = await this.nextEvent();
      if (ev === null) return;
      yield ev;
    }
  }

  /** Drain what is left; {exitCode, timedOut, truncated}. */
  async wait() {
    while ((await this.nextEvent()) !== null) { /* drop */ }
    return this.resultValue;
  }

  async exitCode() { return (await this.wait()).exitCode; }

  /** Kill the command (CANCEL) and wait for the agent's answer. */
  async cancel() {
    await this.stream.cancel();
    try { await this.wait(); } catch (e) { if (e.code !== "CANCELLED") throw e; }
  }
}

/** A process started by spawn or pty. */
export class SpawnedProcess extends ExecHandle {
  constructor(stream, pid, hasPty, processApi) {
    super(stream);
    this.pid = pid;
    this.hasPty = hasPty;
    this.api = processApi;
  }

  /** Write bytes or text to stdin (the terminal, for a pty). */
  async write(data) {
    if (this.stream.finished || this.stdinClosed) throw new ProcessExitedError("PROCESS_EXITED", `process ${this.pid} has exited or its stdin is closed`);
    await this.stream.write(data);
  }

  async closeStdin() {
    if (!this.stdinClosed) { this.stdinClosed = true; await this.stream.end(); }
  }

  signal(signal = "TERM", group = true) { return this.api.signal(this.pid, signal, group); }
  kill() { return this.signal("KILL"); }
  resize(cols, rows) { return this.api.session.call("process.resize", { pid: this.pid, cols, rows }); }
}

export class Process {
  constructor(session) { this.session = session; }

  /** Run `cmd` to completion: {stdout, stderr, exitCode, timedOut, truncated, stdoutBytes, stderrBytes}. */
  async exec(cmd, opts = {}) {
    const p = params(cmd, opts);
    if (opts.maxOutput != null) p.max_output = opts.maxOutput;
    const handle = await this._start("process.exec", p, opts.stdin);
    const out = [], err = [];
    for await (const ev of handle) (ev.channel === "stdout" ? out : err).push(ev.raw);
    const r = handle.resultValue;
    const stdoutBytes = Buffer.concat(out), stderrBytes = Buffer.concat(err);
    return { ...r, stdout: stdoutBytes.toString("utf8"), stderr: stderrBytes.toString("utf8"), stdoutBytes, stderrBytes, ok: r.exitCode === 0 && !r.timedOut };
  }

  /** Start `cmd` and stream its output: an ExecHandle. */
  streamExec(cmd, opts = {}) {
    return this._start("process.stream", params(cmd, opts), opts.stdin);
  }

  async _start(method, p, stdin) {
    if (stdin != null) p.stdin_stream = true;
    const stream = await this.session.open(method, p);
    const handle = new ExecHandle(stream);
    if (stdin != null) sendBody(stream, stdin).catch(() => {});
    return handle;
  }

  /** Start a process with stdin, signals and (with `pty`) a terminal; a SpawnedProcess once it runs. */
  async spawn(cmd, opts = {}) {
    const p = params(cmd, opts);
    if (opts.pty) p.pty = { cols: opts.pty.cols ?? 80, rows: opts.pty.rows ?? 24 };
    const stream = await this.session.open("process.spawn", p);
    const f = await stream.next();
    if (f.type !== FrameType.EVENT) throw new ProtocolError("BAD_RESPONSE", "process.spawn: no pid event first");
    const pid = JSON.parse(f.payload.toString("utf8")).pid;
    return new SpawnedProcess(stream, pid, !!opts.pty, this);
  }

  /** A process on a new terminal of `cols` x `rows` (default command: bash -i). */
  pty(cmd = null, opts = {}) {
    return this.spawn(cmd ?? ["bash", "-i"], { ...opts, pty: { cols: opts.cols ?? 80, rows: opts.rows ?? 24 } });
  }

  async list() { return (await this.session.call("process.list")).processes; }

  signal(pid, signal = "TERM", group = true) {
    return this.session.call("process.signal", { pid, signal, group });
  }
}
