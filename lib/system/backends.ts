/**
 * GPU backend modules, chosen at run time.
 *
 * The addon is built with ggml's GGML_BACKEND_DL: the CPU backend and each GPU
 * backend (CUDA, Vulkan, Metal) are shared libraries beside the .node file.
 * The addon registers the CPU module itself when it loads. `initBackends()`
 * then registers the GPU modules that work on this machine:
 *
 * 1. it lists the modules present (`libggml-<name>.so`, `ggml-<name>.dll`)
 *    beside the addon or in an installed `@genai-native/<platform>-<arch>-<name>`
 *    package (README "Prebuilt binaries");
 * 2. each one is first loaded in a child process (the same Node or Electron
 *    binary, `ELECTRON_RUN_AS_NODE=1`): a module that crashes there (a broken
 *    driver) or fails to load (no driver, wrong CUDA runtime) is skipped with a
 *    log line, never taking the app down — node-llama-cpp does the same with
 *    its binaries. Verdicts are cached per module file (size, mtime),
 *    runtime version and device-filter variables (GGML_VK_VISIBLE_DEVICES,
 *    CUDA_VISIBLE_DEVICES, …) in `<cache>/backend-probes.json`: successes
 *    until the file changes, failures for 24 h;
 * 3. modules that passed are registered in this process.
 *
 * Models then run on the "best" device — the first GPU backend present in
 * the order CUDA → Metal → Vulkan, else the CPU — unless a load's `device`
 * option or `GENAI_NATIVE_DEVICE` names another ("cpu", "vulkan", "Vulkan0").
 * `GENAI_NATIVE_BACKENDS=cpu` (or a list, "cpu,vulkan") limits which GPU
 * modules are loaded at all.
 *
 * `LlamaModel.load`, `DiffusionModel.load` and the memory estimates call
 * `initBackends()` first, so most apps never call it themselves.
 */
import { execFile } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { GenaiError } from "../errors";
import { genaiCacheDir } from "./cache-dir";
import { native, nativeAddonPath, platformPackageDir } from "../binding/load";

/** GPU backends genai-native can build, in the default preference order. */
export const GPU_BACKENDS = ["cuda", "metal", "vulkan"] as const;
export type GpuBackendName = (typeof GPU_BACKENDS)[number];

export type BackendState =
  /** registered: its devices are usable */
  | "loaded"
  /** no module file beside the addon (this build or prebuild does not have it) */
  | "absent"
  /** excluded by GENAI_NATIVE_BACKENDS / the `backends` option */
  | "disabled"
  /** the module did not load (missing driver or runtime library); see `reason` */
  | "failed"
  /** loading it killed the probe process (signal or abnormal exit); see `reason` */
  | "crashed"
  /** it loaded but found no device */
  | "no-devices";

export interface BackendModuleStatus {
  /** "cpu", "cuda", "vulkan", "metal". */
  name: string;
  state: BackendState;
  /** Why it is not loaded, in words (absent, failed, crashed, no-devices, disabled). */
  reason?: string;
  /** The module file, when there is one. */
  path?: string;
  /** Device names it registered (e.g. "Vulkan0"). */
  devices?: string[];
  /** The probe's verdict came from the cache (no child process this time). */
  cached?: boolean;
}

export interface InitBackendsOptions {
  /** GPU backends that may be loaded (default: GENAI_NATIVE_BACKENDS, else all of GPU_BACKENDS). "cpu" alone: none. */
  backends?: readonly string[];
  /** Skip the child-process probe and load modules directly (default false; GENAI_NATIVE_PROBE=0 too). */
  noProbe?: boolean;
  /** Per-probe time limit in ms (default 60 000): a hung driver counts as crashed. */
  probeTimeoutMs?: number;
}

const FAILURE_TTL_MS = 24 * 3600_000;
let ready: Promise<BackendModuleStatus[]> | undefined;
let statuses: BackendModuleStatus[] | undefined;

/** A backend module's file name for this platform (ggml-backend-reg.cpp's naming). */
export function moduleFileName(name: string): string {
  return process.platform === "win32" ? `ggml-${name}.dll` : `libggml-${name}.so`;
}

interface ProbeVerdict {
  ok: boolean;
  state: BackendState;
  reason?: string;
  devices?: string[];
  at: number;
}

