#!/usr/bin/env node
// npm run fuzz:gguf -- --count N --seed S [--model PATH] [--start I] [--jobs J] [--timeout MS] [--progress]
// Mutates a well-formed GGUF (default: stories260K through the model resolver)
// N times, runs each case in a child process (load → context → a few greedy
// tokens → dispose, then a vocabulary-only load) and prints JSON: counts of
// typed errors by code, loaded-and-generated, crashes by signal, hangs, and
// the seed and mutations of every crash, hang and untyped error.
// Needs `npm run build:ts` (runs from dist/). Exit status 1 when anything crashed or hung.
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(import.meta.url);
const { runGgufFuzz } = require(path.join(root, "dist", "cjs", "tools", "index.js"));
const { resolveModel } = require(path.join(root, "dist", "cjs", "index.js"));

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : def;
};
const int = (name, def) => {
  const v = Number(opt(name, def));
  if (!Number.isSafeInteger(v) || v < 0) throw new Error(`--${name} must be a non-negative integer`);
  return v;
};
const model = opt("model") ?? (await resolveModel(undefined, { download: false }));
const count = int("count", 100);
const progress = args.includes("--progress");
let done = 0;
const report = await runGgufFuzz({
  model,
  count,
  seed: int("seed", 1),
  start: int("start", 0),
  jobs: Math.max(1, int("jobs", 1)),
  timeoutMs: int("timeout", 30000),
  onCase: (r) => {
    done++;
    if (r.kind === "crash" || r.kind === "hang") process.stderr.write(`[fuzz] case ${r.index} ${r.kind} ${r.signal ?? ""}: ${r.mutations.join("; ")}\n`);
    else if (progress && done % 100 === 0) process.stderr.write(`[fuzz] ${done}/${count}\n`);
  },
});
console.log(JSON.stringify(report, null, 2));
process.exitCode = report.crashes.length + report.hangs.length > 0 ? 1 : 0;
