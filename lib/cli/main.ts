#!/usr/bin/env node
/**
 * genai-native CLI.
 *   genai-native info [--json]
 *   genai-native complete [--model PATH] [--max-tokens N] [--temperature T] [--seed S] [--threads N] [--json] PROMPT
 *   genai-native image --model PATH [--steps N] [--size WxH] [--seed S] [--count N] [--cfg-scale X]
 *                      [--sampler NAME] [--scheduler NAME] [-o out.png] PROMPT
 *   genai-native pull REF | ls [--json] | rm REF          (cli/pull.ts; REF: hf:owner/repo[:quant], hf:owner/repo/file.gguf, https://…)
 *   genai-native pull [--inspect] REF   (REF: hf:owner/repo[:quant], hf:owner/repo/file.gguf, https://…; --inspect: metadata and fit, no download)
  genai-native ls [--json]
  genai-native rm REF
  genai-native serve [--host 127.0.0.1] [--port 8080] [--model PATH|name ...] [--api-key KEY] (cli/serve.ts)
 *   genai-native rpc-server [--host 127.0.0.1] [--port 50052] [--device cpu|…] [--threads N] [--cache DIR] (cli/rpc-server.ts)
 * Text streams to stdout; progress bars go to stderr.
 */
import { parseArgs } from "node:util";
import { GenaiError, isGenaiError } from "../errors";
import fs from "node:fs";
import path from "node:path";
import { DiffusionModel } from "../diffusion/model";
import type { ImageProgress } from "../diffusion/progress";
import { LlamaModel } from "../llm/model";
import { resolveModel } from "../models/resolver";
import { connectRpcServers, initBackends, rpcServersFromEnv, systemInfo } from "../system/index";
import { ProgressLine } from "./progress-line";

const USAGE = `usage:
  genai-native info [--json]
  genai-native complete [--model PATH] [--max-tokens N] [--temperature T] [--seed S] [--threads N] [--json] PROMPT
  genai-native image --model PATH [--steps N] [--size WxH] [--seed S] [--count N] [--cfg-scale X] [--sampler NAME] [--scheduler NAME] [-o out.png] PROMPT
  genai-native pull [--inspect] REF   (REF: hf:owner/repo[:quant], hf:owner/repo/file.gguf, https://…; --inspect: metadata and fit, no download)
  genai-native ls [--json]
  genai-native rm REF
  genai-native serve [--host 127.0.0.1] [--port 8080] [--model PATH|name ...] [--image-model PATH] [--api-key KEY] [--context-size N] [--parallel N] [--threads N] [--chat-template FILE] [--cors ORIGIN ...]
  genai-native rpc-server [--host 127.0.0.1] [--port 50052] [--device cpu|vulkan|cuda|NAME] [--threads N] [--cache DIR]   (trusted networks only: no authentication)`;