function probeCacheFile(): string {
  return path.join(genaiCacheDir(), "backend-probes.json");
}

/** Environment variables that change which devices a backend finds. */
const DEVICE_ENV = ["GGML_VK_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "VK_ICD_FILENAMES", "VK_DRIVER_FILES"];

function probeKey(file: string): string {
  const st = fs.statSync(file);
  return JSON.stringify([
    file,
    st.size,
    Math.round(st.mtimeMs),
    process.versions.electron ?? "",
    process.versions.node,
    process.arch,
    ...DEVICE_ENV.map((k) => process.env[k] ?? ""),
  ]);
}

function readCache(): Record<string, ProbeVerdict> {
  try {
    return JSON.parse(fs.readFileSync(probeCacheFile(), "utf8")) as Record<string, ProbeVerdict>;
  } catch {
    return {};
  }
}

function writeCache(c: Record<string, ProbeVerdict>): void {
  try {
    fs.mkdirSync(path.dirname(probeCacheFile()), { recursive: true });
    const tmp = `${probeCacheFile()}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(c, null, 1));
    fs.renameSync(tmp, probeCacheFile());
  } catch {
    // a read-only cache only costs a probe next time
  }
}

// The child: load the addon (CPU module only), then the module under test.
const PROBE_SCRIPT = `
const a = require(process.env.GENAI_NATIVE_PROBE_ADDON);
try { process.stdout.write(JSON.stringify({ ok: true, ...a.loadBackend(process.env.GENAI_NATIVE_PROBE_MODULE) })); }
catch (e) { process.stdout.write(JSON.stringify({ ok: false, reason: String(e && e.message || e) })); }
`;

/**
 * Loads `modulePath` in a child process and reports what happened. Never
 * throws and never affects this process. Exported for tests and tools.
 */
export function probeBackendModule(modulePath: string, timeoutMs = 60_000): Promise<Omit<ProbeVerdict, "at">> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ["-e", PROBE_SCRIPT],
      {
        env: { ...process.env, ELECTRON_RUN_AS_NODE: "1", GENAI_NATIVE_PROBE_ADDON: nativeAddonPath(), GENAI_NATIVE_PROBE_MODULE: modulePath },
        timeout: timeoutMs,
        maxBuffer: 1 << 20,
        windowsHide: true,
      },
      (err, stdout, stderr) => {
        const tail = String(stderr).trim().split("\n").slice(-3).join(" | ");
        let out: { ok: boolean; reason?: string; devices?: string[] } | undefined;
        try {
          out = JSON.parse(String(stdout));
        } catch {
          out = undefined;
        }
        if (out && !err) {
          if (!out.ok) return resolve({ ok: false, state: "failed", reason: out.reason });
          if (!out.devices?.length) return resolve({ ok: false, state: "no-devices", reason: "the module loaded but found no device", devices: [] });
          return resolve({ ok: true, state: "loaded", devices: out.devices });
        }
        const e = err as (NodeJS.ErrnoException & { signal?: string; killed?: boolean; code?: number | string }) | null;
        const how = e?.killed ? `no answer within ${timeoutMs} ms` : e?.signal ? `killed by ${e.signal}` : `exit code ${String(e?.code ?? "?")}`;
        resolve({ ok: false, state: "crashed", reason: `loading it in a probe process failed (${how})${tail ? `: ${tail}` : ""}` });
      },
    );
  });
}

function allowedBackends(option?: readonly string[]): Set<string> {
  const raw = option ?? process.env.GENAI_NATIVE_BACKENDS?.split(",");
  if (!raw) return new Set(GPU_BACKENDS);
  return new Set(raw.map((s) => s.trim().toLowerCase()).filter(Boolean));
}

async function init(options: InitBackendsOptions): Promise<BackendModuleStatus[]> {
  const addon = native();
  const dir = addon.addonDir;
  const allowed = allowedBackends(options.backends);
  const noProbe = options.noProbe ?? process.env.GENAI_NATIVE_PROBE === "0";
  const cpu = addon.backendModules().find((m) => m.name.toLowerCase() === "cpu");
  const out: BackendModuleStatus[] = [{ name: "cpu", state: "loaded", path: cpu?.path, devices: ["CPU"] }];
  const cache = readCache();
  let cacheChanged = false;
  for (const name of GPU_BACKENDS) {
    // beside the addon, or in the optional package @genai-native/<platform>-<arch>-<name>
    const extra = platformPackageDir(`${process.platform}-${process.arch}-${name}`);
    const file = [dir, extra && path.join(extra, "prebuilds", `${process.platform}-${process.arch}`)]
      .filter((d): d is string => !!d)
      .map((d) => path.join(d, moduleFileName(name)))
      .find((f) => fs.existsSync(f));
    if (!file) {
      out.push({
        name,
        state: "absent",
        reason: `not in this build (no ${moduleFileName(name)} beside the addon, no @genai-native/${process.platform}-${process.arch}-${name} package)`,
      });
      continue;
    }
    if (!allowed.has(name)) {
      out.push({ name, state: "disabled", reason: "excluded by GENAI_NATIVE_BACKENDS or the backends option", path: file });
      continue;
    }
    let verdict: Omit<ProbeVerdict, "at"> | undefined;
    let cached = false;
    if (!noProbe) {
      const key = probeKey(file);
      const hit = cache[key];
      if (hit && (hit.ok || Date.now() - hit.at < FAILURE_TTL_MS)) {
        verdict = hit;
        cached = true;
      } else {
        verdict = await probeBackendModule(file, options.probeTimeoutMs);
        cache[key] = { ...verdict, at: Date.now() };
        cacheChanged = true;
      }
    }
    if (verdict && !verdict.ok) {
      // no device (e.g. Vulkan without a GPU) is ordinary; a module that fails or crashes is worth a line
      if (verdict.state !== "no-devices")
        process.emitWarning(`genai-native: the ${name} backend is not used: ${verdict.reason}; falling back to the next backend (CPU at the end)`, {
          code: "GENAI_BACKEND_UNAVAILABLE",
        });
      out.push({ name, state: verdict.state, reason: verdict.reason, path: file, devices: verdict.devices, cached });
      continue;
    }
    try {
      const r = addon.loadBackend(file);
      out.push(
        r.devices.length
          ? { name, state: "loaded", path: file, devices: r.devices, cached }
          : { name, state: "no-devices", reason: "the module loaded but found no device", path: file, devices: [], cached },
      );
    } catch (e) {
      out.push({ name, state: "failed", reason: (e as Error).message, path: file, cached });
    }
  }
  if (cacheChanged) writeCache(cache);
  return out;
}

/**
 * Registers the GPU backend modules that work here (see the module notes).
 * Runs once per process; later calls return the same result (their options
 * are ignored). Never rejects for a broken backend: its status says why.
 * @throws GenaiError ENGINE_UNAVAILABLE when the addon itself does not load
 */
export function initBackends(options: InitBackendsOptions = {}): Promise<BackendModuleStatus[]> {
  if (options === null || typeof options !== "object") throw new GenaiError("INVALID_ARGUMENT", "options must be an object");
  ready ??= init(options).then((s) => (statuses = s));
  return ready;
}

/** What initBackends() found; undefined before it has finished. */
export function backendStatus(): BackendModuleStatus[] | undefined {
  return statuses?.map((s) => ({ ...s }));
}

/**
 * The device spec a load uses: `value`, else GENAI_NATIVE_DEVICE, else "auto".
 * "auto" | "cpu" | a backend ("cuda", "vulkan", "metal") | a device name ("Vulkan0").
 * @throws GenaiError INVALID_ARGUMENT for anything else than such a name (the addon checks it exists)
 */
export function resolveDevice(value: unknown): string {
  const v = value === undefined ? process.env.GENAI_NATIVE_DEVICE?.trim() || "auto" : value;
  if (typeof v !== "string" || !/^[A-Za-z][A-Za-z0-9_.:-]{0,63}$/.test(v))
    throw new GenaiError("INVALID_ARGUMENT", `device must be "auto", "cpu", a backend name or a device name such as "Vulkan0" (got ${String(v)})`);
  return v;
}

/**
 * The device a load with this device spec places a model on ("CPU", or a
 * ggml device name such as "Vulkan0" or "CUDA0"), after initBackends(): what
 * the orchestrator's ledger keys the model's bytes by.
 * @throws GenaiError INVALID_ARGUMENT for a malformed spec or one that names nothing registered
 */
export async function deviceFor(spec?: unknown): Promise<string> {
  const resolved = resolveDevice(spec);
  await initBackends();
  return native().deviceName(resolved);
}
