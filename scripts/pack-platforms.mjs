#!/usr/bin/env node
// npm run pack:platforms: the tarballs to publish, in npm/out/ (or --out):
//   genai-native-<version>.tgz                 the package, without binaries, whose
//       package.json lists every platform package of npm/ (except the opt-in GPU
//       ones, npm/*-cuda) as optionalDependencies
//   genai-native-<platform>-<arch>[-<gpu>]-<version>.tgz   each platform package
//       whose prebuilds folder `npm run build:prebuilds` filled (on that platform)
//
// Why the optionalDependencies are written here and not in the repository's
// package.json: the platform packages are not on the registry until they are
// published, and npm drops unresolvable optional dependencies from the
// lockfile, after which `npm ci` refuses to install ("package.json and
// package-lock.json ... are not in sync. Missing: @genai-native/linux-x64@
// from lock file"). The published genai-native has them; a clone does not
// need them (it builds from source or loads prebuilds/).
//
// Publishing: build each platform's prebuild on that platform (CI matrix),
// gather the npm/<name>/prebuilds folders, run this once, then `npm publish`
// every platform tarball before genai-native's.
//
// Usage: node scripts/pack-platforms.mjs [--out DIR] [--keep-prebuilds] [--root-only]
//   --keep-prebuilds  keep prebuilds/ in genai-native's own tarball too (one
//                     package that works without the platform packages)
//   --root-only       pack genai-native's tarball only
// Prints JSON: { root: tarball, platforms: [tarball …], skipped: [package …] }.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const { values } = parseArgs({
  options: { out: { type: "string" }, "keep-prebuilds": { type: "boolean", default: false }, "root-only": { type: "boolean", default: false } },
});
const out = path.resolve(values.out ?? path.join(root, "npm", "out"));
const npmCmd = process.platform === "win32" ? "npm.cmd" : "npm";
const npm = (args, cwd) => execFileSync(npmCmd, args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "inherit"], shell: process.platform === "win32" });

/** Every platform package folder of npm/ with its package.json. */
function platformPackages() {
  const dir = path.join(root, "npm");
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((d) => d.isDirectory() && fs.existsSync(path.join(dir, d.name, "package.json")))
    .map((d) => ({ dir: path.join(dir, d.name), pkg: JSON.parse(fs.readFileSync(path.join(dir, d.name, "package.json"), "utf8")) }));
}

const rootPkg = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8"));
const pkgs = platformPackages();
const wrong = pkgs.filter((p) => p.pkg.version !== rootPkg.version);
if (wrong.length)
  throw new Error(
    `pack-platforms: ${wrong.map((p) => `${p.pkg.name}@${p.pkg.version}`).join(", ")} ≠ genai-native@${rootPkg.version}: set the same version in npm/*/package.json`,
  );
fs.mkdirSync(out, { recursive: true });

const platforms = [];
const skipped = [];
for (const { dir, pkg } of pkgs) {
  const pre = path.join(dir, "prebuilds");
  if (values["root-only"] || !fs.existsSync(pre) || !fs.readdirSync(pre).length) {
    skipped.push(pkg.name);
    continue;
  }
  const [info] = JSON.parse(npm(["pack", "--json", "--pack-destination", out], dir));
  platforms.push(path.join(out, info.filename));
}

// genai-native itself, staged in a temporary folder with the optionalDependencies added
if (!fs.existsSync(path.join(root, "dist", "cjs", "index.js")))
  execFileSync(process.execPath, [path.join(root, "scripts", "build-ts.mjs")], { stdio: ["ignore", 2, 2], cwd: root });
const [listing] = JSON.parse(npm(["pack", "--dry-run", "--json", "--ignore-scripts"], root));
const stage = fs.mkdtempSync(path.join(os.tmpdir(), "genai-pack-"));
try {
  for (const { path: rel } of listing.files) {
    if (!values["keep-prebuilds"] && rel.split("/")[0] === "prebuilds") continue;
    fs.mkdirSync(path.dirname(path.join(stage, rel)), { recursive: true });
    fs.copyFileSync(path.join(root, rel), path.join(stage, rel));
  }
  const staged = { ...rootPkg };
  const optional = Object.fromEntries(pkgs.filter((p) => !/-(cuda|vulkan|metal)$/.test(p.pkg.name)).map((p) => [p.pkg.name, p.pkg.version]));
  staged.optionalDependencies = { ...(rootPkg.optionalDependencies ?? {}), ...optional };
  fs.writeFileSync(path.join(stage, "package.json"), JSON.stringify(staged, null, 2) + "\n");
  const [info] = JSON.parse(npm(["pack", "--json", "--ignore-scripts", "--pack-destination", out], stage));
  process.stdout.write(JSON.stringify({ root: path.join(out, info.filename), platforms, skipped }, null, 1) + "\n");
} finally {
  fs.rmSync(stage, { recursive: true, force: true });
}
