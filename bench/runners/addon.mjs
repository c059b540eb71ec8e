// genai-native in this process: prompt processing (pp) and generation (tg)
// tokens/s, plus event-loop delay while generating. Model load is not timed.
import { monitorEventLoopDelay } from "node:perf_hooks";
import { createRequire } from "node:module";
import { args, randomTokens, report } from "./common.mjs";

const a = args();
const g = createRequire(import.meta.url)(a.root);
const model = await g.LlamaModel.load(a.model, { device: a.device, gpuLayers: a.device === "cpu" ? 0 : "max" });
// Context sizes as llama-bench uses them (n_ctx = n_prompt + n_gen per test): the
// attention cost of a token depends on the KV cache length llama.cpp attends over.
const ppCtx = await model.createContext({
  contextSize: a.pp + 1,
  batchSize: a.pp,
  threads: a.threads,
  batchThreads: a.threads,
  flashAttention: "off",
  seed: 1,
});
const tgCtx = await model.createContext({
  contextSize: a.tg + 2,
  batchSize: a.pp,
  threads: a.threads,
  batchThreads: a.threads,
  flashAttention: "off",
  seed: 1,
});
const vocab = model.metadata.vocabSize;
const bos = (await model.tokenize("", { addSpecial: true }))[0] ?? 1;

async function pp() {
  const ctx = ppCtx;
  ctx.clearHistory();
  const r = await ctx.complete(randomTokens(a.pp, vocab, 7), { maxTokens: 1, temperature: 0 });
  ctx.clearHistory();
  return (a.pp * 1000) / r.timings.promptMs;
}

async function tg(h) {
  const ctx = tgCtx;
  ctx.clearHistory();
  h?.enable();
  const r = await ctx.complete(Int32Array.of(bos), { maxTokens: a.tg + 1, ignoreEos: true, temperature: 0 });
  h?.disable();
  ctx.clearHistory();
  return (a.tg * 1000) / r.timings.generationMs;
}

// warm-up, as llama-bench does
await pp();
await tg();
const h = monitorEventLoopDelay({ resolution: 1 });
const ppTs = await pp();
const tgTs = await tg(h);
report({ ppTokensPerSec: ppTs, tgTokensPerSec: tgTs, eventLoopDelayP99Ms: h.percentile(99) / 1e6 });
await model.dispose();
