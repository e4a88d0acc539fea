// The TypeScript SDK's conformance runner (tests/conformance/README.md).
//   node tests/conformance/typescript_runner.mjs vectors|scenario|bench [--endpoint URL] [--mib N]
// SANDBOX_SDK_MODULE names the SDK to import (default: sdk/typescript/src/index.js of this tree),
// so the runner also plays against a package installed from `npm pack`.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { fileURLToPath, pathToFileURL } from "node:url";
import { dirname, join } from "node:path";
import { createRequire } from "node:module";

const here = dirname(fileURLToPath(import.meta.url));
let spec = process.env.SANDBOX_SDK_MODULE || pathToFileURL(join(here, "../../sdk/typescript/src/index.js")).href;
if (process.env.SANDBOX_SDK_FROM) spec = pathToFileURL(createRequire(join(process.env.SANDBOX_SDK_FROM, "x.js")).resolve(spec)).href;
const sdk = await import(spec);
const { wire } = sdk;

class Failure extends Error {}
const check = (cond, what) => { if (!cond) throw new Failure(what); };
const load = (name) => JSON.parse(readFileSync(join(here, name), "utf8"));
const FAMILY = [
  ["path_not_found", sdk.PathNotFoundError], ["file", sdk.FileError], ["rate_limited", sdk.RateLimitedError],
  ["capacity", sdk.CapacityError], ["invalid_request", sdk.InvalidRequestError], ["not_found", sdk.NotFoundError],
  ["server", sdk.ServerError], ["sandbox_unavailable", sdk.SandboxUnavailableError], ["protocol", sdk.ProtocolError],
  ["timeout", sdk.SandboxTimeoutError], ["cancelled", sdk.RequestCancelledError], ["network", sdk.NetworkError],
  ["sandbox", sdk.SandboxError],
];
// The exact class: the first in the list that the error is an instance of (subclasses first).
const family = (e) => (FAMILY.find(([, cls]) => e instanceof cls) ?? ["?"])[0];

function partsBytes(c, hexKey = "hex", partsKey = "parts") {
  if (!c[partsKey]) return Buffer.from(c[hexKey], "hex");
  return Buffer.concat(c[partsKey].map((p) => (typeof p === "string" ? Buffer.from(p, "hex") : Buffer.alloc(p[1], p[0]))));
}

function playVectors(v) {
  let n = 0;
  for (const [k, val] of Object.entries(v.constants)) check(wire[k] === val, `constant ${k}: ${wire[k]} != ${val}`);
  for (const [k, val] of Object.entries(v.frame_types)) check(wire.FrameType[k] === val, `frame type ${k}`);
  for (const c of v.encode) {
    const f = c.frame;
    const got = wire.encode(wire.FrameType[f.type], f.stream, Buffer.from(f.payload_hex, "hex"), f.flags).toString("hex");
    check(got === c.hex, `encode ${c.name}: ${got} != ${c.hex}`);
    n++;
  }
  for (const c of v.decode) {
    const data = partsBytes(c);
    let frames;
    if (c.stream_bytes) { const fr = new wire.Framer(); frames = fr.feed(data); fr.finish(); } else frames = [wire.decodeOne(data)];
    check(frames.length === c.frames.length, `decode ${c.name}: ${frames.length} frames`);
    c.frames.forEach((want, i) => {
      const got = frames[i];
      check(wire.typeName(got.type) === want.type && got.flags === want.flags && got.stream === want.stream
        && Buffer.compare(Buffer.from(got.payload), partsBytes(want, "payload_hex", "payload_parts")) === 0, `decode ${c.name}`);
    });
    if (c.json !== undefined) check(JSON.stringify(wire.decodeJSON(frames[0].payload)) === JSON.stringify(c.json), `decode ${c.name}: json`);
    n++;
  }
  for (const c of v.decode_errors) {
    let code = null;
    try {
      const f = wire.decodeOne(partsBytes(c));
      if (c.when === "json") wire.decodeJSON(f.payload);
      else if (c.when === "window") wire.windowIncrement(f);
    } catch (e) { code = e.code; }
    check(code === c.error, `decode error ${c.name}: ${code} != ${c.error}`);
    n++;
  }
  for (const c of v.wire_errors) {
    const f = wire.decodeOne(Buffer.from(c.hex, "hex"));
    const e = sdk.errorFromPayload(wire.decodeJSON(f.payload));
    check(e.code === c.code && family(e) === c.family && e.message === c.message
      && JSON.stringify(e.details) === JSON.stringify(c.details), `wire error ${c.code}: ${e.constructor.name}`);
    n++;
  }
  for (const c of v.http_errors) {
    const e = sdk.errorFromHttp(c.status, "Reason", {}, Buffer.from(c.body));
    check(e.code === c.code && family(e) === c.family && e.status === c.status, `http error ${c.status} ${c.code}: ${e.code} ${e.constructor.name}`);
    n++;
  }
  return n + playE2E(v.e2e);
}

