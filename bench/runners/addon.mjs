// genai-native in this process: prompt processing (pp) and generation (tg)
// tokens/s, the per-token profile of the timed generation (timings.breakdown,
// and the JS thread's CPU time per token on Linux), and event-loop delay
// during a separate, untimed generation (the 1 ms monitor's own timer would
// slow the timed one). Model load is not timed.
import fs from "node:fs";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { createRequire } from "node:module";
import { args, randomTokens, report } from "./common.mjs";

const a = args();
const g = createRequire(import.meta.url)(a.root);
// rpcServers: every layer on the servers (bench/rpc.mjs), split by tensorSplit
const placement = a.rpcServers ? { rpcServers: a.rpcServers, tensorSplit: a.tensorSplit, gpuLayers: "max" } : { gpuLayers: a.device === "cpu" ? 0 : "max" };
const model = await g.LlamaModel.load(a.model, { device: a.device, ...placement });
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

/** CPU time of the JS (main) thread in ms, from Linux's schedstat (ns); null elsewhere. */
function jsThreadCpuMs() {
  try {
    return Number(fs.readFileSync(`/proc/self/task/${process.pid}/schedstat`, "utf8").split(" ")[0]) / 1e6;
  } catch {
    return null;
  }
}

async function pp() {
  const ctx = ppCtx;
  ctx.clearHistory();
  const r = await ctx.complete(randomTokens(a.pp, vocab, 7), { maxTokens: 1, temperature: 0 });
  ctx.clearHistory();
  return (a.pp * 1000) / r.timings.promptMs;
}

// Greedy from BOS for tg tokens; every piece goes through onText, as an app's stream would.
async function tg() {
  const ctx = tgCtx;
  ctx.clearHistory();
  const js0 = jsThreadCpuMs();
  let pieces = 0;
  const r = await ctx.complete(Int32Array.of(bos), { maxTokens: a.tg + 1, ignoreEos: true, temperature: 0, onText: () => pieces++ });
  const js1 = jsThreadCpuMs();
  ctx.clearHistory();
  const t = r.timings;
  const per = (ms) => ms / t.generatedTokens;
  const b = t.breakdown;
  return {
    tgTokensPerSec: (a.tg * 1000) / t.generationMs,
    // ms per generated token, by phase (native thread), and the JS thread's CPU
    profile: {
      msPerToken: per(t.generationMs),
      decode: per(b.decodeMs),
      sample: per(b.sampleMs),
      detokenize: per(b.detokenizeMs),
      stopMatch: per(b.stopMs),
      deliver: per(b.deliverMs),
      other: per(t.generationMs - b.decodeMs - b.sampleMs - b.detokenizeMs - b.stopMs - b.deliverMs),
      jsThreadCpu: js0 === null ? null : per(js1 - js0),
      jsWakeupsPerToken: b.deliveries / t.generatedTokens,
      piecesPerToken: pieces / t.generatedTokens,
    },
  };
}

// warm-up, as llama-bench does; then `runs` timed runs of each, averaged as llama-bench's avg_ts (mean of the runs' tokens/s)
await pp();
await tg();
const runs = a.runs ?? 1;
const mean = (xs) => xs.reduce((s, x) => s + x, 0) / xs.length;
const ppRuns = [];
for (let i = 0; i < runs; i++) ppRuns.push(await pp());
const ppTs = mean(ppRuns);
const tgRuns = [];
for (let i = 0; i < runs; i++) tgRuns.push(await tg());
const gen = {
  tgTokensPerSec: mean(tgRuns.map((r) => r.tgTokensPerSec)),
  profile: Object.fromEntries(Object.keys(tgRuns[0].profile).map((k) => [k, tgRuns[0].profile[k] === null ? null : mean(tgRuns.map((r) => r.profile[k]))])),
};
const h = monitorEventLoopDelay({ resolution: 1 });
h.enable();
await tg();
h.disable();
report({ ppTokensPerSec: ppTs, ...gen, eventLoopDelayP99Ms: h.percentile(99) / 1e6 });
await model.dispose();
