/**
 * Generates a PhotoMaker v1 weights file with deterministic random weights
 * for the random SDXL model of ./sdxl.ts, so tests run stable-diffusion.cpp's
 * PhotoMaker (DiffusionModel.load({ …, photoMaker }) and generate's
 * photoMaker.idImages, or sd-cli --photo-maker --pm-id-images-dir, with the
 * trigger word "img" after the class word in the prompt) without downloads: the
 * CLIP ViT-L/14 image encoder, the ID embedding fused into the prompt's
 * class-token embeddings, and the UNet LoRA the file carries all run for real.
 *
 * Sources (deps/stable-diffusion.cpp; shapes in ggml order, ne[0] first:
 * linear [in, out], conv [kw, kh, in, out]):
 *  - src/extensions/photomaker_extension.cpp (PhotoMakerExtension): loads
 *    the file twice. Once under the prefix "pmid." as the ID encoder
 *    (tensors under "pmid.unet." are ignored), and once as a LoRA over the
 *    whole file keeping only tensors whose converted names start with
 *    "lora.model" (LoraSpec.tensor_name_prefix_filter, `required = true`:
 *    src/model_manager.cpp refuses the generation with "required lora has no
 *    tensors" when none are left, so a LoRA must be there). The version is
 *    chosen by the path: one containing "v2" anywhere (directories too) is
 *    PhotoMaker v2, which also needs InsightFace ID embeds; this writes v1,
 *    and refuses such a path.
 *  - src/model/adapter/pmid.hpp (PhotoMakerIDEncoder, PhotoMakerIDEncoderBlock,
 *    FuseModule, FuseBlock) and src/model/te/clip.hpp
 *    (CLIPVisionModelProjection, CLIPVisionModel, CLIPVisionEmbeddings,
 *    CLIPEncoder). Every size is fixed by the code: CLIP ViT-L/14 vision
 *    (224-pixel images, 14-pixel patches, 257 positions, 24 layers × 1024,
 *    MLP 4096, 16 heads; patch_embedding [14, 14, 3, 1024] f16 without bias,
 *    class_embedding [1024] and position_embedding [1024, 257] f32),
 *    visual_projection [1024, 768] and visual_projection_2 [1024, 1280]
 *    (no biases; their outputs concatenate to 2048 = the SDXL context),
 *    FuseModule(2048): mlp1 (layernorm 4096, fc1 4096→2048, fc2 2048→2048),
 *    mlp2 (layernorm 2048, fc1 and fc2 2048→2048, residual), layer_norm 2048.
 *    HF CLIP names (vision_model.encoder.layers.N.self_attn.q_proj, …,
 *    vision_model.pre_layernorm).
 *  - The LoRA (src/name_conversion.cpp convert_tensor_name, "lora." prefix):
 *    `unet.<LDM module>.lora_A` / `.lora_B` (lora_down [in, rank], lora_up
 *    [rank, out], f32) become
 *    lora.model.diffusion_model.<module>.weight.lora_down / lora_up. Here:
 *    attn2.to_k and attn2.to_v of the first transformer block of the
 *    UNet's level 1 (input_blocks.4.1.transformer_blocks.0, 2 × the
 *    model channels wide; the short lora_A / lora_B suffixes keep the names
 *    under GGUF's 64 bytes).
 *
 * Sizes (default q4_0, rank 4, two targets): 326.3 M parameters (the
 * vision tower 303 M of them), 411 tensors, 186,601,152 bytes, written in
 * ~2 s. The ID encoder is full CLIP ViT-L/14 size at 224×224 per ID image:
 * on 2 CPU threads sd-cli's "Photomaker ID Stacking" takes ~5 s for one ID
 * image (a 64×64, 2-step SDXL image with it ~11 s in all). Types: norm weights 1.0 and biases 0.0 (f32), linear
 * weights `type`, the patch embedding f16, LoRA matrices f32.
 */
import fs from "node:fs";
import path from "node:path";
import { GgmlType } from "../gguf/writer";
import { type GeneratedPart, type PartTensorSpec, planner, writePart } from "./parts-writer";
import { SDXL_TINY, type SdxlSizes, type SdxlType } from "./sdxl";
import { uint32Seed } from "../random";

/** The fixed sizes of PhotoMaker v1's ID encoder (sd.cpp's CLIPVisionModel / PhotoMakerIDEncoderBlock). */
export const PHOTOMAKER_V1 = {
  visionHidden: 1024,
  visionLayers: 24,
  visionFfn: 4096,
  visionPatch: 14,
  visionImage: 224,
  /** visual_projection's output (CLIP-L's width) and visual_projection_2's (bigG's). */
  projection: 768,
  projection2: 1280,
  /** FuseModule width: the SDXL context. */
  fuseDim: 2048,
} as const;

/** A UNet linear the PhotoMaker LoRA adapts, in the first transformer block of level 1. */
export type PhotoMakerLoraTarget = "attn1.to_q" | "attn1.to_k" | "attn1.to_v" | "attn2.to_q" | "attn2.to_k" | "attn2.to_v";

