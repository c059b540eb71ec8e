/**
 * Generates a Stable Diffusion XL checkpoint with deterministic random
 * weights: one GGUF file holding the SDXL UNet, the two CLIP text encoders
 * (OpenAI CLIP ViT-L/14 and OpenCLIP ViT-bigG/14) and the SD/SDXL
 * AutoencoderKL, each named as stabilityai/stable-diffusion-xl-base-1.0's
 * sd_xl_base_1.0.safetensors names it (SDXL_PREFIXES):
 *  - "model.diffusion_model." + LDM UNet names (input_blocks, middle_block,
 *    output_blocks, label_emb, …);
 *  - "conditioner.embedders.0.transformer." + HF CLIPTextModel names
 *    ("text_model.encoder.layers.N.self_attn.q_proj.weight", …);
 *  - "conditioner.embedders.1.model." + open_clip names
 *    ("token_embedding.weight", "positional_embedding",
 *    "transformer.resblocks.N.{ln_1,ln_2,attn.out_proj,mlp.c_fc,mlp.c_proj}.…",
 *    the fused "attn.in_proj_weight" / "attn.in_proj_bias", "ln_final.…",
 *    "text_projection");
 *  - "first_stage_model." + LDM VAE names.
 * Load it with DiffusionModel.load({ model }) or sd-cli -m. The images are
 * noise-like; every kernel of the SDXL pipeline (both CLIPs and their
 * concatenated 2048-wide context, the pooled bigG embedding with the
 * size/crop conditioning as the UNet's `y`, the UNet with its 2/10-deep
 * linear-projection transformers, sampler, VAE decoder) runs for real. It is
 * also the base model PhotoMaker (./photomaker.ts) needs.
 *
 * Sources (deps/stable-diffusion.cpp at 487de75c; shapes in ggml order, ne[0]
 * first: linear [in, out], conv [kw, kh, in, out]):
 *  - UNet: src/model/diffusion/unet.hpp (UnetModelBlock, UNetConfig::detect_from_weights),
 *    src/model/common/block.hpp (ResBlock, SpatialTransformer,
 *    BasicTransformerBlock, CrossAttention, FeedForward/GEGLU). For SDXL the
 *    code fixes channel mult 1,2,4, 2 res blocks, attention at 1/2 and 1/4
 *    (levels 1 and 2) with transformer depth 2 and 10 (the middle block 10),
 *    heads of 64 channels, linear proj_in / proj_out (Linear, not 1×1 conv,
 *    chosen by proj_out's rank). Read from the weights: model channels
 *    (input_blocks.0.0 / time_embed.0), the time-embedding width
 *    (label_emb.0.0's output), adm_in_channels (label_emb.0.0's input: must
 *    be 2816, the pooled bigG embedding 1280 + 6 size/crop embeddings × 256
 *    that the conditioner builds), context_dim (attn2.to_k's input: must be
 *    2048, the conditioner concatenates CLIP-L's 768 and bigG's 1280). Heads
 *    are 64 wide, so the attention levels (2× and 4× the model channels) need
 *    model channels a multiple of 32: 32 here (levels 32/64/128, 1 and 2
 *    heads), time embedding 128.
 *  - Text encoders: src/model/te/clip.hpp (CLIPTextModel, CLIPEncoder,
 *    CLIPLayer, CLIPEmbeddings; OPENAI_CLIP_VIT_L_14 and
 *    OPEN_CLIP_VIT_BIGG_14), chosen by src/conditioning/conditioner.hpp
 *    (FrozenCLIPEmbedderWithCustomWords for SDXL, read under
 *    "cond_stage_model.transformer.text_model" and
 *    "cond_stage_model.1.transformer.text_model"). All sizes are fixed by
 *    the code (vocab 49408, 77 positions; CLIP-L 12 layers × 768, MLP 3072,
 *    12 heads; bigG 32 layers × 1280, MLP 5120, 20 heads, and a 1280×1280
 *    `text_projection` for the pooled output, held as f32), and every tensor
 *    must be present, so they are big: their linear weights and token
 *    embeddings are q4_0 by default (sd.cpp runs quantized CLIP linears and
 *    get_rows on a q4_0 token embedding). Name mapping, src/name_conversion.cpp:
 *    the prefix map turns "conditioner.embedders.0." into "cond_stage_model."
 *    and "conditioner.embedders.1." into "cond_stage_model.1.", then
 *    convert_open_clip_to_hf_clip_name maps the bigG's open_clip names to HF
 *    ones (resblocks.N → encoder.layers.N, ln_1/ln_2 → layer_norm1/2, c_fc /
 *    c_proj → fc1 / fc2, attn.in_proj_weight → self_attn.in_proj.weight,
 *    ln_final → final_layer_norm, positional_embedding →
 *    embeddings.position_embedding.weight, text_projection →
 *    text_model.text_projection). A "self_attn.in_proj" name under the
 *    encoder's prefix makes CLIPTextModelRunner build fused attention
 *    (clip.hpp ~484, MultiheadAttention in src/core/ggml_extend.hpp:
 *    in_proj = Linear(1280, 3840) with bias, its output split q, k, v by
 *    split_qkv), so in_proj_weight is [1280, 3840] and in_proj_bias [3840].
 *    text_projection: CLIPTextModel::init_params declares it
 *    [projection_dim, hidden_size] and applies it with ggml_ext_linear;
 *    open_clip's torch tensor is [width, embed_dim], i.e. ggml [embed_dim,
 *    width], the declared order (both 1280, so the shape check cannot tell
 *    the two orientations apart). This file leaves out what the real
 *    checkpoint has and sd.cpp does not read (CLIP-L's
 *    embeddings.position_ids, bigG's logit_scale).
 *  - VAE: src/model/vae/auto_encoder_kl.hpp, the SD1 AutoencoderKL that
 *    SDXL shares (4 latent channels; ./plan.ts writes the same tensors for
 *    SD1's first_stage_model): encoder full size (128 base channels),
 *    decoder base channels read from decoder.conv_in (32 here). Without a
 *    separate --vae, sd.cpp scales an SDXL checkpoint's VAE convs by 1/32
 *    (it logs "No valid VAE specified …, using Conv2D scale 0.031", as for
 *    sd_xl_base_1.0 itself); the image still varies.
 *
 * Version detection (src/model_loader.cpp get_sd_version) sees a UNet name
 * ("model.diffusion_model.input_blocks.") and a second text encoder
 * ("conditioner.embedders.1"), with middle_block.1 present (without it
 * SSD-1B or Vega): SDXL, so sd.cpp logs
 * "Version: SDXL" and lists no unknown tensors. Separate parts with plain
 * names (--diffusion-model, --clip_l, --clip_g, --vae) are not recognized at
 * this commit: the parts load under "model.diffusion_model.", "clip_l.",
 * "clip_g." and "vae.", get_sd_version runs on those names before their
 * conversion, none contains "conditioner.embedders.1", "cond_stage_model.1"
 * or "te.1", and sd-cli stops with "get sd version from file failed" (tried
 * with the four parts an earlier version of this file wrote).
 *
 * GGUF tensor names here reach 90 bytes
 * (conditioner.embedders.0.transformer.text_model.encoder.layers.11.self_attn.out_proj.weight),
 * past GgufWriter's 64-byte limit, so the header is built by ./header.ts as
 * for the SD1 checkpoint (./generate.ts); this project builds ggml with
 * GGML_MAX_NAME=160, and with a stock ggml sd.cpp falls back to its own GGUF
 * reader. The tensor data is that of ./parts-writer.ts's writePart.
 *
 * Sizes (SDXL_TINY, default q4_0, seed-independent): one file of
 * 580,573,216 bytes, 2513 tensors, 911.8 M parameters: UNet 56.8 M (1680
 * tensors), CLIP-L 123.1 M (196), bigG 694.7 M (389), VAE 37.3 M (248);
 * written in ~6 s. sd-cli on 2 CPU threads (a shared machine) makes a 64×64
 * image in 2 steps in ~6.5 s, ~5.5 s of it the two CLIPs (prompt and
 * empty negative prompt).
 * Types: norm weights 1.0 and biases 0.0 (f32), position embeddings and
 * bigG's text_projection f32, in_proj and other biases f32 (0), conv kernels
 * f16 (f32 for type "f32"), linear weights (in_proj_weight included) and
 * token embeddings `type`.
 */
