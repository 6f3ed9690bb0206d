// Bundles the demo into web-demo/dist (served by `chorus relay --static-dir`): the
// app (src/, CodeMirror and the engine's JavaScript glue) as one ES module, the
// engine's WebAssembly beside it, and the static page. Needs web-demo/pkg first
// (scripts/build-wasm.sh).
import { build } from "esbuild";
import { copyFile, mkdir, readdir, rm, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(fileURLToPath(import.meta.url));
const dist = join(root, "dist");
const wasm = join(root, "pkg", "chorus_wasm_bg.wasm");

try {
  await stat(wasm);
} catch {
  console.error("build: web-demo/pkg is missing; run scripts/build-wasm.sh first");
  process.exit(1);
}

await rm(dist, { recursive: true, force: true });
await mkdir(dist, { recursive: true });
const result = await build({
  entryPoints: [join(root, "src", "main.js")],
  outfile: join(dist, "app.js"),
  bundle: true,
  format: "esm",
  target: "es2022",
  minify: true,
  sourcemap: true,
  metafile: true,
  logLevel: "warning",
});
for (const f of await readdir(join(root, "static"))) {
  await copyFile(join(root, "static", f), join(dist, f));
}
await copyFile(wasm, join(dist, "chorus_wasm_bg.wasm"));

const js = Object.entries(result.metafile.outputs).find(([k]) => k.endsWith("app.js"))[1].bytes;
const w = (await stat(join(dist, "chorus_wasm_bg.wasm"))).size;
console.log(`build: web-demo/dist: app.js ${js} bytes, chorus_wasm_bg.wasm ${w} bytes`);
