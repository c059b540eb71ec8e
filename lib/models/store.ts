/**
 * The local model store: models pulled by reference live in
 * `<dir>/hf/<owner>/<repo>/<file>` (default dir: the model cache,
 * $GENAI_NATIVE_CACHE or the user cache dir + genai-native/models, shareable
 * between apps), each download resumable and verified (download.ts), with a
 * `.genai-native.json` beside the files recording where they came from and
 * their sha256. Pulls queue (concurrency 1 by default, in priority order) and
 * can be paused and resumed; verify() hashes what is there again.
 */
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { GenaiError } from "../errors";
import { type DownloadProgress, downloadFile } from "./download";
import { type HubFile, hubEndpoint, hubToken, listGgufFiles, type ModelRef, parseModelRef, pickModelFiles, resolveUrl } from "./hub";
import { defaultBudgets } from "../orchestrator/budget";
import type { Priority } from "../orchestrator/priority";
import { JobQueue } from "../orchestrator/queue";
import { estimateFromSummary, type LlamaMemoryEstimate } from "../orchestrator/estimate";
import type { ParsedHeader } from "./gguf-worker";
import { type GgufSummary, parseGgufHeader, summarizeGguf } from "./metadata";
import { modelCacheDir } from "../system/cache-dir";

export interface PullOptions {
  /** Queue priority among this store's downloads (default "interactive"). */
  priority?: Priority;
  /** When the signal aborts the pull, keep the partial files for a later resume (default false: removed). */
  keepPartialOnAbort?: boolean;
  /** Hub token (default $HF_TOKEN). */
  token?: string;
  /** Hub base URL (default $HF_ENDPOINT, else https://huggingface.co). */
  endpoint?: string;
  signal?: AbortSignal;
  /** Per file: bytes, total, bytes/s, ETA, where it resumed from; `index`/`count` among the model's files (shards). */
  onProgress?: (p: DownloadProgress & { index: number; count: number }) => void;
}

export interface StoredModel {
  /** The reference it was pulled by (hf:owner/repo:QUANT or hf:owner/repo/file). */
  ref: string;
  /** The model file to load (the first shard for a sharded model). */
  path: string;
  /** Every file of the model, bytes each. */
  files: { path: string; bytes: number; sha256?: string }[];
  /** Sum of the files' sizes, bytes. */
  bytes: number;
  quant?: string;
  /** From the downloaded header: architecture, parameters, training context (tokens). */
  architecture?: string;
  parameterCount?: number;
  contextLength?: number;
  /** The other references it was pulled by (e.g. hf:owner/repo without a quant). */
  aliases?: string[];
  /**
   * The repo's multimodal projector (an `mmproj-*.gguf` beside the model:
   * F16, else BF16, else Q8_0, else the first), pulled with it: give its path
   * as LlamaModel.load's `mmproj`. Shared by the repo's models (removed with the last).
   */
  mmproj?: { path: string; bytes: number; sha256?: string };
}

/** ModelStore.inspect's answer: what a pull would fetch and whether it fits, before downloading. */
export interface ModelInspection {
  ref: string;
  files: { path: string; bytes: number; sha256?: string }[];
  /** All files, bytes. */
  bytes: number;
  quant?: string;
  /** Architecture, parameter count, context length, quantization… from the remote header. */
  summary: GgufSummary;
  /** The context the estimate is for, tokens (default: the training context, at most 4096). */
  contextSize: number;
  /** Weights, KV cache and compute buffers, bytes. */
  estimate: LlamaMemoryEstimate;
  /** The estimate's total is within the largest device budget. */
  fits: boolean;
  /** Each device's budget, bytes. */
  budgets: Record<string, number>;
}

const MANIFEST = ".genai-native.json";

interface Manifest {
  repo: string;
  models: StoredModel[];
}

export class ModelStore {
  /** The store's folder. */
  readonly dir: string;
  readonly #queue: JobQueue;
  /** Pulls paused by reference: their transfer stopped (the partial file kept) until resume(). */
  readonly #paused = new Map<string, { resume: Promise<void>; release: () => void }>();
  /** The running transfer of each pull, by reference: pause() stops it. */
  readonly #transfers = new Map<string, AbortController>();

