#!/usr/bin/env node
// npm run prebuild: the binaries to publish, in prebuilds/<platform>-<arch>/:
//   genai-native.napi[.glibc|.musl].node   the addon (N-API 8: one binary for
//                                           every Node ≥ 20 and Electron)
//   libggml-base, libggml, libllama, libllama-common   (.so / .dylib / .dll)
//   libggml-cpu-<variant> …                 ggml picks the best for the CPU at load
//   libggml-vulkan, libggml-cuda …          GPU modules, probed before use
// prebuildify drives it: node-gyp runs binding.gyp's one action (our CMake
// build, scripts/build-addon.mjs, here with every CPU variant), then
// prebuildify names the .node for node-gyp-build, copies the shared
// libraries beside it and strips them. The addon finds its libraries with an
// $ORIGIN rpath and its backend modules in its own folder.
//
// Usage: node scripts/prebuild.mjs [--gpu vulkan,cuda] [--native-cpu]
//   --gpu        GPU modules (default: GENAI_NATIVE_GPU, else auto as in build-addon.mjs)
//   --native-cpu one CPU module for this machine instead of every variant (a quick local check)
// Prints JSON: the folder, seconds, and each file with its size in bytes.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(import.meta.url);
const { values } = parseArgs({ options: { gpu: { type: "string" }, "native-cpu": { type: "boolean", default: false } } });
const env = { ...process.env, GENAI_NATIVE_CPU_VARIANTS: values["native-cpu"] ? "native" : "all" };
if (values.gpu) env.GENAI_NATIVE_GPU = values.gpu;

const out = path.join(root, "prebuilds", `${process.platform}-${process.arch}`);
fs.rmSync(out, { recursive: true, force: true });
const t0 = Date.now();
const prebuildify = path.join(path.dirname(require.resolve("prebuildify/package.json")), "bin.js");
execFileSync(process.execPath, [prebuildify, "--napi", "--strip", "--tag-libc", "--cwd", root], { stdio: "inherit", cwd: root, env });

const files = fs.readdirSync(out).map((file) => ({ file, bytes: fs.statSync(path.join(out, file)).size }));
if (!files.some((f) => f.file.endsWith(".node"))) throw new Error(`prebuild: no .node in ${out}`);
process.stdout.write(
  JSON.stringify({ dir: path.relative(root, out), seconds: Math.round((Date.now() - t0) / 1000), totalBytes: files.reduce((s, f) => s + f.bytes, 0), files }, null, 1) + "\n",
);
