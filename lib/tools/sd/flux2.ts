/**
 * Generates a Flux 2 [klein] model with deterministic random weights as three
 * GGUF files, the parts sd.cpp loads separately
 * (DiffusionModel.load({ diffusionModel, llm, vae })): the Flux 2 DiT, the
 * Qwen3 text encoder and the Flux 2 VAE. The images are noise-like; every
 * kernel of the Flux 2 pipeline (Qwen2 tokenizer, Qwen3 with three hidden
 * states taken, the DiT's shared modulations, the 32-channel VAE and its
 * 2×2 latent patches) runs for real, and so do reference images (edits).
 *
 * Sources (deps/stable-diffusion.cpp, names after src/name_conversion.cpp,
 * shapes in ggml order, ne[0] first: linear [in, out], conv [kw, kh, in, out]):
 *  - DiT: src/model/diffusion/flux.hpp (Flux, DoubleStreamBlock,
 *    SingleStreamBlock, LastLayer, Modulation, FluxConfig::detect_from_weights),
 *    read under "model.diffusion_model.". `double_stream_modulation_img.lin.weight`
 *    makes src/model_loader.cpp `get_sd_version` answer Flux 2; without
 *    `single_blocks.47` it is VERSION_FLUX2_KLEIN (Flux 2 [dev] has 48 single
 *    blocks and a Mistral text encoder). Fixed by the code for Flux 2: latent
 *    input 128 channels (32 VAE channels × a 2×2 patch), patch 1, MLP ratio 3
 *    with a SiLU-gated MLP (so the first MLP layer is 2 × 3 × hidden wide), no
 *    biases, RoPE axes 4 × 32 (so heads are 128 wide), modulations shared by
 *    all blocks. Read from the weights: hidden size and context width
 *    (txt_in), head width (key_norm), double/single block counts, a guidance
 *    embedder if present (klein has none). Here: hidden 128 (one head),
 *    1 double block, 1 single block.
 *  - Text encoder: src/model/te/llm.hpp (LLMArch::QWEN3 for Flux 2 [klein],
 *    src/conditioning/conditioner.hpp LLMEmbedder), written as llama.cpp
 *    names a Qwen3 GGUF (as z-image.ts). Flux 2 [klein] takes the hidden
 *    states after layers 9, 18 and 27 and concatenates them, so the DiT's
 *    context width is 3 × the text encoder's hidden size when it has at least
 *    27 layers (Qwen3-4B has 36): 28 layers here, hidden 32 → context 96.
 *    Heads are 128 wide with 8 key/value heads; sd.cpp takes 16 query heads
 *    at 28 layers (Qwen3-1.7B's shape) and 32 at any other depth.
 *    The prompt is padded to 512 tokens.
 *  - VAE: src/model/vae/auto_encoder_kl.hpp (AutoEncoderKLModel with
 *    sd_version_uses_flux2_vae: 32 latent channels, quant_conv 64→64 and
 *    post_quant_conv 32→32, scale factor 16 with the 2×2 patches, latents
 *    normalised by fixed per-channel mean/std). The encoder is full size
 *    (128 base channels); the decoder's base channels are read from
 *    decoder.conv_in (32 here). Read under "vae." → "first_stage_model.".
 */
import fs from "node:fs";
import path from "node:path";
import { GgmlType } from "../gguf/writer";
import { type GeneratedPart, type PartTensorSpec, planner, writePart } from "./parts-writer";
import { type DitLoraOptions, writeRandomDitLora } from "./lora";
import { Z_IMAGE_TINY, zImageTextEncoderPlan, zImageVaePlan } from "./z-image";
import { uint32Seed } from "../random";

/** The sizes of the generated model (sd.cpp's FluxConfig / LLMConfig names). */
export const FLUX2_KLEIN_TINY = {
  /** VAE latent channels (Flux 2: 32); the DiT sees 4× as many (2×2 patches). */
  latentChannels: 32,
  ditHidden: 128,
  ditHeadDim: 128,
  ditDoubleBlocks: 1,
  ditSingleBlocks: 1,
  /** MLP width = hidden × 3 (fixed by sd.cpp for Flux 2). */
  ditMlpRatio: 3,
  /** Qwen3 hidden size; the DiT's context width is hidden × the number of layers in {9, 18, 27} it has (≥ 1). */
  teHidden: 32,
  teLayers: 28,
  /** Query heads (128 wide): sd.cpp fixes 16 for a 28-layer Qwen3 (Qwen3-1.7B's shape), 32 otherwise. */
  teHeads: 16,
  teFfn: 64,
  teVocab: 151936,
  vaeEncoderChannels: 128,
  vaeDecoderChannels: 32,
  vaeChannelMult: [1, 2, 4, 4],
  vaeResBlocks: 2,
} as const;

