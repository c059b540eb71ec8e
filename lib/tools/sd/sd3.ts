/**
 * Generates a Stable Diffusion 3.x model (SD3 Medium's layout, or SD3.5's
 * with RMS-normed attention) with deterministic random weights as five GGUF
 * files, the parts sd.cpp loads separately (DiffusionModel.load({
 * diffusionModel, clipL, clipG, t5xxl, vae })): the MMDiT, CLIP-L, OpenCLIP
 * bigG, the T5 encoder and the 16-channel VAE. The images are noise-like;
 * every kernel of the SD3 pipeline (three text encoders, their pooled
 * vector, CLIP and T5 tokens joined into one context, the MMDiT's joint
 * blocks, flow matching) runs for real.
 *
 * Sources (deps/stable-diffusion.cpp, names after src/name_conversion.cpp,
 * shapes in ggml order, ne[0] first: linear [in, out], conv [kw, kh, in, out]):
 *  - MMDiT: src/model/diffusion/mmdit.hpp (MMDiT, JointBlock,
 *    DismantledBlock, PatchEmbed, TimestepEmbedder, VectorEmbedder,
 *    FinalLayer, MMDiTConfig::detect_from_weights), read under
 *    "model.diffusion_model."; `joint_blocks.` makes src/model_loader.cpp
 *    `get_sd_version` answer VERSION_SD3. Read from the weights: patch size,
 *    latent channels and hidden size (x_embedder), the pooled vector's width
 *    (y_embedder: CLIP-L's 768 + bigG's 1280), the context width
 *    (context_embedder), the depth (joint blocks; the heads are as many as
 *    the blocks, so hidden = 64 × depth in SD3), the position embedding's
 *    grid (pos_embed [hidden, size², 1]), "rms" q/k norms (SD3.5's
 *    attn.ln_q / ln_k without bias). The last block's context half is
 *    pre-only (no projection, no MLP, 2 modulations). The depth starts
 *    from SD3 Medium's 24 and is only raised by the blocks found, so it is
 *    at least 24. Here: depth 24, hidden 192 (24 heads of 8), SD3's
 *    192 × 192 position grid.
 *  - CLIP-L and bigG: src/model/te/clip.hpp (sizes fixed by the code),
 *    Hugging Face CLIPTextModel(WithProjection) names ("text_model.…", and
 *    bigG's "text_projection.weight"), loaded under "clip_l." / "clip_g." →
 *    "text_encoders.clip_l/clip_g.transformer.". q4_0 (123 M and 695 M
 *    parameters).
 *  - T5: ./flux1.ts's T5 v1.1 plan. src/conditioning/conditioner.hpp
 *    SD3CLIPEmbedder pads the CLIP tokens' hidden states (768 + 1280) to
 *    4096 and joins T5's after them, so T5 must be 4096 wide (T5-XXL's):
 *    1 layer here, q4_0.
 *  - VAE: the 16-channel AutoencoderKL of ./z-image.ts (SD3's VAE has the
 *    Flux VAE's layout; sd.cpp applies SD3's scale and shift).
 */
import fs from "node:fs";
import path from "node:path";
import { GgmlType } from "../gguf/writer";
import { FLUX1_TINY, flux1T5Plan } from "./flux1";
import { type DitLoraOptions, writeRandomDitLora } from "./lora";
import { blockRows, type GeneratedPart, type PartTensorSpec, planner, writePart } from "./parts-writer";
import { SDXL_TINY, sdxlClipPlan } from "./sdxl";
import { Z_IMAGE_TINY, zImageVaePlan } from "./z-image";
import { uint32Seed } from "../random";

/** The sizes of the generated model (sd.cpp's MMDiTConfig names). */
export const SD3_TINY = {
  latentChannels: 16,
  patchSize: 2,
  /**
   * Joint blocks: at least 24 (MMDiTConfig starts from SD3 Medium's 24 and
   * only raises it to the blocks found); sd.cpp gives the MMDiT as many heads as blocks.
   */
  depth: 24,
  /** A multiple of depth (SD3: 64 × depth, heads 64 wide); here heads 8 wide. */
  hidden: 192,
  /**
   * pos_embed's grid side, in patches (SD3's 192: sides up to 3072 pixels). A
   * GGUF reader drops pos_embed's trailing 1 from [hidden, size², 1], so
   * MMDiTConfig does not read it there and keeps 192: write 192.
   */
  posEmbedMaxSize: 192,
  /** The pooled vector: CLIP-L 768 + bigG 1280 (fixed by the conditioner). */
  admInChannels: 2048,
  /** The context: T5-XXL's width, to which the conditioner pads CLIP's (fixed). */
  contextSize: 4096,
  mlpRatio: 4,
  vaeEncoderChannels: 128,
  vaeDecoderChannels: 32,
} as const;

