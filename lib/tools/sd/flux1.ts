/**
 * Generates a Flux 1 model ([dev] with a guidance embedder, or [schnell]
 * without) with deterministic random weights as four GGUF files, the parts
 * sd.cpp loads separately (DiffusionModel.load({ diffusionModel, clipL,
 * t5xxl, vae })): the Flux DiT, CLIP-L, the T5 encoder and the Flux VAE. The
 * images are noise-like; every kernel of the Flux 1 pipeline (CLIP and T5
 * tokenizers, CLIP-L's pooled output, T5 with its relative-position buckets,
 * the DiT's per-block modulations and guidance, the 16-channel VAE) runs for
 * real.
 *
 * Sources (deps/stable-diffusion.cpp, names after src/name_conversion.cpp,
 * shapes in ggml order, ne[0] first: linear [in, out], conv [kw, kh, in, out]):
 *  - DiT: src/model/diffusion/flux.hpp (Flux, DoubleStreamBlock,
 *    SingleStreamBlock, LastLayer, Modulation, MLPEmbedder,
 *    FluxConfig::detect_from_weights), read under "model.diffusion_model.".
 *    `double_blocks.` without `double_stream_modulation_img` makes
 *    src/model_loader.cpp `get_sd_version` answer Flux 1 (VERSION_FLUX while
 *    img_in takes 64 features: 384 is Fill, 128 Controls, 196 Flex 2, and a
 *    3584-wide txt_in LongCat). Fixed by the code: 64 input channels (16 VAE
 *    channels × a 2×2 patch), vector_in from CLIP-L's 768-wide pooled output,
 *    RoPE axes 16 + 56 + 56 (so heads are 128 wide), a GELU MLP 4× wide,
 *    biases everywhere, LayerNorms without weights. Read from the weights:
 *    hidden size and context width (txt_in), head width (key_norm),
 *    double/single block counts, the guidance embedder ([dev]). Here: hidden
 *    128 (one head), 1 double block, 1 single block.
 *  - CLIP-L: src/model/te/clip.hpp (OPENAI_CLIP_VIT_L_14, sizes fixed by the
 *    code), HF CLIPTextModel names ("text_model.…") as ./sdxl.ts writes them;
 *    loaded under "clip_l." → "text_encoders.clip_l.transformer.". Its
 *    pooled output (the end-of-text token after the final LayerNorm) feeds
 *    vector_in. Always q4_0 (123 M parameters).
 *  - T5: src/model/te/t5.hpp (T5Config::detect_from_weights: vocabulary and
 *    width from `shared`, inner width from the first block's q (heads 64
 *    wide), FFN width from wi_0, layer count), Hugging Face T5EncoderModel
 *    names ("shared.weight", "encoder.block.N.layer.0.SelfAttention.q.weight",
 *    the relative attention bias in block 0 only, the gated-GELU FFN of
 *    T5 v1.1: wi_0, wi_1, wo), loaded under "text_encoders.t5xxl.transformer.".
 *    The vocabulary is T5's 32128. The DiT's context width is T5's width
 *    (T5-XXL: 4096). src/conditioning/conditioner.hpp FluxCLIPEmbedder pads
 *    the prompt's T5 tokens to 256. Here: width 64, 2 heads (inner 128),
 *    FFN 128, 2 layers.
 *  - VAE: the Flux VAE of ./z-image.ts (16 latent channels, no quant convs).
 */
import fs from "node:fs";
import path from "node:path";
import { GgmlType } from "../gguf/writer";
import { blockRows, type GeneratedPart, type PartTensorSpec, planner, writePart } from "./parts-writer";
import { type DitLoraOptions, writeRandomDitLora } from "./lora";
import { SDXL_TINY, sdxlClipPlan } from "./sdxl";
import { Z_IMAGE_TINY, zImageVaePlan } from "./z-image";
import { uint32Seed } from "../random";

/** The sizes of the generated model (sd.cpp's FluxConfig / T5Config names). */
export const FLUX1_TINY = {
  /** VAE latent channels (Flux: 16); the DiT sees 4× as many (2×2 patches). */
  latentChannels: 16,
  ditHidden: 128,
  ditHeadDim: 128,
  ditDoubleBlocks: 1,
  ditSingleBlocks: 1,
  /** MLP width = hidden × 4 (Flux 1). */
  ditMlpRatio: 4,
  /** CLIP-L's pooled output width, vector_in's input (fixed by sd.cpp). */
  vecInDim: 768,
  /** T5 width = the DiT's context width (txt_in input); T5-XXL's is 4096. */
  t5Hidden: 64,
  /** T5 attention width (heads × 64). */
  t5Inner: 128,
  t5Ffn: 128,
  t5Layers: 2,
  t5Vocab: 32128,
  vaeEncoderChannels: 128,
  vaeDecoderChannels: 32,
} as const;

/** The sizes a Flux 1 model is written with (FLUX1_TINY's fields). */
export type Flux1Sizes = { -readonly [K in keyof typeof FLUX1_TINY]: number } & {
  /** The DiT's context width (txt_in input); default t5Hidden. */
  contextWidth?: number;
};

