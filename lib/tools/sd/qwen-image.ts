/**
 * Generates a Qwen-Image model with deterministic random weights as three
 * GGUF files, the parts sd.cpp loads separately
 * (DiffusionModel.load({ diffusionModel, llm, vae })): the Qwen-Image DiT,
 * the Qwen2.5-VL text encoder (its language model) and the Qwen-Image (Wan
 * 2.1) VAE. The images are noise-like; every kernel of the Qwen-Image
 * pipeline (Qwen2 tokenizer and chat template, Qwen2.5-VL, the dual-stream
 * DiT with its 3-axis RoPE, flow-matching sampler, Wan VAE) runs for real.
 *
 * Unlike Z-Image, sd.cpp reads almost no size of Qwen-Image from the weights,
 * so the parts are big even at their smallest: only the block count of the
 * DiT and the depth / FFN width of the text encoder can shrink. The large
 * matrices are therefore written as q4_0 by default (~0.56 bytes a weight).
 *
 * Sources (deps/stable-diffusion.cpp, the names are what sd.cpp uses after
 * src/name_conversion.cpp, shapes are ggml order, ne[0] first: linear
 * [in, out], conv [kw, kh, in, out]):
 *  - DiT: src/model/diffusion/qwen_image.hpp (QwenImageModel,
 *    QwenImageTransformerBlock, QwenImageAttention, QwenTimestepProjEmbeddings,
 *    AdaLayerNormContinuous; FeedForward in model/common/block.hpp). Read
 *    under the prefix "model.diffusion_model."; `transformer_blocks.0.img_mod.1.weight`
 *    makes src/model_loader.cpp `get_sd_version` answer VERSION_QWEN_IMAGE
 *    (img_in is 64 wide, not 128, which would be MAGE_FLOW, and there is no
 *    `time_text_embed.addition_t_embedding`, which would be
 *    QWEN_IMAGE_LAYERED). QwenImageConfig::detect_from_weights reads only the
 *    number of transformer blocks (and `__index_timestep_zero__`); fixed by
 *    the code: 24 heads of 128 (hidden 3072), joint_attention_dim 3584 (the
 *    text encoder's hidden size), in_channels 64 (16 latent channels × a
 *    2×2 patch), out_channels 16, GELU MLP 4× wide, no affine LayerNorms.
 *    Shapes are checked at load, so only the block count shrinks: 1 here.
 *  - Text encoder: src/model/te/llm.hpp (LLMArch::QWEN2_5_VL, chosen by
 *    src/conditioning/conditioner.hpp LLMEmbedder for Qwen-Image: 28 query
 *    heads and 4 key/value heads of 128, q/k/v biases, no q/k norm, fixed by
 *    the code; hidden size, vocab, layers and FFN width read from the
 *    weights). Named as llama.cpp names a Qwen2-VL GGUF (token_embd,
 *    blk.N.attn_q, …, arch "qwen2vl"), which src/name_conversion.cpp
 *    (llm_name_map) maps to the HF names under "text_encoders.llm.". The
 *    hidden size must be the DiT's joint_attention_dim, 3584. The vocab is
 *    Qwen's 151936 (the chat template's <|im_start|> / <|im_end|> are 151644
 *    / 151645). Here: 1 layer, FFN 32. src/stable-diffusion.cpp asks for the
 *    vision tower (enable_vision) for Qwen-Image, but LLMRunner turns it off
 *    ("no vision weights detected") when the file has no `visual.` tensors;
 *    text-to-image and img2img never use it (only edits with reference
 *    images do), so none are written. Qwen-Image drops the first 34 tokens
 *    (the system prompt) and takes the final normed hidden state.
 *  - VAE: src/model/vae/wan_vae.hpp (WanVAE, WanVAERunner; chosen by
 *    sd_version_uses_wan_vae in src/model.h). Base channels 96 for encoder
 *    and decoder, ch_mult 1,2,4,4, 2 residual blocks, z_dim 16: all fixed by
 *    the code (the latents are normalised by Wan 2.1's fixed per-channel
 *    mean / std, so 16 channels). WanVAERunner takes the 2D variant
 *    (Conv2dBut3d kernels, no temporal convs) when decoder.conv1.weight's
 *    ne[2] > 3 — a [3, 3, 16, 384] conv2d kernel — and the causal-3D one
 *    (CausalConv3d, [3, 3, 3, in·out], as Qwen-Image's own VAE) otherwise.
 *    Either is written (`vae`): "2d" by default (a third of the conv
 *    weights, same images for a single frame), or "causal3d", the layout
 *    of Qwen-Image's own VAE file: every 3×3 conv of the residual blocks,
 *    the encoder/decoder stems and heads as CausalConv3d kernels
 *    [3, 3, 3, in·out] (CausalConv3d::init_params), the 1×1 shortcuts and
 *    the conv1/conv2 between encoder and decoder as [1, 1, 1, in·out], and
 *    a temporal `time_conv` [1, 1, 3, …] beside the spatial resample where
 *    Wan 2.1 resamples time (encoder levels 1 and 2: downsample3d,
 *    [1, 1, 3, C·C]; decoder levels 0 and 1: upsample3d, [1, 1, 3, C·2C]);
 *    the resample convs and the middle attention's 1×1 convs stay 2D.
 *    Original Wan names (encoder.conv1, decoder.upsamples.N.residual.2, …),
 *    read under "vae." → "first_stage_model."; encode takes the mean half of
 *    conv1's output, so img2img is deterministic.
 *  - Vision tower (`vision: true`, for Qwen-Image-Edit): the Qwen2.5-VL
 *    vision encoder as llama.cpp's converter writes it into an mmproj GGUF,
 *    the file sd.cpp's `llm_vision_path` takes (src/model/te/llm.hpp
 *    VisionModel, VisionBlock, VisionAttention, VisionMLP,
 *    VisionPatchEmbed, VisionPatchMerger; src/name_conversion.cpp
 *    llm_vision_name_map maps v.blk.N.attn_q → blocks.N.attn.q_proj, mm.0 →
 *    merger.mlp.0, v.post_ln → merger.ln_q, …; read under
 *    "text_encoders.llm.visual."). LLMConfig::detect_from_weights reads the
 *    width (patch_embed), the depth (blocks.N), the MLP width and the
 *    merger's output width from the weights; fixed by the code: 16 heads,
 *    patch 14, temporal patch 2 (written as the two halves patch_embd.weight
 *    and patch_embd.weight.1), 2 × 2 spatial merge, window 112 pixels,
 *    full attention in blocks 7, 15, 23 and 31 (none of them here). The
 *    merger's output must be the text encoder's hidden size (3584): the
 *    image's embeddings replace <|image_pad|> tokens in the LLM's input.
 *    With reference images sd.cpp then runs QwenImageEditPlusPipeline (the
 *    edit system prompt, "Picture N: <|vision_start|>…<|vision_end|>");
 *    without the vision tower, reference images reach only the DiT (their
 *    VAE latents). Here: 2 blocks of 256 (head width 16), MLP 64.
 *
 * Types: norm weights 1.0 and biases 0.0 (f32), linear weights and the token
 * embedding `type` (q4_0 by default), VAE conv kernels f16 (f32 for type
 * "f32"; sd.cpp holds them in f16 anyway).
 */
