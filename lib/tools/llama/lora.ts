/**
 * Random-weight LoRA adapters for the generated llama models, in the GGUF
 * layout llama.cpp's loader reads (src/llama-adapter.cpp): general.type
 * "adapter", adapter.type "lora", adapter.lora.alpha, and per adapted matrix
 * W (ne = [in, out]) the pair `<W>.lora_a` (ne = [in, rank]) and `<W>.lora_b`
 * (ne = [rank, out]), f32. The output is W·x + scale·(alpha/rank)·B·A·x.
 */
import fs from "node:fs";
import path from "node:path";
import { GgmlType, GgufWriter } from "../gguf/writer";
import { CHUNK_BYTES } from "../random";
import { produceTensor } from "./generate";
import { llamaTensorPlan, type LlamaShape } from "./shape";

export interface LoraOptions {
  /** Rank r of A and B. Default 8. */
  rank?: number;
  /** adapter.lora.alpha. Default: the rank (a factor of 1). */
  alpha?: number;
  /** Which matrices of every layer get an adapter. Default ["attn_q", "attn_v"]. */
  targets?: readonly ("attn_q" | "attn_k" | "attn_v" | "attn_output" | "ffn_gate" | "ffn_up" | "ffn_down")[];
  /** PRNG seed (uint32). Default 1. */
  seed?: number;
  /** A and B values are roughly uniform in ±scale. Default 0.05. */
  scale?: number;
}

/**
 * Writes a LoRA adapter for models of `shape` (generateRandomLlamaModel) to `file`.
 * @returns the path, the file size in bytes and the number of tensors.
 */
export async function generateRandomLora(file: string, shape: LlamaShape, opts: LoraOptions = {}): Promise<{ path: string; bytes: number; tensors: number }> {
  const rank = opts.rank ?? 8;
  if (!Number.isInteger(rank) || rank < 1) throw new RangeError(`rank must be a positive integer, got ${rank}`);
  const targets = new Set(opts.targets ?? ["attn_q", "attn_v"]);
  const w = new GgufWriter();
  w.setString("general.architecture", "llama");
  w.setString("general.type", "adapter");
  w.setString("general.name", `random-lora-r${rank}`);
  w.setString("adapter.type", "lora");
  w.setFloat32("adapter.lora.alpha", opts.alpha ?? rank);
  for (const t of llamaTensorPlan(shape)) {
    const m = /^blk\.\d+\.([a-z_]+)\.weight$/.exec(t.name);
    if (!m || !targets.has(m[1] as never) || t.shape.length !== 2) continue;
    const [inDim, outDim] = t.shape;
    w.addTensor(`${t.name}.lora_a`, [inDim, rank], GgmlType.F32);
    w.addTensor(`${t.name}.lora_b`, [rank, outDim], GgmlType.F32);
  }
  if (w.tensors.length === 0) throw new RangeError("no tensor of the model matches the targets");
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const buf = new ArrayBuffer(CHUNK_BYTES);
  const seed = (opts.seed ?? 1) >>> 0;
  await w.writeFile(file, (t, write) => produceTensor(t, "weight", seed, opts.scale ?? 0.05, buf, write));
  return { path: path.resolve(file), bytes: fs.statSync(file).size, tensors: w.tensors.length };
}