function formatBytes(n: number): string {
  return n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(1)} GiB` : `${(n / 2 ** 20).toFixed(0)} MiB`;
}

/** A model load's progress bar (a fresh line per load). */
function progressBar(): (fraction: number) => void {
  const line = new ProgressLine();
  return (fraction) => {
    const width = 30;
    const filled = Math.round(fraction * width);
    line.update(fraction, `loading [${"#".repeat(filled)}${".".repeat(width - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}%`);
    if (fraction >= 1) line.end();
  };
}

function num(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new GenaiError("INVALID_ARGUMENT", `--${name} must be a number (got ${v})`);
  return n;
}

async function info(json: boolean): Promise<void> {
  await initBackends();
  // GENAI_NATIVE_RPC's servers, so that their devices are listed (a server that is down: said, not fatal)
  const rpc = rpcServersFromEnv();
  let rpcError = "";
  if (rpc.length) await connectRpcServers(rpc).catch((e: Error) => (rpcError = e.message));
  const s = systemInfo();
  if (rpcError) process.stderr.write(`genai-native: GENAI_NATIVE_RPC: ${rpcError}\n`);
  if (json) {
    process.stdout.write(JSON.stringify(s, null, 2) + "\n");
    return;
  }
  const v = s.versions;
  console.log(`genai-native ${v.addon} — llama.cpp ${v.llamaCppCommit.slice(0, 10)} (${v.llamaCppSource}), ggml ${v.ggml}`);
  console.log(
    v.stableDiffusionCommit ? `stable-diffusion.cpp ${v.stableDiffusionCommit.slice(0, 10)}` : "stable-diffusion.cpp: not built (no diffusion engine)",
  );
  console.log(`backends: ${s.backends.join(", ")}; CPU threads: ${s.cpuThreads}; GPU offload: ${s.gpuOffload ? "yes" : "no"}`);
  for (const d of s.devices)
    console.log(`device ${d.name} (${d.type}, ${d.backend}): ${d.description} — ${formatBytes(d.freeBytes)} free of ${formatBytes(d.totalBytes)}`);
  for (const m of s.backendModules ?? [])
    console.log(`module ${m.name}: ${m.state}${m.devices?.length ? ` (${m.devices.join(", ")})` : ""}${m.reason ? ` — ${m.reason}` : ""}`);
  console.log(`CPU features: ${s.cpuFeatures.trim()}`);
}

async function complete(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      model: { type: "string" },
      "max-tokens": { type: "string" },
      temperature: { type: "string" },
      seed: { type: "string" },
      threads: { type: "string" },
      json: { type: "boolean", default: false },
    },
  });
  const prompt = positionals.join(" ");
  if (!prompt) throw new GenaiError("INVALID_ARGUMENT", "complete needs a PROMPT");
  const modelPath = await resolveModel(values.model);
  const ac = new AbortController();
  process.once("SIGINT", () => ac.abort());
  const model = await LlamaModel.load(modelPath, { onProgress: progressBar(), signal: ac.signal });
  try {
    const ctx = await model.createContext({ threads: num("threads", values.threads) });
    const stream = ctx.generate(prompt, {
      maxTokens: num("max-tokens", values["max-tokens"]) ?? 256,
      temperature: num("temperature", values.temperature),
      seed: num("seed", values.seed),
      signal: ac.signal,
    });
    if (!values.json) {
      process.stdout.write(prompt);
      for await (const piece of stream) process.stdout.write(piece);
      process.stdout.write("\n");
    }
    const result = await stream.result;
    if (values.json) process.stdout.write(JSON.stringify({ model: modelPath, prompt, ...result }) + "\n");
    else {
      const t = result.timings;
      process.stderr.write(`[${t.generatedTokens} tokens, ${(t.generatedTokens / (t.generationMs / 1000)).toFixed(1)} tokens/s, stop: ${result.stopReason}]\n`);
    }
  } finally {
    await model.dispose();
  }
}

function stageBar(line: ProgressLine, p: ImageProgress): void {
  const width = 30;
  const filled = Math.round((p.percent / 100) * width);
  const what = p.stage === "diffusion" ? `image ${p.imageIndex + 1}/${p.imageCount} step ${p.step}/${p.steps}` : p.stage;
  const eta = p.etaMs === undefined ? "" : ` eta ${(p.etaMs / 1000).toFixed(1)}s`;
  line.update(p.percent / 100, `[${"#".repeat(filled)}${".".repeat(width - filled)}] ${p.percent.toFixed(0).padStart(3)}% ${what}${eta}`);
}

async function image(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      model: { type: "string" },
      steps: { type: "string" },
      size: { type: "string", default: "512x512" },
      seed: { type: "string" },
      count: { type: "string" },
      "cfg-scale": { type: "string" },
      sampler: { type: "string" },
      scheduler: { type: "string" },
      output: { type: "string", short: "o", default: "out.png" },
    },
  });
  const prompt = positionals.join(" ");
  if (!prompt) throw new GenaiError("INVALID_ARGUMENT", "image needs a PROMPT");
  if (!values.model) throw new GenaiError("INVALID_ARGUMENT", "image needs --model PATH");
  const m = /^(\d+)x(\d+)$/.exec(values.size ?? "");
  if (!m) throw new GenaiError("INVALID_ARGUMENT", `--size must be WxH (got ${values.size})`);
  const sd = await DiffusionModel.load({ model: values.model, onProgress: progressBar() });
  try {
    const job = sd.generate({
      prompt,
      width: Number(m[1]),
      height: Number(m[2]),
      steps: num("steps", values.steps),
      seed: num("seed", values.seed),
      count: num("count", values.count),
      cfgScale: num("cfg-scale", values["cfg-scale"]),
      sampler: values.sampler,
      scheduler: values.scheduler,
    });
    const line = new ProgressLine();
    job.on("progress", (p: ImageProgress) => stageBar(line, p));
    const images = await job.done;
    line.end();
    const out = values.output ?? "out.png";
    images.forEach((img, i) => {
      const file = images.length === 1 ? out : out.replace(/(\.png)?$/i, `-${i + 1}.png`);
      fs.writeFileSync(file, img.png!);
      process.stdout.write(`${path.resolve(file)} (${img.width}x${img.height}, seed ${img.seed})\n`);
    });
  } finally {
    await sd.dispose();
  }
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    if (cmd === "info") await info(rest.includes("--json"));
    else if (cmd === "complete") await complete(rest);
    else if (cmd === "image") await image(rest);
    // fastify and the hub client load only for the commands that use them
    else if (cmd === "serve") await (await import("./serve")).serve(rest);
    else if (cmd === "rpc-server") await (await import("./rpc-server")).rpcServer(rest);
    else if (cmd === "pull") await (await import("./pull")).pull(rest);
    else if (cmd === "ls") (await import("./pull")).ls(rest);
    else if (cmd === "rm") (await import("./pull")).rm(rest);
    else {
      process.stderr.write(USAGE + "\n");
      return cmd === undefined || cmd === "--help" || cmd === "-h" ? 0 : 2;
    }
    return 0;
  } catch (e) {
    const code = isGenaiError(e) ? e.code : "ERROR";
    process.stderr.write(`genai-native: ${code}: ${(e as Error).message}\n`);
    return 1;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
