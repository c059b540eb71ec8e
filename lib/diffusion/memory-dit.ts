/**
 * The compute buffers of the DiT families (Z-Image, Flux 1, Flux 2 [klein],
 * Qwen-Image, SD3.5 Large) as a function of the image's size and the prompt's length,
 * fitted to stable-diffusion.cpp's own allocations: the DiT side of
 * ./memory.ts (estimateDiffusionMemory), which also holds the SD1 fit.
 */
import { GenaiError } from "../errors";
import { optInt } from "../util/validate";
import { MAX_SIDE, MIN_SIDE, SIDE_MULTIPLE } from "./defaults";
import type { DiffusionImageSize, DiffusionParts } from "./memory";
import type { UnetFamily } from "./memory-unet";
import { DIT_COMPUTE_FIT, type DitFamily, type DitFit, type DitShape } from "./memory-dit-fit";
import { ditFamilyOf, type TensorInfo } from "./tensors";

/** A tensor whose name ends with `suffix` (any prefix: checkpoint "model.diffusion_model.", a split file's none). */
export const findTensor = (ts: readonly TensorInfo[], suffix: string) => ts.find((t) => t.name.endsWith(suffix));

/** Longest prompt the estimate takes, in tokens (a token is at least one of MAX_PROMPT_CHARS' characters). */
export const MAX_PROMPT_TOKENS = 4096;

/** width and height, checked: multiples of 64 pixels in 64..4096. */
export function checkImageSides(image: DiffusionImageSize): [number, number] {
  const w = optInt("width", image.width, 0, MIN_SIDE, MAX_SIDE);
  const h = optInt("height", image.height, 0, MIN_SIDE, MAX_SIDE);
  if (w % SIDE_MULTIPLE || h % SIDE_MULTIPLE)
    throw new GenaiError("INVALID_ARGUMENT", `width and height must be multiples of ${SIDE_MULTIPLE} pixels (got ${w}×${h})`);
  return [w, h];
}

/**
 * An upper bound of the text-encoder tokens of these prompts (the longest):
 * its UTF-8 bytes, since each token of the byte-level BPE tokenizers these
 * families use (Qwen2's) covers at least one byte; at most MAX_PROMPT_TOKENS.
 * A generation's DiffusionImageSize.promptTokens for budgeting.
 */
export function promptTokenBound(...prompts: (string | undefined)[]): number {
  const bytes = Math.max(1, ...prompts.map((p) => (typeof p === "string" ? Buffer.byteLength(p) : 0)));
  return Math.min(bytes, MAX_PROMPT_TOKENS);
}

/** The prompt length (text-encoder tokens) the estimate assumes when DiffusionImageSize.promptTokens is not given: a long prompt, about 190 English words. */
export const DEFAULT_PROMPT_TOKENS = 256;

export { DIT_COMPUTE_FIT } from "./memory-dit-fit";
export type { DitFamily, DitFit, DitShape, VaeEncodeFit } from "./memory-dit-fit";

/** Tokens the chat templates add around the prompt (src/conditioning/conditioner.hpp; counted in sd.cpp's tokenizer log). */
const TEMPLATE_TOKENS: Readonly<Record<DitFamily, number>> = { zimage: 8, flux1: 1, flux2: 12, qwenimage: 39, sd3: 0 };
/**
 * SD3 encodes the prompt in chunks of 77 tokens with each of CLIP-L, bigG and
 * T5 (conditioner.hpp SD3CLIPEmbedder), 75 of the prompt's in CLIP's (BOS and
 * EOS around them), and joins CLIP's and T5's states: 154 DiT tokens a chunk.
 */
const SD3_CHUNK = 77;
const SD3_PROMPT_PER_CHUNK = 75;
/** Flux 1's T5 runs on chunks of this many tokens, the prompt's padded to a whole number of them (conditioner.hpp FluxCLIPEmbedder chunk_len). */
const FLUX1_T5_CHUNK = 256;
/** Qwen-Image drops its system prompt's tokens (prompt_template_encode_start_idx) from the DiT's context. */
const QWEN_IMAGE_DROPPED_TOKENS = 34;
/** Flux 2 [klein] pads the prompt to at least this many tokens. */
const FLUX2_KLEIN_MIN_TOKENS = 512;
/** Z-Image pads its caption and image tokens to multiples of this (z_image.hpp SEQ_MULTI_OF). */
const Z_IMAGE_SEQ_MULTIPLE = 32;