  /**
   * @param dir default: {@link modelCacheDir}
   * @param options.concurrency downloads at once (default 1; the rest wait in priority order)
   */
  constructor(dir: string = modelCacheDir(), options: { concurrency?: number } = {}) {
    this.dir = path.resolve(dir);
    this.#queue = new JobQueue({ limits: { download: options.concurrency ?? 1 } });
  }

  /**
   * Stops `ref`'s running (or next) transfer, keeping its partial file; its
   * pull() waits until resume(). No effect when it is not being pulled.
   */
  pause(ref: string): void {
    if (this.#paused.has(ref)) return;
    let release = () => {};
    const resume = new Promise<void>((r) => (release = r));
    this.#paused.set(ref, { resume, release });
    this.#transfers.get(ref)?.abort();
  }

  /** Lets a paused pull go on (from where its transfer stopped). */
  resume(ref: string): void {
    const p = this.#paused.get(ref);
    this.#paused.delete(ref);
    p?.release();
  }

  #repoDir(repo: string): string {
    return path.join(this.dir, "hf", ...repo.split("/"));
  }

  #readManifest(repo: string): Manifest {
    try {
      return JSON.parse(fs.readFileSync(path.join(this.#repoDir(repo), MANIFEST), "utf8")) as Manifest;
    } catch {
      return { repo, models: [] };
    }
  }

  #writeManifest(m: Manifest): void {
    const file = path.join(this.#repoDir(m.repo), MANIFEST);
    fs.writeFileSync(`${file}.tmp`, JSON.stringify(m, null, 1));
    fs.renameSync(`${file}.tmp`, file);
  }

  /** The stored model for `ref` (an hf: reference), without asking the hub; undefined when not pulled. */
  find(ref: string): StoredModel | undefined {
    const r = parseModelRef(ref);
    if (r.kind !== "hf") return undefined;
    const found = this.#readManifest(r.repo).models.find((m) => m.ref === canonical(r, r.quant) || m.ref === ref || m.aliases?.includes(ref));
    return found?.files.every((f) => fs.existsSync(f.path)) ? found : undefined;
  }

  /**
   * Downloads the model `ref` names (hf: reference or https URL) into the
   * store, or returns it when it is there already. Each file is resumed from
   * an earlier partial download and verified against the hub's sha256.
   * @throws GenaiError ACCESS_DENIED, MODEL_NOT_FOUND, INVALID_MODEL (checksum), IO_ERROR, ABORTED, INVALID_ARGUMENT
   */
  async pull(ref: string, opts: PullOptions = {}): Promise<StoredModel> {
    const r = parseModelRef(ref); // a malformed reference fails before it queues
    const have = r.kind === "hf" ? this.find(ref) : undefined;
    if (have) return have;
    const job = this.#queue.enqueue({
      engine: "download",
      priority: opts.priority ?? "interactive",
      signal: opts.signal,
      run: async (signal) => {
        for (;;) {
          await this.#paused.get(ref)?.resume;
          const transfer = new AbortController();
          const stop = () => transfer.abort();
          signal.addEventListener("abort", stop, { once: true });
          this.#transfers.set(ref, transfer);
          try {
            return await this.#pullNow(ref, { ...opts, signal: transfer.signal });
          } catch (e) {
            // stopped by pause(): wait for resume() and go on from the partial file
            if (!signal.aborted && this.#paused.has(ref) && (e as GenaiError).code === "ABORTED") continue;
            throw e;
          } finally {
            signal.removeEventListener("abort", stop);
            this.#transfers.delete(ref);
          }
        }
      },
    });
    return job.promise;
  }

  async #pullNow(ref: string, opts: PullOptions): Promise<StoredModel> {
    const r = parseModelRef(ref);
    if (r.kind === "path") throw new GenaiError("INVALID_ARGUMENT", `${ref} is a local path, not a reference to pull (hf:owner/repo[:quant] or https://…)`);
    const token = hubToken(opts.token);
    const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
    if (r.kind === "url") {
      const name = decodeURIComponent(new URL(r.url).pathname.split("/").pop() || "model.gguf");
      const dest = path.join(this.dir, "url", name);
      if (!fs.existsSync(dest))
        await downloadFile(r.url, dest, { headers, signal: opts.signal, onProgress: (p) => opts.onProgress?.({ ...p, index: 0, count: 1 }) });
      return { ref, path: dest, files: [{ path: dest, bytes: fs.statSync(dest).size }], bytes: fs.statSync(dest).size };
    }
    const have = this.find(ref);
    if (have) return have;
    const endpoint = opts.endpoint ?? hubEndpoint();
    const listed = await listGgufFiles(r.repo, { endpoint, token });
    const picked = pickModelFiles(r.repo, listed, r);
    const files: StoredModel["files"] = [];
    const wanted = picked.mmproj ? [...picked.files, picked.mmproj] : picked.files;
    for (const [index, f] of wanted.entries()) {
      const dest = path.join(this.#repoDir(r.repo), ...f.path.split("/"));
      if (f === picked.mmproj && fs.existsSync(dest)) {
        files.push({ path: dest, bytes: f.size, ...(f.sha256 ? { sha256: f.sha256 } : {}) }); // another quant brought it
        continue;
      }
      await downloadFile(resolveUrl(r.repo, f.path, endpoint), dest, {
        ...(f.sha256 ? { sha256: f.sha256 } : {}),
        bytes: f.size,
        headers,
        signal: opts.signal,
        // a pause keeps the partial file (resume goes on from it); a cancel removes it unless asked not to
        discardOnAbort: () => !this.#paused.has(ref) && !opts.keepPartialOnAbort,
        onProgress: (p) => opts.onProgress?.({ ...p, index, count: wanted.length }),
      });
      files.push({ path: dest, bytes: f.size, ...(f.sha256 ? { sha256: f.sha256 } : {}) });
    }
    const mmproj = picked.mmproj ? files.pop() : undefined;
    // what list() shows about it, read once from the downloaded header (a shard holds the metadata in its first file)
    const summary = await parseGgufHeader(files[0].path).then(
      (h) => summarizeGguf(files[0].path, h, files[0].bytes),
      () => undefined,
    );
    const stored: StoredModel = {
      ref: canonical(r, picked.quant, picked.files[0]),
      path: files[0].path,
      files,
      bytes: files.reduce((n, f) => n + f.bytes, 0),
      ...(picked.quant ? { quant: picked.quant } : {}),
      ...(mmproj ? { mmproj } : {}),
      ...(summary
        ? {
            architecture: summary.architecture,
            parameterCount: summary.parameterCount,
            ...(summary.contextLength ? { contextLength: summary.contextLength } : {}),
          }
        : {}),
    };
    const manifest = this.#readManifest(r.repo);
    const before = manifest.models.find((m) => m.ref === stored.ref);
    const aliases = [...new Set([...(before?.aliases ?? []), ...(ref !== stored.ref ? [ref] : [])])];
    if (aliases.length > 0) stored.aliases = aliases;
    manifest.models = [...manifest.models.filter((m) => m.ref !== stored.ref), stored];
    this.#writeManifest(manifest);
    return stored;
  }

  /**
   * What `ref` would download, without downloading it: the files and their
   * sizes, the model's metadata read from the hub through HTTP range requests
   * (@huggingface/gguf: only the header), llama.cpp's memory for a context of
   * `contextSize` tokens (the orchestrator's formula from metadata), and
   * whether that fits the largest device budget of this machine (free memory
   * less the safety padding).
   * @throws GenaiError as pull(), INVALID_MODEL (the header does not parse)
   */
  async inspect(ref: string, opts: Omit<PullOptions, "onProgress"> & { contextSize?: number } = {}): Promise<ModelInspection> {
    const r = parseModelRef(ref);
    if (r.kind !== "hf") throw new GenaiError("INVALID_ARGUMENT", `${ref} is not an hf: reference`);
    const endpoint = opts.endpoint ?? hubEndpoint();
    const token = hubToken(opts.token);
    const picked = pickModelFiles(r.repo, await listGgufFiles(r.repo, { endpoint, token }), r);
    const bytes = picked.files.reduce((n, f) => n + f.size, 0);
    const url = resolveUrl(r.repo, picked.files[0].path, endpoint);
    const { gguf } = await import("@huggingface/gguf");
    let parsed: ParsedHeader;
    try {
      const p = await gguf(url, { computeParametersCount: true, ...(token ? { additionalFetchHeaders: { authorization: `Bearer ${token}` } } : {}) });
      parsed = {
        metadata: p.metadata as ParsedHeader["metadata"],
        tensorCount: p.tensorInfos.length,
        parameterCount: p.parameterCount,
        tensorDataOffset: Number(p.tensorDataOffset),
      };
    } catch (e) {
      throw new GenaiError("INVALID_MODEL", `${ref}: the GGUF header could not be read from the hub (${(e as Error).message})`, { cause: e });
    }
    const summary = summarizeGguf(url, parsed, bytes);
    const contextSize = opts.contextSize ?? Math.min(summary.contextLength ?? 4096, 4096);
    const estimate = estimateFromSummary(summary, contextSize);
    const budgets = defaultBudgets();
    const largest = Math.max(0, ...Object.values(budgets));
    return {
      ref: canonical(r, picked.quant, picked.files[0]),
      files: picked.files.map((f) => ({ path: f.path, bytes: f.size, ...(f.sha256 ? { sha256: f.sha256 } : {}) })),
      bytes,
      ...(picked.quant ? { quant: picked.quant } : {}),
      summary,
      contextSize,
      estimate,
      fits: estimate.total <= largest,
      budgets,
    };
  }

  /**
   * Hashes a pulled model's files again and compares them with the hub's
   * sha256 recorded at download. @returns the files that do not match (empty: all good)
   * @throws GenaiError MODEL_NOT_FOUND when `ref` is not in the store
   */
  async verify(ref: string): Promise<string[]> {
    const m = this.find(ref);
    if (!m) throw new GenaiError("MODEL_NOT_FOUND", `${ref} is not in the store`);
    const bad: string[] = [];
    for (const f of [...m.files, ...(m.mmproj ? [m.mmproj] : [])]) {
      if (!f.sha256) continue;
      const h = createHash("sha256");
      for await (const chunk of fs.createReadStream(f.path)) h.update(chunk as Buffer);
      if (h.digest("hex") !== f.sha256) bad.push(f.path);
    }
    return bad;
  }

  /** The models pulled into this store (those whose files are all there). */
  list(): StoredModel[] {
    const root = path.join(this.dir, "hf");
    const out: StoredModel[] = [];
    if (!fs.existsSync(root)) return out;
    for (const owner of fs.readdirSync(root)) {
      for (const repo of fs.readdirSync(path.join(root, owner))) {
        for (const m of this.#readManifest(`${owner}/${repo}`).models) if (m.files.every((f) => fs.existsSync(f.path))) out.push(m);
      }
    }
    return out;
  }

  /**
   * Deletes a pulled model's files (and partial downloads of them).
   * @returns whether anything was removed
   */
  remove(ref: string): boolean {
    const r = parseModelRef(ref);
    if (r.kind !== "hf") throw new GenaiError("INVALID_ARGUMENT", `${ref} is not an hf: reference`);
    const manifest = this.#readManifest(r.repo);
    // hf:owner/repo (no quant, not an alias) removes every model of the repo
    const all = r.quant === undefined && r.file === undefined && !manifest.models.some((m) => m.aliases?.includes(ref));
    const gone = manifest.models.filter(
      (m) => all || m.ref === ref || m.aliases?.includes(ref) || (r.quant !== undefined && m.quant === r.quant.toUpperCase()),
    );
    const kept = manifest.models.filter((m) => !gone.includes(m));
    for (const m of gone)
      for (const f of [...m.files, ...(m.mmproj && !kept.some((k) => k.mmproj?.path === m.mmproj?.path) ? [m.mmproj] : [])]) {
        fs.rmSync(f.path, { force: true });
        fs.rmSync(`${f.path}.partial`, { force: true });
      }
    manifest.models = kept;
    if (gone.length > 0) this.#writeManifest(manifest);
    return gone.length > 0;
  }
}

/** The stored form of a reference: hf:owner/repo:QUANT, or hf:owner/repo/file for a file without a quant in its name. */
function canonical(r: Extract<ModelRef, { kind: "hf" }>, quant?: string, first?: HubFile): string {
  if (quant) return `hf:${r.repo}:${quant.toUpperCase()}`;
  return `hf:${r.repo}/${r.file ?? first?.path ?? ""}`;
}
