#!/usr/bin/env node
// Compiles lib/ to dist/cjs (CommonJS + .d.ts) and writes the ESM entry
// dist/esm/index.mjs that re-exports the same objects (one module instance,
// so `instanceof GenaiError` holds across require and import).
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(import.meta.url);
fs.rmSync(path.join(root, "dist"), { recursive: true, force: true });
execFileSync(process.execPath, [require.resolve("typescript/bin/tsc"), "-p", path.join(root, "tsconfig.json")], { stdio: "inherit", cwd: root });

const cjs = require(path.join(root, "dist", "cjs", "index.js"));
const names = Object.keys(cjs).filter((n) => n !== "default" && n !== "__esModule");
const esmDir = path.join(root, "dist", "esm");
fs.mkdirSync(esmDir, { recursive: true });
fs.writeFileSync(
  path.join(esmDir, "index.mjs"),
  `import { createRequire } from "node:module";\nconst cjs = createRequire(import.meta.url)("../cjs/index.js");\n` +
    names.map((n) => `export const ${n} = cjs.${n};`).join("\n") +
    `\nexport default cjs;\n`,
);
fs.writeFileSync(path.join(esmDir, "index.d.mts"), `export * from "../cjs/index.js";\n`);
fs.chmodSync(path.join(root, "dist", "cjs", "cli", "main.js"), 0o755);
console.log(`[build-ts] dist/cjs + dist/esm (${names.length} exports)`);