// The encrypted-session vectors (README, `e2e`): the same hello, keys, sealed bytes and errors.
function playE2E(v) {
  const { e2e } = sdk;
  const frameHex = (f) => wire.encode(f.type, f.stream, f.payload, f.flags).toString("hex");
  const client = (pin = v.pin) => {
    const keys = { privateKey: Buffer.from(v.client_private_hex, "hex"), publicKey: Buffer.from(v.client_public_hex, "hex") };
    const hello = new e2e.ClientHandshake(v.sandbox, pin, keys);
    check(JSON.stringify(hello.hello()) === JSON.stringify(v.hello), "e2e hello");
    const sealing = hello.finish(v.result);
    for (const c of v.to_agent) check(sealing.seal(Buffer.from(c.plain_hex, "hex")).toString("hex") === c.sealed_hex, "e2e seal");
    return sealing;
  };
  let sealing = client();
  for (const c of v.from_agent) check(frameHex(sealing.open(wire.decodeOne(Buffer.from(c.sealed_hex, "hex")))) === c.plain_hex, "e2e open");
  let n = 2;
  for (const c of v.from_agent_errors) {
    sealing = client();
    for (const good of v.from_agent.slice(0, c.after)) sealing.open(wire.decodeOne(Buffer.from(good.sealed_hex, "hex")));
    let code = null;
    try { sealing.open(wire.decodeOne(Buffer.from(c.sealed_hex, "hex"))); } catch (e) { code = e.code; }
    check(code === c.error, `e2e ${c.name}: ${code}`);
    n++;
  }
  let code = null;
  try { client(v.wrong_pin.pin); } catch (e) { code = e.code; }
  check(code === v.wrong_pin.error, `e2e wrong pin: ${code}`);
  return n + 1;
}

function* pattern({ size, modulus }, chunk = 65536) {
  const base = Buffer.alloc(modulus * (Math.floor(chunk / modulus) + 2));
  for (let i = 0; i < base.length; i++) base[i] = i % modulus;
  for (let done = 0; done < size;) {
    const start = done % modulus, n = Math.min(chunk, size - done);
    yield base.subarray(start, start + n);
    done += n;
  }
}

async function collect(handle, until) {
  const out = [], err = [];
  for await (const ev of handle) {
    (ev.channel === "stdout" ? out : err).push(ev.raw);
    if (until && Buffer.concat(out).includes(until)) break;
  }
  return [Buffer.concat(out), Buffer.concat(err)];
}

function checkResult(want, out, err, r) {
  if ("stdout" in want) check(out.toString() === want.stdout, `stdout ${JSON.stringify(out.toString())}`);
  if ("stderr" in want) check(err.toString() === want.stderr, `stderr ${JSON.stringify(err.toString())}`);
  if ("exit_code" in want) check(r.exitCode === want.exit_code, `exit code ${r.exitCode}`);
  if ("timed_out" in want) check(r.timedOut === want.timed_out, `timed_out ${r.timedOut}`);
}