import path from "node:path";
import { GgmlType } from "../gguf/writer";
import { CHUNK_BYTES, uint32Seed } from "../random";
import { writeLongNameGguf } from "./header";
import { type GeneratedPart, type PartTensorSpec, planner, produceSpec } from "./parts-writer";
import { sd1TensorPlan } from "./plan";

/** The sizes of the generated model (sd.cpp's UNetConfig / CLIPTextModel names). */
export const SDXL_TINY = {
  /** UNet model channels (320 in SDXL); a multiple of 32 (64-channel heads at 2× and 4×). */
  unetChannels: 32,
  /** Time-embedding width (4 × model channels in SDXL). */
  timeEmbedDim: 128,
  /** label_emb input: pooled bigG (1280) + 6 × 256 size/crop embeddings (fixed by the conditioner). */
  admInChannels: 2816,
  /** Channel mult, transformer depth per level and attention levels (fixed by sd.cpp for SDXL). */
  unetChannelMult: [1, 2, 4],
  unetTransformerDepth: [1, 2, 10],
  unetAttentionLevels: [1, 2],
  unetResBlocks: 2,
  unetHeadDim: 64,
  latentChannels: 4,
  /** Cross-attention context: CLIP-L 768 + bigG 1280 (fixed). */
  contextDim: 2048,
  clipVocab: 49408,
  clipPositions: 77,
  clipLHidden: 768,
  clipLLayers: 12,
  clipLFfn: 3072,
  clipGHidden: 1280,
  clipGLayers: 32,
  clipGFfn: 5120,
  /** VAE decoder base channels (128 in SDXL; read from the weights). */
  vaeDecoderChannels: 32,
} as const;