/** The sizes a Flux 2 [klein] model is written with (FLUX2_KLEIN_TINY's fields). */
export type Flux2Sizes = {
  -readonly [K in keyof typeof FLUX2_KLEIN_TINY]: (typeof FLUX2_KLEIN_TINY)[K] extends readonly number[] ? readonly number[] : number;
} & {
  /** The DiT's context width (txt_in input); default: what the text encoder gives (flux2ContextWidth). */
  contextWidth?: number;
};

/** The hidden-state layers Flux 2 [klein] reads from Qwen3 (src/conditioning/conditioner.hpp). */
export const FLUX2_KLEIN_TE_LAYERS: readonly number[] = Object.freeze([9, 18, 27]);

/**
 * The context width a Qwen3 text encoder gives Flux 2 [klein]: hidden × the
 * number of layers in {9, 18, 27} it has, or hidden (its final normed
 * output) when it has fewer than 9 (src/model/te/llm.hpp forward_embeds).
 */
export function flux2ContextWidth(teHidden: number, teLayers: number): number {
  return teHidden * Math.max(1, FLUX2_KLEIN_TE_LAYERS.filter((l) => l <= teLayers).length);
}

export interface GenerateFlux2Options {
  /** PRNG seed (uint32); same seed and type give byte-identical files. Default 1. */
  seed?: number;
  /** Storage type of linear weights and the token embedding. Default "f16". */
  type?: "f16" | "f32";
  /** Sizes other than FLUX2_KLEIN_TINY's, e.g. to write parts that do not fit together. */
  sizes?: Partial<Flux2Sizes>;
}

export interface GenerateFlux2Result {
  /** DiffusionLoadOptions.diffusionModel */
  diffusionModel: GeneratedPart;
  /** DiffusionLoadOptions.llm */
  llm: GeneratedPart;
  /** DiffusionLoadOptions.vae */
  vae: GeneratedPart;
  seed: number;
  type: "f16" | "f32";
}

/** Flux 2 DiT tensors (flux.hpp names, without the "model.diffusion_model." prefix). */
export function flux2DitPlan(type: "f16" | "f32" = "f16", S: Flux2Sizes = FLUX2_KLEIN_TINY): PartTensorSpec[] {
  const P = planner(type === "f32" ? GgmlType.F32 : GgmlType.F16, GgmlType.F16);
  const h = S.ditHidden;
  const mlp = h * S.ditMlpRatio;
  const ctx = S.contextWidth ?? flux2ContextWidth(S.teHidden, S.teLayers);
  const qk = (p: string): void => {
    P.add(`${p}.query_norm.scale`, [S.ditHeadDim], GgmlType.F32, "one");
    P.add(`${p}.key_norm.scale`, [S.ditHeadDim], GgmlType.F32, "one");
  };
  P.linear("img_in", 4 * S.latentChannels, h, false);
  P.linear("time_in.in_layer", 256, h, false);
  P.linear("time_in.out_layer", h, h, false);
  P.linear("txt_in", ctx, h, false);
  for (let i = 0; i < S.ditDoubleBlocks; i++) {
    for (const s of ["img", "txt"]) {
      const p = `double_blocks.${i}.${s}`;
      P.linear(`${p}_attn.qkv`, h, 3 * h, false);
      qk(`${p}_attn.norm`);
      P.linear(`${p}_attn.proj`, h, h, false);
      P.linear(`${p}_mlp.0`, h, 2 * mlp, false);
      P.linear(`${p}_mlp.2`, mlp, h, false);
    }
  }
  for (let i = 0; i < S.ditSingleBlocks; i++) {
    const p = `single_blocks.${i}`;
    P.linear(`${p}.linear1`, h, 3 * h + 2 * mlp, false);
    P.linear(`${p}.linear2`, h + mlp, h, false);
    qk(`${p}.norm`);
  }
  P.linear("final_layer.linear", h, 4 * S.latentChannels, false);
  P.linear("final_layer.adaLN_modulation.1", h, 2 * h, false);
  P.linear("double_stream_modulation_img.lin", h, 6 * h, false);
  P.linear("double_stream_modulation_txt.lin", h, 6 * h, false);
  P.linear("single_stream_modulation.lin", h, 3 * h, false);
  return P.specs;
}

/** Qwen3 text encoder tensors (llama.cpp names; 128-wide heads, 8 key/value heads, as src/model/te/llm.hpp fixes them). */
export function flux2TextEncoderPlan(type: "f16" | "f32" = "f16", S: Flux2Sizes = FLUX2_KLEIN_TINY): PartTensorSpec[] {
  return zImageTextEncoderPlan(type, { ...Z_IMAGE_TINY, teHidden: S.teHidden, teLayers: S.teLayers, teHeads: S.teHeads, teFfn: S.teFfn, teVocab: S.teVocab });
}