/** The sizes an SD3 model is written with (SD3_TINY's fields). */
export type Sd3Sizes = { -readonly [K in keyof typeof SD3_TINY]: number };

export interface GenerateSd3Options {
  /** PRNG seed (uint32); same seed gives byte-identical files. Default 1. */
  seed?: number;
  /** "sd3.5" writes RMS q/k norms in the attention (SD3.5's), "sd3" none (SD3 Medium's). Default "sd3.5". */
  variant?: "sd3" | "sd3.5";
  /** Sizes other than SD3_TINY's, e.g. to write parts that do not fit together. */
  sizes?: Partial<Sd3Sizes>;
  /** T5's width (default 4096, the only one SD3CLIPEmbedder takes): another writes a T5 that does not fit. */
  t5Width?: number;
  /**
   * Storage type of the MMDiT's linear weights. Default "f16"; "q4_0" (~0.56
   * bytes a weight) for the real widths (SD3.5 Large: depth 38, hidden 2432,
   * 8.1 G parameters, 4.9 GB), as the memory fit was measured.
   */
  type?: "f16" | "q4_0";
}

export interface GenerateSd3Result {
  diffusionModel: GeneratedPart;
  clipL: GeneratedPart;
  clipG: GeneratedPart;
  t5xxl: GeneratedPart;
  vae: GeneratedPart;
  seed: number;
  variant: "sd3" | "sd3.5";
}

/** MMDiT tensors (mmdit.hpp names, without the "model.diffusion_model." prefix); linear weights of `type` (q4_0: rows of 32). */
export function sd3MmditPlan(S: Sd3Sizes = SD3_TINY, variant: "sd3" | "sd3.5" = "sd3.5", type: "f16" | "q4_0" = "f16"): PartTensorSpec[] {
  const P = planner(type === "q4_0" ? GgmlType.Q4_0 : GgmlType.F16, GgmlType.F16);
  const h = S.hidden;
  const headDim = h / S.depth;
  P.conv("x_embedder.proj", S.latentChannels, h, S.patchSize);
  P.add("pos_embed", [h, S.posEmbedMaxSize * S.posEmbedMaxSize, 1], GgmlType.F32, "weight");
  P.linear("t_embedder.mlp.0", 256, h);
  P.linear("t_embedder.mlp.2", h, h);
  P.linear("y_embedder.mlp.0", S.admInChannels, h);
  P.linear("y_embedder.mlp.2", h, h);
  P.linear("context_embedder", S.contextSize, h);
  const half = (p: string, preOnly: boolean): void => {
    P.linear(`${p}.attn.qkv`, h, 3 * h);
    if (!preOnly) P.linear(`${p}.attn.proj`, h, h);
    if (variant === "sd3.5") {
      P.rms(`${p}.attn.ln_q`, headDim);
      P.rms(`${p}.attn.ln_k`, headDim);
    }
    P.linear(`${p}.adaLN_modulation.1`, h, (preOnly ? 2 : 6) * h);
    if (!preOnly) {
      P.linear(`${p}.mlp.fc1`, h, h * S.mlpRatio);
      P.linear(`${p}.mlp.fc2`, h * S.mlpRatio, h);
    }
  };
  for (let i = 0; i < S.depth; i++) {
    half(`joint_blocks.${i}.context_block`, i === S.depth - 1);
    half(`joint_blocks.${i}.x_block`, false);
  }
  P.linear("final_layer.linear", h, S.patchSize * S.patchSize * S.latentChannels);
  P.linear("final_layer.adaLN_modulation.1", h, 2 * h);
  return blockRows(P.specs);
}

/** OpenCLIP ViT-bigG/14's text tower in Hugging Face CLIPTextModelWithProjection names (as SD3's clip_g file ships), q4_0. */
export function sd3ClipGPlan(): PartTensorSpec[] {
  // CLIP-L's HF layout at bigG's widths, plus the projection of the pooled output (f32)
  const specs = sdxlClipPlan("l", "q4_0", {
    ...SDXL_TINY,
    clipLHidden: SDXL_TINY.clipGHidden,
    clipLLayers: SDXL_TINY.clipGLayers,
    clipLFfn: SDXL_TINY.clipGFfn,
  });
  return [...specs, { name: "text_projection.weight", shape: [SDXL_TINY.clipGHidden, SDXL_TINY.clipGHidden], type: GgmlType.F32, init: "weight" }];
}

