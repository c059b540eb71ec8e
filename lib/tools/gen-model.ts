/**
 * CLI of the llama-architecture random-weight generator (./llama/generate.ts).
 *
 * CLI (after the TypeScript build):
 *   node dist/cjs/tools/gen-model.js --out FILE [--preset tiny|small|base|medium]
 *     [--layers N] [--embd N] [--ff N] [--heads N] [--kv-heads N] [--vocab N]
 *     [--ctx N] [--type f32|f16|q8_0|q4_0] [--seed S] [--scale X] [--name S]
 *     [--chat-template] [--tie-embeddings]
 * prints one JSON line: { path, bytes, parameters, ... }.
 */
import { parseArgs } from "node:util";
import { generateRandomLlamaModel, type GenerateResult } from "./llama/generate";
import { PRESETS, WEIGHT_TYPES, type LlamaShape, type PresetName, type WeightType } from "./llama/shape";

const USAGE = `usage: gen-model --out FILE [--preset tiny|small|base|medium] [--layers N] [--embd N] [--ff N]
       [--heads N] [--kv-heads N] [--vocab N] [--ctx N] [--type f32|f16|q8_0|q4_0]
       [--seed S] [--scale X] [--name S] [--chat-template] [--tie-embeddings]
Writes a llama-architecture GGUF with deterministic random weights and prints JSON
{ path, bytes, parameters, ... }. Defaults: preset tiny, type q8_0, seed 1.`;

/** Parses CLI arguments and generates the model. Exported for tests. */
export async function runCli(argv: string[]): Promise<GenerateResult> {
  const { values } = parseArgs({
    args: argv,
    options: {
      out: { type: "string", short: "o" },
      preset: { type: "string" },
      layers: { type: "string" },
      embd: { type: "string" },
      ff: { type: "string" },
      heads: { type: "string" },
      "kv-heads": { type: "string" },
      vocab: { type: "string" },
      ctx: { type: "string" },
      type: { type: "string" },
      seed: { type: "string" },
      scale: { type: "string" },
      name: { type: "string" },
      "chat-template": { type: "boolean" },
      "tie-embeddings": { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    process.stdout.write(USAGE + "\n");
    process.exit(0);
  }
  if (!values.out) throw new Error(`--out is required\n${USAGE}`);
  const presetName = (values.preset ?? "tiny") as PresetName;
  const preset = PRESETS[presetName];
  if (!preset) throw new Error(`unknown preset ${values.preset}; one of ${Object.keys(PRESETS).join(", ")}`);
  const int = (v: string | undefined, name: string, dflt: number): number => {
    if (v === undefined) return dflt;
    if (!/^\d+$/.test(v)) throw new Error(`--${name} must be a non-negative integer, got ${v}`);
    return Number(v);
  };
  const heads = int(values.heads, "heads", preset.heads);
  const shape: LlamaShape = {
    layers: int(values.layers, "layers", preset.layers),
    embd: int(values.embd, "embd", preset.embd),
    ff: int(values.ff, "ff", preset.ff),
    heads,
    // --heads alone keeps MHA/GQA ratio sane: default kv-heads to heads when the preset's no longer divides
    kvHeads: int(values["kv-heads"], "kv-heads", heads % preset.kvHeads === 0 ? preset.kvHeads : heads),
    vocab: int(values.vocab, "vocab", preset.vocab),
    ctx: int(values.ctx, "ctx", preset.ctx),
  };
  const type = (values.type ?? "q8_0") as WeightType;
  if (!(type in WEIGHT_TYPES)) throw new Error(`--type must be one of ${Object.keys(WEIGHT_TYPES).join(", ")}`);
  const scale = values.scale === undefined ? undefined : Number(values.scale);
  return generateRandomLlamaModel(values.out, shape, {
    type,
    seed: int(values.seed, "seed", 1),
    scale,
    name: values.name,
    chatTemplate: values["chat-template"] ?? false,
    tieEmbeddings: values["tie-embeddings"] ?? false,
  });
}

if (typeof require !== "undefined" && typeof module !== "undefined" && require.main === module) {
  runCli(process.argv.slice(2)).then(
    (r) => process.stdout.write(JSON.stringify(r) + "\n"),
    (e: unknown) => {
      process.stderr.write(`gen-model: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exit(1);
    },
  );
}