const roundUp = (n: number, m: number) => Math.ceil(n / m) * m;

/**
 * The token counts a generation of a DiT family runs on: the text encoder's
 * input (`text`), the text tokens of the DiT's joint attention (`ditText`) and
 * the image tokens (`image`, one per 16 × 16 pixels: an 8× VAE and 2 × 2
 * patches, or Flux 2's 16× VAE with patch 1), for a prompt of `promptTokens`.
 */
export function ditTokens(family: DitFamily, width: number, height: number, promptTokens: number): { text: number; ditText: number; image: number } {
  const image = (width / 16) * (height / 16);
  const text = promptTokens + TEMPLATE_TOKENS[family];
  switch (family) {
    case "zimage":
      return { text, ditText: roundUp(text, Z_IMAGE_SEQ_MULTIPLE), image: roundUp(image, Z_IMAGE_SEQ_MULTIPLE) };
    case "flux1":
      // T5 runs once per 256-token chunk (its buffer is one chunk's); the DiT sees every chunk's tokens
      return { text: FLUX1_T5_CHUNK, ditText: roundUp(text, FLUX1_T5_CHUNK), image };
    case "flux2": {
      const padded = Math.max(text, FLUX2_KLEIN_MIN_TOKENS);
      return { text: padded, ditText: padded, image };
    }
    case "qwenimage":
      return { text, ditText: text - QWEN_IMAGE_DROPPED_TOKENS, image };
    case "sd3":
      return { text: SD3_CHUNK, ditText: 2 * SD3_CHUNK * Math.max(1, Math.ceil(promptTokens / SD3_PROMPT_PER_CHUNK)), image };
  }
}

/**
 * The size sd.cpp VAE-encodes a reference image at, pixels [width, height]
 * (src/stable-diffusion.cpp, resize_before_vae, the default of the flux2
 * and qwen presets): the target's area, at most 1024², at the reference's
 * aspect ratio, each side rounded to a multiple of 16 (Qwen-Image: 32). Its
 * DiT tokens are one per 16 × 16 pixels, as the image's: measured, a 256²
 * target with two 256² references takes the DiT buffer of a 256×768 target
 * (Flux 2 [klein] 367.81 MiB both), and with one Qwen-Image's 68.00 MiB
 * against 67.94 for 256×512.
 */
export function refImagePixels(family: DitFamily | UnetFamily, width: number, height: number, ref: { width: number; height: number }): [number, number] {
  const area = Math.min(1024 * 1024, width * height);
  const w = Math.sqrt(Math.floor((area * ref.width) / ref.height)); // sd.cpp: integer product and quotient, then sqrt
  const h = (w * ref.height) / ref.width;
  const factor = family === "qwenimage" ? 32 : 16;
  return [Math.round(w / factor) * factor, Math.round(h / factor) * factor];
}

/**
 * A TAESD's compute buffers (load.taesd decoding and encoding in place of the VAE), bytes per pixel: measured
 * as the VAEs' ("taesd compute buffer size" at debug level, CPU backend) with generateRandomTaesd's files
 * (tae.hpp's 64-channel layout). SD1 with 4 latent channels, decoding at 64², 128², 256², 256×512 and 512²: 7.50,
 * 30.00, 120.02, 240.03, 480.06 MiB; encoding (img2img) at 128², 256², 512²: 31.03, 124.13, 496.50 MiB. Flux 2
 * [klein] with TAEF2's 32 latent channels (and its group-norm branch): 7.51, 30.03, 120.13 MiB decoding at 64²,
 * 128², 256², the same encodes. Largest error of these rates: 0.1 %. tae.hpp fixes the width; the latent channels
 * change the first and last convs only, so Z-Image's 16 lie between. Per image (sd.cpp decodes a batch one by
 * one). Not measured: vaeTiling with a TAESD, and Qwen-Image's (the video tiny autoencoder, TAEHV).
 */
export const TAESD_COMPUTE_FIT = { decodePerPixel: 1922, encodePerPixel: 1986 } as const;

