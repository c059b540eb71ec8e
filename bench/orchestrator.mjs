#!/usr/bin/env node
// npm run bench:orchestrator [-- --model PATH | --generated medium] [--tokens 2000] [--reps 3] [--threads N]
// Time from "image job done" to "next LLM token" with a 2,000-token
// conversation:
//  - genai-native: the orchestrator frees the LLM's context for the image job
//    (KV state copied to host memory; also the weights with --level unloaded),
//    then restores it; the next turn decodes only its new tokens.
//  - the seed's process model: llama-server (built from the same
//    deps/llama.cpp) is killed for the image job, respawned, polled until
//    healthy, and sent the whole conversation again.
// The image job is a stand-in resource (the orchestrator's ManagedResource
// interface) that holds real host memory, so the LLM must make room for it.
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { generatedModel, llamaToolPath, median } from "./runners/common.mjs";
import { firstStreamedToken, killServer, randomPort, startLlamaServer, waitHealthy } from "./runners/llama-server.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(import.meta.url);
const g = require(root);
const { Orchestrator, ManagedLlama } = require(path.join(root, "dist", "cjs", "orchestrator", "index.js"));
const { values: opt } = parseArgs({
  options: {
    model: { type: "string" },
    generated: { type: "string", default: "medium" },
    tokens: { type: "string", default: "2000" },
    reps: { type: "string", default: "3" },
    threads: { type: "string" },
    level: { type: "string", default: "contextFreed" },
    "image-ms": { type: "string", default: "300" },
  },
});
const threads = Number(opt.threads ?? os.availableParallelism?.() ?? os.cpus().length);
const convTokens = Number(opt.tokens);
const reps = Number(opt.reps);
const imageMs = Number(opt["image-ms"]);
const log = (...m) => process.stderr.write(m.join(" ") + "\n");

const modelPath = opt.model ?? generatedModel(root, opt.generated);
const contextSize = Math.max(4096, convTokens + 512);

// --- llama-server from the same sources and flags, beside the addon (where its backend modules are)
const server = llamaToolPath(root, "llama-server");

// --- a conversation of about `convTokens` tokens
const model0 = await g.LlamaModel.load(modelPath);
const words = "the cat sat on a mat and then it ran to see the dog who was very happy today".split(" ");
let conversation = "";
for (let i = 0; (await model0.tokenize(conversation)).length < convTokens; i++) conversation += words[i % words.length] + (i % 13 === 12 ? ". " : " ");
const nextTurn = conversation + " and so";
const convLen = (await model0.tokenize(conversation)).length;
await model0.dispose();
log(`[bench] conversation: ${convLen} tokens, model ${path.basename(modelPath)}, ${threads} threads`);

// --- genai-native with the orchestrator
class ImageJobMemory {
  constructor(bytes) {
    this.id = "image";
    this.engine = "diffusion";
    this.bytes = bytes;
    this.buf = undefined;
    this.inUse = false;
    this.lastUsedAt = 0;
  }
  get residency() {
    return this.buf ? "resident" : "unloaded";
  }
  holdings() {
    return this.buf ? [{ device: "CPU", kind: "weights", bytes: this.bytes }] : [];
  }
  residentHoldings() {
    return [{ device: "CPU", kind: "weights", bytes: this.bytes }];
  }
  async free() {
    this.buf = undefined;
  }
  async restore() {
    this.buf = Buffer.alloc(this.bytes, 1);
  }
  setInUse(v) {
    this.inUse = v;
    this.lastUsedAt = Date.now();
  }
}