async function playScenario(endpoint, steps) {
  let sbx = null, id = null;
  const step = async (s) => {
    const want = s.expect ?? {};
    switch (s.op) {
      case "create": sbx = await sdk.createSandbox({ endpoint, ...s.args }); id = sbx.id; check(sbx.info.state === want.state, "state"); break;
      case "write": check(await sbx.fs.write(s.path, s.pattern ? pattern(s.pattern) : s.text) === want.size, "size"); break;
      case "read": {
        const h = createHash("sha256"); let size = 0; const got = [];
        for await (const c of sbx.fs.readStream(s.path, { offset: s.offset, length: s.length })) { h.update(c); size += c.length; if (want.hex) got.push(Buffer.from(c)); }
        check(size === want.size, `read ${size}`);
        if (want.sha256) check(h.digest("hex") === want.sha256, "sha256");
        if (want.hex) check(Buffer.concat(got).toString("hex") === want.hex, "bytes");
        break;
      }
      case "read_text": check(await sbx.fs.readText(s.path) === want.text, "text"); break;
      case "stat": { const i = await sbx.fs.stat(s.path); check(i.type === want.type && i.size === want.size, "stat"); break; }
      case "mkdir": await sbx.fs.mkdir(s.path, { parents: s.parents }); break;
      case "rename": await sbx.fs.rename(s.src, s.dst); break;
      case "list": { const names = (await sbx.fs.list(s.path)).map((e) => e.name); check(JSON.stringify(names) === JSON.stringify(want.names), `names ${names}`); break; }
      case "remove": await sbx.fs.remove(s.path, { recursive: s.recursive }); break;
      case "exists": check(await sbx.fs.exists(s.path) === want.exists, "exists"); break;
      case "exec": { const r = await sbx.process.exec(s.cmd, { stdin: s.stdin, timeout: s.timeout }); checkResult(want, r.stdoutBytes, r.stderrBytes, r); break; }
      case "stream": { const h = await sbx.process.streamExec(s.cmd); const [o, e] = await collect(h); checkResult(want, o, e, await h.wait()); break; }
      case "spawn": case "pty": {
        const p = s.op === "pty" ? await sbx.process.pty(s.cmd, { cols: s.cols, rows: s.rows }) : await sbx.process.spawn(s.cmd);
        check(p.pid > 0, "pid");
        let out = Buffer.alloc(0);
        if (s.wait_for) [out] = await collect(p, s.wait_for);
        if (s.resize) await p.resize(...s.resize);
        if (s.write) await p.write(s.write);
        if (s.close_stdin) await p.closeStdin();
        if (s.signal) await p.signal(s.signal);
        const [rest, err] = await collect(p);
        const r = await p.wait();
        out = Buffer.concat([out, rest]);
        if (s.op === "pty") {
          for (const needle of want.contains) check(out.toString().includes(needle), `pty output lacks ${needle}: ${JSON.stringify(out.toString())}`);
          check(r.exitCode === want.exit_code, `exit ${r.exitCode}`);
        } else checkResult(want, out, err, r);
        break;
      }
      case "env_set": await sbx.env.set(s.vars); break;
      case "env_get": check((await sbx.env.get(s.name)) === want.value, "value"); break;
      case "env_delete": check(JSON.stringify(await sbx.env.delete(...s.names)) === JSON.stringify(want.deleted), "deleted"); break;
      case "connect_again": {
        const other = await sdk.connectSandbox(id, { endpoint });
        try { const r = await other.process.exec(s.cmd); check(r.stdout === want.stdout, `stdout ${r.stdout}`); } finally { await other.close(); }
        break;
      }
      case "signal": await sbx.process.signal(s.pid, s.signal); break;
      case "connect": await (await sdk.connectSandbox(s.id, { endpoint })).close(); break;
      case "destroy": await sbx.destroy(); break;
      case "get": { const c = new sdk.Client({ endpoint }); try { await c.get(id); } finally { c.close(); } break; }
      default: throw new Failure(`unknown op ${s.op}`);
    }
  };
  try {
    for (const [i, s] of steps.entries()) {
      try {
        await step(s);
        check(!s.expect_error, `step ${i} ${s.op}: no error, want ${JSON.stringify(s.expect_error)}`);
      } catch (e) {
        if (e instanceof Failure) throw e;
        if (!(e instanceof sdk.SandboxError) || !s.expect_error) throw new Failure(`step ${i} ${s.op}: unexpected ${e.constructor.name} ${e.code}: ${e.message}`);
        check(e.code === s.expect_error.code && family(e) === s.expect_error.family, `step ${i} ${s.op}: got ${e.code}/${family(e)}, want ${JSON.stringify(s.expect_error)}`);
      }
      console.log(`ok ${i} ${s.op}`);
    }
  } finally {
    if (sbx && !sbx.closed) await sbx.destroy().catch(() => {});
  }
}

async function bench(endpoint, mib) {
  const size = mib * 1024 * 1024;
  const sbx = await sdk.createSandbox({ endpoint, storage: `${mib + 64}m`, memory: `${mib + 256}m` });
  try {
    const t0 = performance.now();
    await sbx.fs.write("/root/bench.bin", pattern({ size, modulus: 251 }, 256 * 1024));
    const t1 = performance.now();
    let got = 0;
    for await (const c of sbx.fs.readStream("/root/bench.bin")) got += c.length;
    const t2 = performance.now();
    check(got === size, `downloaded ${got}`);
    const mbs = (ms) => Math.round((size / 1e6 / (ms / 1000)) * 10) / 10;
    return { sdk: "typescript", mib, upload_mb_s: mbs(t1 - t0), download_mb_s: mbs(t2 - t1) };
  } finally { await sbx.destroy(); }
}

const args = process.argv.slice(2);
const opt = (name, dflt) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : dflt; };
try {
  if (args[0] === "vectors") console.log(`ok ${playVectors(load("vectors.json"))} vectors`);
  else if (args[0] === "scenario") await playScenario(opt("--endpoint"), load("scenario.json").steps);
  else if (args[0] === "bench") console.log(JSON.stringify(await bench(opt("--endpoint"), Number(opt("--mib", "100")))));
  else throw new Failure("usage: typescript_runner.mjs vectors|scenario|bench [--endpoint URL]");
  process.exit(0);
} catch (e) {
  console.log(`FAIL ${e instanceof Failure ? e.message : e.stack}`);
  process.exit(1);
}
