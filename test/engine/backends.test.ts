// Backend modules chosen at load time (GGML_BACKEND_DL): the CPU module, GPU
// modules probed in a child process first, a crashing or broken module never
// taking the app down, device selection, and the probe verdict cache.
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LlamaModel, deviceFor, initBackends, systemInfo } from "../../lib/index";
import { GPU_BACKENDS, moduleFileName, probeBackendModule } from "../../lib/system/backends";
import { nativeAddonPath } from "../../lib/binding/load";
import { storiesPath, tempDir } from "../helpers";

const root = path.resolve(__dirname, "..", "..");
const releaseDir = path.dirname(nativeAddonPath());
const onWindows = process.platform === "win32";

/** Builds a shared library from C source with the system compiler. */
function buildLib(dir: string, name: string, source: string): string {
  const src = path.join(dir, `${name}.c`);
  fs.writeFileSync(src, source);
  const out = path.join(dir, name);
  execFileSync("cc", ["-shared", "-fPIC", "-o", out, src]);
  return out;
}

describe("backend modules", () => {
  it("the CPU module is loaded from the addon's folder; every GPU backend says what it is and why it is not loaded", async () => {
    const status = await initBackends();
    expect(status[0]).toMatchObject({ name: "cpu", state: "loaded", devices: ["CPU"] });
    expect(path.dirname(status[0].path!)).toBe(releaseDir);
    expect(status.map((s) => s.name)).toEqual(["cpu", ...GPU_BACKENDS]);
    for (const s of status.slice(1)) {
      if (s.state === "loaded") expect(s.devices!.length).toBeGreaterThan(0);
      else expect(s.reason).toMatch(/\w/);
      if (s.state === "absent") expect(fs.existsSync(path.join(releaseDir, moduleFileName(s.name)))).toBe(false);
    }
    const info = systemInfo();
    expect(info.backendModules).toEqual(status);
    // every registered device belongs to a loaded module
    const loaded = status.filter((s) => s.state === "loaded").flatMap((s) => s.devices!);
    for (const d of info.devices) expect(loaded).toContain(d.name);
  });

  it("device option: cpu works, an unknown device is INVALID_ARGUMENT from the addon, a malformed one from TypeScript", async () => {
    const stories = await storiesPath();
    const m = await LlamaModel.load(stories, { device: "cpu" });
    const ctx = await m.createContext({ contextSize: 256 });
    expect((await ctx.complete("Once upon a time", { maxTokens: 5, temperature: 0 })).tokenCount).toBe(5);
    await m.dispose();
    await expect(LlamaModel.load(stories, { device: "NoSuchGpu7" })).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
      message: expect.stringMatching(/not available.*registered devices: .*CPU/),
    });
    await expect(LlamaModel.load(stories, { device: "rm -rf /" })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await expect(LlamaModel.load(stories, { device: 3 as unknown as string })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
  });

  it("deviceFor names the device a load puts the model on: the one holding its KV cache", async () => {
    expect(await deviceFor("cpu")).toBe("CPU");
    const stories = await storiesPath();
    const m = await LlamaModel.load(stories); // GENAI_NATIVE_DEVICE or auto, like deviceFor()
    const ctx = await m.createContext({ contextSize: 256 });
    const kvOn = ctx
      .memory()
      .filter((d) => d.context > 0)
      .map((d) => d.device);
    await m.dispose();
    expect(kvOn).toEqual([await deviceFor()]);
    const gpus = systemInfo().devices.filter((d) => d.name !== "CPU");
    if (gpus.length > 0) expect(await deviceFor(gpus[0].name)).toBe(gpus[0].name);
    await expect(deviceFor("NoSuchGpu7")).rejects.toMatchObject({ code: "INVALID_ARGUMENT", message: expect.stringMatching(/not available/) });
    await expect(deviceFor({})).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
  });
});

