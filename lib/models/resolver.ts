/**
 * Finds a model file: a reference (`hf:owner/repo[:quant]`, `hf:owner/repo/file.gguf`,
 * an https URL: the model store's copy, pulled on first use) or an explicit
 * path → `$GENAI_NATIVE_MODELS/<file>` → the
 * user cache dir → (when allowed) a download from the model's public home,
 * resumed from a `.partial` file and checked against its sha256.
 */
import fs from "node:fs";
import path from "node:path";
import { GenaiError } from "../errors";
import { modelCacheDir } from "../system/cache-dir";
import { downloadFile } from "./download";
import { parseModelRef } from "./hub";
import { ModelStore } from "./store";

export interface KnownModel {
  /** File name used in model dirs and the cache. */
  file: string;
  /** Public download address. */
  url: string;
  /** Lower-case hex sha256 of the file. */
  sha256: string;
  /** File size in bytes. */
  bytes: number;
}

/**
 * The embedded default: llama2.c's "tinyllamas" stories260K (MIT), a real
 * 260K-parameter llama model that writes children's stories. Home: Hugging Face
 * `ggml-org/models`, `tinyllamas/stories260K.gguf`.
 */
export const DEFAULT_MODEL: KnownModel = {
  file: "stories260K.gguf",
  url: "https://huggingface.co/ggml-org/models/resolve/main/tinyllamas/stories260K.gguf",
  sha256: "270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d",
  bytes: 1185376,
};

export { modelCacheDir };

export interface ResolveOptions {
  /** Known model to find when no explicit path is given (default {@link DEFAULT_MODEL}). */
  model?: KnownModel;
  /** Models folder; default `$GENAI_NATIVE_MODELS`. */
  modelsDir?: string;
  /** Cache folder; default {@link modelCacheDir}. */
  cacheDir?: string;
  /** Allow downloading into the cache (default true). */
  download?: boolean;
  /** Download progress, bytes so far and total bytes. */
  onDownloadProgress?: (receivedBytes: number, totalBytes: number) => void;
  signal?: AbortSignal;
}

/**
 * Returns an existing model path.
 * @throws GenaiError MODEL_NOT_FOUND (explicit path missing, or nowhere to be found and no download possible),
 *   INVALID_MODEL (download's sha256 mismatch), ABORTED.
 */
export async function resolveModel(explicitPath?: string, opts: ResolveOptions = {}): Promise<string> {
  if (explicitPath !== undefined && parseModelRef(explicitPath).kind !== "path") {
    // a reference (hf:owner/repo[:quant], https://…): the store's copy, pulled on first use
    const store = new ModelStore(opts.cacheDir ?? modelCacheDir());
    const have = store.find(explicitPath);
    if (have) return have.path;
    if (opts.download === false) throw new GenaiError("MODEL_NOT_FOUND", `${explicitPath} is not in the store (${store.dir}), and downloading is off`);
    const onProgress = opts.onDownloadProgress;
    return (await store.pull(explicitPath, { signal: opts.signal, ...(onProgress ? { onProgress: (p) => onProgress(p.receivedBytes, p.totalBytes) } : {}) }))
      .path;
  }
  if (explicitPath !== undefined) {
    if (!fs.existsSync(explicitPath)) throw new GenaiError("MODEL_NOT_FOUND", `model file not found: ${explicitPath}`);
    return path.resolve(explicitPath);
  }
  const model = opts.model ?? DEFAULT_MODEL;
  const dirs = [opts.modelsDir ?? process.env.GENAI_NATIVE_MODELS, opts.cacheDir ?? modelCacheDir()].filter((d): d is string => !!d);
  for (const dir of dirs) {
    const candidate = path.join(dir, model.file);
    if (fs.existsSync(candidate)) return path.resolve(candidate);
  }
  if (opts.download === false) {
    throw new GenaiError("MODEL_NOT_FOUND", `${model.file} is not in ${dirs.join(" or ")}, and downloading is off`);
  }
  return downloadModel(model, opts.cacheDir ?? modelCacheDir(), opts);
}

/**
 * Downloads `model` into `dir` (lib/models/download.ts: resumed from a
 * `.partial` file with an HTTP Range request, checked against its sha256,
 * renamed into place).
 */
export async function downloadModel(model: KnownModel, dir: string, opts: Pick<ResolveOptions, "onDownloadProgress" | "signal"> = {}): Promise<string> {
  return downloadFile(model.url, path.join(dir, model.file), {
    sha256: model.sha256,
    bytes: model.bytes,
    signal: opts.signal,
    onProgress: opts.onDownloadProgress ? (p) => opts.onDownloadProgress?.(p.receivedBytes, p.totalBytes) : undefined,
  });
}
