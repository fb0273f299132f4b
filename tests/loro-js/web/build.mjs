// Bundles the pad (web/) into web-dist/ for `docweave serve --web web-dist`.
// Loro's WebAssembly is taken inline (loro-crdt/base64), so the bundle is
// plain files any static server can hand out.
import { build } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(fileURLToPath(import.meta.url));
export const DIST = join(root, "..", "web-dist");

export async function buildPad() {
  mkdirSync(DIST, { recursive: true });
  await build({
    entryPoints: [join(root, "app.js")],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    outfile: join(DIST, "app.js"),
    alias: { "loro-crdt": "loro-crdt/base64" },
    logLevel: "warning",
  });
  copyFileSync(join(root, "index.html"), join(DIST, "index.html"));
  return DIST;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  console.log(await buildPad());
}
