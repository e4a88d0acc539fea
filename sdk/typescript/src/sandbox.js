// createSandbox / connectSandbox and the Sandbox object.
import { Client } from "./client.js";
import { openSession } from "./session.js";
import { Filesystem, Environment } from "./fs.js";
import { Process } from "./process.js";
import { Network } from "./net.js";

export class Sandbox {
  constructor(info, session, client, ownsClient) {
    this.id = info.id;
    this.info = info;
    this.session = session;
    this.client = client;
    this.ownsClient = ownsClient;
    this.fs = new Filesystem(session);
    this.process = new Process(session);
    this.env = new Environment(session);
    this.net = new Network(session, client, info.id);
  }
  get closed() { return this.session.error !== null; }
  /** True for an end-to-end encrypted session; `fingerprint` is the agent key it agreed. */
  get encrypted() { return this.session.sealing !== null; }
  get fingerprint() { return this.session.fingerprint; }
  /** The agent's key fingerprint as it answers it (relayed by the daemon: check it out of band). */
  async agentFingerprint() { return (await this.session.call("e2e.identity")).fingerprint; }
  async ping() { await this.session.call("ping"); }
  async refresh() { this.info = await this.client.get(this.id); return this.info; }
  stats() { return this.client.stats(this.id); }
  /** Close the session; the sandbox stays for its ttl. */
  async close() {
    await this.session.close();
    if (this.ownsClient) this.client.close();
  }
  /** Destroy the sandbox, then close: over the session when the daemon can, else DELETE. */
  async destroy() {
    try {
      if (!(await this.session.destroySandbox())) await this.client.destroy(this.id);
    } finally { await this.close(); }
  }
  async [Symbol.asyncDispose]() { await this.close(); }
}

/** Create a sandbox (POST /sandboxes) and open its session. */
export async function createSandbox(opts = {}) {
  const client = opts.client ?? new Client(opts);
  try {
    const info = await client.create(opts);
    let session;
    try {
      session = await openSession(client, info.id);
      if (opts.encrypted || opts.pin) await secure(session, opts.pin);
    } catch (e) {
      await client.destroy(info.id).catch(() => {});
      throw e;
    }
    return new Sandbox(info, session, client, !opts.client);
  } catch (e) {
    if (!opts.client) client.close();
    throw e;
  }
}

async function secure(session, pin) {
  try {
    await session.encrypt(pin ?? null);
  } catch (e) {
    await session.close().catch(() => {});
    throw e;
  }
}

/** Open a session with an existing sandbox. */
export async function connectSandbox(id, opts = {}) {
  const client = opts.client ?? new Client(opts);
  try {
    const info = await client.get(id);
    const session = await openSession(client, id);
    if (opts.encrypted || opts.pin) await secure(session, opts.pin);
    return new Sandbox(info, session, client, !opts.client);
  } catch (e) {
    if (!opts.client) client.close();
    throw e;
  }
}
