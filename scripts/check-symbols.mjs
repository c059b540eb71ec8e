#!/usr/bin/env node
// Duplicate-symbol check for a build with both engines: lists global symbols
// that stable-diffusion.cpp's static library defines and llama.cpp's
// libraries define too (llama, common, ggml: shared libraries beside the
// addon, plus common's static part). Two strong definitions of one name are
// the known trap of putting both engines in one binary (for example a second
// `format()`): which one a call reaches is then up to the linker and the
// loader. Weak and inline definitions (nm types W, V, u) are not counted.
// Usage: node scripts/check-symbols.mjs [buildDir]   (exit 1 when duplicates exist)
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";

const build = path.resolve(process.argv[2] ?? "build");
const sd = path.join(build, "stable-diffusion.cpp", "libstable-diffusion.a");
if (!fs.existsSync(sd)) {
  console.log(`[check-symbols] no ${path.relative(process.cwd(), sd)}: built without the diffusion engine, nothing to check`);
  process.exit(0);
}
const release = path.join(build, "Release");
const shared = fs.existsSync(release)
  ? fs
      .readdirSync(release)
      .filter((f) => /^lib(llama|ggml)[\w-]*\.(so|dylib)$/.test(f))
      .map((f) => path.join(release, f))
  : [];
const statics = ["llama.cpp/common/libllama-common-base.a"].map((p) => path.join(build, p)).filter((p) => fs.existsSync(p));
const llamaLibs = [...shared, ...statics];

function strongSymbols(lib) {
  const dynamic = /\.(so|dylib)$/.test(lib) && process.platform !== "darwin" ? ["-D"] : [];
  const out = execFileSync("nm", [...dynamic, "-g", "--defined-only", "-P", lib], { encoding: "utf8", maxBuffer: 256 << 20 });
  const syms = new Set();
  for (const line of out.split("\n")) {
    const [name, type] = line.trim().split(/\s+/);
    if (name && type && /^[TDBR]$/.test(type)) syms.add(name);
  }
  return syms;
}

const sdSyms = strongSymbols(sd);
const dups = [];
for (const lib of llamaLibs) {
  for (const s of strongSymbols(lib)) if (sdSyms.has(s)) dups.push(`${s} (${path.basename(lib)})`);
}
if (dups.length) {
  const demangled = execFileSync("c++filt", { input: dups.join("\n"), encoding: "utf8" });
  console.error(`[check-symbols] ${dups.length} symbols defined by both stable-diffusion.cpp and llama.cpp:\n${demangled}`);
  process.exit(1);
}
console.log(
  `[check-symbols] no duplicate strong symbols between stable-diffusion.cpp (${sdSyms.size}) and llama.cpp's ${llamaLibs.length} libraries (${llamaLibs.map((l) => path.basename(l)).join(", ")})`,
);