describe.skipIf(onWindows)("broken GPU modules never take the app down", () => {
  let tmp: ReturnType<typeof tempDir>;
  let crash: string;
  let empty: string;
  beforeAll(() => {
    tmp = tempDir("genai-backends-");
    // a module whose loading kills the process (as a broken driver can)
    crash = buildLib(tmp.dir, "crash.so", "#include <stdlib.h>\n__attribute__((constructor)) static void boom(void) { abort(); }\n");
    // a library that loads but is no ggml backend
    empty = buildLib(tmp.dir, "empty.so", "int not_a_backend(void) { return 1; }\n");
  });
  afterAll(() => tmp?.cleanup());

  it("probeBackendModule: a crashing module is 'crashed', a non-backend 'failed', and this process goes on", async () => {
    const c = await probeBackendModule(crash);
    expect(c).toMatchObject({ ok: false, state: "crashed" });
    expect(c.reason).toMatch(/SIGABRT|exit code/);
    const e = await probeBackendModule(empty);
    expect(e).toMatchObject({ ok: false, state: "failed" });
    expect(e.reason).toMatch(/did not load/);
    const missing = await probeBackendModule(path.join(tmp.dir, "missing.so"));
    expect(missing).toMatchObject({ ok: false, state: "failed" });
  });

  it("an app whose package holds a crashing Vulkan module falls back to the CPU, caches the verdict, and GENAI_NATIVE_BACKENDS=cpu skips it", async () => {
    // a copy of the addon's folder with a crashing libggml-vulkan.so beside it
    const pkg = path.join(tmp.dir, "pkg");
    fs.mkdirSync(pkg);
    for (const f of fs.readdirSync(releaseDir)) {
      const p = path.join(releaseDir, f);
      if (/\.(node|so)$/.test(f) && fs.statSync(p).isFile() && !/^libggml-(cuda|vulkan|metal)\.so$/.test(f)) fs.copyFileSync(p, path.join(pkg, f));
    }
    fs.copyFileSync(crash, path.join(pkg, moduleFileName("vulkan")));
    const cache = path.join(tmp.dir, "cache");
    const script = `
      const g = require(${JSON.stringify(root)});
      (async () => {
        const status = await g.initBackends();
        const m = await g.LlamaModel.load(${JSON.stringify(await storiesPath())});
        const ctx = await m.createContext({ contextSize: 256 });
        const r = await ctx.complete("Once upon a time", { maxTokens: 4, temperature: 0 });
        console.log(JSON.stringify({ vulkan: status.find((s) => s.name === "vulkan"), tokens: r.tokenCount, devices: g.systemInfo().devices.map((d) => d.name) }));
        await m.dispose();
      })();`;
    const run = (env: Record<string, string> = {}) => {
      const r = spawnSync(process.execPath, ["-e", script], {
        encoding: "utf8",
        env: { ...process.env, GENAI_NATIVE_ADDON: path.join(pkg, "genai_native.node"), GENAI_NATIVE_CACHE: cache, GENAI_NATIVE_DEVICE: "", ...env },
      });
      expect(r.status, r.stderr).toBe(0);
      return {
        ...(JSON.parse(r.stdout.trim().split("\n").pop()!) as {
          vulkan: { state: string; cached?: boolean; reason?: string };
          tokens: number;
          devices: string[];
        }),
        stderr: r.stderr,
      };
    };
    const first = run();
    expect(first.vulkan).toMatchObject({ state: "crashed", cached: false });
    expect(first.tokens).toBe(4);
    expect(first.devices).toEqual(["CPU"]);
    expect(first.stderr).toMatch(/the vulkan backend is not used: loading it in a probe process failed/);
    expect(fs.existsSync(path.join(cache, "backend-probes.json"))).toBe(true);
    const second = run();
    expect(second.vulkan).toMatchObject({ state: "crashed", cached: true });
    const disabled = run({ GENAI_NATIVE_BACKENDS: "cpu" });
    expect(disabled.vulkan.state).toBe("disabled");
    expect(disabled.tokens).toBe(4);
  });
});
