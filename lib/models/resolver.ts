/**
 * Finds a model file: an explicit path → `$GENAI_NATIVE_MODELS/<file>` → the
 * user cache dir → (when allowed) a download from the model's public home,
 * resumed from a `.partial` file and checked against its sha256.
 */
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { GenaiError } from "../errors";
import { genaiCacheDir } from "../system/cache-dir";

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

/** The per-user cache: $GENAI_NATIVE_CACHE, else the platform's cache dir + /genai-native/models. */
export function modelCacheDir(): string {
  if (process.env.GENAI_NATIVE_CACHE) return process.env.GENAI_NATIVE_CACHE;
  return path.join(genaiCacheDir(), "models");
}

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

async function sha256File(file: string): Promise<string> {
  const h = createHash("sha256");
  for await (const chunk of fs.createReadStream(file)) h.update(chunk as Buffer);
  return h.digest("hex");
}

/**
 * Returns an existing model path.
 * @throws GenaiError MODEL_NOT_FOUND (explicit path missing, or nowhere to be found and no download possible),
 *   INVALID_MODEL (download's sha256 mismatch), ABORTED.
 */
export async function resolveModel(explicitPath?: string, opts: ResolveOptions = {}): Promise<string> {
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
 * Downloads `model` into `dir`, resuming a previous `.partial` file with an
 * HTTP Range request, then checks the sha256 and renames it into place.
 */
export async function downloadModel(model: KnownModel, dir: string, opts: Pick<ResolveOptions, "onDownloadProgress" | "signal"> = {}): Promise<string> {
  await fs.promises.mkdir(dir, { recursive: true });
  const dest = path.join(dir, model.file);
  const partial = dest + ".partial";
  let have = fs.existsSync(partial) ? fs.statSync(partial).size : 0;
  let res: Response;
  try {
    res = await fetch(model.url, { headers: have > 0 ? { Range: `bytes=${have}-` } : {}, signal: opts.signal });
  } catch (e) {
    if (opts.signal?.aborted) throw new GenaiError("ABORTED", "download aborted", { cause: e });
    throw new GenaiError("MODEL_NOT_FOUND", `could not download ${model.url} (${(e as Error).message})`, { cause: e });
  }
  if (res.status === 200) have = 0;
  else if (res.status !== 206) throw new GenaiError("MODEL_NOT_FOUND", `download of ${model.url} failed: HTTP ${res.status}`);
  const total = have + Number(res.headers.get("content-length") ?? model.bytes - have);
  const out = fs.createWriteStream(partial, { flags: have > 0 ? "a" : "w" });
  try {
    let received = have;
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      if (!out.write(chunk)) await new Promise<void>((r) => out.once("drain", () => r()));
      received += chunk.byteLength;
      opts.onDownloadProgress?.(received, total);
    }
  } catch (e) {
    if (opts.signal?.aborted) throw new GenaiError("ABORTED", "download aborted", { cause: e });
    throw new GenaiError("MODEL_NOT_FOUND", `download of ${model.url} broke off (${(e as Error).message}); it resumes next time`, { cause: e });
  } finally {
    await new Promise<void>((r) => out.end(r));
  }
  const digest = await sha256File(partial);
  if (digest !== model.sha256) {
    await fs.promises.rm(partial, { force: true });
    throw new GenaiError("INVALID_MODEL", `sha256 mismatch for ${model.file}: got ${digest}, expected ${model.sha256}`);
  }
  await fs.promises.rename(partial, dest);
  return dest;
}
