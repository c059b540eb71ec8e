/**
 * Generates a TAESD (tiny autoencoder) file with deterministic random
 * weights, so tests run stable-diffusion.cpp's TAE decode, encode and
 * previews (DiffusionModel.load({ …, taesd }), sd-cli --taesd) without
 * downloads.
 *
 * Source: deps/stable-diffusion.cpp src/model/vae/tae.hpp (TAESD,
 * TinyDecoder, TinyEncoder, TAEBlock), after madebyollin/taesd's taesd.py in
 * diffusers' AutoencoderTiny names (`decoder.layers.N`, `encoder.layers.N`;
 * sd.cpp loads the file under the prefix "tae."). Every width is fixed by the
 * code: 64 channels throughout; the latent channels follow the model family
 * (4: SD1/SD2/SDXL; 16: SD3, Flux 1, Z-Image and other DiTs; 32 with the
 * group-norm "pool" branch in the middle blocks: Flux 2's TAEF2).
 *  - decoder.layers: 0 conv z→64 (bias), [1 ReLU], 2–4 TAEBlocks, [5 ×2
 *    nearest upsample], 6 conv 64→64 (no bias), 7–9 TAEBlocks, [10], 11 conv,
 *    12–14 TAEBlocks, [15], 16 conv, 17 TAEBlock, 18 conv 64→3 (bias).
 *  - encoder.layers: 0 conv 3→64 (bias), 1 TAEBlock, 2 conv stride 2 (no
 *    bias), 3–5 TAEBlocks, 6 conv, 7–9, 10 conv, 11–13 TAEBlocks (the pool
 *    branch for TAEF2), 14 conv 64→z (bias).
 *  - TAEBlock: conv.0, conv.2, conv.4 (3×3, 64→64, bias); with the pool
 *    branch pool.0 (1×1 64→256, no bias), pool.1 (GroupNorm(4, 256) weight,
 *    bias), pool.3 (1×1 256→64, no bias).
 * sd.cpp always loads the encoder when TAESD decodes (img2img encodes with
 * it too); with `taesdPreviewOnly` it loads the decoder only, so `encoder:
 * false` writes a previews-only file.
 *
 * Sizes: 4 latent channels, f16 kernels: 2,445,063 parameters in 134
 * tensors (the decoder 1,222,531 in 67), about 4.9 MB: madebyollin's taesd
 * has the same 2.4 M. Kernels `type` (f16 default), random with variance
 * 1 / fan-in (parts-writer's "lecun"); biases zero and norm weights one (f32).
 */
import { GgmlType } from "../gguf/writer";
import { type GeneratedPart, type PartTensorSpec, planner, writePart } from "./parts-writer";

/** TAESD's fixed width (tae.hpp: `channels = 64`). */
export const TAESD_CHANNELS = 64;

export interface GenerateTaesdOptions {
  /** Latent channels of the model family: 4 (SD1/SD2/SDXL, default), 16 (SD3, Flux 1, Z-Image), 32 (Flux 2: TAEF2). */
  latentChannels?: 4 | 16 | 32;
  /** Write the encoder too (default true: sd.cpp needs it unless the TAE only makes previews). */
  encoder?: boolean;
  /** Conv kernel type (default f16). */
  type?: "f16" | "f32";
  /** PRNG seed (default 1); same options → identical bytes. */
  seed?: number;
}

/** The tensors of a TAESD file, in file order (ggml shapes, conv [kw, kh, in, out]). */
export function taesdTensors(latentChannels: 4 | 16 | 32 = 4, encoder = true, type: "f16" | "f32" = "f16"): PartTensorSpec[] {
  if (latentChannels !== 4 && latentChannels !== 16 && latentChannels !== 32)
    throw new RangeError(`latentChannels must be 4, 16 or 32 (got ${String(latentChannels)})`);
  const kernel = type === "f32" ? GgmlType.F32 : GgmlType.F16;
  const p = planner(kernel, kernel);
  const C = TAESD_CHANNELS;
  const pool = latentChannels === 32; // TAEF2: use_midblock_gn
  const convNoBias = (name: string, inC: number, outC: number, k: number) => p.add(`${name}.weight`, [k, k, inC, outC], kernel, "weight");
  const block = (name: string, gn = false) => {
    for (const c of [0, 2, 4]) p.conv(`${name}.conv.${c}`, C, C, 3);
    if (!gn) return;
    convNoBias(`${name}.pool.0`, C, 4 * C, 1);
    p.norm(`${name}.pool.1`, 4 * C);
    convNoBias(`${name}.pool.3`, 4 * C, C, 1);
  };
  const d = "decoder.layers";
  p.conv(`${d}.0`, latentChannels, C, 3);
  for (const i of [2, 3, 4]) block(`${d}.${i}`, pool);
  for (const [conv, blocks] of [
    [6, [7, 8, 9]],
    [11, [12, 13, 14]],
    [16, [17]],
  ] as const) {
    convNoBias(`${d}.${conv}`, C, C, 3);
    for (const i of blocks) block(`${d}.${i}`);
  }
  p.conv(`${d}.18`, C, 3, 3);
  if (encoder) {
    const e = "encoder.layers";
    p.conv(`${e}.0`, 3, C, 3);
    block(`${e}.1`);
    for (const [conv, blocks] of [
      [2, [3, 4, 5]],
      [6, [7, 8, 9]],
      [10, [11, 12, 13]],
    ] as const) {
      convNoBias(`${e}.${conv}`, C, C, 3);
      for (const i of blocks) block(`${e}.${i}`, pool && conv === 10);
    }
    p.conv(`${e}.14`, C, latentChannels, 3);
  }
  // kernels with variance 1 / fan-in: ±0.02 fades to a flat image through 20 convs without norms
  return p.specs.map((s) => (s.init === "weight" ? { ...s, init: "lecun" } : s));
}

/** Writes a random-weight TAESD file. @throws RangeError for bad options */
export async function generateRandomTaesd(file: string, opts: GenerateTaesdOptions = {}): Promise<GeneratedPart> {
  const z = opts.latentChannels ?? 4;
  const specs = taesdTensors(z, opts.encoder ?? true, opts.type ?? "f16");
  return writePart(file, `random-taesd-z${z}`, specs, opts.seed ?? 1, undefined, "TAESD");
}