import fs from "node:fs";
import path from "node:path";
import { GgmlType } from "../gguf/writer";
import { type GeneratedPart, type PartTensorSpec, planner, writePart } from "./parts-writer";
import { uint32Seed } from "../random";

/** The sizes of the generated model (sd.cpp's QwenImageConfig / LLMConfig / WanVAE names). */
export const QWEN_IMAGE_TINY = {
  /** VAE latent channels; the DiT's img_in takes 4× as many (2×2 patches). */
  latentChannels: 16,
  patchSize: 2,
  /** Attention heads (24, fixed by sd.cpp) × head width (128) = hidden 3072. */
  ditHeads: 24,
  ditHeadDim: 128,
  /** Transformer blocks: the only DiT size sd.cpp reads from the weights. */
  ditLayers: 1,
  /** GELU MLP width = 4 × hidden (fixed). */
  ditMlpRatio: 4,
  /** Qwen2.5-VL hidden size = the DiT's joint_attention_dim (3584, fixed by sd.cpp). */
  teHidden: 3584,
  teLayers: 1,
  teFfn: 32,
  teVocab: 151936,
  teHeads: 28,
  teKvHeads: 4,
  teHeadDim: 128,
  /** WanVAE base channels (96 for encoder and decoder, fixed). */
  vaeChannels: 96,
  vaeChannelMult: [1, 2, 4, 4],
  vaeResBlocks: 2,
  /** Qwen2.5-VL vision tower (vision: true): width (16 heads of visionHidden / 16), blocks, SiLU-gated MLP width. */
  visionHidden: 256,
  visionLayers: 2,
  visionFfn: 64,
  /** Patch side (14) and the 2 × 2 merge (both fixed by sd.cpp). */
  visionPatch: 14,
  visionMerge: 2,
} as const;

