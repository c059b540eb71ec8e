/**
 * One file downloaded, resumable and verified: the bytes go to `<dest>.partial`
 * (an HTTP Range request continues it after a dropped connection, an abort or
 * a restart of the process), are hashed as they arrive (sha256; a resumed
 * file's existing bytes are hashed once, before the rest arrives), and the
 * file is renamed into place only when its size and digest match.
 */
import { createHash, type Hash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { GenaiError } from "../errors";

export interface DownloadProgress {
  /** The file's name in its destination folder. */
  file: string;
  /** Bytes on disk so far (including a resumed part). */
  receivedBytes: number;
  /** The whole file, bytes (0 when the server does not say). */
  totalBytes: number;
  /** Over this transfer so far (bytes per second). */
  bytesPerSecond: number;
  /** Estimated ms left (undefined until a second of transfer has been timed). */
  etaMs?: number;
  /** Where the transfer started (bytes already there from an earlier attempt). */
  resumedFrom: number;
}

export interface DownloadFileOptions {
  /** Lower-case hex sha256 the file must have (the hub's LFS digest); a mismatch discards the partial file. */
  sha256?: string;
  /** Size the file must have, bytes. */
  bytes?: number;
  /** Extra request headers (Authorization). */
  headers?: Record<string, string>;
  signal?: AbortSignal;
  onProgress?: (p: DownloadProgress) => void;
  /** Remove the partial file when aborted (default false: the next call resumes it); a function is asked at the time. */
  discardOnAbort?: boolean | (() => boolean);
}

async function hashFile(file: string, h: Hash): Promise<void> {
  for await (const chunk of fs.createReadStream(file)) h.update(chunk as Buffer);
}

function httpError(url: string, status: number): GenaiError {
  if (status === 401 || status === 403)
    return new GenaiError("ACCESS_DENIED", `${url}: HTTP ${status} — a gated or private repository: set HF_TOKEN (or pass a token) with access to it`);
  if (status === 404) return new GenaiError("MODEL_NOT_FOUND", `${url}: HTTP 404 (no such file or repository)`);
  return new GenaiError("BACKEND_ERROR", `${url}: HTTP ${status}`);
}

function ioError(e: unknown, what: string): GenaiError {
  const code = (e as NodeJS.ErrnoException).code;
  const why = code === "ENOSPC" ? "the disk is full" : (e as Error).message;
  return new GenaiError("IO_ERROR", `${what}: ${why}`, { cause: e });
}

/**
 * Downloads `url` to `dest` (resuming `dest.partial`), verifies and renames it.
 * @returns dest
 * @throws GenaiError ACCESS_DENIED (401/403), MODEL_NOT_FOUND (404, unreachable), INVALID_MODEL (size or
 *   sha256 mismatch: the partial file is removed), IO_ERROR (disk full, permissions), ABORTED (the partial
 *   file stays for a resume unless discardOnAbort), BACKEND_ERROR (other HTTP errors, a broken transfer:
 *   the partial file stays)
 */
export async function downloadFile(url: string, dest: string, opts: DownloadFileOptions = {}): Promise<string> {
  const file = path.basename(dest);
  const partial = `${dest}.partial`;
  try {
    await fs.promises.mkdir(path.dirname(dest), { recursive: true });
  } catch (e) {
    throw ioError(e, `cannot create ${path.dirname(dest)}`);
  }
  let have = fs.existsSync(partial) ? fs.statSync(partial).size : 0;
  const aborted = async (e?: unknown) => {
    const discard = typeof opts.discardOnAbort === "function" ? opts.discardOnAbort() : opts.discardOnAbort === true;
    if (discard) await fs.promises.rm(partial, { force: true });
    return new GenaiError("ABORTED", `download of ${file} aborted${discard ? "" : ` at ${have} bytes (it resumes from there)`}`, { cause: e });
  };
  if (opts.signal?.aborted) throw await aborted();
  let res: Response;
  try {
    res = await fetch(url, { headers: { ...opts.headers, ...(have > 0 ? { Range: `bytes=${have}-` } : {}) }, signal: opts.signal, redirect: "follow" });
  } catch (e) {
    if (opts.signal?.aborted) throw await aborted(e);
    throw new GenaiError("MODEL_NOT_FOUND", `could not reach ${url} (${(e as Error).message})`, { cause: e });
  }
  const hash = createHash("sha256");
  if (res.status === 416 && opts.bytes !== undefined && have === opts.bytes) {
    // the partial file is complete already: verify it
  } else if (res.status === 206 && have > 0) {
    await hashFile(partial, hash);
  } else if (res.status === 200) {
    have = 0; // the server sends the whole file
  } else {
    throw httpError(url, res.status);
  }
  const resumedFrom = have;
  const length = Number(res.headers.get("content-length") ?? 0);
  const total = opts.bytes ?? (res.status === 416 ? have : length > 0 ? have + length : 0);
  if (res.status !== 416) {
    let out: fs.WriteStream;
    try {
      out = fs.createWriteStream(partial, { flags: have > 0 ? "a" : "w" });
      await new Promise<void>((resolve, reject) => out.once("open", () => resolve()).once("error", reject));
    } catch (e) {
      throw ioError(e, `cannot write ${partial}`);
    }
    let writeError: unknown;
    out.on("error", (e) => (writeError = e));
    const t0 = performance.now();
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        if (writeError) throw writeError;
        hash.update(chunk);
        if (!out.write(chunk)) await new Promise<void>((r) => out.once("drain", () => r()));
        have += chunk.byteLength;
        const s = (performance.now() - t0) / 1000;
        const rate = s > 0 ? (have - resumedFrom) / s : 0;
        opts.onProgress?.({
          file,
          receivedBytes: have,
          totalBytes: total,
          bytesPerSecond: rate,
          ...(s >= 1 && rate > 0 && total > 0 ? { etaMs: ((total - have) / rate) * 1000 } : {}),
          resumedFrom,
        });
      }
    } catch (e) {
      await new Promise<void>((r) => out.end(r));
      if (opts.signal?.aborted) throw await aborted(e);
      if (writeError || (e as NodeJS.ErrnoException).code) throw ioError(writeError ?? e, `writing ${partial}`);
      throw new GenaiError("BACKEND_ERROR", `download of ${file} broke off at ${have} bytes (${(e as Error).message}); it resumes next time`, { cause: e });
    }
    await new Promise<void>((r) => out.end(r));
    if (writeError) throw ioError(writeError, `writing ${partial}`);
  } else {
    await hashFile(partial, hash);
  }
  const size = fs.statSync(partial).size;
  if (opts.bytes !== undefined && size !== opts.bytes) {
    if (size > opts.bytes) await fs.promises.rm(partial, { force: true });
    throw new GenaiError(size > opts.bytes ? "INVALID_MODEL" : "BACKEND_ERROR", `${file}: ${size} bytes arrived, ${opts.bytes} expected`);
  }
  const digest = hash.digest("hex");
  if (opts.sha256 !== undefined && digest !== opts.sha256.toLowerCase()) {
    await fs.promises.rm(partial, { force: true });
    throw new GenaiError("INVALID_MODEL", `sha256 mismatch for ${file}: got ${digest}, expected ${opts.sha256} (the download was discarded)`);
  }
  await fs.promises.rename(partial, dest);
  return dest;
}
