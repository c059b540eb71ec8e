/**
 * Generates a Z-Image (Z-Image-Turbo family) model with deterministic random
 * weights as three GGUF files, the parts sd.cpp loads separately
 * (DiffusionModel.load({ diffusionModel, llm, vae })): the DiT denoiser, the
 * Qwen3 text encoder and the Flux VAE. The images are noise-like; every
 * kernel of the Z-Image pipeline (Qwen2 tokenizer, Qwen3, DiT with its
 * refiners, flow-matching sampler, VAE) runs for real.
 *
 * Sources (deps/stable-diffusion.cpp, the names are what sd.cpp uses after
 * src/name_conversion.cpp, shapes are ggml order, ne[0] first: linear
 * [in, out], conv [kw, kh, in, out]):
 *  - DiT: src/model/diffusion/z_image.hpp (ZImageModel, JointTransformerBlock,
 *    JointAttention, FeedForward, FinalLayer) and mmdit.hpp (TimestepEmbedder).
 *    Read under the prefix "model.diffusion_model."; `cap_embedder.0.weight`
 *    makes src/model_loader.cpp `get_sd_version` answer VERSION_Z_IMAGE.
 *    ZImageConfig::detect_from_weights reads hidden size, in/out channels,
 *    cap_feat_dim, head_dim, layer and refiner counts; fixed by the code:
 *    patch 2, RoPE axes 32+48+48 (so head_dim must be 128), FFN width
 *    256·ceil(hidden·8/3 / 256), t_embedder width min(hidden, 1024) feeding an
 *    adaLN of width min(hidden, 256) (so hidden ≥ 256). Here: hidden 256
 *    (2 heads, 2 kv heads), 1 layer, 1 noise + 1 context refiner, 16 channels.
 *  - Text encoder: src/model/te/llm.hpp (LLMArch::QWEN3: head_dim 128, 32
 *    heads, 8 kv heads, q/k norm, no qkv bias, fixed by the code; hidden size,
 *    vocab, layers and FFN width read from the weights), named as llama.cpp
 *    names a Qwen3 GGUF (token_embd, blk.N.attn_q, …), which
 *    src/name_conversion.cpp (llm_name_map) maps to the HF names under
 *    "text_encoders.llm.". The vocab is Qwen's 151936 (the Qwen2 tokenizer's
 *    ids reach 151673). Here: hidden 32, 2 layers, FFN 64. Z-Image reads
 *    hidden state 35 (src/conditioning/conditioner.hpp); with fewer layers sd.cpp
 *    uses the final normed output.
 *  - VAE: src/model/vae/auto_encoder_kl.hpp (AutoEncoderKLModel for a DiT:
 *    16 latent channels, no quant_conv / post_quant_conv). The encoder is
 *    always built with 128 base channels (ch_mult 1,2,4,4), so it is full
 *    size; the decoder's base channels are read from decoder.conv_in (32 here).
 *    Read under "vae." → "first_stage_model.".
 *
 * Types: norm weights 1.0 and biases 0.0 (f32), pad tokens and the layers
 * sd.cpp holds in f32 (t_embedder, final_layer.linear) f32, conv kernels f16
 * (f32 for type "f32"), linear weights and the token embedding `type`.
 */
import fs from "node:fs";
import path from "node:path";
import { GgmlType } from "../gguf/writer";
import { type GeneratedPart, type PartInit, type PartTensorSpec, planner, writePart } from "./parts-writer";
import { uint32Seed } from "../random";

/** Random ±0.02, 1.0 (norm weights), 0.0 (biases), or 0 / −30 for the VAE encoder's mean / log-variance halves. */
export type ZImageInit = PartInit;
/** One tensor of a part: name, ggml shape (ne[0] first), type and fill. */
export type ZImageTensorSpec = PartTensorSpec;

/** The sizes of the generated model (sd.cpp's ZImageConfig / LLMConfig names). */
export const Z_IMAGE_TINY = {
  latentChannels: 16,
  patchSize: 2,
  ditHidden: 256,
  ditHeadDim: 128,
  ditLayers: 1,
  ditRefinerLayers: 1,
  ditFfn: 768,
  /** Qwen3 hidden size = the DiT's cap_feat_dim. */
  teHidden: 32,
  teLayers: 2,
  teFfn: 64,
  teVocab: 151936,
  teHeads: 32,
  teKvHeads: 8,
  teHeadDim: 128,
  vaeEncoderChannels: 128,
  vaeDecoderChannels: 32,
  vaeChannelMult: [1, 2, 4, 4],
  vaeResBlocks: 2,
} as const;

/** The sizes a Z-Image model is written with (Z_IMAGE_TINY's fields). */
export type ZImageSizes = { -readonly [K in keyof typeof Z_IMAGE_TINY]: (typeof Z_IMAGE_TINY)[K] extends readonly number[] ? readonly number[] : number };