/** The sizes a Qwen-Image model is written with (QWEN_IMAGE_TINY's fields). */
export type QwenImageSizes = {
  -readonly [K in keyof typeof QWEN_IMAGE_TINY]: (typeof QWEN_IMAGE_TINY)[K] extends readonly number[] ? readonly number[] : number;
};

/** Storage type of linear weights and the token embedding. */
export type QwenImageType = "q4_0" | "q8_0" | "f16" | "f32";
const TYPES: Record<QwenImageType, GgmlType> = { q4_0: GgmlType.Q4_0, q8_0: GgmlType.Q8_0, f16: GgmlType.F16, f32: GgmlType.F32 };

export interface GenerateQwenImageOptions {
  /** PRNG seed (uint32); same seed and type give byte-identical files. Default 1. */
  seed?: number;
  /**
   * Storage type of linear weights and the token embedding. Default "q4_0"
   * (DiT 214 MB, text encoder 323 MB, VAE 89 MB); "f16" is ~3.5× as big.
   */
  type?: QwenImageType;
  /**
   * Sizes other than QWEN_IMAGE_TINY's, e.g. to write parts that do not fit
   * together. sd.cpp's fixed sizes (heads, hidden 3072, joint_attention_dim
   * 3584, VAE channels) are not checked here: other values write files that
   * sd.cpp refuses (shape mismatch) or, for the text encoder's hidden size,
   * that load and then abort at the first generation.
   */
  sizes?: Partial<QwenImageSizes>;
  /** The VAE's layout: "2d" (default, the smaller file) or "causal3d" (Qwen-Image's own VAE file's). */
  vae?: QwenImageVae;
  /** Also write the Qwen2.5-VL vision tower (an mmproj GGUF, for Qwen-Image-Edit's reference images). Default false. */
  vision?: boolean;
}

/** The Wan VAE's two layouts in sd.cpp: 2D convs, or causal 3D convs (Qwen-Image's and Wan 2.1's own). */
export type QwenImageVae = "2d" | "causal3d";

export interface GenerateQwenImageResult {
  /** DiffusionLoadOptions.diffusionModel */
  diffusionModel: GeneratedPart;
  /** DiffusionLoadOptions.llm */
  llm: GeneratedPart;
  /** DiffusionLoadOptions.vae */
  vae: GeneratedPart;
  /** DiffusionLoadOptions.llmVision, with `vision: true` */
  llmVision?: GeneratedPart;
  seed: number;
  type: QwenImageType;
  vaeLayout: QwenImageVae;
}

/** A quantized type for a weight of `inF` inputs only when its rows are whole blocks (sd.cpp falls back to f32 otherwise). */
const rowType = (t: GgmlType, inF: number): GgmlType => ((t === GgmlType.Q4_0 || t === GgmlType.Q8_0) && inF % 32 !== 0 ? GgmlType.F16 : t);

