/**
 * Generates an ESRGAN (RRDBNet) upscaler with deterministic random weights as
 * a GGUF file, so the upscaler runs for real in tests without downloads.
 *
 * Tensor names and shapes are those of the public Real-ESRGAN checkpoints
 * (basicsr's RRDBNet, as read by stable-diffusion.cpp's
 * src/model/upscaler/esrgan.hpp): conv_first, body.{i}.rdb{1,2,3}.conv{1..5},
 * conv_body, conv_up1 (×2 and ×4 models), conv_up2 (×4 only), conv_hr,
 * conv_last; every conv is 3×3 with a bias. sd.cpp fixes num_feat = 64 and
 * num_grow_ch = 32 and reads the rest from the names: the block count from
 * the highest `body.{i}`, the scale from conv_up1/conv_up2. Real-ESRGAN x4plus
 * has 23 blocks; the default here is 1 (≈ 1.1 M parameters).
 *
 * Conv kernels are f16 (ggml order: [3, 3, in, out]), biases f32 and zero.
 *
 * CLI (after the TypeScript build):
 *   node dist/cjs/tools/gen-esrgan-model.js --out FILE [--scale 1|2|4] [--blocks N] [--seed S]
 */
import { parseArgs } from "node:util";
import { GgmlType, GgufWriter } from "./gguf/writer";
import { U32_TO_UNIT, f32ToF16Bits, mulberry32 } from "./random";

export const ESRGAN_FEATURES = 64;
export const ESRGAN_GROWTH = 32;

export interface GenerateEsrganOptions {
  /** Output factor per pass: 1, 2 or 4 (default 4). */
  scale?: 1 | 2 | 4;
  /** RRDB blocks, 1..64 (default 1). */
  blocks?: number;
  /** PRNG seed (default 1); same options → identical bytes. */
  seed?: number;
  /** Weights uniform in ±weightScale (default 0.02). */
  weightScale?: number;
}

/** [name, in channels, out channels] of every 3×3 conv, in file order. */
export function esrganConvs(scale: 1 | 2 | 4, blocks: number): [string, number, number][] {
  const F = ESRGAN_FEATURES,
    G = ESRGAN_GROWTH;
  const convs: [string, number, number][] = [["conv_first", 3, F]];
  for (let b = 0; b < blocks; b++)
    for (let r = 1; r <= 3; r++) for (let c = 1; c <= 5; c++) convs.push([`body.${b}.rdb${r}.conv${c}`, F + (c - 1) * G, c === 5 ? F : G]);
  convs.push(["conv_body", F, F]);
  if (scale >= 2) convs.push(["conv_up1", F, F]);
  if (scale === 4) convs.push(["conv_up2", F, F]);
  convs.push(["conv_hr", F, F], ["conv_last", F, 3]);
  return convs;
}

/** Writes the model; returns its parameter count and file size in bytes. */
export async function generateRandomEsrganModel(file: string, opts: GenerateEsrganOptions = {}): Promise<{ path: string; parameters: number; bytes: number }> {
  const scale = opts.scale ?? 4;
  if (scale !== 1 && scale !== 2 && scale !== 4) throw new RangeError(`scale must be 1, 2 or 4 (got ${String(scale)})`);
  const blocks = opts.blocks ?? 1;
  if (!Number.isInteger(blocks) || blocks < 1 || blocks > 64) throw new RangeError(`blocks must be an integer in 1..64 (got ${blocks})`);
  const amp = opts.weightScale ?? 0.02;
  const rand = mulberry32(opts.seed ?? 1);
  const w = new GgufWriter();
  w.setString("general.architecture", "esrgan").setString("general.name", `random-esrgan-x${scale}`);
  let parameters = 0;
  for (const [name, cin, cout] of esrganConvs(scale, blocks)) {
    w.addTensor(`${name}.weight`, [3, 3, cin, cout], GgmlType.F16);
    w.addTensor(`${name}.bias`, [cout], GgmlType.F32);
    parameters += 9 * cin * cout + cout;
  }
  const layout = await w.writeFile(file, (t, write) => {
    const n = t.nbytes / (t.type === GgmlType.F16 ? 2 : 4);
    if (t.type === GgmlType.F32) return write(new Uint8Array(4 * n)); // biases: zero
    const out = new Uint16Array(n);
    for (let i = 0; i < n; i++) out[i] = f32ToF16Bits((rand() * U32_TO_UNIT - 1) * amp); // uniform in [-amp, amp)
    return write(new Uint8Array(out.buffer));
  });
  return { path: file, parameters, bytes: layout.fileBytes };
}

if (typeof require !== "undefined" && typeof module !== "undefined" && require.main === module) {
  const { values } = parseArgs({ options: { out: { type: "string" }, scale: { type: "string" }, blocks: { type: "string" }, seed: { type: "string" } } });
  if (!values.out) {
    process.stderr.write("usage: gen-esrgan-model --out FILE [--scale 1|2|4] [--blocks N] [--seed S]\n");
    process.exit(2);
  }
  generateRandomEsrganModel(values.out, {
    scale: values.scale === undefined ? undefined : (Number(values.scale) as 1 | 2 | 4),
    blocks: values.blocks === undefined ? undefined : Number(values.blocks),
    seed: values.seed === undefined ? undefined : Number(values.seed),
  }).then(
    (r) => process.stdout.write(JSON.stringify(r) + "\n"),
    (e: unknown) => {
      process.stderr.write(`gen-esrgan-model: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exit(1);
    },
  );
}