/** The sizes an SDXL model is written with (SDXL_TINY's fields). */
export type SdxlSizes = {
  -readonly [K in keyof typeof SDXL_TINY]: (typeof SDXL_TINY)[K] extends readonly number[] ? readonly number[] : number;
};

/** Storage type of linear weights and the token embeddings. */
export type SdxlType = "q4_0" | "q8_0" | "f16" | "f32";
const TYPES: Record<SdxlType, GgmlType> = { q4_0: GgmlType.Q4_0, q8_0: GgmlType.Q8_0, f16: GgmlType.F16, f32: GgmlType.F32 };

/**
 * Where each part's tensors sit in the checkpoint, as in
 * stabilityai/stable-diffusion-xl-base-1.0's sd_xl_base_1.0.safetensors:
 * the plan functions below name tensors relative to these.
 */
export const SDXL_PREFIXES = {
  /** UNet, LDM names (sdxlUnetPlan). */
  unet: "model.diffusion_model.",
  /** CLIP ViT-L/14, HF CLIPTextModel names "text_model.…" (sdxlClipPlan("l")). */
  clipL: "conditioner.embedders.0.transformer.",
  /** OpenCLIP ViT-bigG/14, open_clip names (sdxlClipPlan("g")). */
  clipG: "conditioner.embedders.1.model.",
  /** AutoencoderKL, LDM names (sdxlVaePlan). */
  vae: "first_stage_model.",
} as const;

export interface GenerateSdxlOptions {
  /** PRNG seed (uint32); same seed and type give byte-identical files. Default 1. */
  seed?: number;
  /** Storage type of linear weights and token embeddings. Default "q4_0". */
  type?: SdxlType;
  /**
   * Sizes other than SDXL_TINY's. sd.cpp's fixed sizes (CLIP shapes,
   * context 2048, adm 2816, channel mult, depths) are not checked here:
   * other values write files sd.cpp refuses.
   */
  sizes?: Partial<SdxlSizes>;
}

export interface GenerateSdxlResult {
  /** The checkpoint: DiffusionLoadOptions.model (sd-cli -m). */
  model: GeneratedPart;
  seed: number;
  type: SdxlType;
}

