#!/usr/bin/env node
// npm run test:install: genai-native installed into a fresh app folder from
// packed tarballs, the two ways users get it (slow: two native builds, so not
// part of `npm test`):
//   stage   a copy of this checkout (tracked and untracked files, no build
//           output) with `npm ci --ignore-scripts`; `npm run build:prebuilds -- --native-cpu`
//           there fills npm/<platform>-<arch>/prebuilds; `npm run pack:platforms`
//           packs genai-native (optionalDependencies, no binaries) and the
//           platform package
//   (a)     prebuild: `npm install genai-native.tgz genai-native-<platform>-<arch>.tgz`
//           in a fresh app: no source build, `npx genai-native complete` works
//   (b)     no prebuild: `npm install --ignore-scripts genai-native.tgz` (what an
//           unapproved install script amounts to): loading rejects with
//           ENGINE_UNAVAILABLE naming the commands; then those commands,
//           `npm install-scripts approve genai-native` and `npm rebuild
//           genai-native`, build it from source and `npx genai-native complete` works
// The builds share ccache with the checkout's (build-addon.mjs sets
// CCACHE_BASEDIR to the package root). GPU modules are left out of both builds
// (GENAI_NATIVE_GPU=none) unless GENAI_NATIVE_GPU says otherwise.
//
// Usage: node scripts/test-install.mjs [--keep] [--only a|b]
//   --keep   leave the temporary folders (printed) for a look
// Needs: what the source build needs (README "Set up and test"), the npm
// registry, and stories260K.gguf in $GENAI_NATIVE_MODELS (default ../shared/models).
// Prints each step's seconds and a JSON summary; exits non-zero on a failure.
import { execFileSync, spawnSync } from "node:child_process";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const { values } = parseArgs({ options: { keep: { type: "boolean", default: false }, only: { type: "string" } } });
const models = process.env.GENAI_NATIVE_MODELS ?? path.resolve(root, "..", "shared", "models");
const model = path.join(models, "stories260K.gguf");
assert.ok(fs.existsSync(model), `no ${model} (set GENAI_NATIVE_MODELS)`);
const pa = `${process.platform}-${process.arch}`;
const npmCmd = process.platform === "win32" ? "npm.cmd" : "npm";
const npxCmd = process.platform === "win32" ? "npx.cmd" : "npx";
const env = { ...process.env, GENAI_NATIVE_GPU: process.env.GENAI_NATIVE_GPU ?? "none", GENAI_NATIVE_MODELS: models };
// the app folders must not see this checkout's GENAI_NATIVE_ADDON
delete env.GENAI_NATIVE_ADDON;
const base = fs.mkdtempSync(path.join(os.tmpdir(), "genai-install-"));
const times = {};

function step(name, fn) {
  const t0 = Date.now();
  console.log(`\n[test-install] ${name}`);
  const r = fn();
  times[name] = Math.round((Date.now() - t0) / 1000);
  console.log(`[test-install] ${name}: ${times[name]} s`);
  return r;
}

/** Runs a command; its output is shown and returned. @throws when it fails (unless `allowFail`) */
function run(cmd, args, cwd, { allowFail = false, quiet = false } = {}) {
  const r = spawnSync(cmd, args, { cwd, env, encoding: "utf8", shell: process.platform === "win32", maxBuffer: 64 << 20 });
  const out = `${r.stdout ?? ""}${r.stderr ?? ""}`;
  if (!quiet || r.status !== 0) process.stdout.write(out.length > 6000 ? `…${out.slice(-6000)}` : out);
  if (r.status !== 0 && !allowFail) throw new Error(`${cmd} ${args.join(" ")} (in ${cwd}) exited ${r.status}`);
  return { status: r.status, stdout: r.stdout ?? "", stderr: r.stderr ?? "", out };
}

function newApp(name) {
  const dir = path.join(base, name);
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name, version: "1.0.0", private: true }, null, 2));
  return dir;
}

function complete(app) {
  const r = run(
    npxCmd,
    ["--no-install", "genai-native", "complete", "--model", model, "--max-tokens", "20", "--temperature", "0", "--json", "Once upon a time"],
    app,
  );
  const out = JSON.parse(r.stdout);
  assert.equal(out.tokenCount, 20);
  assert.ok(out.text.length > 10, out.text);
  return out.text;
}

