// A fresh process: require the addon → load the model → create a context →
// first generated token. Prints epoch timestamps (ms, performance.timeOrigin
// based, so the parent can subtract its spawn time) and the load's own steps.
import { createRequire } from "node:module";
import { args, report } from "./common.mjs";

const now = () => performance.timeOrigin + performance.now();
const a = args();
const marks = { processStart: performance.timeOrigin };
const g = createRequire(import.meta.url)(a.root);
marks.required = now();
await g.initBackends(); // the native addon and ggml's backend modules, devices probed
marks.backends = now();
const model = await g.LlamaModel.load(a.model, { device: a.device, gpuLayers: a.device === "cpu" ? 0 : "max" });
marks.modelLoaded = now();
const ctx = await model.createContext({ contextSize: a.contextSize, threads: a.threads, batchThreads: a.threads, flashAttention: "off" });
marks.contextCreated = now();
let first = 0;
const r = await ctx.complete(a.prompt, { maxTokens: 1, temperature: 0, onText: () => (first ||= now()) });
marks.firstToken = first || now();
report({ marks, loadTimings: model.loadTimings, promptMs: r.timings.promptMs, promptTokens: r.timings.promptTokens });
await model.dispose();
