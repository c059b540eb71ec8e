#!/usr/bin/env node
// Builds build/Release/genai_native.node with cmake-js (Release, ccache when
// present), after making sure deps/llama.cpp is populated.
// Usage: node scripts/build-addon.mjs [--target NAME] [--force] [-- extra cmake-js args]
import { execFileSync } from "node:child_process";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(import.meta.url);
const argv = process.argv.slice(2);
const sep = argv.indexOf("--");
const extra = sep >= 0 ? argv.slice(sep + 1) : [];
const own = sep >= 0 ? argv.slice(0, sep) : argv;
const targetIdx = own.indexOf("--target");
const target = targetIdx >= 0 ? own[targetIdx + 1] : null;

execFileSync(process.execPath, [path.join(root, "scripts", "fetch-llama.mjs")], { stdio: "inherit", cwd: root });

// Paths inside the tree are hashed relative to the root, so clones at other
// paths (CI) share one ccache.
const env = { ...process.env, CCACHE_BASEDIR: process.env.CCACHE_BASEDIR ?? root, CCACHE_NOHASHDIR: "true" };
const cmakeJs = require.resolve("cmake-js/bin/cmake-js");
const jobs = String(Math.max(1, os.availableParallelism?.() ?? os.cpus().length));
const args = [cmakeJs, "build", "--directory", root, "--config", "Release", "--parallel", jobs];
if (target) args.push("--target", target);
args.push(...extra);
execFileSync(process.execPath, args, { stdio: "inherit", cwd: root, env });
// both engines in one binary: no symbol may be defined twice
if (!target) execFileSync(process.execPath, [path.join(root, "scripts", "check-symbols.mjs"), path.join(root, "build")], { stdio: "inherit", cwd: root });