/**
 * The VAE part when a TAESD decodes and encodes (TAESD_COMPUTE_FIT), bytes: its decode of one width × height
 * image or its largest encode of `encodes` ([width, height] pixels each), whichever is larger. Untiled only.
 */
export function taesdComputeBytes(width: number, height: number, encodes: readonly (readonly [number, number])[]): number {
  return Math.max(TAESD_COMPUTE_FIT.decodePerPixel * width * height, largestEncodeBytes(encodes, TAESD_COMPUTE_FIT.encodePerPixel, 0, undefined));
}

/**
 * The largest VAE encode of one generation, bytes: perPixel × pixels + constant for each image sd.cpp encodes
 * (`sizes`: [width, height] pixels; an init or control image, resized references), each at most `tile` pixels a
 * side (vaeTiling; undefined: untiled); 0 when nothing is encoded. The UNet and DiT families' shared rule.
 */
export function largestEncodeBytes(sizes: readonly (readonly [number, number])[], perPixel: number, constant: number, tile: number | undefined): number {
  const side = (s: number) => (tile === undefined ? s : Math.min(s, tile));
  return Math.max(0, ...sizes.map(([w, h]) => perPixel * side(w) * side(h) + constant));
}

/** Whether `shape` has the widths `fit` was measured at (the VAE decoder: one of those measured). */
const measuredWidths = (fit: DitFit, shape: DitShape) =>
  fit.shape.ditHidden === shape.ditHidden &&
  fit.shape.ditHeads === shape.ditHeads &&
  fit.shape.textHidden === shape.textHidden &&
  fit.shape.textFfn === shape.textFfn &&
  fit.vae.channels.includes(shape.vaeDecoderChannels);

/** A tensor of `ts` whose name ends with one of `suffixes`. */
const findAny = (ts: readonly TensorInfo[], ...suffixes: string[]) => ts.find((t) => suffixes.some((s) => t.name.endsWith(s)));

/** SD3's joint blocks: 1 + the largest N of `joint_blocks.N.` (sd.cpp's MMDiTConfig depth, its head count too). */
function sd3Depth(d: readonly TensorInfo[]): number {
  let depth = 0;
  for (const t of d) {
    const m = /joint_blocks\.(\d+)\./.exec(t.name);
    if (m) depth = Math.max(depth, Number(m[1]) + 1);
  }
  return depth;
}

/** Why an SD3 MMDiT is not one the fit holds for, beyond its widths: SD3.5 Medium's MMDiT-X blocks, another position grid. */
function sd3Unmeasured(d: readonly TensorInfo[]): string | undefined {
  if (d.some((t) => t.name.includes("x_block.attn2."))) return "SD3.5 Medium's MMDiT-X blocks (x_block.attn2) were not measured, only SD3.5 Large";
  const grid = findTensor(d, "pos_embed");
  if (grid && grid.shape[1] !== 192 * 192) return `a ${Math.round(Math.sqrt(grid.shape[1]))}² position grid was not measured, only SD3's 192²`;
  return undefined;
}

/** What the files' parts hold, by part. */
type PartTensors = Record<keyof DiffusionParts, readonly TensorInfo[]>;

/**
 * The DiT family of these tensors and its widths, or why its compute buffers
 * cannot be estimated; undefined when the denoiser is none of the three
 * (sd.cpp's own tests: src/model_loader.cpp get_sd_version).
 */
