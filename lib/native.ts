/**
 * Loads genai_native.node (prebuilds/<platform>-<arch>/ first, then
 * build/Release, via node-gyp-build) and types what it exports. Nothing else
 * in lib/ touches the addon's raw functions.
 */
import fs from "node:fs";
import path from "node:path";
import nodeGypBuild from "node-gyp-build";
import { GenaiError, wrapErrors } from "./errors";

export interface NativeCancelToken {
  cancel(): void;
  readonly cancelled: boolean;
}

export interface NativeModelInfo {
  description: string;
  sizeBytes: number;
  parameters: number;
  trainContextSize: number;
  embeddingSize: number;
  layers: number;
  heads: number;
  kvHeads: number;
  vocabSize: number;
  bos: number;
  eos: number;
  hasEncoder: boolean;
  hasDecoder: boolean;
  chatTemplate: string | null;
  metadata: Record<string, string>;
}

export interface NativeGenerateResult {
  text: string;
  tokenCount: number;
  stopReason: "eos" | "maxTokens" | "stop" | "aborted" | "contextFull";
  timings: { promptTokens: number; reusedTokens: number; promptMs: number; generatedTokens: number; generationMs: number };
}

export interface NativeContextInfo {
  contextSize: number;
  batchSize: number;
  threads: number;
  batchThreads: number;
  embeddings: boolean;
  kvTokens: number;
  stateBytes: number;
}

/** Bytes llama.cpp allocated (or would allocate) on one device. */
export interface DeviceMemory {
  /** ggml device name, e.g. "CPU", "CUDA0". */
  device: string;
  /** Weights, bytes. */
  model: number;
  /** KV cache (and other per-context state), bytes. */
  context: number;
  /** Compute buffers, bytes. */
  compute: number;
}

export interface NativeContext {
  info(): NativeContextInfo;
  saveState(): Promise<{ state: Buffer; tokens: Int32Array }>;
  restoreState(state: Buffer, tokens: Int32Array): Promise<void>;
  memory(): DeviceMemory[];
  generate(params: Record<string, unknown>, onText: (piece: string) => void, cancel: NativeCancelToken): Promise<NativeGenerateResult>;
  embed(text: string, normalize: boolean): Promise<Float32Array>;
  clearHistory(): void;
  dispose(): void;
}

export interface NativeModel {
  info(): NativeModelInfo;
  tokenize(text: string, addSpecial: boolean, parseSpecial: boolean): Promise<Int32Array>;
  detokenize(tokens: Int32Array, removeSpecial: boolean, unparseSpecial: boolean): Promise<string>;
  applyChatTemplate(messages: { role: string; content: string }[], addAssistant: boolean, template: string | null): Promise<{ prompt: string; stops: string[] }>;
  createContext(options: Record<string, unknown>): Promise<NativeContext>;
  dispose(): void;
}

export interface NativeDevice {
  name: string;
  description: string;
  type: "cpu" | "gpu" | "igpu" | "accel" | "other";
  backend: string;
  freeBytes: number;
  totalBytes: number;
}

export interface NativeVersions {
  addon: string;
  llamaCppCommit: string;
  llamaCppSource: string;
  ggml: string;
  ggmlCommit: string;
  napi: number;
}

export interface NativeSystemInfo {
  devices: NativeDevice[];
  backends: string[];
  cpuThreads: number;
  cpuFeatures: string;
  gpuOffload: boolean;
  mmap: boolean;
  versions: NativeVersions;
}

/** The stable-diffusion.cpp model handle (only in builds with the diffusion engine). */
export interface NativeDiffusionHandle {
  info(): { samplers: string[]; schedulers: string[]; defaultSampler: string; imageGeneration: boolean };
  generate(
    params: Record<string, unknown>,
    onEvent: (e: Record<string, unknown>) => void,
    cancel: NativeCancelToken,
  ): Promise<{ data: Buffer; width: number; height: number; channels: number }[]>;
  cancel(mode: "all" | "newLatents"): void;
  dispose(): void;
}