async function runAddon() {
  const llm = await ManagedLlama.create({ id: "llm", modelPath, context: { contextSize, threads } });
  const resident = llm.residentHoldings().reduce((s, h) => s + h.bytes, 0);
  const kv = llm
    .residentHoldings()
    .filter((h) => h.kind !== "weights")
    .reduce((s, h) => s + h.bytes, 0);
  const weights = resident - kv;
  const imageBytes = opt.level === "unloaded" ? resident : Math.floor(kv * 0.75);
  const orch = new Orchestrator({ budgets: { CPU: resident + imageBytes - (opt.level === "unloaded" ? resident - 1 : Math.floor(kv * 0.5)) } });
  const image = new ImageJobMemory(imageBytes);
  orch.add(llm);
  orch.add(image);
  const offloads = [];
  const restores = [];
  orch.on("offload", (e) => offloads.push(e));
  orch.on("restore", (e) => restores.push(e));
  await orch.submit({ kind: "llm", resource: llm, run: () => llm.context.complete(conversation, { maxTokens: 1, temperature: 0 }) }).promise;
  await orch.submit({ kind: "image", resource: image, run: () => new Promise((r) => setTimeout(r, imageMs)) }).promise;
  const tDone = performance.now();
  let tFirst = 0;
  const r = await orch.submit({
    kind: "llm",
    resource: llm,
    run: () => llm.context.complete(nextTurn, { maxTokens: 8, temperature: 0, onText: () => (tFirst ||= performance.now()) }),
  }).promise;
  const ms = (tFirst || performance.now()) - tDone;
  const out = {
    ms,
    reusedTokens: r.timings.reusedTokens,
    promptTokens: r.timings.promptTokens,
    offloads: offloads.map((e) => ({ resource: e.resource, level: e.level, bytes: e.bytes.CPU, ms: e.ms })),
    restoreMs: restores.filter((e) => e.resource === "llm").map((e) => e.ms),
    // the LLM's own steps (ManagedLlama.timings): KV state save/restore apart from context free/create
    steps: Object.fromEntries(Object.entries(llm.timings).map(([k, v]) => [k, Number(v.toFixed(2))])),
    stateBytes: offloads.find((e) => e.resource === "llm")?.bytes,
    weightsBytes: weights,
    kvBytes: kv,
  };
  orch.dispose();
  await llm.dispose();
  return out;
}

// --- the seed's process model with llama-server
async function runServer() {
  const port = randomPort();
  const opts = { model: modelPath, contextSize, threads, port };
  let p = startLlamaServer(server, opts);
  await waitHealthy(port, { pollMs: 20 });
  await firstStreamedToken(port, { prompt: conversation, n_predict: 8, cache_prompt: true }); // the conversation is in its cache
  // image job needs the memory: kill the server
  await killServer(p);
  await new Promise((r) => setTimeout(r, imageMs));
  const tDone = performance.now();
  p = startLlamaServer(server, opts);
  await waitHealthy(port, { pollMs: 20 });
  const tHealthy = performance.now();
  const first = await firstStreamedToken(port, { prompt: nextTurn, n_predict: 8, cache_prompt: true });
  await killServer(p);
  return { ms: first - tDone, respawnMs: tHealthy - tDone, prefillMs: first - tHealthy };
}

const samples = { "genai-native": [], "llama-server": [] };
for (let i = 0; i < reps; i++) {
  log(`[bench] round ${i + 1}/${reps}`);
  samples["genai-native"].push(await runAddon());
  samples["llama-server"].push(await runServer());
}
const a = median(samples["genai-native"].map((s) => s.ms));
const b = median(samples["llama-server"].map((s) => s.ms));
process.stdout.write(
  JSON.stringify(
    {
      model: path.basename(modelPath),
      conversationTokens: convLen,
      contextSize,
      threads,
      level: opt.level,
      imageJobMs: imageMs,
      medianMsImageDoneToNextToken: { "genai-native": a, "llama-server (kill, respawn, re-send)": b },
      genaiNativeMedianStepsMs: Object.fromEntries(
        Object.keys(samples["genai-native"][0].steps).map((k) => [k, median(samples["genai-native"].map((s) => s.steps[k]))]),
      ),
      speedup: Number((b / a).toFixed(2)),
      samples,
    },
    null,
    2,
  ) + "\n",
);