export interface GenerateZImageOptions {
  /** PRNG seed (uint32); same seed and type give byte-identical files. Default 1. */
  seed?: number;
  /** Storage type of linear weights and the token embedding. Default "f16". */
  type?: "f16" | "f32";
  /**
   * Sizes other than Z_IMAGE_TINY's, e.g. to write parts that do not fit
   * together (a text encoder wider than the DiT's caption embedder): the
   * load must refuse those (native/diffusion/part_check.h). sd.cpp's fixed
   * sizes (heads 128 wide, hidden ≥ 256, …) are not checked here.
   */
  sizes?: Partial<ZImageSizes>;
}

/** One written part (file path, bytes, tensors, parameters). */
export type ZImagePart = GeneratedPart;

export interface GenerateZImageResult {
  /** DiffusionLoadOptions.diffusionModel */
  diffusionModel: ZImagePart;
  /** DiffusionLoadOptions.llm */
  llm: ZImagePart;
  /** DiffusionLoadOptions.vae */
  vae: ZImagePart;
  seed: number;
  type: "f16" | "f32";
}

/** DiT tensors (z_image.hpp names, without the "model.diffusion_model." prefix). */
export function zImageDitPlan(type: "f16" | "f32" = "f16", S: ZImageSizes = Z_IMAGE_TINY): ZImageTensorSpec[] {
  const P = planner(type === "f32" ? GgmlType.F32 : GgmlType.F16, GgmlType.F16);
  const h = S.ditHidden;
  const patchIn = S.patchSize * S.patchSize * S.latentChannels;
  const heads = h / S.ditHeadDim;
  P.linear("x_embedder", patchIn, h);
  P.linear("t_embedder.mlp.0", 256, Math.min(h, 1024), true, GgmlType.F32);
  P.linear("t_embedder.mlp.2", Math.min(h, 1024), 256, true, GgmlType.F32);
  P.rms("cap_embedder.0", S.teHidden);
  P.linear("cap_embedder.1", S.teHidden, h);
  P.add("cap_pad_token", [h], GgmlType.F32, "weight");
  P.add("x_pad_token", [h], GgmlType.F32, "weight");
  const block = (p: string, modulation: boolean): void => {
    P.linear(`${p}.attention.qkv`, h, (heads + 2 * heads) * S.ditHeadDim, false);
    P.linear(`${p}.attention.out`, heads * S.ditHeadDim, h, false);
    P.rms(`${p}.attention.q_norm`, S.ditHeadDim);
    P.rms(`${p}.attention.k_norm`, S.ditHeadDim);
    P.linear(`${p}.feed_forward.w1`, h, S.ditFfn, false);
    P.linear(`${p}.feed_forward.w2`, S.ditFfn, h, false);
    P.linear(`${p}.feed_forward.w3`, h, S.ditFfn, false);
    for (const n of ["attention_norm1", "ffn_norm1", "attention_norm2", "ffn_norm2"]) P.rms(`${p}.${n}`, h);
    if (modulation) P.linear(`${p}.adaLN_modulation.0`, Math.min(h, 256), 4 * h);
  };
  for (let i = 0; i < S.ditRefinerLayers; i++) block(`noise_refiner.${i}`, true);
  for (let i = 0; i < S.ditRefinerLayers; i++) block(`context_refiner.${i}`, false);
  for (let i = 0; i < S.ditLayers; i++) block(`layers.${i}`, true);
  P.linear("final_layer.linear", h, patchIn, true, GgmlType.F32);
  P.linear("final_layer.adaLN_modulation.1", Math.min(h, 256), h);
  return P.specs;
}

/** Qwen3 text encoder tensors (llama.cpp names). */
export function zImageTextEncoderPlan(type: "f16" | "f32" = "f16", S: ZImageSizes = Z_IMAGE_TINY): ZImageTensorSpec[] {
  const P = planner(type === "f32" ? GgmlType.F32 : GgmlType.F16, GgmlType.F16);
  const h = S.teHidden;
  P.linear("token_embd", h, S.teVocab, false);
  for (let l = 0; l < S.teLayers; l++) {
    const b = `blk.${l}`;
    P.rms(`${b}.attn_norm`, h);
    P.linear(`${b}.attn_q`, h, S.teHeads * S.teHeadDim, false);
    P.linear(`${b}.attn_k`, h, S.teKvHeads * S.teHeadDim, false);
    P.linear(`${b}.attn_v`, h, S.teKvHeads * S.teHeadDim, false);
    P.linear(`${b}.attn_output`, S.teHeads * S.teHeadDim, h, false);
    P.rms(`${b}.attn_q_norm`, S.teHeadDim);
    P.rms(`${b}.attn_k_norm`, S.teHeadDim);
    P.rms(`${b}.ffn_norm`, h);
    P.linear(`${b}.ffn_gate`, h, S.teFfn, false);
    P.linear(`${b}.ffn_up`, h, S.teFfn, false);
    P.linear(`${b}.ffn_down`, S.teFfn, h, false);
  }
  P.rms("output_norm", h);
  return P.specs;
}

