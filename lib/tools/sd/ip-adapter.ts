/**
 * Generates a Stable Diffusion 1.x IP-Adapter (the plain variant, as
 * ip-adapter_sd15) with deterministic random weights, and the OpenCLIP
 * ViT-H/14 vision encoder it takes image embeddings from, as two GGUF files
 * for the random SD1 checkpoints of ./generate.ts, so tests run
 * stable-diffusion.cpp's IP-Adapter (sd_ctx_params_t.ip_adapter_path and
 * clip_vision_path, sd_img_gen_params_t.ip_adapter_image / _strength; sd-cli
 * --ip-adapter, --clip_vision, --ip-adapter-image, --ip-adapter-strength)
 * without downloads: the vision encoder, the image projection and the UNet's
 * extra image key/value attention all run for real.
 *
 * Sources (deps/stable-diffusion.cpp; shapes in ggml order, ne[0] first:
 * linear [in, out], conv [kw, kh, in, out]):
 *  - src/stable-diffusion.cpp: `ip_adapter_path` is read into the same
 *    ModelLoader as the checkpoint, without a prefix; with it, a
 *    FrozenCLIPVisionEmbedder (the tensors of `clip_vision_path`, read under
 *    "clip_vision.") and an IPAdapter::IPAdapterRunner (prefix "ip_adapter")
 *    are built. At generation (compute_ip_adapter_tokens) the image's pooled,
 *    projected CLIP embedding (1024 wide) goes through the image projection
 *    into image tokens, a zero embedding into the unconditional ones; both
 *    reach every UNet cross-attention (UNetDiffusionExtra.ip_context /
 *    ip_scale = the strength).
 *  - src/model/adapter/ip_adapter.hpp (IPAdapterRunner, ImageProjModel): the
 *    plain variant (no `image_proj.latents`, which would make it "plus", a
 *    Resampler over the penultimate hidden states) is
 *    image_proj.proj (Linear clip_dim → num_tokens · ctx_dim, with bias) and
 *    image_proj.norm (LayerNorm ctx_dim); all three sizes are read from the
 *    weights (ctx_dim from the norm, clip_dim and num_tokens · ctx_dim from
 *    proj). clip_dim must be the vision encoder's projection width, 1024.
 *  - src/model/common/block.hpp (CrossAttention, the attn2 of every
 *    BasicTransformerBlock, `enable_ip`): where a `to_k_ip.weight` exists
 *    beside the attention's own weights it adds to_k_ip and to_v_ip (Linear
 *    ip_dim → heads · head width, no bias; ip_dim read from the weight) and
 *    adds strength × attention(q, to_k_ip(tokens), to_v_ip(tokens)) to the
 *    text attention's output. So to_k_ip / to_v_ip are [ctx_dim, width of
 *    that block] and the widths must be the UNet's (32/64/128 for the "tiny"
 *    preset, 320/640/1280 for SD1.5): a mismatch is a shape error at load.
 *  - src/name_conversion.cpp (convert_ip_adapter_name, ip_adapter_index_map):
 *    the original file's names. `image_proj.*` becomes
 *    `ip_adapter.image_proj.*`; `ip_adapter.<n>.to_k_ip.weight` /
 *    `.to_v_ip.weight` becomes
 *    `model.diffusion_model.<block>.attn2.to_k_ip.weight` for n = 1, 3, …, 31
 *    (diffusers' attention-processor order, attn2 only: input_blocks 1, 2,
 *    4, 5, 7, 8, output_blocks 3 … 11, middle_block; ./shape.ts
 *    sd1CrossAttentions), the SD1 map for any UNet version that is not SDXL.
 *  - The vision encoder: src/conditioning/conditioner.hpp
 *    (FrozenCLIPVisionEmbedder: CLIPVisionModelProjection(OPEN_CLIP_VIT_H_14)
 *    under "cond_stage_model.transformer"; the "clip_vision." prefix of the
 *    file's tensors becomes that in src/name_conversion.cpp) and
 *    src/model/te/clip.hpp (CLIPVisionModelProjection, CLIPVisionModel,
 *    CLIPVisionEmbeddings, CLIPEncoder, CLIPLayer, CLIPMLP). Every size is
 *    fixed by the code: 224-pixel images, 14-pixel patches, 257 positions, 32
 *    layers × 1280, 16 heads, GELU MLP 5120, projection 1280 → 1024 (no
 *    bias); patch_embedding [14, 14, 3, 1280] f16 without bias,
 *    class_embedding [1280] and position_embedding [1280, 257] f32. HF
 *    CLIPVisionModelWithProjection names (as IP-Adapter's
 *    models/image_encoder/model.safetensors: vision_model.embeddings.*,
 *    vision_model.pre_layrnorm — HF's spelling, which
 *    convert_open_clip_to_hf_clip_name maps to pre_layernorm —,
 *    vision_model.encoder.layers.N.{self_attn.{q,k,v,out}_proj, layer_norm1,
 *    mlp.fc1, mlp.fc2, layer_norm2}, vision_model.post_layernorm,
 *    visual_projection). Every tensor must be there (a missing one fails the
 *    load), so the file is full size: 632 M parameters.
 *
 * What sd.cpp does with parts that do not fit (sd-cli at 487de75c):
 *  - IP-Adapter without a vision encoder file: the load fails, one "[ERROR]
 *    CLIP vision tensor 'cond_stage_model.transformer.vision_model.…' not in
 *    model metadata" per tensor (520), then "model metadata validation failed".
 *  - IP-Adapter for other UNet widths (e.g. preset "sd15" with a "tiny"
 *    checkpoint): the load fails, "Diffusion model tensor
 *    'model.diffusion_model.<block>.attn2.to_k_ip.weight' has wrong shape in
 *    model metadata: got [768, 320, 1, 1], expected [768, 32, 1, 1]" per
 *    to_k_ip / to_v_ip, then "model metadata validation failed".
 *  - clipDim other than 1024: loads, then aborts the process at the first
 *    generation with an image (GGML_ASSERT(ggml_can_mul_mat(a, b)) in
 *    IPAdapterRunner::compute).
 *  - An IP-Adapter image without an IP-Adapter loaded (with or without a
 *    vision encoder): ignored silently (no log line), the output is the
 *    plain model's; so is an IP-Adapter loaded without an image. Strength 0
 *    still computes the tokens ("IP-Adapter: 4 image tokens, strength
 *    0.00"), but the UNet skips the image attention: the plain model's output.
 *
 * Sizes (default q4_0, "tiny" UNet, 4 tokens): IP-Adapter 5,067,264
 * parameters, 36 tensors, 2,868,768 bytes (preset "sd15": 22.3 M parameters,
 * 12.6 MB); vision encoder 632,076,800 parameters, 520 tensors, 359,652,352
 * bytes; both written in ~2.7 s. On 2 CPU threads a 64×64, 2-step SD1 "tiny"
 * image with an IP-Adapter image takes ~22 s in sd-cli (~11 s without): the
 * vision encoder runs at full ViT-H size on the 224×224 image.
 * Types: linear weights `type` (all rows are whole q4_0 / q8_0 blocks), norm
 * weights 1.0 and biases 0.0 (f32), the patch embedding f16 (f32 for type
 * "f32"), class and position embeddings f32. Random weights are uniform
 * ±0.02 (./parts-writer.ts), per-tensor seeds from the name: the same seed
 * and options give byte-identical files.
 */
