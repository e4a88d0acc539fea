// node --test: the TypeScript SDK beyond the conformance scenario. The live tests need a daemon:
// SANDBOX_ENDPOINT (tests/test_conformance.py sets it); without it they are skipped (CI=true: they fail).
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import {
  createSandbox, parseEndpoint, InvalidEndpointError, RequestCancelledError, SandboxUnavailableError,
  NotFoundError, wire,
} from "../src/index.js";

describe("endpoints", () => {
  test("the three forms parse; anything else is InvalidEndpointError", () => {
    assert.equal(parseEndpoint("unix:///run/s.sock").path, "/run/s.sock");
    assert.equal(parseEndpoint("unix:/run/s.sock").path, "/run/s.sock");
    const e = parseEndpoint("https://example.test:8443/api/");
    assert.deepEqual([e.host, e.port, e.prefix, e.tls, e.hostHeader], ["example.test", 8443, "/api", true, "example.test:8443"]);
    assert.equal(parseEndpoint("http://[::1]").port, 80);
    for (const bad of ["ftp://x", "unix:", "http://h/?q=1", "http://u:p@h", ""]) {
      assert.throws(() => parseEndpoint(bad), InvalidEndpointError, bad);
    }
  });
  test("a frame above the limit is refused before it is sent", () => {
    assert.throws(() => wire.encode(wire.FrameType.DATA, 1, Buffer.alloc(wire.MAX_PAYLOAD + 1)), { code: "FRAME_TOO_LARGE" });
  });
});

describe("session", () => {
  test("stream ids are odd and wrap from 2^32-1 back to 1, skipping ids still open", async () => {
    const { Session } = await import("../src/session.js");
    const sent = [];
    const fakeWs = { on() {}, send(frame, opts, cb) { sent.push(frame); cb(); } };
    const session = new Session(fakeWs, "sbx-test");
    session.nextId = wire.MAX_STREAM_ID - 2;
    const ids = [];
    for (let i = 0; i < 3; i++) ids.push((await session.open("ping")).id);
    assert.deepEqual(ids, [wire.MAX_STREAM_ID - 2, wire.MAX_STREAM_ID, 1]);
    session.nextId = 3;
    session.streams.set(3, {});
    assert.equal((await session.open("ping")).id, 5);
    assert.equal(wire.decodeOne(sent[0]).stream, wire.MAX_STREAM_ID - 2);
  });
});

const endpoint = process.env.SANDBOX_ENDPOINT;
const live = endpoint ? describe : (process.env.CI === "true" ? () => { throw new Error("SANDBOX_ENDPOINT is not set"); } : describe.skip);

live("against a daemon", () => {
  let sbx;
  before(async () => { sbx = await createSandbox({ endpoint }); });
  after(async () => { if (sbx && !sbx.closed) await sbx.destroy(); });

  test("50 commands run concurrently on one session, each with its own output", async () => {
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => sbx.process.exec(`echo ${i}`)));
    results.forEach((r, i) => assert.equal(r.stdout, `${i}\n`));
  });

  test("8 MiB of binary stdin passes through cat unchanged (both windows turn over)", async () => {
    const data = randomBytes(8 << 20);
    const r = await sbx.process.exec("sha256sum | cut -d' ' -f1", { stdin: (async function* () { for (let i = 0; i < data.length; i += 100000) yield data.subarray(i, i + 100000); })() });
    assert.equal(r.stdout.trim(), createHash("sha256").update(data).digest("hex"));
  });

  test("cancel() kills a streaming command and the session stays usable", async () => {
    const h = await sbx.process.streamExec("echo started; sleep 60");
    const first = await h[Symbol.asyncIterator]().next();
    assert.equal(first.value.data, "started\n");
    await h.cancel();
    await assert.rejects(h.wait(), RequestCancelledError);
    assert.equal((await sbx.process.exec("echo still")).stdout, "still\n");
  });

  test("leaving a readStream loop early cancels the read", async () => {
    await sbx.fs.write("/root/12m.bin", Buffer.alloc(12 << 20, 7));
    let n = 0;
    for await (const c of sbx.fs.readStream("/root/12m.bin")) { n += c.length; if (n > 1 << 20) break; }
    assert.ok(n < 12 << 20);
    assert.equal((await sbx.fs.stat("/root/12m.bin")).size, 12 << 20);
  });

  test("a downloaded tar uploads elsewhere with the same files", async () => {
    await sbx.fs.mkdir("/root/proj/sub", { parents: true });
    await sbx.fs.write("/root/proj/sub/a.txt", "alpha");
    const chunks = [];
    for await (const c of sbx.fs.download("/root/proj")) chunks.push(Buffer.from(c));
    const summary = await sbx.fs.upload("/tmp/copy", Buffer.concat(chunks));
    assert.equal(summary.files, 1);
    assert.equal(await sbx.fs.readText("/tmp/copy/proj/sub/a.txt"), "alpha");
  });

  test("net.fetch reaches a server on the sandbox's loopback; expose gives it a host port", async () => {
    const server = await sbx.process.spawn("cd /tmp/copy && exec python3 -m http.server 8765 --bind 0.0.0.0");
    try {
      let res;
      for (let i = 0; i < 300; i++) {
        try { res = await sbx.net.fetch("http://127.0.0.1:8765/proj/sub/a.txt"); break; } catch (e) { await new Promise((r) => setTimeout(r, 100)); }
      }
      assert.equal(res.status, 200);
      assert.equal(res.text(), "alpha");
      assert.match(sbx.net.url(8765), /\/sandboxes\/sbx-[^/]+\/ports\/8765\/$/);
      const tunnel = await sbx.net.expose(8765, { timeout: 30 });
      const body = await (await fetch(`${tunnel.url}/proj/sub/a.txt`)).text();
      assert.equal(body, "alpha");
      assert.deepEqual((await sbx.net.ports()).map((t) => t.port), [8765]);
      await sbx.net.close(8765);
      assert.deepEqual(await sbx.net.ports(), []);
    } finally { await server.kill(); }
  });

  test("env set in one call is seen by a later spawn; ESRCH for a gone pid", async () => {
    await sbx.env.set({ TS_SDK: "yes" });
    const p = await sbx.process.spawn("echo $TS_SDK");
    const out = []; for await (const ev of p) out.push(ev.data);
    assert.equal(out.join(""), "yes\n");
    assert.equal(await p.exitCode(), 0);
    await assert.rejects(sbx.process.signal(p.pid, "TERM"), NotFoundError);
  });

  test("a session authenticated the browser way (session token in Sec-WebSocket-Protocol) works", async () => {
    const { connectSandbox } = await import("../src/index.js");
    const other = await connectSandbox(sbx.id, { endpoint, sessionToken: true });
    try {
      assert.equal(other.session.ws.protocol, "sandboxd.v1");
      assert.equal((await other.process.exec("echo browser")).stdout, "browser\n");
    } finally { await other.close(); }
  });

  test("destroy goes over the session, not DELETE", async () => {
    const other = await createSandbox({ endpoint });
    other.client = Object.create(other.client, { destroy: { value: () => { throw new Error("destroy() sent DELETE"); } } });
    await other.destroy();
    assert.ok(other.closed);
    await assert.rejects(other.ping(), /the sandbox was destroyed/);
    await assert.rejects(sbx.client.get(other.id), NotFoundError);
  });

  test("after destroy every call fails with SandboxUnavailableError", async () => {
    const other = await createSandbox({ endpoint });
    await other.destroy();
    assert.ok(other.closed);
    await assert.rejects(other.process.exec("true"), SandboxUnavailableError);
  });
});
