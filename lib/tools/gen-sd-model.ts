/**
 * CLI of the Stable Diffusion 1.x random-weight generator (./sd/generate.ts).
 *
 * CLI (after the TypeScript build):
 *   node dist/cjs/tools/gen-sd-model.js --out FILE [--preset tiny|sd15]
 *     [--type f16|f32|q8_0] [--seed S] [--scale X] [--name S]
 * prints one JSON line: { path, bytes, tensors, seconds, ... }.
 */
import { parseArgs } from "node:util";
import { generateRandomSd15Model, type GenerateSdResult } from "./sd/generate";
import { LINEAR_TYPE, SD_PRESETS, type Sd1Shape, type SdPresetName, type SdWeightType } from "./sd/shape";

const USAGE = `usage: gen-sd-model --out FILE [--preset tiny|sd15] [--type f16|f32|q8_0]
       [--seed S] [--scale X] [--unet-channels N] [--vae-decoder-channels N] [--name S]
Writes a Stable Diffusion 1.x GGUF checkpoint (UNet + VAE + CLIP-L) with deterministic
random weights and prints JSON { path, bytes, tensors, seconds, ... }.
Defaults: preset tiny, type q8_0, seed 1, scale 0.02.`;

/** Parses CLI arguments and generates the model. Exported for tests. */
export async function runCli(argv: string[]): Promise<GenerateSdResult> {
  const { values } = parseArgs({
    args: argv,
    options: {
      out: { type: "string", short: "o" },
      preset: { type: "string" },
      type: { type: "string" },
      seed: { type: "string" },
      scale: { type: "string" },
      "unet-channels": { type: "string" },
      "vae-decoder-channels": { type: "string" },
      name: { type: "string" },
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
  const int = (v: string | undefined, name: string): number | undefined => {
    if (v === undefined) return undefined;
    if (!/^\d+$/.test(v)) throw new Error(`--${name} must be a non-negative integer, got ${v}`);
    return Number(v);
  };
  const preset = (values.preset ?? "tiny") as SdPresetName;
  if (!(preset in SD_PRESETS)) throw new Error(`--preset must be one of ${Object.keys(SD_PRESETS).join(", ")}`);
  const type = (values.type ?? "q8_0") as SdWeightType;
  if (!(type in LINEAR_TYPE)) throw new Error(`--type must be one of ${Object.keys(LINEAR_TYPE).join(", ")}`);
  const shape: Partial<Sd1Shape> = {};
  const uc = int(values["unet-channels"], "unet-channels");
  const vc = int(values["vae-decoder-channels"], "vae-decoder-channels");
  if (uc !== undefined) shape.unetChannels = uc;
  if (vc !== undefined) shape.vaeDecoderChannels = vc;
  return generateRandomSd15Model(values.out, {
    preset,
    type,
    shape,
    seed: int(values.seed, "seed"),
    scale: values.scale === undefined ? undefined : Number(values.scale),
    name: values.name,
  });
}

if (typeof require !== "undefined" && typeof module !== "undefined" && require.main === module) {
  runCli(process.argv.slice(2)).then(
    (r) => process.stdout.write(JSON.stringify(r) + "\n"),
    (e: unknown) => {
      process.stderr.write(`gen-sd-model: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exit(1);
    },
  );
}