import fs from "node:fs";
import path from "node:path";
import { GgmlType } from "../gguf/writer";
import { type GeneratedPart, type PartTensorSpec, planner, writePart } from "./parts-writer";
import { SD1_FIXED, SD_PRESETS, type SdPresetName, sd1CrossAttentions } from "./shape";
import { uint32Seed } from "../random";

/** The fixed sizes of the OpenCLIP ViT-H/14 vision encoder sd.cpp builds for IP-Adapter (clip.hpp, OPEN_CLIP_VIT_H_14). */
export const CLIP_VISION_H14 = {
  imageSize: 224,
  patchSize: 14,
  /** (224 / 14)² patches + the class token. */
  positions: 257,
  hidden: 1280,
  layers: 32,
  heads: 16,
  intermediate: 5120,
  /** visual_projection's output: the image embedding IP-Adapter's image_proj takes. */
  projection: 1024,
} as const;

/** Sizes of the IP-Adapter. */
export interface IpAdapterSizes {
  /** The UNet's model channels (SD_PRESETS[preset].unetChannels): to_k_ip / to_v_ip are 1×, 2× and 4× as wide. */
  unetChannels: number;
  /** Image tokens (4 in ip-adapter_sd15). */
  tokens: number;
  /** Width of the image tokens (to_k_ip / to_v_ip's input; 768 in ip-adapter_sd15, the SD1 context width). */
  contextDim: number;
  /** Width of the image embedding (the vision encoder's projection, 1024: CLIP_VISION_H14.projection). */
  clipDim: number;
}

