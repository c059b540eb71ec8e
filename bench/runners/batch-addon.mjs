// genai-native, parallel generation in this process: `npl` generations of
// `ntg` tokens after `npp`-token prompts, started together either as the
// sequences of one context (mode "sequences": one batch per step) or in `npl`
// separate contexts (mode "contexts"). Random prompt tokens, greedy, no EOS,
// as llama-batched-bench. Reports aggregate pp and tg tokens/s (wall clock).
import { createRequire } from "node:module";
import { args, randomTokens, report } from "./common.mjs";

const a = args();
const g = createRequire(import.meta.url)(a.root);
const model = await g.LlamaModel.load(a.model, { device: "cpu", gpuLayers: 0 });
const common = { batchSize: a.batch, threads: a.threads, batchThreads: a.threads, flashAttention: "off", seed: 1 };
const seqs =
  a.mode === "sequences"
    ? await model.createContext({ ...common, contextSize: a.ctx, sequences: a.npl }).then((c) => Array.from({ length: a.npl }, (_, i) => c.sequence(i)))
    : await Promise.all(Array.from({ length: a.npl }, () => model.createContext({ ...common, contextSize: a.ctx / a.npl })));
const vocab = model.metadata.vocabSize;
const prompts = Array.from({ length: a.npl }, (_, i) => randomTokens(a.npp, vocab, 100 + i));

// As llama-batched-bench times it: the prompts first (all decoded together),
// then the generations from there (each re-decodes only its last prompt token).
async function round() {
  for (const s of seqs) s.clearHistory();
  const t0 = performance.now();
  const first = await Promise.all(seqs.map((s, i) => s.complete(prompts[i], { maxTokens: 1, ignoreEos: true, temperature: 0 })));
  const t1 = performance.now();
  const rs = await Promise.all(
    seqs.map((s, i) => s.complete(Int32Array.from([...prompts[i], ...first[i].tokens]), { maxTokens: a.ntg, ignoreEos: true, temperature: 0 })),
  );
  const t2 = performance.now();
  const tokens = rs.reduce((n, r) => n + r.tokenCount, 0);
  if (tokens !== a.npl * a.ntg) throw new Error(`generated ${tokens} tokens, expected ${a.npl * a.ntg}`);
  return { pp: (a.npl * a.npp * 1000) / (t1 - t0), tg: (tokens * 1000) / (t2 - t1), total: (a.npl * (a.npp + a.ntg) * 1000) / (t2 - t0) };
}

await round(); // warm-up
const rounds = [];
for (let i = 0; i < a.reps; i++) rounds.push(await round());
report({ mode: a.mode, rounds });
await model.dispose();
