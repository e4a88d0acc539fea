// Build the dashboard into sandboxd/ui/static (index.html, app.js, app.css).
// `node build.mjs --check` rebuilds into a temporary directory and fails if
// the committed files differ (the CI check that the bundle is reproducible).
import { build } from "esbuild";
import { copyFileSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const target = join(here, "..", "sandboxd", "ui", "static");
const check = process.argv.includes("--check");
const out = check ? mkdtempSync(join(tmpdir(), "sandboxd-ui-")) : target;

await build({
  entryPoints: { app: join(here, "src", "main.js") },
  bundle: true, minify: true, format: "esm", target: ["chrome110", "firefox110", "safari16"],
  outdir: out, legalComments: "eof", logLevel: "warning", charset: "utf8",
});
copyFileSync(join(here, "index.html"), join(out, "index.html"));

if (check) {
  const files = ["index.html", "app.js", "app.css"];
  const stale = files.filter((f) => {
    try { return !readFileSync(join(out, f)).equals(readFileSync(join(target, f))); } catch { return true; }
  });
  const extra = readdirSync(target).filter((f) => !files.includes(f));
  rmSync(out, { recursive: true });
  if (stale.length || extra.length) {
    console.error(`sandboxd/ui/static is stale (${[...stale, ...extra].join(", ")}): run npm run build in ui/`);
    process.exit(1);
  }
  console.log("sandboxd/ui/static matches the sources");
}