/** DiT tensors (qwen_image.hpp names, without the "model.diffusion_model." prefix). */
export function qwenImageDitPlan(type: QwenImageType = "q4_0", S: QwenImageSizes = QWEN_IMAGE_TINY): PartTensorSpec[] {
  const lin = TYPES[type];
  const P = planner(lin, GgmlType.F16);
  const linear = (p: string, inF: number, outF: number): void => P.linear(p, inF, outF, true, rowType(lin, inF));
  const h = S.ditHeads * S.ditHeadDim;
  const patchIn = S.patchSize * S.patchSize * S.latentChannels;
  linear("time_text_embed.timestep_embedder.linear_1", 256, h);
  linear("time_text_embed.timestep_embedder.linear_2", h, h);
  P.rms("txt_norm", S.teHidden);
  linear("img_in", patchIn, h);
  linear("txt_in", S.teHidden, h);
  for (let l = 0; l < S.ditLayers; l++) {
    const b = `transformer_blocks.${l}`;
    for (const s of ["img", "txt"]) {
      linear(`${b}.${s}_mod.1`, h, 6 * h);
      linear(`${b}.${s}_mlp.net.0.proj`, h, S.ditMlpRatio * h);
      linear(`${b}.${s}_mlp.net.2`, S.ditMlpRatio * h, h);
    }
    for (const n of ["to_q", "to_k", "to_v", "add_q_proj", "add_k_proj", "add_v_proj", "to_out.0", "to_add_out"]) linear(`${b}.attn.${n}`, h, h);
    for (const n of ["norm_q", "norm_k", "norm_added_q", "norm_added_k"]) P.rms(`${b}.attn.${n}`, S.ditHeadDim);
  }
  linear("norm_out.linear", h, 2 * h);
  linear("proj_out", h, patchIn);
  return P.specs;
}

/** Qwen2.5-VL language-model tensors (llama.cpp names). */
export function qwenImageTextEncoderPlan(type: QwenImageType = "q4_0", S: QwenImageSizes = QWEN_IMAGE_TINY): PartTensorSpec[] {
  const lin = TYPES[type];
  const P = planner(lin, GgmlType.F16);
  const linear = (p: string, inF: number, outF: number, bias: boolean): void => P.linear(p, inF, outF, bias, rowType(lin, inF));
  const h = S.teHidden;
  linear("token_embd", h, S.teVocab, false);
  for (let l = 0; l < S.teLayers; l++) {
    const b = `blk.${l}`;
    P.rms(`${b}.attn_norm`, h);
    linear(`${b}.attn_q`, h, S.teHeads * S.teHeadDim, true);
    linear(`${b}.attn_k`, h, S.teKvHeads * S.teHeadDim, true);
    linear(`${b}.attn_v`, h, S.teKvHeads * S.teHeadDim, true);
    linear(`${b}.attn_output`, S.teHeads * S.teHeadDim, h, false);
    P.rms(`${b}.ffn_norm`, h);
    linear(`${b}.ffn_gate`, h, S.teFfn, false);
    linear(`${b}.ffn_up`, h, S.teFfn, false);
    linear(`${b}.ffn_down`, S.teFfn, h, false);
  }
  P.rms("output_norm", h);
  return P.specs;
}