/** Flux VAE tensors (LDM names as in Flux's ae.safetensors). */
export function zImageVaePlan(type: "f16" | "f32" = "f16", S: ZImageSizes = Z_IMAGE_TINY): ZImageTensorSpec[] {
  const P = planner(type === "f32" ? GgmlType.F32 : GgmlType.F16, type === "f32" ? GgmlType.F32 : GgmlType.F16);
  const resnet = (p: string, c: number, o: number): void => {
    P.norm(`${p}.norm1`, c);
    P.conv(`${p}.conv1`, c, o, 3);
    P.norm(`${p}.norm2`, o);
    P.conv(`${p}.conv2`, o, o, 3);
    if (c !== o) P.conv(`${p}.nin_shortcut`, c, o, 1);
  };
  const attn = (p: string, c: number): void => {
    P.norm(`${p}.norm`, c);
    for (const n of ["q", "k", "v", "proj_out"]) P.conv(`${p}.${n}`, c, c, 1);
  };
  const mid = (p: string, c: number): void => {
    resnet(`${p}.block_1`, c, c);
    attn(`${p}.attn_1`, c);
    resnet(`${p}.block_2`, c, c);
  };
  const vm = S.vaeChannelMult;
  const ec = S.vaeEncoderChannels;
  P.conv("encoder.conv_in", 3, ec, 3);
  let c: number = ec;
  for (let i = 0; i < vm.length; i++) {
    for (let j = 0; j < S.vaeResBlocks; j++) {
      resnet(`encoder.down.${i}.block.${j}`, c, ec * vm[i]);
      c = ec * vm[i];
    }
    if (i !== vm.length - 1) P.conv(`encoder.down.${i}.downsample.conv`, c, c, 3);
  }
  mid("encoder.mid", c);
  P.norm("encoder.norm_out", c);
  // log-variance −30: an (almost) deterministic encoder, as a trained VAE's, so img2img depends on the init image
  P.conv("encoder.conv_out", c, 2 * S.latentChannels, 3, "logvar");
  const dc = S.vaeDecoderChannels;
  c = dc * vm[vm.length - 1];
  P.conv("decoder.conv_in", S.latentChannels, c, 3);
  mid("decoder.mid", c);
  for (let i = vm.length - 1; i >= 0; i--) {
    for (let j = 0; j < S.vaeResBlocks + 1; j++) {
      resnet(`decoder.up.${i}.block.${j}`, c, dc * vm[i]);
      c = dc * vm[i];
    }
    if (i !== 0) P.conv(`decoder.up.${i}.upsample.conv`, c, c, 3);
  }
  P.norm("decoder.norm_out", c);
  P.conv("decoder.conv_out", c, 3, 3);
  return P.specs;
}

/**
 * Writes z-image-dit.gguf, z-image-qwen3.gguf and z-image-vae.gguf (sizes:
 * Z_IMAGE_TINY: 3.3 M DiT + 5.5 M text encoder + 37.4 M VAE parameters,
 * ~93 MB as f16)
 * into `dir`. Load them with
 * DiffusionModel.load({ diffusionModel, llm, vae }); sample with cfgScale 1
 * and sd.cpp's defaults for Z-Image (euler, discrete flow schedule).
 */
export async function generateRandomZImageModel(dir: string, opts: GenerateZImageOptions = {}): Promise<GenerateZImageResult> {
  const type = opts.type ?? "f16";
  if (type !== "f16" && type !== "f32") throw new RangeError(`type must be "f16" or "f32", got ${String(type)}`);
  const seed = uint32Seed(opts.seed);
  const S: ZImageSizes = { ...Z_IMAGE_TINY, ...opts.sizes };
  fs.mkdirSync(dir, { recursive: true });
  const diffusionModel = await writePart(path.join(dir, "z-image-dit.gguf"), "random-z-image-dit", zImageDitPlan(type, S), seed, undefined, "Z-Image");
  const llm = await writePart(path.join(dir, "z-image-qwen3.gguf"), "random-z-image-qwen3", zImageTextEncoderPlan(type, S), seed, "qwen3", "Z-Image");
  const vae = await writePart(path.join(dir, "z-image-vae.gguf"), "random-z-image-vae", zImageVaePlan(type, S), seed, undefined, "Z-Image");
  return { diffusionModel, llm, vae, seed, type };
}
