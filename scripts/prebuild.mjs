#!/usr/bin/env node
// npm run build:prebuilds: the binaries to publish, in prebuilds/<platform>-<arch>/:
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
// It then fills the platform packages (README "Prebuilt binaries"): the
// files go to npm/<platform>-<arch>/prebuilds/<platform>-<arch>/, except the
// GPU modules that have a package of their own (npm/<platform>-<arch>-cuda:
// libggml-cuda is hundreds of MB), which go to that package's prebuilds
// folder. Those folders are git-ignored; `npm run pack:platforms` packs them.
// Linux packages are glibc-only (libc field): a musl build fills none.
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
const packages = fillPlatformPackages(
  out,
  files.map((f) => f.file),
);
process.stdout.write(
  JSON.stringify(
    { dir: path.relative(root, out), seconds: Math.round((Date.now() - t0) / 1000), totalBytes: files.reduce((s, f) => s + f.bytes, 0), files, packages },
    null,
    1,
  ) + "\n",
);

/**
 * Copies the prebuild into npm/<platform>-<arch>[-<gpu>]/prebuilds/<platform>-<arch>/
 * (each emptied first). Returns { package folder: files }.
 */
function fillPlatformPackages(src, names) {
  const pa = `${process.platform}-${process.arch}`;
  const pkgDir = (suffix) => path.join(root, "npm", suffix ? `${pa}-${suffix}` : pa);
  if (!fs.existsSync(path.join(pkgDir(), "package.json"))) {
    console.log(`[prebuild] no npm/${pa}/package.json: no platform package to fill`);
    return {};
  }
  const libc = JSON.parse(fs.readFileSync(path.join(pkgDir(), "package.json"), "utf8")).libc;
  if (libc && !names.some((n) => libc.some((l) => n.endsWith(`.${l}.node`)))) {
    console.log(`[prebuild] npm/${pa} is for ${libc.join(", ")}; this build (${names.filter((n) => n.endsWith(".node")).join(", ")}) fills none`);
    return {};
  }
  const split = {};
  for (const name of names) {
    // a GPU module with its own package: libggml-cuda.so / ggml-cuda.dll / libggml-cuda.dylib
    const gpu = /^(?:lib)?ggml-(cuda|vulkan|metal)\.(?:so|dll|dylib)$/.exec(name)?.[1];
    const dir = gpu && fs.existsSync(path.join(pkgDir(gpu), "package.json")) ? pkgDir(gpu) : pkgDir();
    split[dir] ??= [];
    split[dir].push(name);
  }
  const out = {};
  for (const dir of [pkgDir(), ...["cuda", "vulkan", "metal"].map(pkgDir)]) {
    if (!fs.existsSync(path.join(dir, "package.json"))) continue;
    const dest = path.join(dir, "prebuilds", pa);
    fs.rmSync(path.join(dir, "prebuilds"), { recursive: true, force: true });
    if (!split[dir]) continue;
    fs.mkdirSync(dest, { recursive: true });
    for (const name of split[dir]) fs.copyFileSync(path.join(src, name), path.join(dest, name));
    out[path.relative(root, dir)] = split[dir];
  }
  return out;
}