/** A quantized type only when a row of `inF` is whole 32-blocks (f16 otherwise). */
const rowType = (t: GgmlType, inF: number): GgmlType => ((t === GgmlType.Q4_0 || t === GgmlType.Q8_0) && inF % 32 !== 0 ? GgmlType.F16 : t);

/** SDXL UNet tensors (LDM names, without the "model.diffusion_model." prefix). */
export function sdxlUnetPlan(type: SdxlType = "q4_0", S: SdxlSizes = SDXL_TINY): PartTensorSpec[] {
  const lin = TYPES[type];
  const P = planner(lin, type === "f32" ? GgmlType.F32 : GgmlType.F16);
  const linear = (p: string, inF: number, outF: number, bias = true): void => P.linear(p, inF, outF, bias, rowType(lin, inF));
  const mc = S.unetChannels;
  const ted = S.timeEmbedDim;
  const resBlock = (p: string, c: number, o: number): void => {
    P.norm(`${p}.in_layers.0`, c);
    P.conv(`${p}.in_layers.2`, c, o, 3);
    linear(`${p}.emb_layers.1`, ted, o);
    P.norm(`${p}.out_layers.0`, o);
    P.conv(`${p}.out_layers.3`, o, o, 3);
    if (c !== o) P.conv(`${p}.skip_connection`, c, o, 1);
  };
  const spatialTransformer = (p: string, c: number, depth: number): void => {
    P.norm(`${p}.norm`, c);
    linear(`${p}.proj_in`, c, c);
    for (let d = 0; d < depth; d++) {
      const b = `${p}.transformer_blocks.${d}`;
      linear(`${b}.attn1.to_q`, c, c, false);
      linear(`${b}.attn1.to_k`, c, c, false);
      linear(`${b}.attn1.to_v`, c, c, false);
      linear(`${b}.attn1.to_out.0`, c, c);
      linear(`${b}.ff.net.0.proj`, c, c * 4 * 2); // GEGLU
      linear(`${b}.ff.net.2`, c * 4, c);
      linear(`${b}.attn2.to_q`, c, c, false);
      linear(`${b}.attn2.to_k`, S.contextDim, c, false);
      linear(`${b}.attn2.to_v`, S.contextDim, c, false);
      linear(`${b}.attn2.to_out.0`, c, c);
      P.norm(`${b}.norm1`, c);
      P.norm(`${b}.norm2`, c);
      P.norm(`${b}.norm3`, c);
    }
    linear(`${p}.proj_out`, c, c);
  };
  const attn = (level: number): boolean => S.unetAttentionLevels.includes(level);
  linear("time_embed.0", mc, ted);
  linear("time_embed.2", ted, ted);
  linear("label_emb.0.0", S.admInChannels, ted);
  linear("label_emb.0.2", ted, ted);
  P.conv("input_blocks.0.0", S.latentChannels, mc, 3);
  const skip: number[] = [mc];
  let ch = mc;
  let idx = 0;
  const levels = S.unetChannelMult.length;
  for (let i = 0; i < levels; i++) {
    for (let j = 0; j < S.unetResBlocks; j++) {
      idx++;
      const o = S.unetChannelMult[i] * mc;
      resBlock(`input_blocks.${idx}.0`, ch, o);
      ch = o;
      if (attn(i)) spatialTransformer(`input_blocks.${idx}.1`, ch, S.unetTransformerDepth[i]);
      skip.push(ch);
    }
    if (i !== levels - 1) {
      idx++;
      P.conv(`input_blocks.${idx}.0.op`, ch, ch, 3);
      skip.push(ch);
    }
  }
  resBlock("middle_block.0", ch, ch);
  spatialTransformer("middle_block.1", ch, S.unetTransformerDepth[levels - 1]);
  resBlock("middle_block.2", ch, ch);
  let oidx = 0;
  for (let i = levels - 1; i >= 0; i--) {
    for (let j = 0; j < S.unetResBlocks + 1; j++) {
      const ich = skip.pop();
      if (ich === undefined) throw new Error("internal: skip channel stack underflow");
      const o = S.unetChannelMult[i] * mc;
      resBlock(`output_blocks.${oidx}.0`, ch + ich, o);
      ch = o;
      let sub = 1;
      if (attn(i)) {
        spatialTransformer(`output_blocks.${oidx}.1`, ch, S.unetTransformerDepth[i]);
        sub++;
      }
      if (i > 0 && j === S.unetResBlocks) P.conv(`output_blocks.${oidx}.${sub}.conv`, ch, ch, 3);
      oidx++;
    }
  }
  P.norm("out.0", ch);
  P.conv("out.2", mc, S.latentChannels, 3);
  return P.specs;
}

