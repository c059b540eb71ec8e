#!/usr/bin/env node
// npm run bench:llm -- --cold [--model PATH | --generated PRESET[:TYPE]] [--reps 5] [--threads N] [--prompt TEXT]
// Cold start to the first token, each run a fresh process:
//  - genai-native: node process start → addon loaded → backends probed →
//    model loaded (GGUF metadata, pre-check, llama.cpp load) → context → first token;
//  - llama-server (same deps/llama.cpp, same flags): spawn → /health 200 → first
//    streamed token of POST /completion.
// Interleaved rounds; medians, spread and the ratio as JSON.
import { spawnSync } from "node:child_process";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { generatedModel, llamaToolPath, median, spread } from "./runners/common.mjs";
import { firstStreamedToken, killServer, randomPort, startLlamaServer, waitHealthy } from "./runners/llama-server.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const { values: opt } = parseArgs({
  options: {
    model: { type: "string" },
    generated: { type: "string", default: "medium:q8_0" },
    reps: { type: "string", default: "5" },
    threads: { type: "string" },
    prompt: { type: "string", default: "Once upon a time" },
    "context-size": { type: "string", default: "2048" },
  },
});
const g = createRequire(import.meta.url)(root);
const modelPath = opt.model ? await g.resolveModel(opt.model) : generatedModel(root, opt.generated);
const threads = Number(opt.threads ?? os.availableParallelism?.() ?? os.cpus().length);
const contextSize = Number(opt["context-size"]);
const reps = Number(opt.reps);
const server = llamaToolPath(root, "llama-server");
const now = () => performance.timeOrigin + performance.now();
const log = (m) => process.stderr.write(`[bench] ${m}\n`);

function runAddon() {
  const spawnedAt = now();
  const r = spawnSync(
    process.execPath,
    [
      path.join(root, "bench", "runners", "cold-addon.mjs"),
      JSON.stringify({ root, model: modelPath, threads, contextSize, prompt: opt.prompt, device: "cpu" }),
    ],
    { encoding: "utf8" },
  );
  if (r.status !== 0) throw new Error(`cold-addon failed: ${r.stderr.slice(-2000)}`);
  const { marks: m, loadTimings: lt, promptMs } = JSON.parse(r.stdout.trim().split("\n").pop());
  return {
    totalMs: m.firstToken - spawnedAt,
    steps: {
      processStart: m.processStart - spawnedAt,
      addonRequire: m.required - m.processStart,
      backendProbe: m.backends - m.required,
      ggufMetadata: lt.metadataMs,
      ggufPreCheck: lt.checkMs,
      llamaLoad: lt.llamaLoadMs,
      loadOther: m.modelLoaded - m.backends - lt.metadataMs - lt.checkMs - lt.llamaLoadMs - lt.backendsMs,
      createContext: m.contextCreated - m.modelLoaded,
      firstToken: m.firstToken - m.contextCreated,
      promptDecode: promptMs,
    },
  };
}

async function runServer() {
  const port = randomPort();
  const t0 = performance.now();
  const p = startLlamaServer(server, { model: modelPath, contextSize, threads, port });
  try {
    await waitHealthy(port);
    const healthyAt = performance.now();
    const first = await firstStreamedToken(port, { prompt: opt.prompt, n_predict: 1 });
    return { totalMs: first - t0, steps: { spawnToHealthy: healthyAt - t0, requestToFirstToken: first - healthyAt } };
  } finally {
    await killServer(p);
  }
}

const samples = { "genai-native": [], "llama-server": [] };
for (let i = 0; i < reps; i++) {
  log(`cold start round ${i + 1}/${reps}`);
  samples["genai-native"].push(runAddon());
  samples["llama-server"].push(await runServer());
}
const medSteps = (k) => Object.fromEntries(Object.keys(samples[k][0].steps).map((s) => [s, Number(median(samples[k].map((x) => x.steps[s])).toFixed(1))]));
const a = median(samples["genai-native"].map((s) => s.totalMs));
const b = median(samples["llama-server"].map((s) => s.totalMs));
process.stdout.write(
  JSON.stringify(
    {
      model: path.basename(modelPath),
      threads,
      contextSize,
      reps,
      medianMsToFirstToken: { "genai-native": a, "llama-server (spawn, healthy, request)": b },
      spreadMs: {
        "genai-native": spread(samples["genai-native"].map((s) => s.totalMs)),
        "llama-server": spread(samples["llama-server"].map((s) => s.totalMs)),
      },
      ratio: Number((a / b).toFixed(3)),
      medianStepsMs: { "genai-native": medSteps("genai-native"), "llama-server": medSteps("llama-server") },
      versions: g.versions(),
      samples,
    },
    null,
    2,
  ) + "\n",
);
