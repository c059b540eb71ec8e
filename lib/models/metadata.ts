/**
 * GGUF metadata read in TypeScript with @huggingface/gguf (header and tensor
 * infos only; tensor data is never read). Used to validate a file before the
 * engine sees it and to describe a model without loading it. The cheap checks
 * (exists, regular file, size, magic) run here; the header parse runs on a
 * worker thread (./gguf-worker.ts), so a large vocabulary never blocks the
 * event loop.
 */
import fs from "node:fs";
import { GenaiError } from "../errors";
import { parseGgufHeaderOffThread, type ParsedHeader } from "./gguf-worker";

export type { ParsedHeader } from "./gguf-worker";

export interface GgufSummary {
  /** `general.architecture`, e.g. "llama". */
  architecture: string;
  /** `general.name`, when present. */
  name?: string;
  /** Training context length in tokens (`<arch>.context_length`). */
  contextLength?: number;
  /** Transformer blocks (`<arch>.block_count`). */
  layerCount?: number;
  /** Hidden size (`<arch>.embedding_length`). */
  embeddingLength?: number;
  /** Attention heads (`<arch>.attention.head_count`). */
  headCount?: number;
  /** KV heads (`<arch>.attention.head_count_kv`, defaults to headCount). */
  headCountKv?: number;
  /** Tokenizer model (`tokenizer.ggml.model`), e.g. "llama" (SPM) or "gpt2" (BPE). */
  tokenizer?: string;
  /** Number of tokens in the vocabulary. */
  vocabSize?: number;
  /** True when the file carries `tokenizer.chat_template`. */
  hasChatTemplate: boolean;
  /** Number of tensors in the file. */
  tensorCount: number;
  /** Parameters: the sum of the tensors' element counts (@huggingface/gguf's count). */
  parameterCount: number;
  /** File size in bytes. */
  fileBytes: number;
  /** Bytes of tensor data (file size minus the header and tensor infos). */
  tensorDataBytes: number;
  /** Scalar metadata (arrays omitted), keyed as in the file; 64-bit integers beyond 2^53 as decimal strings. */
  raw: Record<string, string | number | boolean>;
}

/**
 * Reads and checks a GGUF header.
 * @throws GenaiError MODEL_NOT_FOUND (no such file), INVALID_MODEL (a directory, empty, not GGUF, truncated header).
 */
export async function readGgufSummary(path: string): Promise<GgufSummary> {
  const fileBytes = await checkGgufFile(path);
  return summarizeGguf(path, await parseGgufHeader(path), fileBytes);
}

/** The header and tensor infos, parsed by @huggingface/gguf on a worker thread. @throws GenaiError INVALID_MODEL */
export async function parseGgufHeader(path: string): Promise<ParsedHeader> {
  try {
    return await parseGgufHeaderOffThread(path);
  } catch (e) {
    throw new GenaiError("INVALID_MODEL", `unreadable GGUF header (${(e as Error).message}): ${path}`, { cause: e });
  }
}

/**
 * The cheap checks before any parse: exists, a regular file, at least 24
 * bytes, GGUF magic. @returns the file's size in bytes.
 * @throws GenaiError MODEL_NOT_FOUND, INVALID_MODEL
 */
export async function checkGgufFile(path: string): Promise<number> {
  let st: fs.Stats;
  try {
    st = await fs.promises.stat(path);
  } catch {
    throw new GenaiError("MODEL_NOT_FOUND", `model file not found: ${path}`);
  }
  if (!st.isFile()) throw new GenaiError("INVALID_MODEL", `not a regular file: ${path}`);
  if (st.size < 24) throw new GenaiError("INVALID_MODEL", `file is too small to be a GGUF model (${st.size} bytes): ${path}`);
  const fh = await fs.promises.open(path, "r");
  try {
    const magic = Buffer.alloc(4);
    await fh.read(magic, 0, 4, 0);
    if (magic.toString("latin1") !== "GGUF") throw new GenaiError("INVALID_MODEL", `not a GGUF file (bad magic): ${path}`);
  } finally {
    await fh.close();
  }
  return st.size;
}

/**
 * The summary of a parsed header: from @huggingface/gguf (readGgufSummary,
 * on a worker thread) or from the header the native load already checked
 * with ggml's reader (LlamaModel.load); both give the same ParsedHeader.
 * @throws GenaiError INVALID_MODEL (no general.architecture)
 */
export function summarizeGguf(path: string, parsed: ParsedHeader, fileBytes: number): GgufSummary {
  const md = parsed.metadata as Record<string, unknown>;
  const arch = typeof md["general.architecture"] === "string" ? (md["general.architecture"] as string) : "";
  if (!arch) throw new GenaiError("INVALID_MODEL", `GGUF has no general.architecture: ${path}`);
  const num = (k: string): number | undefined => {
    const v = md[k];
    return typeof v === "number" ? v : typeof v === "bigint" ? Number(v) : undefined;
  };
  const raw: GgufSummary["raw"] = {};
  for (const [k, v] of Object.entries(md)) {
    if (typeof v === "string" || typeof v === "number" || typeof v === "boolean") raw[k] = v;
    else if (typeof v === "bigint") raw[k] = v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= -BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString();
  }
  const tokens = md["tokenizer.ggml.tokens"] as { arrayLength?: number } | undefined;
  const headCount = num(`${arch}.attention.head_count`);
  return {
    architecture: arch,
    name: typeof md["general.name"] === "string" ? (md["general.name"] as string) : undefined,
    contextLength: num(`${arch}.context_length`),
    layerCount: num(`${arch}.block_count`),
    embeddingLength: num(`${arch}.embedding_length`),
    headCount,
    headCountKv: num(`${arch}.attention.head_count_kv`) ?? headCount,
    tokenizer: typeof md["tokenizer.ggml.model"] === "string" ? (md["tokenizer.ggml.model"] as string) : undefined,
    vocabSize: typeof tokens?.arrayLength === "number" ? tokens.arrayLength : undefined,
    hasChatTemplate: typeof md["tokenizer.chat_template"] === "string",
    tensorCount: parsed.tensorCount,
    parameterCount: parsed.parameterCount,
    fileBytes,
    tensorDataBytes: fileBytes - Number(parsed.tensorDataOffset),
    raw,
  };
}