/**
 * A text encoder's tensors. `which` "l": CLIP ViT-L/14 (768 × 12) in HF
 * CLIPTextModel names ("text_model.embeddings…", "text_model.encoder.layers.N.self_attn.q_proj…"),
 * under SDXL_PREFIXES.clipL. "g": OpenCLIP ViT-bigG/14 (1280 × 32) in open_clip names
 * ("token_embedding.weight", "transformer.resblocks.N.attn.in_proj_weight" with q, k
 * and v fused, …, "text_projection"), under SDXL_PREFIXES.clipG.
 */
export function sdxlClipPlan(which: "l" | "g", type: SdxlType = "q4_0", S: SdxlSizes = SDXL_TINY): PartTensorSpec[] {
  const lin = TYPES[type];
  const P = planner(lin, GgmlType.F16);
  const linear = (p: string, inF: number, outF: number): void => P.linear(p, inF, outF, true, rowType(lin, inF));
  if (which === "l") {
    const h = S.clipLHidden;
    const t = "text_model";
    P.add(`${t}.embeddings.token_embedding.weight`, [h, S.clipVocab], rowType(lin, h), "weight");
    P.add(`${t}.embeddings.position_embedding.weight`, [h, S.clipPositions], GgmlType.F32, "weight");
    for (let l = 0; l < S.clipLLayers; l++) {
      const p = `${t}.encoder.layers.${l}`;
      for (const n of ["q_proj", "k_proj", "v_proj", "out_proj"]) linear(`${p}.self_attn.${n}`, h, h);
      P.norm(`${p}.layer_norm1`, h);
      linear(`${p}.mlp.fc1`, h, S.clipLFfn);
      linear(`${p}.mlp.fc2`, S.clipLFfn, h);
      P.norm(`${p}.layer_norm2`, h);
    }
    P.norm(`${t}.final_layer_norm`, h);
    return P.specs;
  }
  const h = S.clipGHidden;
  P.add("token_embedding.weight", [h, S.clipVocab], rowType(lin, h), "weight");
  P.add("positional_embedding", [h, S.clipPositions], GgmlType.F32, "weight");
  for (let l = 0; l < S.clipGLayers; l++) {
    const p = `transformer.resblocks.${l}`;
    P.norm(`${p}.ln_1`, h);
    // nn.MultiheadAttention's fused projection (torch [3h, h]: q, k, v rows), read as sd.cpp's self_attn.in_proj Linear(h, 3h)
    P.add(`${p}.attn.in_proj_weight`, [h, 3 * h], rowType(lin, h), "weight");
    P.add(`${p}.attn.in_proj_bias`, [3 * h], GgmlType.F32, "zero");
    linear(`${p}.attn.out_proj`, h, h);
    P.norm(`${p}.ln_2`, h);
    linear(`${p}.mlp.c_fc`, h, S.clipGFfn);
    linear(`${p}.mlp.c_proj`, S.clipGFfn, h);
  }
  P.norm("ln_final", h);
  // open_clip's torch [width, embed_dim] = ggml [embed_dim 1280, width 1280], the shape
  // CLIPTextModel::init_params declares ([projection_dim, hidden_size]); always f32
  P.add("text_projection", [S.clipGHidden, S.clipGHidden], GgmlType.F32, "weight");
  return P.specs;
}