/** The storage types of the generated DiT and T5 (the VAE is f16 for q4_0). */
export type Flux1Type = "f16" | "f32" | "q4_0";
const LINEAR: Record<Flux1Type, GgmlType> = { f16: GgmlType.F16, f32: GgmlType.F32, q4_0: GgmlType.Q4_0 };

export interface GenerateFlux1Options {
  /** PRNG seed (uint32); same seed and type give byte-identical files. Default 1. */
  seed?: number;
  /**
   * Storage type of the DiT's and T5's linear weights and T5's embedding.
   * Default "f16"; "q4_0" (~0.56 bytes a weight) for the real widths
   * (DiT 3072, T5-XXL 4096), as the memory fit was measured.
   */
  type?: Flux1Type;
  /** "dev" writes the guidance embedder (guidance-distilled, `guidance` applies), "schnell" does not. Default "dev". */
  variant?: "dev" | "schnell";
  /** Sizes other than FLUX1_TINY's, e.g. to write parts that do not fit together. */
  sizes?: Partial<Flux1Sizes>;
}

export interface GenerateFlux1Result {
  /** DiffusionLoadOptions.diffusionModel */
  diffusionModel: GeneratedPart;
  /** DiffusionLoadOptions.clipL */
  clipL: GeneratedPart;
  /** DiffusionLoadOptions.t5xxl */
  t5xxl: GeneratedPart;
  /** DiffusionLoadOptions.vae */
  vae: GeneratedPart;
  seed: number;
  type: Flux1Type;
  variant: "dev" | "schnell";
}

/** Flux 1 DiT tensors (flux.hpp names, without the "model.diffusion_model." prefix). */
export function flux1DitPlan(type: Flux1Type = "f16", S: Flux1Sizes = FLUX1_TINY, variant: "dev" | "schnell" = "dev"): PartTensorSpec[] {
  const P = planner(LINEAR[type], GgmlType.F16);
  const h = S.ditHidden;
  const mlp = h * S.ditMlpRatio;
  const qk = (p: string): void => {
    P.add(`${p}.query_norm.scale`, [S.ditHeadDim], GgmlType.F32, "one");
    P.add(`${p}.key_norm.scale`, [S.ditHeadDim], GgmlType.F32, "one");
  };
  P.linear("img_in", 4 * S.latentChannels, h);
  P.linear("time_in.in_layer", 256, h);
  P.linear("time_in.out_layer", h, h);
  P.linear("vector_in.in_layer", S.vecInDim, h);
  P.linear("vector_in.out_layer", h, h);
  if (variant === "dev") {
    P.linear("guidance_in.in_layer", 256, h);
    P.linear("guidance_in.out_layer", h, h);
  }
  P.linear("txt_in", S.contextWidth ?? S.t5Hidden, h);
  for (let i = 0; i < S.ditDoubleBlocks; i++) {
    for (const s of ["img", "txt"]) {
      const p = `double_blocks.${i}.${s}`;
      P.linear(`${p}_mod.lin`, h, 6 * h);
      P.linear(`${p}_attn.qkv`, h, 3 * h);
      qk(`${p}_attn.norm`);
      P.linear(`${p}_attn.proj`, h, h);
      P.linear(`${p}_mlp.0`, h, mlp);
      P.linear(`${p}_mlp.2`, mlp, h);
    }
  }
  for (let i = 0; i < S.ditSingleBlocks; i++) {
    const p = `single_blocks.${i}`;
    P.linear(`${p}.linear1`, h, 3 * h + mlp);
    P.linear(`${p}.linear2`, h + mlp, h);
    qk(`${p}.norm`);
    P.linear(`${p}.modulation.lin`, h, 3 * h);
  }
  P.linear("final_layer.linear", h, 4 * S.latentChannels);
  P.linear("final_layer.adaLN_modulation.1", h, 2 * h);
  return blockRows(P.specs);
}

/** T5 v1.1 encoder tensors (Hugging Face T5EncoderModel names, without "text_encoders.t5xxl.transformer."). */
export function flux1T5Plan(type: Flux1Type = "f16", S: Flux1Sizes = FLUX1_TINY): PartTensorSpec[] {
  const P = planner(LINEAR[type], GgmlType.F16);
  const h = S.t5Hidden;
  P.add("shared.weight", [h, S.t5Vocab], LINEAR[type], "weight");
  for (let l = 0; l < S.t5Layers; l++) {
    const a = `encoder.block.${l}.layer.0`;
    for (const n of ["q", "k", "v"]) P.linear(`${a}.SelfAttention.${n}`, h, S.t5Inner, false);
    P.linear(`${a}.SelfAttention.o`, S.t5Inner, h, false);
    // Embedding(32 buckets, heads): ggml [heads, 32]; T5 v1.1 has it in the first block only
    if (l === 0) P.add(`${a}.SelfAttention.relative_attention_bias.weight`, [S.t5Inner / 64, 32], GgmlType.F32, "weight");
    P.rms(`${a}.layer_norm`, h);
    const f = `encoder.block.${l}.layer.1`;
    P.linear(`${f}.DenseReluDense.wi_0`, h, S.t5Ffn, false);
    P.linear(`${f}.DenseReluDense.wi_1`, h, S.t5Ffn, false);
    P.linear(`${f}.DenseReluDense.wo`, S.t5Ffn, h, false);
    P.rms(`${f}.layer_norm`, h);
  }
  P.rms("encoder.final_layer_norm", h);
  return blockRows(P.specs);
}

