// sbx.fs: files in the sandbox (docs/protocol.md, fs.*), streamed within the window.
import { FrameType } from "./wire.js";
import { sendBody } from "./session.js";

function fileInfo(e) {
  return { name: e.name, path: e.path, type: e.type, size: e.size, mode: e.mode, mtime: e.mtime,
    isFile: e.type === "file", isDir: e.type === "dir", isSymlink: e.type === "symlink" };
}

export class Filesystem {
  constructor(session) { this.session = session; }

  /** The chunks of a file, as read (async iterable of Buffer); leaving early cancels the read. */
  async *readStream(path, opts = {}) {
    const p = { path };
    if (opts.offset) p.offset = opts.offset;
    if (opts.length != null) p.length = opts.length;
    yield* this._dataStream("fs.read", p);
  }

  async *_dataStream(method, p) {
    const stream = await this.session.open(method, p);
    let done = false;
    try {
      for (;;) {
        const f = await stream.next();
        if (f.type === FrameType.RESULT) { done = true; return; }
        if (f.type === FrameType.DATA) {
          yield f.payload;
          stream.consumed(f.payload.length);
        }
      }
    } finally {
      if (!done && !stream.finished) await stream.cancel();
    }
  }

  async read(path, opts = {}) {
    const chunks = [];
    for await (const c of this.readStream(path, opts)) chunks.push(Buffer.from(c));
    return Buffer.concat(chunks);
  }

  async readText(path) { return (await this.read(path)).toString("utf8"); }

  /** Write `data` (string, bytes, an (async) iterable of them, or a Readable); the bytes written. */
  async write(path, data, opts = {}) {
    const p = { path };
    if (opts.mode != null) p.mode = opts.mode;
    if (opts.append) p.append = true;
    const stream = await this.session.open("fs.write", p);
    const [, result] = await Promise.all([sendBody(stream, data), stream.result()]);
    return result.size;
  }

  async list(path, opts = {}) {
    const p = { path };
    if (opts.depth != null) p.depth = opts.depth;
    const stream = await this.session.open("fs.list", p);
    const out = [];
    for (;;) {
      const f = await stream.next();
      if (f.type === FrameType.RESULT) return out;
      if (f.type === FrameType.EVENT) out.push(...JSON.parse(f.payload.toString("utf8")).entries.map(fileInfo));
    }
  }

  async stat(path) { return fileInfo(await this.session.call("fs.stat", { path })); }

  async exists(path) {
    try { await this.stat(path); return true; } catch (e) { if (e.code === "ENOENT") return false; throw e; }
  }

  async mkdir(path, opts = {}) {
    const p = { path, parents: !!opts.parents };
    if (opts.mode != null) p.mode = opts.mode;
    return (await this.session.call("fs.mkdir", p)).path;
  }

  async remove(path, opts = {}) { await this.session.call("fs.remove", { path, recursive: !!opts.recursive }); }

  async rename(src, dst, opts = {}) {
    return this.session.call("fs.rename", { src, dst, overwrite: opts.overwrite ?? true });
  }

  /** Extract a tar (plain or compressed; any body `write` takes) under the directory `path`. */
  async upload(path, tar) {
    const stream = await this.session.open("fs.upload", { path });
    const [, result] = await Promise.all([sendBody(stream, tar), stream.result()]);
    return result;
  }

  /** The chunks of a tar of a file or directory (async iterable of Buffer). */
  download(path) { return this._dataStream("fs.download", { path }); }
}

export class Environment {
  constructor(session) { this.session = session; }
  async set(vars) { await this.session.call("env.set", { vars }); }
  async get(name, dflt = null) { const v = (await this.session.call("env.get", { name })).value; return v ?? dflt; }
  async delete(...names) { return (await this.session.call("env.delete", { names })).deleted; }
  async list() { return (await this.session.call("env.list")).env; }
}