export function ditShape(parts: PartTensors): { family: DitFamily; shape: DitShape | string } | undefined {
  const d = parts.diffusion;
  const tag = ditFamilyOf(d);
  if (!tag) return undefined;
  const family: DitFamily = tag === "flux2-klein" || tag === "flux2-dev" ? "flux2" : tag;
  let why = tag === "flux2-dev" ? "Flux 2 [dev] (48 single blocks, a Mistral text encoder) was not measured, only Flux 2 [klein] 4B" : undefined;
  // the DiT's hidden size (the image embedding's outputs; Z-Image: sd.cpp's or diffusers' name) and head width
  const embedIn = {
    zimage: findAny(d, "x_embedder.weight", "all_x_embedder.2-1.weight"),
    flux1: findTensor(d, "img_in.weight"),
    flux2: findTensor(d, "img_in.weight"),
    qwenimage: findTensor(d, "img_in.weight"),
    sd3: findTensor(d, "x_embedder.proj.weight"), // a patch conv [2, 2, latent, hidden]
  }[family];
  const headNorm = {
    zimage: findAny(d, "layers.0.attention.q_norm.weight", "layers.0.attention.norm_q.weight"),
    flux1: findTensor(d, "double_blocks.0.img_attn.norm.key_norm.scale"),
    flux2: findTensor(d, "double_blocks.0.img_attn.norm.key_norm.scale"),
    qwenimage: findTensor(d, "transformer_blocks.0.attn.norm_q.weight"),
    sd3: undefined,
  }[family];
  const ditHidden = (family === "sd3" ? embedIn?.shape[3] : embedIn?.shape[1]) ?? 0;
  const headDim = headNorm?.shape[0];
  if (!why && !embedIn) why = "no image embedding (x_embedder / img_in) in the diffusion model";
  // sd.cpp's MMDiTConfig: as many heads as joint blocks
  const ditHeads = family === "sd3" ? sd3Depth(d) : headDim ? ditHidden / headDim : 0;
  if (!why && family === "sd3") why = sd3Unmeasured(d);
  const te = parts.textEncoder;
  // the LLM's (Hugging Face or llama.cpp names) or Flux 1's T5 (T5EncoderModel names or llama.cpp's: token_embd, enc.blk.N.ffn_gate)
  const textHidden = findAny(te, "token_embd.weight", "embed_tokens.weight", "shared.weight")?.shape[0];
  const textFfn = findAny(te, "blk.0.ffn_gate.weight", "layers.0.mlp.gate_proj.weight", "block.0.layer.1.DenseReluDense.wi_0.weight")?.shape[1];
  const v = parts.vae;
  const wan = findTensor(v, "decoder.head.2.weight");
  // sd.cpp's WanVAERunner: a conv2d kernel [3, 3, in, out] has ne[2] > 3, a CausalConv3d one is [3, 3, 3, in·out]
  const causal3d = wan !== undefined && (findTensor(v, "decoder.conv1.weight")?.shape[2] ?? 0) <= 3;
  // the decoder's last conv takes its base channels (the Wan VAE's head.2 → RGB: in·3 in the causal-3D layout)
  const vaeDecoderChannels = causal3d ? wan.shape[3] / 3 : (wan ?? findTensor(v, "decoder.conv_out.weight"))?.shape[2];
  const fit = DIT_COMPUTE_FIT[family];
  const name = { zimage: "Z-Image", flux1: "Flux 1", flux2: "Flux 2 [klein]", qwenimage: "Qwen-Image", sd3: "SD3" }[family];
  const aName = `${family === "sd3" ? "an" : "a"} ${name}`;
  if (!why && !textHidden)
    why = family === "flux1" || family === "sd3" ? "no T5 text encoder (load.t5xxl) in the files" : "no LLM text encoder (load.llm) in the files";
  if (!why && !vaeDecoderChannels) why = "no VAE decoder in the files";
  if (!why && family === "qwenimage" && !wan) why = "a Qwen-Image model without the Wan VAE was not measured";
  if (!why && family !== "qwenimage" && wan) why = `${aName} model with the Wan VAE was not measured`;
  const shape: DitShape = {
    family,
    ditHidden,
    ditHeads,
    textHidden: textHidden ?? 0,
    textFfn: textFfn ?? 0,
    vaeDecoderChannels: vaeDecoderChannels ?? 0,
    ...(causal3d && { vaeLayout: "causal3d" as const }),
  };
  if (!why && causal3d && !fit.vaeCausal3d) why = `the causal-3D Wan VAE was not measured for ${name}`;
  if (!why) {
    const m = fit.shape;
    if (!measuredWidths(fit, shape))
      why =
        `${aName} model of DiT ${shape.ditHidden} wide (${shape.ditHeads} heads), text encoder ${shape.textHidden} (FFN ${shape.textFfn}), VAE decoder ${shape.vaeDecoderChannels}: ` +
        `only DiT ${m.ditHidden} (${m.ditHeads} heads), text encoder ${m.textHidden} (FFN ${m.textFfn}), VAE decoder ${fit.vae.channels.join(" or ")} were measured`;
  }
  return { family, shape: why ?? shape };
}

