/**
 * Auto-fit: the largest context (and GPU layer count) that fits the devices'
 * budgets, from llama.cpp's own no-allocation measurement. KV cache bytes are
 * linear in the context size (kvCacheBytes), so the context is solved for
 * directly and checked with a second measurement; GPU layers shrink in
 * proportion to the GPU's shortfall (the idea of llama.cpp's common/fit.cpp).
 */
import { GenaiError } from "../errors";
import { readGgufSummary } from "../models/metadata";
import { defaultBudgets } from "./budget";
import type { DeviceMemory } from "../llm/types";
import { measureLlamaMemory } from "./estimate";
import type { RpcTimeouts } from "../system/rpc";

export interface FitOptions {
  /** Budget per device in bytes (default: free memory minus min(8 % of total, 1.6 GB)). */
  budgets?: Record<string, number>;
  /** Smallest acceptable context in tokens (default 512). */
  minContextSize?: number;
  /** Largest context wanted (default the model's training context). */
  maxContextSize?: number;
  /** Batch size in tokens (default 512). */
  batchSize?: number;
  /** Where the layers go, as the load's options of the same names (RPC servers' devices are fitted like local GPUs). */
  device?: string;
  rpcServers?: string[];
  rpcTimeouts?: RpcTimeouts;
  tensorSplit?: number[];
}

export interface FitResult {
  /** Layers to offload (-1 = all; on a CPU-only build there is nothing to offload). */
  gpuLayers: number;
  /** Context size in tokens, a multiple of 256 unless the minimum is smaller. */
  contextSize: number;
  /** llama.cpp's measurement for these parameters, per device. */
  memory: DeviceMemory[];
}

const totalOf = (d: DeviceMemory) => d.model + d.context + d.compute;

/**
 * Picks gpuLayers and contextSize that fit.
 * @throws GenaiError OUT_OF_MEMORY when even minContextSize with no GPU layers does not fit; INVALID_MODEL, MODEL_NOT_FOUND.
 */
export async function fitLlamaParams(path: string, options: FitOptions = {}): Promise<FitResult> {
  const summary = await readGgufSummary(path);
  const budgets = options.budgets ?? defaultBudgets();
  const minCtx = options.minContextSize ?? 512;
  let ctx = Math.max(minCtx, options.maxContextSize ?? summary.contextLength ?? 4096);
  const layers = summary.layerCount ?? 0;
  let gpuLayers = -1;
  const { device, rpcServers, rpcTimeouts, tensorSplit } = options;
  const measure = () => measureLlamaMemory(path, { gpuLayers, contextSize: ctx, batchSize: options.batchSize, device, rpcServers, rpcTimeouts, tensorSplit });
  const over = (mem: DeviceMemory[]) => mem.filter((d) => totalOf(d) > (budgets[d.device] ?? Infinity));

  let mem = await measure();
  // 1. GPU devices over budget: offload fewer layers, in proportion
  for (let i = 0; i < 8; i++) {
    const gpuOver = over(mem).filter((d) => d.device !== "CPU");
    if (gpuOver.length === 0) break;
    const worst = Math.min(...gpuOver.map((d) => (budgets[d.device] - d.context - d.compute) / Math.max(1, d.model)));
    const current = gpuLayers < 0 ? layers + 1 : gpuLayers;
    gpuLayers = Math.max(0, Math.floor(current * Math.max(0, Math.min(1, worst))) - 1);
    mem = await measure();
    if (gpuLayers === 0) break;
  }
  // 2. still over: the largest context that fits (a multiple of 256), by
  //    bisection on llama.cpp's measurement (KV and compute both grow with it)
  if (over(mem).length > 0) {
    const maxCtx = ctx;
    ctx = minCtx;
    mem = await measure();
    if (over(mem).length === 0) {
      let lo = minCtx;
      let loMem = mem;
      let hi = maxCtx; // does not fit
      while (Math.floor(hi / 256) - Math.ceil((lo + 1) / 256) >= 0) {
        const mid = Math.max(Math.ceil((lo + 1) / 256), Math.floor((Math.floor(lo / 256) + Math.floor(hi / 256)) / 2)) * 256;
        if (mid <= lo || mid >= hi) break;
        ctx = mid;
        const m = await measure();
        if (over(m).length === 0) {
          lo = mid;
          loMem = m;
        } else hi = mid;
      }
      ctx = lo;
      mem = loMem;
    }
  }
  if (over(mem).length > 0) {
    const what = over(mem)
      .map((d) => `${d.device}: needs ${(totalOf(d) / 2 ** 20).toFixed(0)} MiB of ${((budgets[d.device] ?? 0) / 2 ** 20).toFixed(0)} MiB`)
      .join(", ");
    throw new GenaiError("OUT_OF_MEMORY", `the model does not fit even with a ${ctx}-token context (${what})`);
  }
  return { gpuLayers, contextSize: ctx, memory: mem };
}