/** Storage type of linear weights. */
export type IpAdapterType = "q4_0" | "q8_0" | "f16" | "f32";
const TYPES: Record<IpAdapterType, GgmlType> = { q4_0: GgmlType.Q4_0, q8_0: GgmlType.Q8_0, f16: GgmlType.F16, f32: GgmlType.F32 };

export interface GenerateIpAdapterOptions {
  /** PRNG seed (uint32); the same seed and options give byte-identical files. Default 1. */
  seed?: number;
  /** Storage type of linear weights of both files. Default "q4_0" (the vision encoder 360 MB; "f16" ~1.26 GB). */
  type?: IpAdapterType;
  /** The SD1 checkpoint preset (generateRandomSd15Model's) whose UNet widths to follow. Default "tiny". */
  preset?: SdPresetName;
  /**
   * Sizes other than the preset's (unetChannels) and ip-adapter_sd15's (4 tokens of 768, a 1024-wide
   * embedding), e.g. to write an IP-Adapter that does not fit the checkpoint. A clipDim other than 1024
   * does not fit sd.cpp's vision encoder.
   */
  sizes?: Partial<IpAdapterSizes>;
}

export interface GenerateIpAdapterResult {
  /** sd_ctx_params_t.ip_adapter_path: ip-adapter.gguf */
  ipAdapter: GeneratedPart;
  /** sd_ctx_params_t.clip_vision_path: clip-vision-h14.gguf */
  clipVision: GeneratedPart;
  seed: number;
  type: IpAdapterType;
  sizes: IpAdapterSizes;
}

/** The sizes for a preset (default "tiny") with overrides, validated. @throws RangeError */
export function ipAdapterSizes(preset: SdPresetName = "tiny", sizes: Partial<IpAdapterSizes> = {}): IpAdapterSizes {
  const p = SD_PRESETS[preset];
  if (!p) throw new RangeError(`unknown preset ${String(preset)}; one of ${Object.keys(SD_PRESETS).join(", ")}`);
  const S: IpAdapterSizes = { unetChannels: p.unetChannels, tokens: 4, contextDim: SD1_FIXED.contextDim, clipDim: CLIP_VISION_H14.projection, ...sizes };
  if (!Number.isSafeInteger(S.unetChannels) || S.unetChannels <= 0 || S.unetChannels % 32 !== 0) {
    throw new RangeError(`unetChannels must be a positive multiple of 32, got ${S.unetChannels}`);
  }
  if (!Number.isSafeInteger(S.tokens) || S.tokens <= 0 || S.tokens > 256) throw new RangeError(`tokens must be an integer in 1 … 256, got ${S.tokens}`);
  for (const k of ["contextDim", "clipDim"] as const) {
    if (!Number.isSafeInteger(S[k]) || S[k] <= 0 || S[k] % 32 !== 0) throw new RangeError(`${k} must be a positive multiple of 32, got ${S[k]}`);
  }
  return S;
}

/** A quantized type only for rows of whole 32-wide blocks (f16 otherwise). */
const rowType = (t: GgmlType, inF: number): GgmlType => ((t === GgmlType.Q4_0 || t === GgmlType.Q8_0) && inF % 32 !== 0 ? GgmlType.F16 : t);

function linType(type: IpAdapterType): GgmlType {
  if (!Object.hasOwn(TYPES, type)) throw new RangeError(`type must be one of ${Object.keys(TYPES).join(", ")}, got ${String(type)}`);
  return TYPES[type];
}

/**
 * The IP-Adapter's tensors with ip-adapter_sd15's names: image_proj.proj
 * [clipDim, tokens · contextDim] (+ bias), image_proj.norm [contextDim], and
 * ip_adapter.<2k+1>.to_k_ip / to_v_ip [contextDim, width of the k-th
 * cross-attention in sd1CrossAttentions order] for k = 0 … 15.
 */
export function ipAdapterPlan(type: IpAdapterType = "q4_0", S: IpAdapterSizes = ipAdapterSizes()): PartTensorSpec[] {
  const lin = linType(type);
  const P = planner(lin, type === "f32" ? GgmlType.F32 : GgmlType.F16);
  P.linear("image_proj.proj", S.clipDim, S.tokens * S.contextDim, true, rowType(lin, S.clipDim));
  P.norm("image_proj.norm", S.contextDim);
  sd1CrossAttentions(S.unetChannels).forEach((a, k) => {
    P.linear(`ip_adapter.${2 * k + 1}.to_k_ip`, S.contextDim, a.channels, false, rowType(lin, S.contextDim));
    P.linear(`ip_adapter.${2 * k + 1}.to_v_ip`, S.contextDim, a.channels, false, rowType(lin, S.contextDim));
  });
  return P.specs;
}

