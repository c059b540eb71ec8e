// The platform packages of npm/ (README "Prebuilt binaries"): their manifests,
// what `npm pack` puts in them, and genai-native's tarball as
// `npm run pack:platforms` writes it. No native build needed: a fake binary
// stands in for a prebuild, inside temporary copies only.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { platformPackageName } from "../../lib/binding/install-help";
import { GPU_BACKENDS } from "../../lib/system/backends";

const root = path.resolve(__dirname, "..", "..");
const npmDir = path.join(root, "npm");
const rootPkg = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8"));
const folders = fs.readdirSync(npmDir).filter((d) => fs.existsSync(path.join(npmDir, d, "package.json")));
const read = (folder: string) => JSON.parse(fs.readFileSync(path.join(npmDir, folder, "package.json"), "utf8"));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "genai-platform-pkgs-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function npm(args: string[], cwd: string): string {
  return execFileSync(process.platform === "win32" ? "npm.cmd" : "npm", args, {
    cwd,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
    shell: process.platform === "win32",
  });
}

/** <platform>-<arch>[-<gpu>] */
function parse(folder: string): { platform: string; arch: string; gpu?: string } {
  const [platform, arch, gpu] = folder.split("-");
  return { platform, arch, gpu };
}

describe("platform packages (npm/)", () => {
  it("cover the main platforms and the opt-in CUDA modules", () => {
    expect(folders).toEqual(
      expect.arrayContaining(["linux-x64", "linux-arm64", "darwin-arm64", "darwin-x64", "win32-x64", "linux-x64-cuda", "win32-x64-cuda"]),
    );
  });

  it.each(folders)("%s: name, version, os/cpu/libc, files", (folder) => {
    const pkg = read(folder);
    const { platform, arch, gpu } = parse(folder);
    // the names the loader (@genai-native/<platform>-<arch>) and initBackends() (…-<backend>) look for
    expect(pkg.name).toBe(gpu ? `${platformPackageName(platform, arch)}-${gpu}` : platformPackageName(platform, arch));
    if (gpu) expect(GPU_BACKENDS as readonly string[]).toContain(gpu);
    expect(pkg.version).toBe(rootPkg.version);
    expect(pkg.os).toEqual([platform]);
    expect(pkg.cpu).toEqual([arch]);
    // prebuilds are built on glibc (prebuildify --tag-libc); musl builds from source
    if (platform === "linux") expect(pkg.libc).toEqual(["glibc"]);
    else expect(pkg.libc).toBeUndefined();
    expect(pkg.files).toEqual(["prebuilds"]);
    expect(pkg.scripts).toBeUndefined();
    expect(pkg.publishConfig).toEqual({ access: "public" });
  });

  it("this platform's package is where the loader looks", () => {
    const here = `${process.platform}-${process.arch}`;
    if (!folders.includes(here)) return; // a platform without prebuilds: the loader falls back to a source build
    expect(read(here).name).toBe(platformPackageName());
  });

  it.each(folders)("%s: npm pack lists package.json alone, then the prebuilds once filled", (folder) => {
    const { platform, arch, gpu } = parse(folder);
    const copy = path.join(tmp, folder);
    fs.cpSync(path.join(npmDir, folder), copy, { recursive: true, filter: (src) => !src.includes(`${path.sep}prebuilds`) });
    const extras = fs.readdirSync(copy).filter((f) => /^(readme|license)/i.test(f));
    const list = () => (JSON.parse(npm(["pack", "--dry-run", "--json"], copy))[0].files as { path: string }[]).map((f) => f.path).sort();
    expect(list()).toEqual(["package.json", ...extras].sort());

    const ext = platform === "win32" ? "dll" : platform === "darwin" ? "dylib" : "so";
    const fake = gpu
      ? [`${platform === "win32" ? "" : "lib"}ggml-${gpu}.${ext}`]
      : [`genai-native.napi${platform === "linux" ? ".glibc" : ""}.node`, `${platform === "win32" ? "" : "lib"}ggml-base.${ext}`];
    const dest = path.join(copy, "prebuilds", `${platform}-${arch}`);
    fs.mkdirSync(dest, { recursive: true });
    for (const f of fake) fs.writeFileSync(path.join(dest, f), "fake");
    expect(list()).toEqual(["package.json", ...extras, ...fake.map((f) => `prebuilds/${platform}-${arch}/${f}`)].sort());
  });

  it("the repository's package.json has no optionalDependencies on them (npm ci would refuse the lockfile)", () => {
    expect(Object.keys(rootPkg.optionalDependencies ?? {}).filter((n) => n.startsWith("@genai-native/"))).toEqual([]);
  });

  it("pack:platforms writes genai-native's tarball with them as optionalDependencies and no binaries", () => {
    const out = path.join(tmp, "out");
    const res = JSON.parse(
      execFileSync(process.execPath, [path.join(root, "scripts", "pack-platforms.mjs"), "--root-only", "--out", out], { cwd: root, encoding: "utf8" }),
    );
    expect(path.basename(res.root)).toBe(`genai-native-${rootPkg.version}.tgz`);
    const unpacked = path.join(tmp, "unpacked");
    fs.mkdirSync(unpacked);
    execFileSync("tar", ["-xzf", res.root, "-C", unpacked]);
    const pkg = JSON.parse(fs.readFileSync(path.join(unpacked, "package", "package.json"), "utf8"));
    const expected = Object.fromEntries(folders.filter((f) => !parse(f).gpu).map((f) => [read(f).name, rootPkg.version]));
    expect(pkg.optionalDependencies).toEqual(expected);
    expect(pkg.scripts.install).toBe(rootPkg.scripts.install);
    expect(fs.existsSync(path.join(unpacked, "package", "prebuilds"))).toBe(false);
    for (const f of [
      "dist/cjs/index.js",
      "dist/cjs/binding/install-help.js",
      "scripts/install.mjs",
      "scripts/build-addon.mjs",
      "CMakeLists.txt",
      "llama-source.json",
    ])
      expect(fs.existsSync(path.join(unpacked, "package", f)), f).toBe(true);
  });
});