export interface GeneratePhotoMakerOptions {
  /** PRNG seed (uint32). Default 1. */
  seed?: number;
  /** Storage type of the linear weights. Default "q4_0". */
  type?: SdxlType;
  /** The SDXL model's sizes (only unetChannels and contextDim matter: the LoRA's shapes). Default SDXL_TINY. */
  sdxlSizes?: Partial<SdxlSizes>;
  /** LoRA rank. Default 4. */
  loraRank?: number;
  /** Adapted UNet linears (in input_blocks.4.1.transformer_blocks.0). Default ["attn2.to_k", "attn2.to_v"]; at least one. */
  loraTargets?: readonly PhotoMakerLoraTarget[];
}

const TYPES: Record<SdxlType, GgmlType> = { q4_0: GgmlType.Q4_0, q8_0: GgmlType.Q8_0, f16: GgmlType.F16, f32: GgmlType.F32 };

/** The module the LoRA adapts (LDM name). */
export const PHOTOMAKER_LORA_BLOCK = "input_blocks.4.1.transformer_blocks.0";

/** The tensors of a PhotoMaker v1 file: the ID encoder (names without "pmid.") and the UNet LoRA ("unet." names). */
export function photoMakerPlan(
  type: SdxlType = "q4_0",
  sdxl: SdxlSizes = SDXL_TINY,
  rank = 4,
  targets: readonly PhotoMakerLoraTarget[] = ["attn2.to_k", "attn2.to_v"],
): PartTensorSpec[] {
  const lin = TYPES[type];
  if (!lin) throw new RangeError(`type must be one of ${Object.keys(TYPES).join(", ")}, got ${String(type)}`);
  if (!Number.isInteger(rank) || rank < 1 || rank > 1024) throw new RangeError(`loraRank must be an integer in [1, 1024], got ${rank}`);
  if (targets.length === 0) throw new RangeError("loraTargets must name at least one layer: sd.cpp requires the PhotoMaker LoRA");
  const V = PHOTOMAKER_V1;
  const P = planner(lin, type === "f32" ? GgmlType.F32 : GgmlType.F16);
  const h = V.visionHidden;
  const v = "vision_model";
  P.add(`${v}.embeddings.patch_embedding.weight`, [V.visionPatch, V.visionPatch, 3, h], type === "f32" ? GgmlType.F32 : GgmlType.F16, "weight");
  P.add(`${v}.embeddings.class_embedding`, [h], GgmlType.F32, "weight");
  P.add(`${v}.embeddings.position_embedding.weight`, [h, (V.visionImage / V.visionPatch) ** 2 + 1], GgmlType.F32, "weight");
  P.norm(`${v}.pre_layernorm`, h);
  for (let l = 0; l < V.visionLayers; l++) {
    const p = `${v}.encoder.layers.${l}`;
    for (const n of ["q_proj", "k_proj", "v_proj", "out_proj"]) P.linear(`${p}.self_attn.${n}`, h, h);
    P.norm(`${p}.layer_norm1`, h);
    P.linear(`${p}.mlp.fc1`, h, V.visionFfn);
    P.linear(`${p}.mlp.fc2`, V.visionFfn, h);
    P.norm(`${p}.layer_norm2`, h);
  }
  P.norm(`${v}.post_layernorm`, h);
  P.linear("visual_projection", h, V.projection, false);
  P.linear("visual_projection_2", h, V.projection2, false);
  const f = V.fuseDim;
  P.norm("fuse_module.mlp1.layernorm", 2 * f);
  P.linear("fuse_module.mlp1.fc1", 2 * f, f);
  P.linear("fuse_module.mlp1.fc2", f, f);
  P.norm("fuse_module.mlp2.layernorm", f);
  P.linear("fuse_module.mlp2.fc1", f, f);
  P.linear("fuse_module.mlp2.fc2", f, f);
  P.norm("fuse_module.layer_norm", f);
  // UNet LoRA: level 1 is 2 × model channels wide; attn2.to_k / to_v read the 2048-wide context
  const c = 2 * sdxl.unetChannels;
  for (const t of new Set(targets)) {
    const inF = t === "attn2.to_k" || t === "attn2.to_v" ? sdxl.contextDim : c;
    const base = `unet.${PHOTOMAKER_LORA_BLOCK}.${t}`;
    P.add(`${base}.lora_A`, [inF, rank], GgmlType.F32, "weight");
    P.add(`${base}.lora_B`, [rank, c], GgmlType.F32, "weight");
  }
  return P.specs;
}

/**
 * Writes a random PhotoMaker v1 file (ID encoder + UNet LoRA, one GGUF) for
 * the SDXL model of generateRandomSdxlModel to `file`. sd.cpp takes a path
 * containing "v2" for PhotoMaker v2, so such a path is refused.
 * @throws RangeError for a bad seed, type, rank, target list or path
 */
export async function generateRandomPhotoMaker(file: string, opts: GeneratePhotoMakerOptions = {}): Promise<GeneratedPart> {
  const resolved = path.resolve(file);
  if (resolved.includes("v2")) throw new RangeError(`the path must not contain "v2" (sd.cpp would load it as PhotoMaker v2): ${resolved}`);
  const seed = uint32Seed(opts.seed);
  const S: SdxlSizes = { ...SDXL_TINY, ...opts.sdxlSizes };
  const specs = photoMakerPlan(opts.type ?? "q4_0", S, opts.loraRank ?? 4, opts.loraTargets ?? ["attn2.to_k", "attn2.to_v"]);
  fs.mkdirSync(path.dirname(resolved), { recursive: true });
  return writePart(resolved, "random-photomaker-v1", specs, seed, undefined, "PhotoMaker v1");
}