/** The SD/SDXL AutoencoderKL's tensors (LDM names without "first_stage_model."), as ./plan.ts writes them for SD1. */
export function sdxlVaePlan(type: SdxlType = "q4_0", S: SdxlSizes = SDXL_TINY): PartTensorSpec[] {
  const prefix = "first_stage_model.";
  // the VAE has no linear weights: only the conv type (f32 for "f32", f16 otherwise) depends on `type`
  return sd1TensorPlan({ unetChannels: 32, vaeDecoderChannels: S.vaeDecoderChannels }, type === "f32" ? "f32" : "f16")
    .filter((t) => t.name.startsWith(prefix))
    .map((t) => ({ ...t, name: t.name.slice(prefix.length) }));
}

function checkOptions(opts: GenerateSdxlOptions): { type: SdxlType; seed: number; S: SdxlSizes } {
  const type = opts.type ?? "q4_0";
  if (!Object.hasOwn(TYPES, type)) throw new RangeError(`type must be one of ${Object.keys(TYPES).join(", ")}, got ${String(type)}`);
  const seed = uint32Seed(opts.seed);
  const S: SdxlSizes = { ...SDXL_TINY, ...opts.sizes };
  for (const k of ["unetChannels", "vaeDecoderChannels"] as const) {
    if (!Number.isSafeInteger(S[k]) || S[k] <= 0 || S[k] % 32 !== 0) throw new RangeError(`${k} must be a positive multiple of 32, got ${S[k]}`);
  }
  return { type, seed, S };
}

/** Every tensor of the checkpoint, under SDXL_PREFIXES: UNet, CLIP-L, bigG, VAE. */
export function sdxlCheckpointPlan(type: SdxlType = "q4_0", S: SdxlSizes = SDXL_TINY): PartTensorSpec[] {
  const under = (prefix: string, specs: PartTensorSpec[]): PartTensorSpec[] => specs.map((t) => ({ ...t, name: prefix + t.name }));
  return [
    ...under(SDXL_PREFIXES.unet, sdxlUnetPlan(type, S)),
    ...under(SDXL_PREFIXES.clipL, sdxlClipPlan("l", type, S)),
    ...under(SDXL_PREFIXES.clipG, sdxlClipPlan("g", type, S)),
    ...under(SDXL_PREFIXES.vae, sdxlVaePlan(type, S)),
  ];
}

/**
 * Streams `specs` into one GGUF file. Like ./parts-writer.ts's writePart (the
 * same per-tensor data), but with the header built by ./header.ts, because
 * the checkpoint's names pass GgufWriter's 64-byte limit (see the file comment).
 */
async function writeCheckpoint(file: string, specs: readonly PartTensorSpec[], seed: number): Promise<GeneratedPart> {
  const kvs = [
    { key: "general.name", value: "random-sdxl" },
    { key: "general.description", value: "Stable Diffusion XL checkpoint with random weights (genai-native tools)" },
    { key: "general.quantization_version", value: 2, u32: true as const },
  ];
  const buf = new ArrayBuffer(CHUNK_BYTES);
  const bytes = await writeLongNameGguf(file, kvs, specs, (i, entry, write) => produceSpec(entry, specs[i].init, seed, buf, write));
  return {
    path: path.resolve(file),
    bytes,
    tensors: specs.length,
    parameters: specs.reduce((a, t) => a + t.shape.reduce((x, y) => x * y, 1), 0),
  };
}

/**
 * Writes a random SDXL checkpoint (UNet, CLIP-L, OpenCLIP bigG and VAE in one
 * GGUF file, named as sd_xl_base_1.0.safetensors names them; sizes:
 * SDXL_TINY, 580,573,216 bytes as q4_0) to `file`. Load it with
 * DiffusionModel.load({ model }) or sd-cli -m; image sizes are multiples of
 * 8 (the VAE's factor; the UNet's two downsamples want multiples of 32 in
 * pixels). Same seed and type give a byte-identical file.
 * @throws RangeError for a bad seed, type or size
 */
export async function generateRandomSdxlModel(file: string, opts: GenerateSdxlOptions = {}): Promise<GenerateSdxlResult> {
  const { type, seed, S } = checkOptions(opts);
  const model = await writeCheckpoint(file, sdxlCheckpointPlan(type, S), seed);
  return { model, seed, type };
}