/** The Flux VAE's tensors (LDM names as in Flux's ae.safetensors). */
export function flux1VaePlan(type: Flux1Type = "f16", S: Flux1Sizes = FLUX1_TINY): PartTensorSpec[] {
  return zImageVaePlan(type === "f32" ? "f32" : "f16", {
    ...Z_IMAGE_TINY,
    latentChannels: S.latentChannels,
    vaeEncoderChannels: S.vaeEncoderChannels,
    vaeDecoderChannels: S.vaeDecoderChannels,
  });
}

/**
 * Writes flux1-<variant>-dit.gguf, flux1-clip-l.gguf, flux1-t5.gguf and
 * flux1-vae.gguf (sizes: FLUX1_TINY: 1.1 M DiT + 123 M CLIP-L (q4_0) +
 * 2.2 M T5 + 37 M VAE parameters, ~150 MB) into `dir`. Load them with
 * DiffusionModel.load({ diffusionModel, clipL, t5xxl, vae }); sample as
 * Flux 1 runs: cfgScale 1, `guidance` 3.5 for [dev], sd.cpp's default
 * sampler and scheduler for Flux (euler, discrete with flow shift), width
 * and height multiples of 16.
 * @throws RangeError for a seed that is not a uint32, an unknown type or variant
 */
export async function generateRandomFlux1Model(dir: string, opts: GenerateFlux1Options = {}): Promise<GenerateFlux1Result> {
  const type = opts.type ?? "f16";
  if (!Object.hasOwn(LINEAR, type)) throw new RangeError(`type must be one of ${Object.keys(LINEAR).join(", ")}, got ${String(type)}`);
  const variant = opts.variant ?? "dev";
  if (variant !== "dev" && variant !== "schnell") throw new RangeError(`variant must be "dev" or "schnell", got ${String(variant)}`);
  const seed = uint32Seed(opts.seed);
  const S: Flux1Sizes = { ...FLUX1_TINY, ...opts.sizes };
  if (S.t5Inner % 64 !== 0) throw new RangeError(`sizes.t5Inner must be a multiple of 64 (heads 64 wide), got ${S.t5Inner}`);
  fs.mkdirSync(dir, { recursive: true });
  const family = `Flux 1 [${variant}]`;
  const file = (n: string) => path.join(dir, n);
  const diffusionModel = await writePart(
    file(`flux1-${variant}-dit.gguf`),
    `random-flux1-${variant}-dit`,
    flux1DitPlan(type, S, variant),
    seed,
    undefined,
    family,
  );
  const clipL = await writePart(file("flux1-clip-l.gguf"), "random-flux1-clip-l", sdxlClipPlan("l", "q4_0", SDXL_TINY), seed, undefined, family);
  const t5xxl = await writePart(file("flux1-t5.gguf"), "random-flux1-t5", flux1T5Plan(type, S), seed, undefined, family);
  const vae = await writePart(file("flux1-vae.gguf"), "random-flux1-vae", flux1VaePlan(type, S), seed, undefined, family);
  return { diffusionModel, clipL, t5xxl, vae, seed, type, variant };
}

/** The Flux 1 DiT layers a generated LoRA adapts: [name, in, out] (PyTorch's Linear in/out features). */
export function flux1LoraTargets(S: Flux1Sizes = FLUX1_TINY): [string, number, number][] {
  const h = S.ditHidden;
  const mlp = h * S.ditMlpRatio;
  return [
    ["double_blocks.0.img_attn.qkv", h, 3 * h],
    ["double_blocks.0.txt_attn.qkv", h, 3 * h],
    ["single_blocks.0.linear1", h, 3 * h + mlp],
  ];
}

/**
 * Writes a random LoRA for generateRandomFlux1Model's DiT to `file`
 * (safetensors, f32), in the PEFT / ComfyUI naming that Flux LoRAs ship
 * with (./lora.ts writeRandomDitLora), on flux1LoraTargets' layers.
 * @throws RangeError for a rank outside [1, 1024]
 */
export async function generateRandomFlux1Lora(
  file: string,
  opts: DitLoraOptions & { sizes?: Partial<Flux1Sizes> } = {},
): Promise<{ path: string; bytes: number; tensors: number }> {
  return writeRandomDitLora(file, flux1LoraTargets({ ...FLUX1_TINY, ...opts.sizes }), opts, "genai-native random Flux 1 LoRA");
}