/** WanVAE tensors, the 2D or the causal-3D variant (original Wan names). */
export function qwenImageVaePlan(type: QwenImageType = "q4_0", S: QwenImageSizes = QWEN_IMAGE_TINY, layout: QwenImageVae = "2d"): PartTensorSpec[] {
  const kernel = type === "f32" ? GgmlType.F32 : GgmlType.F16;
  const P = planner(kernel, kernel);
  const gamma = (p: string, c: number): void => P.add(`${p}.gamma`, [c], GgmlType.F32, "one");
  /** A k×k conv that is causal 3D (k×k×k, ggml [k, k, k, in·out]) in the 3D layout. */
  const conv3 = (p: string, i: number, o: number, k: number): void => {
    if (layout === "2d") {
      P.conv(p, i, o, k);
      return;
    }
    P.add(`${p}.weight`, [k, k, k, i * o], kernel, "weight");
    P.add(`${p}.bias`, [o], GgmlType.F32, "zero");
  };
  /** Wan 2.1's temporal resample beside a spatial one (3D layout only): CausalConv3d kernel (3, 1, 1), ggml [1, 1, 3, in·out]. */
  const timeConv = (p: string, i: number, o: number): void => {
    if (layout === "2d") return;
    P.add(`${p}.time_conv.weight`, [1, 1, 3, i * o], kernel, "weight");
    P.add(`${p}.time_conv.bias`, [o], GgmlType.F32, "zero");
  };
  const residual = (p: string, i: number, o: number): void => {
    gamma(`${p}.residual.0`, i);
    conv3(`${p}.residual.2`, i, o, 3);
    gamma(`${p}.residual.3`, o);
    conv3(`${p}.residual.6`, o, o, 3);
    if (i !== o) conv3(`${p}.shortcut`, i, o, 1);
  };
  const middle = (p: string, c: number): void => {
    residual(`${p}.middle.0`, c, c);
    gamma(`${p}.middle.1.norm`, c);
    P.conv(`${p}.middle.1.to_qkv`, c, 3 * c, 1);
    P.conv(`${p}.middle.1.proj`, c, c, 1);
    residual(`${p}.middle.2`, c, c);
  };
  const z = S.latentChannels;
  const vm = S.vaeChannelMult;
  const d = S.vaeChannels;
  // encoder (Encoder3d): conv1, then per level residual blocks and a stride-2 conv but after the last
  conv3("encoder.conv1", 3, d, 3);
  let c: number = d;
  let idx = 0;
  for (let i = 0; i < vm.length; i++) {
    for (let j = 0; j < S.vaeResBlocks; j++) {
      residual(`encoder.downsamples.${idx++}`, c, d * vm[i]);
      c = d * vm[i];
    }
    if (i !== vm.length - 1) {
      // Wan 2.1 downsamples time at levels 1 and 2 (temperal_downsample false, true, true)
      if (i > 0) timeConv(`encoder.downsamples.${idx}`, c, c);
      P.conv(`encoder.downsamples.${idx++}.resample.1`, c, c, 3);
    }
  }
  middle("encoder", c);
  gamma("encoder.head.0", c);
  conv3("encoder.head.2", c, 2 * z, 3);
  conv3("conv1", 2 * z, 2 * z, 1);
  // decoder (Decoder3d): each upsample conv halves the channels, so the next level starts at half
  conv3("conv2", z, z, 1);
  c = d * vm[vm.length - 1];
  conv3("decoder.conv1", z, c, 3);
  middle("decoder", c);
  idx = 0;
  for (let i = vm.length - 1; i >= 0; i--) {
    if (i !== vm.length - 1) c = c / 2;
    for (let j = 0; j < S.vaeResBlocks + 1; j++) {
      residual(`decoder.upsamples.${idx++}`, c, d * vm[i]);
      c = d * vm[i];
    }
    if (i !== 0) {
      // and upsamples it at the first two (temperal_upsample true, true, false): time_conv doubles the channels
      if (i > 1) timeConv(`decoder.upsamples.${idx}`, c, 2 * c);
      P.conv(`decoder.upsamples.${idx++}.resample.1`, c, c / 2, 3);
    }
  }
  gamma("decoder.head.0", c);
  conv3("decoder.head.2", c, 3, 3);
  return P.specs;
}

/**
 * The Qwen2.5-VL vision tower's tensors (llama.cpp mmproj names), its merger
 * writing S.teHidden wide embeddings. Linear weights in `type` (f16 where a
 * row is not whole q4_0 / q8_0 blocks), norms f32, the patch embedding f16.
 */
export function qwenImageVisionPlan(type: QwenImageType = "q4_0", S: QwenImageSizes = QWEN_IMAGE_TINY): PartTensorSpec[] {
  const lin = TYPES[type];
  const P = planner(lin, type === "f32" ? GgmlType.F32 : GgmlType.F16);
  const linear = (p: string, inF: number, outF: number): void => P.linear(p, inF, outF, true, rowType(lin, inF));
  const h = S.visionHidden;
  const patch = type === "f32" ? GgmlType.F32 : GgmlType.F16;
  // the temporal patch (2 frames; an image is repeated) as two conv2d halves, no bias (Qwen2.5-VL)
  P.add("v.patch_embd.weight", [S.visionPatch, S.visionPatch, 3, h], patch, "weight");
  P.add("v.patch_embd.weight.1", [S.visionPatch, S.visionPatch, 3, h], patch, "weight");
  for (let l = 0; l < S.visionLayers; l++) {
    const b = `v.blk.${l}`;
    P.rms(`${b}.ln1`, h);
    for (const n of ["attn_q", "attn_k", "attn_v", "attn_out"]) linear(`${b}.${n}`, h, h);
    P.rms(`${b}.ln2`, h);
    linear(`${b}.ffn_gate`, h, S.visionFfn);
    linear(`${b}.ffn_up`, h, S.visionFfn);
    linear(`${b}.ffn_down`, S.visionFfn, h);
  }
  const merged = h * S.visionMerge * S.visionMerge;
  P.rms("v.post_ln", h);
  linear("mm.0", merged, merged);
  linear("mm.2", merged, S.teHidden);
  return P.specs;
}

