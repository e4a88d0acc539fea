// Compiled with `tsc --noEmit` (npm run typecheck): the declarations describe a usable API.
import { createSandbox, connectSandbox, Client, FileError, PathNotFoundError, type ExecResult, wire } from "@sandboxd/sdk";

async function main(): Promise<void> {
  const sbx = await createSandbox({ profile: "default", memory: "512m", cpu: 1, ttl: 60, labels: { a: "b" } });
  await sbx.fs.write("/root/main.py", "print('hello')");
  const r: ExecResult = await sbx.process.exec("python3 /root/main.py", { stdin: "x", timeout: 5 });
  const code: number = r.exitCode;
  const h = await sbx.process.streamExec(["sh", "-c", "echo 1"]);
  for await (const ev of h) { const c: "stdout" | "stderr" = ev.channel; void c; }
  const p = await sbx.process.pty(null, { cols: 100, rows: 30 });
  await p.resize(120, 40);
  await p.write("exit\n");
  const status = await p.wait();
  for await (const chunk of sbx.fs.readStream("/root/main.py")) { const b: Buffer = chunk; void b; }
  const t = await sbx.net.expose(8080, { timeout: 5 });
  const u: string = sbx.net.url(3000) + t.url;
  await sbx.env.set({ A: "1" });
  const v: string | null = await sbx.env.get("A");
  try { await sbx.fs.read("/nope"); } catch (e) { if (e instanceof PathNotFoundError || e instanceof FileError) void e.path; }
  const other = await connectSandbox(sbx.id, { client: new Client({ endpoint: "unix:///x.sock" }) });
  await other.close();
  await sbx.destroy();
  void [code, status.exitCode, u, v, wire.MAX_PAYLOAD];
}
void main;
