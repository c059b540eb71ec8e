#!/usr/bin/env node
// npm's install script of genai-native (package.json "install"; `npm rebuild
// genai-native` runs it again). Nothing to do when a binary loads: this
// package's build/Release or prebuilds/<platform>-<arch> (node-gyp-build's
// rules), else the platform package @genai-native/<platform>-<arch> that npm
// installed as an optional dependency (README "Prebuilt binaries"). Otherwise
// it builds from source: scripts/build-addon.mjs (fetches llama.cpp's source
// from the npm registry, CMake build). GENAI_NATIVE_BUILD_FROM_SOURCE=1 (or
// npm's build_from_source config) builds even when a binary loads.
// Each candidate is loaded in a child process, so a binary that exists but
// does not load here (another libc, a missing system library) is rebuilt.
import { execFileSync, spawnSync } from "node:child_process";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(path.join(root, "package.json"));
const pa = `${process.platform}-${process.arch}`;
const fromSource =
  ["1", "true"].includes(String(process.env.GENAI_NATIVE_BUILD_FROM_SOURCE ?? "").toLowerCase()) || process.env.npm_config_build_from_source === "true";

/** The .node file node-gyp-build picks in `dir`, when it loads in a child process; else null. */
function loadable(dir) {
  const gyp = require.resolve("node-gyp-build");
  const r = spawnSync(
    process.execPath,
    ["-e", `const b = require(${JSON.stringify(gyp)}); const p = b.resolve(${JSON.stringify(dir)}); require(p); process.stdout.write(p)`],
    { encoding: "utf8" },
  );
  if (r.status === 0) return r.stdout;
  const why = (r.stderr || "")
    .trim()
    .split("\n")
    .find((l) => /Error/.test(l));
  if (why && !/No native build was found/.test(why)) console.log(`[genai-native] a binary in ${dir} does not load here: ${why.trim()}`);
  return null;
}

function platformPackageDir() {
  try {
    return path.dirname(require.resolve(`@genai-native/${pa}/package.json`));
  } catch {
    return null;
  }
}

if (!fromSource) {
  const candidates = [root, platformPackageDir()].filter(Boolean);
  for (const dir of candidates) {
    const file = loadable(dir);
    if (file) {
      console.log(`[genai-native] using ${path.relative(root, file) || file}`);
      process.exit(0);
    }
  }
  console.log(
    `[genai-native] no prebuilt binary for ${pa} loads here (looked in ${candidates.map((d) => path.relative(root, d) || ".").join(", ")}): building from source`,
  );
}

try {
  execFileSync(process.execPath, [path.join(root, "scripts", "build-addon.mjs")], { stdio: "inherit", cwd: root });
} catch (e) {
  let needs = "The source build needs a C++17 compiler, CMake >= 3.18, git, and network access to the npm registry.";
  try {
    needs = require(path.join(root, "dist", "cjs", "binding", "install-help.js")).SOURCE_BUILD_NEEDS;
  } catch {
    // dist/ is built after install in a clone (prepare)
  }
  console.error(`[genai-native] the build from source failed (${e.message.split("\n")[0]}).\n${needs}`);
  process.exit(1);
}