/** The OpenCLIP ViT-H/14 vision encoder's tensors (HF CLIPVisionModelWithProjection names, without the "clip_vision." prefix). */
export function clipVisionH14Plan(type: IpAdapterType = "q4_0"): PartTensorSpec[] {
  const lin = linType(type);
  const C = CLIP_VISION_H14;
  const P = planner(lin, type === "f32" ? GgmlType.F32 : GgmlType.F16);
  const linear = (p: string, inF: number, outF: number, bias = true): void => P.linear(p, inF, outF, bias, rowType(lin, inF));
  const h = C.hidden;
  const e = "vision_model.embeddings";
  P.add(`${e}.class_embedding`, [h], GgmlType.F32, "weight");
  P.add(`${e}.patch_embedding.weight`, [C.patchSize, C.patchSize, 3, h], type === "f32" ? GgmlType.F32 : GgmlType.F16, "weight");
  P.add(`${e}.position_embedding.weight`, [h, C.positions], GgmlType.F32, "weight");
  P.norm("vision_model.pre_layrnorm", h);
  for (let l = 0; l < C.layers; l++) {
    const b = `vision_model.encoder.layers.${l}`;
    for (const n of ["q_proj", "k_proj", "v_proj", "out_proj"]) linear(`${b}.self_attn.${n}`, h, h);
    P.norm(`${b}.layer_norm1`, h);
    linear(`${b}.mlp.fc1`, h, C.intermediate);
    linear(`${b}.mlp.fc2`, C.intermediate, h);
    P.norm(`${b}.layer_norm2`, h);
  }
  P.norm("vision_model.post_layernorm", h);
  linear("visual_projection", h, C.projection, false);
  return P.specs;
}

function checkSeedType(opts: { seed?: number; type?: IpAdapterType }): { seed: number; type: IpAdapterType } {
  const type = opts.type ?? "q4_0";
  linType(type);
  const seed = uint32Seed(opts.seed);
  return { seed, type };
}

const FAMILY = "Stable Diffusion 1.x IP-Adapter";

/**
 * Writes only the IP-Adapter weights (ipAdapterPlan) to `file`, e.g. one made
 * for another preset next to an existing vision encoder.
 * @throws RangeError for a bad seed, type, preset or size
 */
export async function generateRandomIpAdapterWeights(file: string, opts: GenerateIpAdapterOptions = {}): Promise<GeneratedPart> {
  const { seed, type } = checkSeedType(opts);
  const S = ipAdapterSizes(opts.preset ?? "tiny", opts.sizes);
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  return writePart(file, `random-ip-adapter-sd1-${S.unetChannels}`, ipAdapterPlan(type, S), seed, undefined, FAMILY);
}

/**
 * Writes only the ViT-H/14 vision encoder (clipVisionH14Plan) to `file`; it
 * does not depend on the UNet, so one file serves every IP-Adapter.
 * @throws RangeError for a bad seed or type
 */
export async function generateRandomClipVisionH14(file: string, opts: Pick<GenerateIpAdapterOptions, "seed" | "type"> = {}): Promise<GeneratedPart> {
  const { seed, type } = checkSeedType(opts);
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  return writePart(file, "random-clip-vit-h-14-vision", clipVisionH14Plan(type), seed, undefined, FAMILY);
}

/**
 * Writes ip-adapter.gguf (the IP-Adapter for an SD1 UNet of `preset`'s
 * widths) and clip-vision-h14.gguf (the ViT-H/14 vision encoder) into `dir`.
 * Load them with the SD1 checkpoint of the same preset
 * (generateRandomSd15Model) as sd.cpp's ip_adapter_path / clip_vision_path,
 * and give an IP-Adapter image at generation.
 * @throws RangeError for a bad seed, type, preset or size
 */
export async function generateRandomIpAdapter(dir: string, opts: GenerateIpAdapterOptions = {}): Promise<GenerateIpAdapterResult> {
  const { seed, type } = checkSeedType(opts);
  const sizes = ipAdapterSizes(opts.preset ?? "tiny", opts.sizes);
  const ipAdapter = await generateRandomIpAdapterWeights(path.join(dir, "ip-adapter.gguf"), { ...opts, seed, type });
  const clipVision = await generateRandomClipVisionH14(path.join(dir, "clip-vision-h14.gguf"), { seed, type });
  return { ipAdapter, clipVision, seed, type, sizes };
}
