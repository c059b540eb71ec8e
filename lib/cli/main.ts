#!/usr/bin/env node
/**
 * genai-native CLI.
 *   genai-native info [--json]
 *   genai-native complete [--model PATH] [--max-tokens N] [--temperature T] [--seed S] [--threads N] [--json] PROMPT
 * Text streams to stdout; the model-load progress bar goes to stderr.
 */
import { parseArgs } from "node:util";
import { GenaiError, isGenaiError } from "../errors";
import { LlamaModel } from "../llm/model";
import { resolveModel } from "../models/resolver";
import { systemInfo } from "../system/index";

const USAGE = `usage:
  genai-native info [--json]
  genai-native complete [--model PATH] [--max-tokens N] [--temperature T] [--seed S] [--threads N] [--json] PROMPT`;

function formatBytes(n: number): string {
  return n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(1)} GiB` : `${(n / 2 ** 20).toFixed(0)} MiB`;
}

function progressBar(fraction: number): void {
  if (!process.stderr.isTTY && fraction < 1) return;
  const width = 30;
  const filled = Math.round(fraction * width);
  process.stderr.write(`\rloading [${"#".repeat(filled)}${".".repeat(width - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}%${fraction >= 1 ? "\n" : ""}`);
}

function num(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new GenaiError("INVALID_ARGUMENT", `--${name} must be a number (got ${v})`);
  return n;
}

async function info(json: boolean): Promise<void> {
  const s = systemInfo();
  if (json) {
    process.stdout.write(JSON.stringify(s, null, 2) + "\n");
    return;
  }
  const v = s.versions;
  console.log(`genai-native ${v.addon} — llama.cpp ${v.llamaCppCommit.slice(0, 10)} (${v.llamaCppSource}), ggml ${v.ggml}`);
  console.log(`backends: ${s.backends.join(", ")}; CPU threads: ${s.cpuThreads}; GPU offload: ${s.gpuOffload ? "yes" : "no"}`);
  for (const d of s.devices) console.log(`device ${d.name} (${d.type}, ${d.backend}): ${d.description} — ${formatBytes(d.freeBytes)} free of ${formatBytes(d.totalBytes)}`);
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
  const model = await LlamaModel.load(modelPath, { onProgress: progressBar, signal: ac.signal });
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

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    if (cmd === "info") await info(rest.includes("--json"));
    else if (cmd === "complete") await complete(rest);
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