/**
 * Compute buffers of one generation of a DiT family, bytes ({@link DIT_COMPUTE_FIT}):
 * text encoder T·n + K over its n tokens; DiT S·L² + per image token
 * + per text token + K over its L tokens (flash attention: no L²); VAE decode
 * per pixel + per latent token (of one tile with vaeTiling), or with
 * image.initImage the encode's per pixel + K when larger. Reference images
 * (image.refImages) add their tokens to the DiT's image tokens and their
 * encodes to the VAE's ({@link refImagePixels}). Token counts: {@link ditTokens}.
 * @throws GenaiError INVALID_ARGUMENT (sizes not multiples of 64 pixels in 64..4096, a prompt length out of 1..8192, a shape that was not measured, vaeTiling where it was not measured)
 */
export function ditComputeBytes(
  shape: DitShape,
  image: DiffusionImageSize,
  opts: { flashAttention?: boolean; vaeTiling?: boolean; taesd?: boolean } = {},
): DiffusionParts & { peak: number } {
  const [w, h] = checkImageSides(image);
  if (opts.taesd && (opts.vaeTiling || shape.family === "qwenimage"))
    throw new GenaiError("INVALID_ARGUMENT", `a TAESD was not measured ${opts.vaeTiling ? "with vaeTiling" : "for Qwen-Image"}`);
  const p = optInt("promptTokens", image.promptTokens, DEFAULT_PROMPT_TOKENS, 1, MAX_PROMPT_TOKENS);
  const f = DIT_COMPUTE_FIT[shape.family];
  if (!f || !measuredWidths(f, shape)) throw new GenaiError("INVALID_ARGUMENT", `no fitted coefficients for ${JSON.stringify(shape)}`);
  const t = ditTokens(shape.family, w, h, p);
  const refs = (image.refImages ?? []).map((r) => refImagePixels(shape.family, w, h, r));
  const imageTokens = t.image + refs.reduce((n, [rw, rh]) => n + (rw / 16) * (rh / 16), 0);
  const L = t.ditText + imageTokens;
  const d = f.dit;
  const linear = (a: number, b: number) => (d.dualStream ? Math.max(a, b) : a + b);
  const blocks = opts.flashAttention
    ? linear(d.flashPerImageToken * imageTokens, d.flashPerTextToken * t.ditText) + d.flashConstant
    : d.scores * L * L + linear(d.perImageToken * imageTokens, d.perTextToken * t.ditText) + d.constant;
  const crop = d.posEmbedCrop;
  const diffusion = crop ? Math.max(blocks, crop.perPatchRow * (h / 16) + crop.perImageToken * t.image + crop.constant) : blocks;
  const textEncoder = f.textEncoder.perToken * t.text + f.textEncoder.constant;
  if (opts.vaeTiling && f.vaeTilePixels === undefined) throw new GenaiError("INVALID_ARGUMENT", `vaeTiling was not measured for ${shape.family}`);
  const tile = f.vaeTilePixels ?? Math.max(w, h);
  const [vw, vh] = opts.vaeTiling ? [Math.min(w, tile), Math.min(h, tile)] : [w, h];
  const vf = shape.vaeLayout === "causal3d" ? f.vaeCausal3d : f.vae;
  if (!vf) throw new GenaiError("INVALID_ARGUMENT", `the causal-3D VAE was not measured for ${shape.family}`);
  const decode = vf.perPixelChannel * shape.vaeDecoderChannels * vw * vh + (vf.perLatentToken * vw * vh) / 64;
  const encodes: [number, number][] = [...(image.initImage ? [[w, h] as [number, number]] : []), ...refs];
  const vae = opts.taesd
    ? taesdComputeBytes(w, h, encodes)
    : Math.max(decode, largestEncodeBytes(encodes, vf.encodePerPixel, vf.encodeConstant, opts.vaeTiling ? f.vaeEncodeTilePixels : undefined));
  const parts = { textEncoder: Math.round(textEncoder), diffusion: Math.round(diffusion), vae: Math.round(vae) };
  return { ...parts, peak: Math.max(parts.textEncoder, parts.diffusion, parts.vae) };
}
