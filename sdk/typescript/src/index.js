// The TypeScript/JavaScript SDK of sandboxd (docs/sdk.md).
export { createSandbox, connectSandbox, Sandbox } from "./sandbox.js";
export { Client } from "./client.js";
export { parseEndpoint, resolveAuth, DEFAULT_ENDPOINT } from "./endpoint.js";
export { ExecHandle, SpawnedProcess, Process } from "./process.js";
export { Filesystem, Environment } from "./fs.js";
export { Network } from "./net.js";
export * from "./errors.js";
export * as wire from "./wire.js";
export * as e2e from "./e2e.js";
export const VERSION = "0.1.0";
