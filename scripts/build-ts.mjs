#!/usr/bin/env node
// Compiles lib/ to dist/cjs (CommonJS + .d.ts) and writes the ESM entries
// dist/esm/index.mjs, dist/esm/tools.mjs ("genai-native/tools") and
// dist/esm/server.mjs ("genai-native/server") that
// re-export the same objects (one module instance, so `instanceof GenaiError`
// holds across require and import).
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(import.meta.url);
fs.rmSync(path.join(root, "dist"), { recursive: true, force: true });
execFileSync(process.execPath, [require.resolve("typescript/bin/tsc"), "-p", path.join(root, "tsconfig.json")], { stdio: "inherit", cwd: root });

const esmDir = path.join(root, "dist", "esm");
fs.mkdirSync(esmDir, { recursive: true });
// One ESM wrapper per package entry: "." → index.mjs, "./tools" → tools.mjs, "./server" → server.mjs.
function writeEsmEntry(cjsRel, esmName) {
  const cjs = require(path.join(root, "dist", "cjs", cjsRel));
  const names = Object.keys(cjs).filter((n) => n !== "default" && n !== "__esModule");
  fs.writeFileSync(
    path.join(esmDir, `${esmName}.mjs`),
    `import { createRequire } from "node:module";\nconst cjs = createRequire(import.meta.url)("../cjs/${cjsRel}");\n` +
      names.map((n) => `export const ${n} = cjs.${n};`).join("\n") +
      `\nexport default cjs;\n`,
  );
  fs.writeFileSync(path.join(esmDir, `${esmName}.d.mts`), `export * from "../cjs/${cjsRel}";\n`);
  return names.length;
}
const nMain = writeEsmEntry("index.js", "index");
const nTools = writeEsmEntry("tools/index.js", "tools");
const nServer = writeEsmEntry("server/index.js", "server");
fs.chmodSync(path.join(root, "dist", "cjs", "cli", "main.js"), 0o755);
console.log(`[build-ts] dist/cjs + dist/esm (${nMain} exports; tools: ${nTools}; server: ${nServer})`);
