#!/usr/bin/env node
// Populates deps/llama.cpp from the npm registry package pinned in
// llama-source.json (node-llama-cpp ships llama.cpp's source as a git bundle).
// Nothing is fetched from anywhere but the npm registry; the tarball's sha512
// must match the pin and the cloned HEAD must be the pinned commit.
//
// Usage: node scripts/fetch-llama.mjs [--force]
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const pin = JSON.parse(fs.readFileSync(path.join(root, "llama-source.json"), "utf8"));
const dest = path.join(root, "deps", "llama.cpp");
const force = process.argv.includes("--force");

function run(cmd, args, opts = {}) {
  return execFileSync(cmd, args, { stdio: ["ignore", "pipe", "inherit"], encoding: "utf8", ...opts }).trim();
}

function currentCommit() {
  try {
    return run("git", ["-C", dest, "rev-parse", "HEAD"]);
  } catch {
    return null;
  }
}

if (!force && fs.existsSync(path.join(dest, "CMakeLists.txt")) && currentCommit() === pin.commit) {
  console.log(`[fetch-llama] deps/llama.cpp is at ${pin.commit.slice(0, 10)}; nothing to do`);
  process.exit(0);
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "genai-native-llama-"));
try {
  const spec = `${pin.package}@${pin.version}`;
  console.log(`[fetch-llama] npm pack ${spec}`);
  const npm = process.platform === "win32" ? "npm.cmd" : "npm";
  const out = run(npm, ["pack", spec, "--json", "--pack-destination", tmp], { shell: process.platform === "win32" });
  const info = JSON.parse(out)[0];
  const tgz = path.join(tmp, info.filename);
  const digest = "sha512-" + createHash("sha512").update(fs.readFileSync(tgz)).digest("base64");
  if (digest !== pin.integrity) {
    throw new Error(`integrity mismatch for ${spec}: got ${digest}, pinned ${pin.integrity}`);
  }
  run("tar", ["-xzf", tgz, "-C", tmp, pin.bundlePath]);
  const bundle = path.join(tmp, pin.bundlePath);
  fs.rmSync(dest, { recursive: true, force: true });
  fs.mkdirSync(path.dirname(dest), { recursive: true });
  console.log(`[fetch-llama] cloning ${pin.bundlePath} into deps/llama.cpp`);
  run("git", ["-c", "advice.detachedHead=false", "clone", "--quiet", bundle, dest]);
  const head = currentCommit();
  if (head !== pin.commit) throw new Error(`bundle HEAD ${head} is not the pinned commit ${pin.commit}`);
  console.log(`[fetch-llama] deps/llama.cpp at ${head.slice(0, 10)} (llama.cpp ${pin.date}, ggml ${pin.ggmlVersion})`);
} finally {
  fs.rmSync(tmp, { recursive: true, force: true });
}