/**
 * Writes sd3-mmdit.gguf, sd3-clip-l.gguf, sd3-clip-g.gguf, sd3-t5.gguf and
 * sd3-vae.gguf (SD3_TINY: 40 M MMDiT (7 M of it the 192² position grid) + 123 M CLIP-L + 695 M bigG + 325 M
 * T5 + 37 M VAE parameters, ~820 MB with the encoders as q4_0) into `dir`.
 * Load them with DiffusionModel.load({ diffusionModel, clipL, clipG,
 * t5xxl, vae }); sample as SD3 runs (CFG > 1 with a negative prompt, sd.cpp's
 * defaults for SD3: euler, discrete with flow shift 3), width and height
 * multiples of 16.
 * @throws RangeError for a seed that is not a uint32, an unknown variant or type, a depth under 24 or a hidden size not divisible by it
 */
export async function generateRandomSd3Model(dir: string, opts: GenerateSd3Options = {}): Promise<GenerateSd3Result> {
  const variant = opts.variant ?? "sd3.5";
  if (variant !== "sd3" && variant !== "sd3.5") throw new RangeError(`variant must be "sd3" or "sd3.5", got ${String(variant)}`);
  const type = opts.type ?? "f16";
  if (type !== "f16" && type !== "q4_0") throw new RangeError(`type must be "f16" or "q4_0", got ${String(type)}`);
  const seed = uint32Seed(opts.seed);
  const S: Sd3Sizes = { ...SD3_TINY, ...opts.sizes };
  if (S.depth < 24) throw new RangeError(`sizes.depth must be at least 24 (sd.cpp reads no fewer), got ${S.depth}`);
  if (S.hidden % S.depth !== 0) throw new RangeError(`sizes.hidden (${S.hidden}) must be a multiple of sizes.depth (${S.depth}): as many heads as blocks`);
  const t5 = opts.t5Width ?? 4096;
  fs.mkdirSync(dir, { recursive: true });
  const family = variant === "sd3" ? "Stable Diffusion 3" : "Stable Diffusion 3.5";
  const file = (n: string) => path.join(dir, n);
  const diffusionModel = await writePart(file("sd3-mmdit.gguf"), `random-${variant}-mmdit`, sd3MmditPlan(S, variant, type), seed, undefined, family);
  const clipL = await writePart(file("sd3-clip-l.gguf"), "random-sd3-clip-l", sdxlClipPlan("l", "q4_0", SDXL_TINY), seed, undefined, family);
  const clipG = await writePart(file("sd3-clip-g.gguf"), "random-sd3-clip-g", sd3ClipGPlan(), seed, undefined, family);
  const t5Plan = flux1T5Plan("q4_0", { ...FLUX1_TINY, t5Hidden: t5, t5Inner: 4096, t5Ffn: 10240, t5Layers: 1 });
  const t5xxl = await writePart(file("sd3-t5.gguf"), "random-sd3-t5", t5Plan, seed, undefined, family);
  const vaePlan = zImageVaePlan("f16", {
    ...Z_IMAGE_TINY,
    latentChannels: S.latentChannels,
    vaeEncoderChannels: S.vaeEncoderChannels,
    vaeDecoderChannels: S.vaeDecoderChannels,
  });
  const vae = await writePart(file("sd3-vae.gguf"), "random-sd3-vae", vaePlan, seed, undefined, family);
  return { diffusionModel, clipL, clipG, t5xxl, vae, seed, variant };
}

/** The MMDiT layers a generated LoRA adapts: [name, in, out] (PyTorch's Linear in/out features). */
export function sd3LoraTargets(S: Sd3Sizes = SD3_TINY): [string, number, number][] {
  const h = S.hidden;
  return [
    ["joint_blocks.0.x_block.attn.qkv", h, 3 * h],
    ["joint_blocks.0.context_block.attn.qkv", h, 3 * h],
    ["joint_blocks.1.x_block.mlp.fc1", h, h * S.mlpRatio],
  ];
}

/**
 * Writes a random LoRA for generateRandomSd3Model's MMDiT to `file`
 * (safetensors, f32) in the PEFT naming (./lora.ts writeRandomDitLora), on
 * sd3LoraTargets' layers.
 * @throws RangeError for a rank outside [1, 1024]
 */
export async function generateRandomSd3Lora(
  file: string,
  opts: DitLoraOptions & { sizes?: Partial<Sd3Sizes> } = {},
): Promise<{ path: string; bytes: number; tensors: number }> {
  return writeRandomDitLora(file, sd3LoraTargets({ ...SD3_TINY, ...opts.sizes }), opts, "genai-native random SD3 LoRA");
}