let tarballs;
try {
  step("stage: copy the checkout, npm ci --ignore-scripts", () => {
    const src = path.join(base, "src");
    const files = execFileSync("git", ["ls-files", "-z", "--cached", "--others", "--exclude-standard"], { cwd: root, encoding: "utf8" })
      .split("\0")
      .filter(Boolean);
    for (const f of files) {
      const from = path.join(root, f);
      if (!fs.existsSync(from) || !fs.statSync(from).isFile()) continue; // deleted, submodule
      fs.mkdirSync(path.dirname(path.join(src, f)), { recursive: true });
      fs.copyFileSync(from, path.join(src, f));
    }
    run(npmCmd, ["ci", "--ignore-scripts", "--no-audit", "--no-fund"], src, { quiet: true });
  });
  const src = path.join(base, "src");
  step("stage: npm run build:prebuilds -- --native-cpu", () => {
    run(npmCmd, ["run", "build:prebuilds", "--", "--native-cpu"], src, { quiet: true });
    const filled = path.join(src, "npm", pa, "prebuilds", pa);
    assert.ok(fs.existsSync(filled) && fs.readdirSync(filled).some((f) => f.endsWith(".node")), `prebuild did not fill npm/${pa}/prebuilds/${pa}`);
  });
  tarballs = step("stage: npm run pack:platforms", () => {
    const r = run(npmCmd, ["run", "--silent", "pack:platforms", "--", "--out", path.join(base, "tarballs")], src, { quiet: true });
    const t = JSON.parse(r.stdout);
    const platform = t.platforms.find((f) => path.basename(f).startsWith(`genai-native-${pa}-`));
    assert.ok(platform, `no ${pa} tarball in ${t.platforms.join(", ")}`);
    return { root: t.root, platform };
  });

  if (values.only !== "b")
    step("(a) prebuild: npm install both tarballs, npx genai-native complete", () => {
      const app = newApp("app-prebuilt");
      const r = run(npmCmd, ["install", "--no-audit", "--no-fund", "--foreground-scripts", tarballs.root, tarballs.platform], app);
      const pkg = path.join(app, "node_modules", "genai-native");
      assert.ok(!fs.existsSync(path.join(pkg, "build")), "the install script built from source although the platform package was installed");
      assert.match(r.out, new RegExp(`using .*@genai-native/${pa}`));
      const text = complete(app);
      console.log(`[test-install] (a) generated: ${JSON.stringify(text)}`);
    });

  if (values.only !== "a")
    step("(b) no prebuild: install without scripts, the error's commands, npm rebuild builds from source", () => {
      const app = newApp("app-source");
      run(npmCmd, ["install", "--ignore-scripts", "--no-audit", "--no-fund", tarballs.root], app);
      assert.ok(!fs.existsSync(path.join(app, "node_modules", "@genai-native", pa)), `@genai-native/${pa} should not be installable from the registry`);
      const probe = run(
        process.execPath,
        [
          "-e",
          `
        const report = (e, g) => console.log(JSON.stringify({ name: e.name, code: e.code, isGenaiError: !!g && e instanceof g.GenaiError, message: e.message }));
        try {
          const g = require("genai-native");
          g.LlamaModel.load(${JSON.stringify(model)}).then(() => console.log(JSON.stringify({ loaded: true })), (e) => report(e, g));
        } catch (e) { report(e); }`,
        ],
        app,
      );
      const err = JSON.parse(probe.stdout.trim().split("\n").pop());
      console.log(`[test-install] (b) the error:\n${err.code}: ${err.message}`);
      assert.equal(err.code, "ENGINE_UNAVAILABLE");
      assert.equal(err.isGenaiError, true);
      for (const cmd of ["npm install-scripts approve genai-native", "npm rebuild genai-native", "C++17", "CMake", "git", "npm registry"])
        assert.ok(err.message.includes(cmd), `the message does not name ${cmd}`);
      // the commands it names
      run(npmCmd, ["install-scripts", "approve", "genai-native"], app);
      const allowed = JSON.parse(fs.readFileSync(path.join(app, "package.json"), "utf8")).allowScripts;
      assert.ok(allowed && Object.values(allowed).includes(true), "npm install-scripts approve wrote no allowScripts entry");
      const rb = run(npmCmd, ["rebuild", "genai-native", "--foreground-scripts"], app, { quiet: true });
      assert.match(rb.out, /building from source/);
      assert.ok(fs.existsSync(path.join(app, "node_modules", "genai-native", "build", "Release")), "npm rebuild did not build");
      const text = complete(app);
      console.log(`[test-install] (b) generated: ${JSON.stringify(text)}`);
    });
  console.log(JSON.stringify({ ok: true, seconds: times }, null, 1));
} catch (e) {
  console.log(JSON.stringify({ ok: false, error: String(e?.message ?? e), seconds: times, folder: base }, null, 1));
  process.exitCode = 1;
} finally {
  if (values.keep || process.exitCode) console.log(`[test-install] left ${base}`);
  else fs.rmSync(base, { recursive: true, force: true });
}