/** Flux 2 VAE tensors (LDM names as in Flux 2's ae.safetensors): the Flux VAE at 32 latent channels, with quant convs. */
export function flux2VaePlan(type: "f16" | "f32" = "f16", S: Flux2Sizes = FLUX2_KLEIN_TINY): PartTensorSpec[] {
  const specs = zImageVaePlan(type, {
    ...Z_IMAGE_TINY,
    latentChannels: S.latentChannels,
    vaeEncoderChannels: S.vaeEncoderChannels,
    vaeDecoderChannels: S.vaeDecoderChannels,
    vaeChannelMult: S.vaeChannelMult,
    vaeResBlocks: S.vaeResBlocks,
  });
  const z = S.latentChannels;
  const conv = type === "f32" ? GgmlType.F32 : GgmlType.F16;
  const bias = (n: string, c: number): PartTensorSpec => ({ name: `${n}.bias`, shape: [c], type: GgmlType.F32, init: "zero" });
  // Identity quant convs (a trained VAE's are near it): the encoder's mean half reaches the latents unmixed with
  // the log-variance half, so reference and init images change the latents as much as their pixels differ.
  return [
    ...specs.map((t) => (t.name === "encoder.conv_out.bias" ? { ...t, init: "zero" as const } : t)),
    { name: "quant_conv.weight", shape: [1, 1, 2 * z, 2 * z], type: conv, init: "identity" },
    bias("quant_conv", 2 * z),
    { name: "post_quant_conv.weight", shape: [1, 1, z, z], type: conv, init: "identity" },
    bias("post_quant_conv", z),
  ];
}

/**
 * Writes flux2-klein-dit.gguf, flux2-klein-qwen3.gguf and flux2-klein-vae.gguf
 * (sizes: FLUX2_KLEIN_TINY: 0.6 M DiT + 14 M text encoder + 37 M VAE
 * parameters, ~104 MB as f16) into `dir`. Load them with
 * DiffusionModel.load({ diffusionModel, llm, vae }); sample as Flux 2
 * [klein] runs: cfgScale 1, the model's default sampler and scheduler
 * (euler, "flux2"), width and height multiples of 16.
 * @throws RangeError for a seed that is not a uint32 or an unknown type
 */
export async function generateRandomFlux2KleinModel(dir: string, opts: GenerateFlux2Options = {}): Promise<GenerateFlux2Result> {
  const type = opts.type ?? "f16";
  if (type !== "f16" && type !== "f32") throw new RangeError(`type must be "f16" or "f32", got ${String(type)}`);
  const seed = uint32Seed(opts.seed);
  const S: Flux2Sizes = { ...FLUX2_KLEIN_TINY, ...opts.sizes };
  fs.mkdirSync(dir, { recursive: true });
  const family = "Flux 2 [klein]";
  const diffusionModel = await writePart(path.join(dir, "flux2-klein-dit.gguf"), "random-flux2-klein-dit", flux2DitPlan(type, S), seed, undefined, family);
  const llm = await writePart(path.join(dir, "flux2-klein-qwen3.gguf"), "random-flux2-klein-qwen3", flux2TextEncoderPlan(type, S), seed, "qwen3", family);
  const vae = await writePart(path.join(dir, "flux2-klein-vae.gguf"), "random-flux2-klein-vae", flux2VaePlan(type, S), seed, undefined, family);
  return { diffusionModel, llm, vae, seed, type };
}

/** The Flux 2 DiT layers a generated LoRA adapts: [name, in, out] (PyTorch's Linear in/out features). */
export function flux2LoraTargets(S: Flux2Sizes = FLUX2_KLEIN_TINY): [string, number, number][] {
  const h = S.ditHidden;
  const mlp = h * S.ditMlpRatio;
  return [
    ["double_blocks.0.img_attn.qkv", h, 3 * h],
    ["double_blocks.0.txt_attn.qkv", h, 3 * h],
    ["single_blocks.0.linear1", h, 3 * h + 2 * mlp],
  ];
}

/**
 * Writes a random LoRA for generateRandomFlux2KleinModel's DiT to `file`
 * (safetensors, f32), in the PEFT / ComfyUI naming that Flux LoRAs ship
 * with (./lora.ts writeRandomDitLora), on flux2LoraTargets' layers.
 * @throws RangeError for a rank outside [1, 1024]
 */
export async function generateRandomFlux2Lora(
  file: string,
  opts: DitLoraOptions & { sizes?: Partial<Flux2Sizes> } = {},
): Promise<{ path: string; bytes: number; tensors: number }> {
  return writeRandomDitLora(file, flux2LoraTargets({ ...FLUX2_KLEIN_TINY, ...opts.sizes }), opts, "genai-native random Flux 2 [klein] LoRA");
}
