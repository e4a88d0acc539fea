// One Server-Sent Events stream of GET /events shared by every view. Read
// with fetch (an EventSource cannot send the Authorization header), it
// resumes from the last id after a drop.

import { headers, root, request } from "./api.js";

export class EventFeed {
  constructor(keep = 1000) {
    this.keep = keep;
    this.events = [];
    this.listeners = new Set();
    this.last = null;
    this.status = "connecting";
    this.seeded = false;
  }

  subscribe(fn) { this.listeners.add(fn); return () => this.listeners.delete(fn); }

  _emit(event) {
    this.events.push(event);
    if (this.events.length > this.keep) this.events.splice(0, this.events.length - this.keep);
    for (const fn of this.listeners) fn(event);
  }

  _setStatus(status) {
    this.status = status;
    for (const fn of this.listeners) fn(null);
  }

  /** Follow the stream for as long as the page lives. */
  async run() {
    for (;;) {
      try {
        await this._follow();
      } catch (e) {
        this._setStatus(`disconnected (${e.message}); retrying`);
      }
      await new Promise((r) => setTimeout(r, 2000));
    }
  }

  async _seed(position) {
    // The last `keep` events before the stream's start (the charts want the last hour).
    if (this.seeded || position === null) return;
    this.seeded = true;
    try {
      const after = Math.max(0, position - this.keep);
      const page = await request("GET", `/events/history?after=${after}&limit=${this.keep}`);
      for (const e of page) if (e.id <= position) this._emit(e);
    } catch { /* the live stream still works */ }
  }

  async _follow() {
    const h = headers({ Accept: "text/event-stream" });
    if (this.last !== null) h["Last-Event-ID"] = String(this.last);
    const res = await fetch(`${root}/events`, { headers: h, cache: "no-store" });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    this._setStatus("live");
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let fields = {};
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error("the stream ended");
      buffer += decoder.decode(value, { stream: true });
      let nl;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, nl).replace(/\r$/, "");
        buffer = buffer.slice(nl + 1);
        if (line === "") {
          await this._dispatch(fields);
          fields = {};
        } else if (!line.startsWith(":")) {
          const colon = line.indexOf(":");
          const name = colon < 0 ? line : line.slice(0, colon);
          const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
          fields[name] = name in fields && name === "data" ? `${fields[name]}\n${val}` : val;
        }
      }
    }
  }

  async _dispatch(fields) {
    if ("id" in fields && fields.id !== "") {
      const id = Number(fields.id);
      if (this.last === null) await this._seed(id);
      this.last = id;
    }
    if (fields.data === undefined || fields.event === "gap") return;
    try { this._emit(JSON.parse(fields.data)); } catch { /* not ours */ }
  }
}
