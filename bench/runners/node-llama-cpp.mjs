// node-llama-cpp (its npm prebuilt binary; CPU, or the --device backend) on the same model, threads,
// batch and token counts. Installed by bench/llm.mjs into bench/.peers.
import path from "node:path";
import { pathToFileURL } from "node:url";
import { args, randomTokens, report } from "./common.mjs";

const a = args();
const { getLlama } = await import(pathToFileURL(path.join(a.peers, "node_modules", "node-llama-cpp", "dist", "index.js")).href);
const llama = await getLlama({ gpu: a.nlcGpu ?? false, build: "never", logLevel: "error" });
const model = await llama.loadModel({ modelPath: a.model, gpuLayers: a.nlcGpu ? "max" : 0 });
// Context sizes as llama-bench uses them (n_ctx = n_prompt + n_gen per test).
const ppContext = await model.createContext({ contextSize: a.pp + 1, batchSize: a.pp, threads: a.threads, flashAttention: false, sequences: 1 });
const tgContext = await model.createContext({ contextSize: a.tg + 2, batchSize: a.pp, threads: a.threads, flashAttention: false, sequences: 1 });
const nVocab = a.vocab;
const bos = model.tokens.bos ?? 1;

async function pp() {
  const seq = ppContext.getSequence();
  await seq.clearHistory();
  const tokens = Array.from(randomTokens(a.pp, nVocab, 7));
  const t0 = performance.now();
  await seq.evaluateWithoutGeneratingNewTokens(tokens);
  const ms = performance.now() - t0;
  seq.dispose();
  return (a.pp * 1000) / ms;
}

async function tg() {
  const seq = tgContext.getSequence();
  await seq.clearHistory();
  let n = 0;
  let t0 = 0;
  for await (const _ of seq.evaluate([bos], { temperature: 0 })) {
    // time from the first generated token, like genai-native's generationMs
    if (n === 0) t0 = performance.now();
    if (++n > a.tg) break;
  }
  const ms = performance.now() - t0;
  seq.dispose();
  return (a.tg * 1000) / ms;
}

await pp();
await tg();
// `runs` timed runs of each, averaged as llama-bench's avg_ts
const runs = a.runs ?? 1;
let ppSum = 0;
let tgSum = 0;
for (let i = 0; i < runs; i++) ppSum += await pp();
for (let i = 0; i < runs; i++) tgSum += await tg();
report({ ppTokensPerSec: ppSum / runs, tgTokensPerSec: tgSum / runs });
await ppContext.dispose();
await tgContext.dispose();
await model.dispose();
await llama.dispose();