export interface NativeAddon {
  CancelToken: new () => NativeCancelToken;
  loadModel(path: string, options: Record<string, unknown>, onProgress: ((fraction: number) => void) | undefined, cancel: NativeCancelToken): Promise<NativeModel>;
  estimateMemory(path: string, modelOptions: Record<string, unknown>, contextOptions: Record<string, unknown>): Promise<DeviceMemory[]>;
  systemInfo(): NativeSystemInfo;
  versions(): NativeVersions;
  setLogLevel(level: string): void;
  /** Cancels this thread's (env's) running jobs and waits, up to 5 s, for their native threads to finish. */
  shutdown(): void;
  capabilities: { llm: boolean; diffusion: boolean };
  /** The folder the .node file was loaded from (its shared libraries and backend modules are there). */
  addonDir: string;
  /** Registers a ggml backend module (process-wide, idempotent). @throws BACKEND_ERROR when it does not load */
  loadBackend(path: string): { name: string; path: string; devices: string[] };
  /** The backend modules registered so far. */
  backendModules(): { name: string; path: string }[];
  /** The first device a load with this device spec uses ("CPU" when none). @throws INVALID_ARGUMENT when the spec names nothing registered */
  deviceName(spec: string): string;
  /** Present when capabilities.diffusion is true. */
  loadDiffusionModel?(options: Record<string, unknown>, onProgress: ((fraction: number) => void) | undefined, cancel: NativeCancelToken): Promise<NativeDiffusionHandle>;
}

/** The package root: the nearest folder above this file whose package.json is genai-native's. */
export function packageRoot(): string {
  let dir = __dirname;
  for (;;) {
    const pkg = path.join(dir, "package.json");
    if (fs.existsSync(pkg)) {
      try {
        if (JSON.parse(fs.readFileSync(pkg, "utf8")).name === "genai-native") return dir;
      } catch {
        // keep looking
      }
    }
    const up = path.dirname(dir);
    if (up === dir) throw new GenaiError("ENGINE_UNAVAILABLE", "cannot find the genai-native package root");
    dir = up;
  }
}

/**
 * Where the addon's files really are. Inside a packaged Electron app the
 * package sits in `resources/app.asar/...`, but native binaries cannot load
 * from an asar archive: packagers unpack them to `app.asar.unpacked/...`
 * (electron-builder `asarUnpack`, Electron Forge's auto-unpack-natives), so
 * that path is used when it exists.
 */
export function addonRoot(root: string): string {
  const marker = `app.asar${path.sep}`;
  const at = root.indexOf(marker);
  if (at < 0) return root;
  const unpacked = root.slice(0, at) + `app.asar.unpacked${path.sep}` + root.slice(at + marker.length);
  return fs.existsSync(unpacked) ? unpacked : root;
}

let cached: NativeAddon | undefined;
let cachedPath: string | undefined;

/**
 * The folder of an installed optional package `@genai-native/<name>` (the
 * per-platform binary packages, see README "Prebuilt binaries"), its
 * app.asar.unpacked copy inside an Electron app; undefined when not installed.
 */
export function platformPackageDir(name: string): string | undefined {
  try {
    return addonRoot(path.dirname(require.resolve(`@genai-native/${name}/package.json`)));
  } catch {
    return undefined;
  }
}

/**
 * The .node file `native()` loads: GENAI_NATIVE_ADDON; else, by
 * node-gyp-build's rules, this package's build/Release or its
 * prebuilds/<platform>-<arch>; else the prebuilds of the optional package
 * `@genai-native/<platform>-<arch>`.
 * @throws Error when there is none
 */
export function nativeAddonPath(): string {
  if (cachedPath) return cachedPath;
  if (process.env.GENAI_NATIVE_ADDON) return (cachedPath = process.env.GENAI_NATIVE_ADDON);
  try {
    cachedPath = nodeGypBuild.resolve(addonRoot(packageRoot()));
  } catch (e) {
    const pkg = platformPackageDir(`${process.platform}-${process.arch}`);
    if (!pkg) throw e;
    cachedPath = nodeGypBuild.resolve(pkg);
  }
  return cachedPath;
}

/**
 * The addon, loaded once per thread. `GENAI_NATIVE_ADDON` may name a .node
 * file to load instead (for example an Electron app's app.asar.unpacked copy).
 * @throws GenaiError ENGINE_UNAVAILABLE when no binary loads.
 */
export function native(): NativeAddon {
  if (cached) return cached;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const addon = require(nativeAddonPath()) as NativeAddon;
    // process.exit() while a generation runs: stop native threads before
    // exit() tears down the engine's statics under them.
    process.once("exit", () => addon.shutdown());
    cached = addon;
  } catch (e) {
    throw new GenaiError("ENGINE_UNAVAILABLE", `genai-native's addon could not be loaded (${(e as Error).message}); build it with \`npm run build:native\``, { cause: e });
  }
  return cached;
}

/**
 * Runs `fn` with a fresh native cancel token that aborting `signal` cancels,
 * turning native errors into GenaiErrors (wrapErrors).
 */
export async function withCancelToken<T>(signal: AbortSignal | undefined, fn: (token: NativeCancelToken) => Promise<T>): Promise<T> {
  const token = new (native().CancelToken)();
  const onAbort = () => token.cancel();
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    return await wrapErrors(() => fn(token));
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
}