const writeVision = (file: string, type: QwenImageType, S: QwenImageSizes, seed: number) =>
  writePart(file, "random-qwen2.5-vl-vision", qwenImageVisionPlan(type, S), seed, "clip", "Qwen-Image-Edit");

/**
 * Writes only the Qwen2.5-VL vision tower (`opts.sizes`' vision* fields, its
 * output teHidden wide) to `file`: the part generateRandomQwenImageModel
 * writes with `vision: true`, for a tower of other sizes.
 * @throws RangeError for a bad seed or type
 */
export async function generateRandomQwenImageVision(file: string, opts: Omit<GenerateQwenImageOptions, "vae" | "vision"> = {}): Promise<GeneratedPart> {
  const { type, seed, S } = checkOptions(opts);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  return writeVision(file, type, S, seed);
}

function checkOptions(opts: GenerateQwenImageOptions): { type: QwenImageType; seed: number; S: QwenImageSizes } {
  const type = opts.type ?? "q4_0";
  if (!Object.hasOwn(TYPES, type)) throw new RangeError(`type must be one of ${Object.keys(TYPES).join(", ")}, got ${String(type)}`);
  return { type, seed: uint32Seed(opts.seed), S: { ...QWEN_IMAGE_TINY, ...opts.sizes } };
}

/**
 * Writes qwen-image-dit.gguf, qwen-image-qwen2.5-vl.gguf and
 * qwen-image-vae.gguf (sizes: QWEN_IMAGE_TINY: 380 M DiT + 574 M text
 * encoder + 44.6 M VAE parameters, ~627 MB as q4_0, ~2 GB as f16) into `dir`;
 * with `vae: "causal3d"` qwen-image-vae-causal3d.gguf instead (126.9 M
 * parameters as Wan 2.1's VAE, 254 MB), with `vision: true` also
 * qwen-image-mmproj.gguf (the vision tower, 5.7 M parameters, 3.6 MB). Load them with
 * DiffusionModel.load({ diffusionModel, llm, vae, llmVision }); sample with cfgScale 1
 * (one DiT pass a step) and sd.cpp's defaults for Qwen-Image (euler,
 * discrete flow schedule). Sizes are multiples of 8 (the VAE's factor; the
 * 2×2 patches are padded).
 */
export async function generateRandomQwenImageModel(dir: string, opts: GenerateQwenImageOptions = {}): Promise<GenerateQwenImageResult> {
  const { type, seed, S } = checkOptions(opts);
  const vaeLayout = opts.vae ?? "2d";
  if (vaeLayout !== "2d" && vaeLayout !== "causal3d") throw new RangeError(`vae must be "2d" or "causal3d", got ${String(vaeLayout)}`);
  fs.mkdirSync(dir, { recursive: true });
  const family = "Qwen-Image";
  const diffusionModel = await writePart(path.join(dir, "qwen-image-dit.gguf"), "random-qwen-image-dit", qwenImageDitPlan(type, S), seed, undefined, family);
  const llm = await writePart(
    path.join(dir, "qwen-image-qwen2.5-vl.gguf"),
    "random-qwen-image-qwen2.5-vl",
    qwenImageTextEncoderPlan(type, S),
    seed,
    "qwen2vl",
    family,
  );
  const vae = await writePart(
    path.join(dir, vaeLayout === "2d" ? "qwen-image-vae.gguf" : "qwen-image-vae-causal3d.gguf"),
    "random-qwen-image-vae",
    qwenImageVaePlan(type, S, vaeLayout),
    seed,
    undefined,
    family,
  );
  const llmVision = opts.vision ? await writeVision(path.join(dir, "qwen-image-mmproj.gguf"), type, S, seed) : undefined;
  return { diffusionModel, llm, vae, ...(llmVision && { llmVision }), seed, type, vaeLayout };
}
