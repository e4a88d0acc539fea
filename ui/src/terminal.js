// A terminal in the browser: xterm.js on a `process.spawn` with a pty,
// through the sandbox's WebSocket session (docs/protocol.md). The browser
// authenticates the upgrade with a short-lived session token offered as a
// subprotocol (docs/api.md), never an Authorization header.

import { Terminal } from "@xterm/xterm";
import { FitAddon } from "@xterm/addon-fit";
import "@xterm/xterm/css/xterm.css";
import { request, root } from "./api.js";
import * as wire from "./wire.js";

const { FrameType } = wire;
const PTY = 1;  // the spawn's stream id (client streams are odd)

/** Open a shell of `sandboxId` in `element`; returns { close }. */
export async function openTerminal(element, sandboxId, onStatus = () => {}) {
  const term = new Terminal({ convertEol: false, cursorBlink: true, fontSize: 14, scrollback: 5000 });
  const fit = new FitAddon();
  term.loadAddon(fit);
  term.open(element);
  fit.fit();
  element.dataset.size = `${term.cols}x${term.rows}`;

  const minted = await request("POST", `/sandboxes/${encodeURIComponent(sandboxId)}/session-token`);
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const url = `${scheme}://${location.host}${root}/sandboxes/${encodeURIComponent(sandboxId)}/ws`;
  const ws = new WebSocket(url, [minted.protocol, `sandboxd.bearer.${minted.token}`]);
  ws.binaryType = "arraybuffer";

  let pid = null;
  let credit = wire.INITIAL_WINDOW;  // what the agent lets us type
  let unacked = 0;                   // output shown but not yet granted back
  let nextId = PTY + 2;
  const pending = [];                // typed bytes waiting for credit
  let closed = false;

  const send = (frame) => { if (ws.readyState === WebSocket.OPEN) ws.send(frame); };
  const flush = () => {
    while (pending.length && credit > 0) {
      let chunk = pending.shift();
      if (chunk.length > credit) { pending.unshift(chunk.subarray(credit)); chunk = chunk.subarray(0, credit); }
      credit -= chunk.length;
      send(wire.encode(FrameType.DATA, PTY, chunk, 0));
    }
  };
  const resizing = new Map();  // stream id -> "COLSxROWS" asked for
  const resize = ({ cols, rows }) => {
    element.dataset.size = `${cols}x${rows}`;
    if (pid === null) return;
    const id = nextId;
    resizing.set(id, `${cols}x${rows}`);
    nextId = nextId + 2 > 0x7ffffff0 ? PTY + 2 : nextId + 2;
    send(wire.encodeJSON(FrameType.REQUEST, id, { method: "process.resize", params: { pid, cols, rows } }));
  };

  ws.onopen = () => {
    onStatus("connected");
    send(wire.encodeJSON(FrameType.REQUEST, PTY, {
      method: "process.spawn",
      params: { cmd: ["/bin/bash", "-i"], pty: { cols: term.cols, rows: term.rows } },
    }));
  };
  ws.onmessage = (msg) => {
    let frame;
    try { frame = wire.decode(msg.data); } catch (e) { term.write(`\r\n[bad frame: ${e.message}]\r\n`); return; }
    if (frame.stream === 0) {
      if (frame.type === FrameType.PING) send(wire.encode(FrameType.PONG, 0, frame.payload));
      return;
    }
    if (frame.stream !== PTY) {  // a resize's RESULT or ERROR
      if (frame.type === FrameType.RESULT && resizing.has(frame.stream)) element.dataset.resized = resizing.get(frame.stream);
      if (frame.type === FrameType.RESULT || frame.type === FrameType.ERROR) resizing.delete(frame.stream);
      return;
    }
    switch (frame.type) {
      case FrameType.EVENT: {
        const event = wire.decodeJSON(frame.payload);
        if (typeof event.pid === "number") {
          pid = event.pid;
          element.dataset.pid = String(pid);
          resize({ cols: term.cols, rows: term.rows });
        }
        break;
      }
      case FrameType.DATA:
        term.write(frame.payload);
        unacked += frame.payload.length;
        if (unacked >= wire.INITIAL_WINDOW / 2) { send(wire.encodeWindow(PTY, unacked)); unacked = 0; }
        break;
      case FrameType.WINDOW:
        credit += wire.windowIncrement(frame.payload);
        flush();
        break;
      case FrameType.RESULT: {
        const result = wire.decodeJSON(frame.payload);
        term.write(`\r\n[the shell exited with code ${result.exit_code}]\r\n`);
        onStatus("exited");
        break;
      }
      case FrameType.ERROR: {
        const err = wire.decodeJSON(frame.payload);
        term.write(`\r\n[${err.code}: ${err.message}]\r\n`);
        onStatus("failed");
        break;
      }
      default:
    }
  };
  ws.onclose = (e) => {
    closed = true;
    const why = e.code === 1000 ? "the sandbox was destroyed or the session closed"
      : e.code === 1011 ? "the sandbox's agent was lost" : `the session ended (${e.code})`;
    term.write(`\r\n[${why}]\r\n`);
    onStatus("closed");
  };

  term.onData((text) => { pending.push(wire.utf8.encode(text)); flush(); });
  term.onResize(resize);
  const refit = () => { try { fit.fit(); } catch { /* detached */ } };
  const observer = new ResizeObserver(refit);
  observer.observe(element);
  term.focus();

  return {
    term,
    close() {
      observer.disconnect();
      if (!closed) ws.close(1000);
      term.dispose();
    },
  };
}
